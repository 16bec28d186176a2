"""`python -m mnist_lab.predict`: random test digits and the user's own images, read back as the test set is;
folders and patterns of many files at once, in batches, with a CSV."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lab.checkpoints.load import load_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier
from mnist_lab.predict import predict, read_digits

from helpers import compose_config, error_lines, one_error_line, render_digit, run_cli


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> Path:
    """The first official test digit (a 7), drawn dark on white at 140x140 like a user's scan."""
    dm = MNISTDataModule(download=False)
    dm.setup()
    assert dm.data_test.tensors[1][0] == 7
    pixels = (255 - dm.data_test.tensors[0][0, 0].numpy() * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("digits") / "seven.png"
    Image.fromarray(pixels).resize((140, 140)).save(path)
    return path


def test_predict_takes_one_image_path_without_brackets(mlp_run, seven, tmp_path):
    run_dir, _ = mlp_run
    result = run_cli(
        f"ckpt_path={run_dir}", f"images={seven}", f"hydra.run.dir={tmp_path / 'p'}", module="mnist_lab.predict"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{seven}: 7" in result.stdout
    assert json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"][0]["image"] == str(seven)


def test_predict_prints_one_line_per_image_and_their_true_accuracy(cnn_run, test_set, tmp_path, capsys):
    run_dir, _ = cnn_run
    cfg = compose_config("predict", f"ckpt_path={run_dir}", "n=40", "seed=3")
    result = predict(cfg, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if re.match(r"\s*\d+\s+\d\s+\d\s+[01]\.\d{4}", line)]
    assert len(rows) == 40
    x, y = test_set
    model = load_checkpoint(run_dir).model
    index = torch.tensor([int(r[0]) for r in rows])
    expected = model(x[index]).argmax(-1)
    assert [int(r[2]) for r in rows] == expected.tolist() and [int(r[1]) for r in rows] == y[index].tolist()
    accuracy = (expected == y[index]).float().mean().item()
    assert f"accuracy over 40 test images: {accuracy:.4f}" in "\n".join(lines)
    assert result["accuracy"] == pytest.approx(accuracy)
    assert (tmp_path / "predictions.png").stat().st_size > 1000
    again = predict(cfg, tmp_path / "again")
    assert [p["index"] for p in again["predictions"]] == index.tolist()  # seed= repeats the draw


def test_rendered_test_digits_are_read_back_about_as_well_as_the_test_set(cnn_run, test_set, tmp_path):
    run_dir, metrics = cnn_run
    x, y = test_set
    sample = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:60]
    paths = [str(render_digit(x[i], tmp_path / f"digit_{i}.png")) for i in sample.tolist()]
    result = predict(compose_config("predict", f"ckpt_path={run_dir}", f"images=[{','.join(paths)}]"), tmp_path / "out")
    predicted = torch.tensor([p["prediction"] for p in result["predictions"]])
    assert len(predicted) == 60 and not result["failed"]
    assert (predicted == y[sample]).float().mean().item() >= metrics["test/acc"] - 0.1


def run_cli_module(module: str, *args: str):
    return run_cli(*args, module=f"mnist_lab.{module}")


def test_bad_images_are_named_while_good_ones_are_still_predicted(cnn_run, test_set, tmp_path):
    good = render_digit(test_set[0][1], tmp_path / "good.png")
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not a picture")
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    missing = tmp_path / "missing.png"
    result = run_cli_module(
        "predict",
        f"ckpt_path={cnn_run[0]}",
        f"images=[{good},{text_file},{blank},{missing}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    errors = "\n".join(error_lines(result))
    assert f"{good}: " in result.stdout and "top 3" in result.stdout
    assert "notes.png: not an image" in errors and "blank.png: no digit found" in errors
    assert "missing.png: no such file" in errors and "3 of 4 images could not be used" in errors
    kept = json.loads((tmp_path / "run" / "predictions.json").read_text())  # the good one's answer stays
    assert [p["image"] for p in kept["predictions"]] == [str(good)] and len(kept["failed"]) == 3


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


def predict_images(ckpt: Path, images: str, run_dir: Path, *overrides: str):
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
    result = predict_images(cnn_run[0], str(folder), run_dir)
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
    result = predict_images(cnn_run[0], f"'{folder}/*.png'", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["image"] for r in csv_rows(run_dir)] == [str(folder / "1.png"), str(folder / "2.png")]
    assert "skipped" not in result.stdout

    none = predict_images(cnn_run[0], f"'{folder}/*.gif'", tmp_path / "none")
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
    result = predict_images(cnn_run[0], str(folder), run_dir, "batch_size=128")
    assert result.returncode == 0, result.stderr[-3000:]
    assert batches == [128, 128, 128, 16]  # not one image at a time
    assert "predict: 100%" in result.stderr and "400/400" in result.stderr  # the progress bar
    assert "predicted 400 images; per digit: 0: " in result.stdout and "0000.png:" not in result.stdout
    assert len(csv_rows(run_dir)) == 400
    assert "the picture shows the first 50 of 400 images" in result.stdout
    with Image.open(run_dir / "predictions.png") as grid:
        assert grid.size == (800, 1900)  # 10 rows of 5 digits
