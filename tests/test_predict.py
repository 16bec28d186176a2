"""`python -m mnist_lab.predict`: random test digits and the user's own images, read back as the test set is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lab.checkpoints.load import load_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.predict import predict

from helpers import compose_config, error_lines, run_cli


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


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    dm = MNISTDataModule(download=False)
    dm.setup()
    return dm.data_test.tensors


def render_digit(pixels: torch.Tensor, path: Path, scale: int = 10, margin: int = 60) -> Path:
    """Draw a test digit as a large dark-on-white PNG with a wide margin, as a user's scan might be."""
    ink = (pixels[0].numpy() * 255).astype(np.uint8)
    big = Image.fromarray(255 - ink).resize((28 * scale, 28 * scale), Image.BILINEAR)
    page = Image.new("L", (28 * scale + 2 * margin, 28 * scale + margin), 255)
    page.paste(big, (margin + 17, margin // 3))
    page.convert("RGB").save(path)
    return path


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
