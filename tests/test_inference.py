"""Reloading checkpoints: predict, evaluate, export, and every bad input they can meet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lab.checkpoints.load import CheckpointError, load_checkpoint, resolve_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.data.images import ImageError, load_digit
from mnist_lab.export import export
from mnist_lab.models.classifier import Classifier
from mnist_lab.predict import predict

from helpers import QUIET as QUIET_CLI
from helpers import compose_config, error_lines, one_error_line, run_cli


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


def test_run_folder_and_latest_resolve_to_the_best_checkpoint(cnn_run):
    run_dir, metrics = cnn_run
    assert resolve_checkpoint(run_dir) == Path(metrics["best_ckpt"])
    assert resolve_checkpoint("latest", run_dir.parent) == Path(metrics["best_ckpt"])


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


def test_user_digit_is_cropped_fitted_to_20_pixels_and_centred_by_mass(tmp_path, test_set):
    digit = load_digit(render_digit(test_set[0][0], tmp_path / "seven.png"))
    assert digit.shape == (28, 28) and digit.min() == 0.0 and digit.max() == pytest.approx(1.0, abs=0.01)
    rows, cols = np.nonzero(digit > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21
    ys, xs = np.indices(digit.shape)
    assert abs((ys * digit).sum() / digit.sum() - 14) <= 1 and abs((xs * digit).sum() / digit.sum() - 14) <= 1


def test_lightnings_own_predict_loop_reads_the_test_set_as_training_scored_it(cnn_run, test_set):
    run_dir, metrics = cnn_run
    model = Classifier.load_from_checkpoint(resolve_checkpoint(run_dir))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    probabilities = torch.cat(trainer.predict(model, datamodule=MNISTDataModule(download=False)))
    labels = test_set[1]
    assert probabilities.shape == (10_000, 10)
    assert (probabilities.argmax(1) == labels).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_evaluate_matches_the_training_runs_test_accuracy(cnn_run, tmp_path):
    run_dir, metrics = cnn_run
    result = run_cli(f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path}", module="mnist_lab.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"test/acc {metrics['test/acc']:.4f}" in result.stdout
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert report["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == 10_000 and np.trace(matrix) / 10_000 == pytest.approx(report["test/acc"], abs=1e-6)
    for digit in range(10):
        recall = matrix[digit, digit] / matrix[digit].sum()
        assert report["per_class"][str(digit)]["recall"] == pytest.approx(recall, abs=1e-6)
    mistakes = report["most_confident_mistakes"]
    assert mistakes and all(m["label"] != m["prediction"] for m in mistakes)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes), reverse=True)
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "mistakes.png").is_file()


def test_torchscript_export_gives_the_checkpoints_logits(cnn_run, test_set, tmp_path):
    # ONNX goes through the real command in tests/test_habits.py.
    run_dir, _ = cnn_run
    result = export(compose_config("export", f"ckpt_path={run_dir}", "format=torchscript"), tmp_path)
    assert result["max_abs_difference"] <= 1e-5
    x = test_set[0][200:264]
    expected = load_checkpoint(run_dir).model(x).detach()
    assert torch.allclose(torch.jit.load(str(result["path"]))(x), expected, atol=1e-5)


def test_export_never_overwrites_an_existing_file(cnn_run, tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("keep me")
    result = run_cli_module(
        "export", f"ckpt_path={cnn_run[0]}", "format=torchscript", f"out={target}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 1 and "already exists" in result.stdout + result.stderr
    assert target.read_text() == "keep me"


def run_cli_module(module: str, *args: str):
    return run_cli(*args, module=f"mnist_lab.{module}")


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    error = one_error_line(
        run_cli_module("predict", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    )
    assert "nope.ckpt does not exist" in error


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, foreign)
    error = one_error_line(run_cli_module("evaluate", f"ckpt_path={foreign}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert "not a mnist_lab checkpoint" in error


def test_latest_with_no_runs_says_to_train_first(tmp_path):
    with pytest.raises(CheckpointError, match="found no training run.*python -m mnist_lab"):
        resolve_checkpoint("latest", tmp_path)


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


def test_image_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: not an image"):
        load_digit(empty)


def test_a_normalised_run_is_scaled_inside_the_model_for_every_consumer(tmp_path):
    """data.normalize=true: predict, evaluate, export and Python all feed pixels in [0, 1] and agree."""
    run = tmp_path / "run"
    trained = run_cli(
        "trainer.accelerator=cpu",
        "model=mlp",
        "data.normalize=true",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        *QUIET_CLI,
        f"hydra.run.dir={run}",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    test_acc = json.loads((run / "metrics.json").read_text())["test/acc"]
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    assert model.input_std.item() == pytest.approx(0.3081, abs=1e-3)  # MNIST's, kept in the state_dict
    best = Classifier.load_from_checkpoint(json.loads((run / "metrics.json").read_text())["best_ckpt"]).eval()
    dm = MNISTDataModule(download=False)
    dm.setup()
    x, y = dm.data_test.tensors
    with torch.no_grad():
        assert (best.predict_step(x, 0).argmax(1) == y).float().mean().item() == pytest.approx(test_acc, abs=1e-6)
    evaluated = run_cli(f"ckpt_path={run}", f"hydra.run.dir={tmp_path / 'e'}", module="mnist_lab.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(test_acc, abs=1e-6)
    exported = run_cli(
        f"ckpt_path={run}",
        "format=torchscript",
        f"out={tmp_path / 'm.pt'}",
        f"hydra.run.dir={tmp_path / 'x'}",
        module="mnist_lab.export",
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        assert (scripted(x).argmax(1) == y).float().mean().item() == pytest.approx(test_acc, abs=1e-6)
