"""`python -m mnist_lab.predict images=<folder | pattern>`: many files at once, in batches, with a CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lab.checkpoints.load import load_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier
from mnist_lab.predict import read_digits

from conftest import one_error_line, run_cli


@pytest.fixture(scope="module")
def test_digits() -> np.ndarray:
    dm = MNISTDataModule(download=False)
    dm.setup("test")
    return (dm.data_test.tensors[0][:, 0].numpy() * 255).astype(np.uint8)


def write_digits(folder: Path, digits: np.ndarray, names: list[str]) -> list[Path]:
    """Test digits as small dark-on-white image files, one per name (the suffix picks the format)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path, digit in zip(paths, digits):
        Image.fromarray(255 - digit).convert("RGB").save(path)
    return paths


def predict(ckpt: Path, images: str, run_dir: Path, *overrides: str):
    return run_cli(
        f"ckpt_path={ckpt}", f"images={images}", f"hydra.run.dir={run_dir}", *overrides, module="mnist_lab.predict"
    )


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "predictions.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_folder_is_read_in_name_order_and_what_is_not_an_image_is_skipped_and_named(cnn_run, test_digits, tmp_path):
    folder = tmp_path / "scans"
    paths = write_digits(folder, test_digits, ["b.png", "a.png", "c.jpg", "D.PNG"])
    (folder / "notes.txt").write_text("not a digit")
    (folder / "older").mkdir()
    run_dir = tmp_path / "run"
    result = predict(cnn_run[0], str(folder), run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = sorted(map(str, paths))  # D.PNG, a.png, b.png, c.jpg: by name, as the file system spells it
    record = json.loads((run_dir / "predictions.json").read_text())
    assert [r["image"] for r in record["predictions"]] == expected
    assert record["skipped"] == [str(folder / "notes.txt"), f"{folder / 'older'}/"]
    assert f"skipped 2 that are not image files: {folder / 'notes.txt'}, {folder / 'older'}/" in result.stdout
    model = load_checkpoint(cnn_run[0]).model
    digits = torch.from_numpy(np.stack(read_digits(expected)[0])).unsqueeze(1)  # as predict prepares them
    probabilities = model.predict_step(digits, 0)
    rows = csv_rows(run_dir)
    assert [r["image"] for r in rows] == expected
    assert [int(r["prediction"]) for r in rows] == probabilities.argmax(-1).tolist()
    assert [float(r["probability"]) for r in rows] == pytest.approx(probabilities.max(-1).values.tolist(), abs=1e-5)
    assert [int(r["prediction"]) for r in rows] == [r["prediction"] for r in record["predictions"]]


def test_a_pattern_takes_the_files_it_matches_and_one_that_matches_none_is_one_line(cnn_run, test_digits, tmp_path):
    folder = tmp_path / "scans"
    write_digits(folder, test_digits, ["2.png", "1.png", "3.jpg"])
    run_dir = tmp_path / "run"
    result = predict(cnn_run[0], f"'{folder}/*.png'", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["image"] for r in csv_rows(run_dir)] == [str(folder / "1.png"), str(folder / "2.png")]
    assert "skipped" not in result.stdout

    none = predict(cnn_run[0], f"'{folder}/*.gif'", tmp_path / "none")
    assert one_error_line(none) == f"images={folder}/*.gif matches no file; check the pattern (quote it in the shell)"
    assert not (tmp_path / "none").exists()


def test_hundreds_of_images_go_in_batches_with_a_progress_bar_and_a_grid_of_readable_size(
    cnn_run, test_digits, tmp_path, monkeypatch
):
    folder = tmp_path / "many"
    write_digits(folder, test_digits, [f"{i:04d}.png" for i in range(400)])
    batches = []
    predict_step = Classifier.predict_step

    def counted(self, batch, batch_idx):
        batches.append(len(batch))
        return predict_step(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "predict_step", counted)
    run_dir = tmp_path / "run"
    result = predict(cnn_run[0], str(folder), run_dir, "batch_size=128")
    assert result.returncode == 0, result.stderr[-3000:]
    assert batches == [128, 128, 128, 16]  # not one image at a time
    assert "predict: 100%" in result.stderr and "400/400" in result.stderr  # the progress bar
    assert "predicted 400 images; per digit: 0: " in result.stdout and "0000.png:" not in result.stdout
    assert len(csv_rows(run_dir)) == 400
    assert "the picture shows the first 50 of 400 images" in result.stdout
    with Image.open(run_dir / "predictions.png") as grid:
        assert grid.size == (800, 1900)  # 10 rows of 5 digits
