"""Interruption, resume, crashes and bad input: real signals, real kills, real corrupt files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import requires_mnist, run_cli
from mnist_lab.data import MNISTDataModule
from mnist_lab.errors import DataCorruptError

# A CNN (so dropout draws random numbers) on 3 steps of 10 batches per epoch, quick to validate.
SMALL_CNN = ["model=cnn", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test=false",
             "callbacks.accuracy_stop=null", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
             "+trainer.num_sanity_val_steps=0"]


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_lab", *args, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def errors_of(result: subprocess.CompletedProcess) -> list[str]:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if "[ERROR]" in line or line.startswith("error:")]


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k and k not in ("best_ckpt", "resume")}


@requires_mnist
@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, signum):
    whole = subprocess.run([sys.executable, "-m", "mnist_lab", *SMALL_CNN, f"hydra.run.dir={tmp_path / 'whole'}"],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stdout[-2000:]

    run = tmp_path / "cut"
    proc = start(run, *SMALL_CNN)
    wait_for(lambda: list((run / "checkpoints").glob("epoch_000*.ckpt")))  # one epoch done
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert f"resume with: python -m mnist_lab resume={run}" in out
    stopped = json.loads((run / "metrics.json").read_text())
    assert stopped["stop_reason"] == "interrupted" and 1 <= stopped["epochs_run"] < 3

    resumed = run_cli(f"resume={run}")
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", run))
    assert comparable(a) == comparable(b) and b["stop_reason"] == "max_epochs"
    weights = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for d in (tmp_path / "whole", run)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    curves = []
    for d in (tmp_path / "whole", run):
        events = EventAccumulator(str(d))
        events.Reload()
        curves.append([(e.step, e.value) for e in events.Scalars("train/acc")])
    assert curves[0] == curves[1] and len(curves[0]) == 3  # the curve continues where it stopped


@requires_mnist
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    run = tmp_path / "run"
    proc = start(run, "model=cnn", "trainer.max_epochs=50", "trainer.enable_progress_bar=false")
    wait_for(lambda: (run / "checkpoints" / "start.ckpt").exists())
    proc.send_signal(signal.SIGINT)
    while "SIGINT received: stopping after this training step" not in proc.stdout.readline():
        pass
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - sent < 2.0


def ckpt_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.ckpt")]


@requires_mnist
@pytest.mark.parametrize("kills", [pytest.param(6, id="6-kills"), pytest.param(30, id="30-kills", marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint_or_metrics_file(tmp_path, kills):
    rng = random.Random(1234)
    checked = 0
    for i in range(kills):
        run = tmp_path / f"run{i}"
        proc = start(run, "model=softmax", "trainer.max_epochs=30", "+trainer.limit_val_batches=1",
                     "callbacks.accuracy_stop=null", "trainer.enable_progress_bar=false")
        wait_for(lambda: list((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").exists() else False)
        time.sleep(rng.uniform(0, 2.5))  # epochs take about half a second: kill mid-epoch or mid-save
        proc.kill()
        proc.communicate()
        for path in ckpt_files(run):
            checkpoint = torch.load(path, weights_only=True)
            assert "state_dict" in checkpoint and checkpoint["hyper_parameters"]["net"]
            checked += 1
        if (run / "metrics.json").exists():
            json.loads((run / "metrics.json").read_text())
    print(f"{kills} kills, {checked} checkpoints loaded")
    assert checked >= kills


@requires_mnist
def test_non_finite_loss_stops_with_a_message_and_keeps_the_good_checkpoints(tmp_path):
    result = run_cli("model=softmax", "optimizer=sgd", "optimizer.lr=1e37", "trainer.max_epochs=3",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1
    (error,) = errors_of(result)
    assert "training loss became inf" in error and "lower optimizer.lr" in error
    assert json.loads((tmp_path / "metrics.json").read_text())["stop_reason"] == "non_finite_loss"
    (kept,) = ckpt_files(tmp_path)
    state = torch.load(kept, weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for k, t in state.items() if k.startswith("net."))


def write_split(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
                image_magic: int = 2051, label_magic: int = 2049, cut: int = 0) -> None:
    image_bytes = (image_magic.to_bytes(4, "big") + len(images).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                   + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(image_bytes[: len(image_bytes) - cut])
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        label_magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


CORRUPTIONS = {
    "wrong image magic": (dict(image_magic=2049), "magic number 2049, not 2051"),
    "wrong label magic": (dict(label_magic=7), "magic number 7, not 2049"),
    "truncated images": (dict(cut=100), "bytes where its header promises"),
    "counts disagree": (dict(n_labels=19), "has 20 images but"),
    "label out of range": (dict(bad_label=11), "holds label 11, outside the digits 0-9"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_idx_files_are_named_with_the_fix(tmp_path, case):
    options, message = CORRUPTIONS[case]
    options = dict(options)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, options.pop("n_labels", 20))
    if "bad_label" in options:
        labels[3] = options.pop("bad_label")
    write_split(raw, "train", rng.integers(0, 256, (20, 28, 28)), labels, **options)
    write_split(raw, "t10k", rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5))
    with pytest.raises(DataCorruptError, match=message) as err:
        MNISTDataModule(root=tmp_path, download=False, val_size=5).setup()
    assert "replace" in str(err.value)


def test_corrupt_data_on_the_command_line_is_one_error_line(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_split(raw, "train", np.zeros((20, 28, 28)), np.zeros(20), image_magic=1)
    write_split(raw, "t10k", np.zeros((5, 28, 28)), np.zeros(5))
    result = run_cli(f"data.root={tmp_path}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    (error,) = errors_of(result)
    assert "train-images-idx3-ubyte has magic number 1" in error


BAD_OVERRIDES = {
    "optimizer.lr=-1": "optimizer.lr must be a number > 0",
    "optimizer.lr=0": "optimizer.lr must be a number > 0",
    "data.batch_size=0": "data.batch_size must be an integer >= 1",
    "callbacks.accuracy_stop.stopping_threshold=1.5": "stopping_threshold must lie in (0, 1]",
    "callbacks.accuracy_stop.stopping_threshold=0": "stopping_threshold must lie in (0, 1]",
    "trainer.max_epochs=0": "trainer.max_epochs must be an integer >= 1",
    "model.activation=swish": "activation must be one of",
    "trainer.devices=64": "trainer.devices=64 but this machine has",
    "optimizer=rmsprop": "Could not find 'optimizer/rmsprop'",
    "threads=0": "threads must be an integer >= 1",
    "model.dropout=1.5": "model.dropout must lie in [0, 1)",
    "data.augment={_target_:mnist_lab.augment.RandomAffine,degrees:200}": "data.augment.degrees must lie in [0, 180)",
}


@pytest.mark.parametrize("override", BAD_OVERRIDES)
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, override):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text('{"test/acc": 0.99}')
    result = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert BAD_OVERRIDES[override] in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()
    assert (earlier / "metrics.json").read_text() == '{"test/acc": 0.99}'


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = run_cli(f"resume={tmp_path}")
    assert result.returncode == 1 and errors_of(result) == [
        f"error: resume={tmp_path}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write to: chmod for a normal user; for root, a read-only tmpfs."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(locked)]).returncode:
        pytest.skip("root without permission to mount a read-only file system")
    try:
        yield locked
    finally:
        subprocess.run(["umount", str(locked)])


def test_read_only_output_folder_is_one_error_line(read_only_folder):
    result = run_cli(f"hydra.run.dir={read_only_folder / 'run'}")
    assert result.returncode == 1
    (error,) = errors_of(result)
    assert str(read_only_folder / "run") in error and "hydra.run.dir=" in error and error.startswith("error:")
    assert list(read_only_folder.iterdir()) == []


def test_hydra_full_error_shows_the_traceback_instead(tmp_path):
    result = run_cli("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr
