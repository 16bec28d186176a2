"""Interruption, resume, crashes and bad input: real signals, real kills, real corrupt files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.cli.run_dir import RESOLVER
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.errors import DataCorruptError

from conftest import QUIET, one_error_line, run_cli, run_process

TESTS = Path(__file__).resolve().parent
HOOKED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # for hooked_run

# A CNN (so dropout draws random numbers) on 2 batches per epoch, quick to validate. One thread:
# runs compared bit for bit must add up their floats in the same order.
SMALL_CNN = [
    "model=cnn",
    "threads=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "callbacks.accuracy_stop=null",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]
# The smallest real run: softmax regression, one step per epoch, no test, no TensorBoard.
TINY = [
    "model=softmax",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "callbacks.accuracy_stop=null",
    *QUIET,
]


class Child:
    """A `python -m <module>` process in its own process group, its output read line by line."""

    def __init__(
        self, args: list[str], module: str = "mnist_lab", env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        """Wait until a line holding `text` was printed; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self._reader.is_alive(), f"ended before printing {text!r}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.output[-3000:]}"
            time.sleep(0.02)

    def wait(self, timeout: float = 120) -> int:
        """The exit code, once the process has ended and all its output is read."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group (DDP workers and data loaders included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture
def children():
    """Start `Child` processes; whatever happens in the test, none outlives it."""
    started: list[Child] = []

    def start(*args: str, **kwargs) -> Child:
        child = Child(list(args), **kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def wait_for(condition, timeout: float = 120, alive: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive is None or alive.proc.poll() is None, f"exited early:\n{alive.output[-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def comparable(metrics: dict) -> dict:
    kept = {k: v for k, v in metrics.items() if "seconds" not in k and k not in ("best_ckpt", "resume")}
    kept["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in metrics.get("history", [])]
    return kept


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`, with its contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# Stacked steps (mnist_lab.training.stacked): two full softmax epochs, each Lightning step slowed to 20 ms.
STACKED = [
    "model=softmax",
    "steps=stacked",
    "threads=1",
    "test=false",
    "callbacks.accuracy_stop=null",
    "trainer.max_epochs=2",
    "+callbacks.pace={_target_:paced.StackSafePace,seconds:0.02}",
    *QUIET,
]
TESTS_ON_PATH = {"PYTHONPATH": str(Path(__file__).parent)}


@pytest.mark.parametrize(
    ("signum", "args"),
    [
        pytest.param(signal.SIGINT, SMALL_CNN, id="SIGINT-single-steps"),
        pytest.param(signal.SIGINT, STACKED, id="SIGINT-stacked-steps"),
        pytest.param(signal.SIGTERM, SMALL_CNN, id="SIGTERM-single-steps", marks=pytest.mark.slow),
    ],
)
def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, signum, args, children):
    whole = run_cli(*args, f"hydra.run.dir={tmp_path / 'whole'}", env=TESTS_ON_PATH)
    assert whole.returncode == 0, whole.stdout[-2000:]
    stacked = "mini-batches per Lightning step" in (tmp_path / "whole" / "train.log").read_text()
    assert stacked == (args is STACKED)

    run = tmp_path / "cut"
    child = children(*args, f"hydra.run.dir={run}", env=TESTS_ON_PATH)
    wait_for(lambda: list((run / "checkpoints").glob("epoch_000*.ckpt")), alive=child)  # one epoch done
    child.proc.send_signal(signum)
    assert child.wait() == 128 + signum
    assert f"resume with: python -m mnist_lab resume={run}" in child.output
    stopped = json.loads((run / "metrics.json").read_text())
    epochs = int(next(a for a in args if a.startswith("trainer.max_epochs=")).split("=")[1])
    assert stopped["stop_reason"] == "interrupted" and 1 <= stopped["epochs_run"] < epochs

    resumed = run_cli(f"resume={run}", "trust=[paced.]", env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", run))
    assert comparable(a) == comparable(b) and b["stop_reason"] == "max_epochs"
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (tmp_path / "whole", run)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    curves = []
    for d in (tmp_path / "whole", run):
        events = EventAccumulator(str(d))
        events.Reload()
        curves.append([(e.step, e.value) for e in events.Scalars("train/acc")])
    assert curves[0] == curves[1] and len(curves[0]) == epochs  # the curve continues where it stopped


def test_a_second_ctrl_c_exits_at_once_when_the_first_would_take_long(tmp_path, children):
    # Every step after the first takes a minute (tests/paced.py), so the first Ctrl-C, which
    # waits for the step to end, cannot stop the run for a minute; only the second can.
    run, marker = tmp_path / "run", tmp_path / "slow_step_started"
    child = children(
        *TINY,
        "trainer.max_epochs=5",
        "trainer.limit_train_batches=3",
        "+callbacks.slow._target_=paced.SlowStep",
        f"+callbacks.slow.marker={marker}",
        f"hydra.run.dir={run}",
        env=HOOKED,
    )
    wait_for(marker.exists, alive=child)
    child.proc.send_signal(signal.SIGINT)
    child.wait_for_line("SIGINT received: stopping after this training step", timeout=10)
    time.sleep(1.0)
    assert child.proc.poll() is None, "the first Ctrl-C alone should wait for the slow step to end"
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    try:
        code = child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the second Ctrl-C did not end the run: it was still waiting for its step 5 s later")
    assert code == 130 and time.monotonic() - sent < 2.0


def ckpt_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.ckpt")]


@pytest.mark.parametrize(
    ("file", "skip"),
    [
        pytest.param("last.ckpt", 1, id="while-overwriting-last.ckpt"),
        pytest.param("metrics.json", 0, id="while-writing-metrics.json"),
    ],
)
def test_sigkill_inside_a_write_never_leaves_a_broken_checkpoint_or_metrics_file(tmp_path, children, file, skip):
    # tests/hooked_run.py stops the chosen write halfway (its first half on disk) for a minute:
    # the kill lands inside it every time. last.ckpt is killed while replacing the first epoch's.
    run, marker = tmp_path / "run", tmp_path / "writing"
    child = children(
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        module="hooked_run",
        env={**HOOKED, "HOOK_SLOW_WRITE": file, "HOOK_SLOW_WRITE_SKIP": str(skip), "HOOK_MARKER": str(marker)},
    )
    wait_for(marker.exists, alive=child)
    assert Path(marker.read_text()).parent in (run, run / "checkpoints")  # mnist_lab's own write, half done
    child.kill()

    checked = ckpt_files(run)
    for path in checked:
        checkpoint = torch.load(path, weights_only=True)
        assert "state_dict" in checkpoint and checkpoint["hyper_parameters"]["net"]
    if file == "last.ckpt":
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0  # the earlier one, whole
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    assert checked


def test_non_finite_loss_stops_with_a_message_and_keeps_the_good_checkpoints(tmp_path):
    result = run_cli(
        "model=softmax",
        "optimizer=sgd",
        "optimizer.lr=1e37",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 1
    error = one_error_line(result)
    assert "training loss became inf" in error and "lower optimizer.lr" in error
    assert json.loads((tmp_path / "metrics.json").read_text())["stop_reason"] == "non_finite_loss"
    (kept,) = ckpt_files(tmp_path)
    state = torch.load(kept, weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for k, t in state.items() if k.startswith("net."))


def write_split(
    raw: Path,
    prefix: str,
    images: np.ndarray,
    labels: np.ndarray,
    image_magic: int = 2051,
    label_magic: int = 2049,
    cut: int = 0,
) -> None:
    image_bytes = (
        image_magic.to_bytes(4, "big")
        + len(images).to_bytes(4, "big")
        + (28).to_bytes(4, "big") * 2
        + images.astype(np.uint8).tobytes()
    )
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(image_bytes[: len(image_bytes) - cut])
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        label_magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    )


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
    error = one_error_line(result)
    assert "train-images-idx3-ubyte has magic number 1" in error


FROZEN = {**HOOKED, "HOOK_NOW": "2001-02-03T04:05:06"}  # every run believes it started then
SAME_SECOND = Path("outputs", "2001-02-03")


def earlier_run(folder: Path) -> Path:
    """A folder that looks like a finished run: config, metrics and a checkpoint."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / "metrics.json").write_text('{"test/acc": 0.99}')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    return folder


def yaml_seed(folder: Path) -> int:
    """The seed a run folder's saved config holds."""
    return next(
        int(line.split(":")[1])
        for line in (folder / ".hydra" / "config.yaml").read_text().splitlines()
        if line.startswith("seed:")
    )


def test_a_bad_config_value_is_one_line_before_anything_is_written(tmp_path):
    # An earlier run holds the very folder this run's clock names (outputs/<date>/<time>_mlp).
    # Every range check is in tests/test_config.py; this is the command a user types.
    earlier_run(tmp_path / SAME_SECOND / "04-05-06_mlp")
    before = snapshot(tmp_path)
    result = run_process("optimizer.lr=-1", module="hooked_run", cwd=tmp_path, env=FROZEN)
    assert result.returncode == 1
    error = one_error_line(result)
    assert error.endswith("optimizer.lr must be a number > 0, got -1; e.g. optimizer.lr=0.001")
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # the earlier run is untouched
    new = {Path(k) for k in after.keys() - before.keys()}
    assert len({p.parts[:3] for p in new}) <= 1, new  # at most the run's own folder, with its log
    assert not any(p.name == "metrics.json" or "checkpoints" in p.parts for p in new)


def test_two_runs_started_in_the_same_second_get_a_folder_each(tmp_path, children):
    runs = [
        children(*TINY, "trainer.max_epochs=1", f"seed={seed}", module="hooked_run", cwd=tmp_path, env=FROZEN)
        for seed in (1, 2)
    ]
    assert [run.wait() for run in runs] == [0, 0], runs[0].output[-2000:] + runs[1].output[-2000:]
    folders = sorted((tmp_path / SAME_SECOND).iterdir())
    assert [f.name for f in folders] == ["04-05-06_softmax", "04-05-06_softmax-1"]
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert Path(metrics["best_ckpt"]).parent == folder / "checkpoints"
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
        assert (folder / ".hydra" / "config.yaml").is_file()
        assert f"run folder: {folder}" in (folder / "train.log").read_text()
    seeds = {yaml_seed(folder) for folder in folders}
    assert seeds == {1, 2}  # each process wrote only into its own folder


@pytest.mark.slow
def test_ddp_processes_share_the_folder_their_launcher_claimed(tmp_path, children):
    # Lightning starts rank 1 by rerunning the command line with hydra.run.dir=<rank 0's folder>.
    run = children(
        *TINY,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        module="hooked_run",
        cwd=tmp_path,
        env=FROZEN,
    )
    assert run.wait() == 0, run.output[-3000:]
    (folder,) = (tmp_path / SAME_SECOND).iterdir()
    assert folder.name == "04-05-06_softmax" and (folder / "train_ddp_process_1.log").is_file()
    assert (folder / "metrics.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("module", ["mnist_lab", "mnist_lab.predict"])
def test_a_folder_that_holds_a_run_is_never_reused_without_resume(tmp_path, module):
    earlier = earlier_run(tmp_path / "earlier")
    before = snapshot(tmp_path)
    result = run_cli(
        "model=softmax" if module == "mnist_lab" else "n=1", f"hydra.run.dir={earlier}", module=module, cwd=tmp_path
    )
    assert result.returncode == 1
    error = one_error_line(result)
    assert error.startswith(f"hydra.run.dir={earlier} already holds a run") and "new folder" in error
    assert ("resume=" in error) == (module == "mnist_lab")
    assert snapshot(tmp_path) == before


def test_commands_that_run_nothing_leave_no_folder(tmp_path):
    for args in (["--cfg", "job"], ["--help"], ["--cfg", "hydra", "--resolve"]):
        result = run_process(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_the_run_folder_resolver_claims_the_first_free_name_once(tmp_path):
    earlier_run(tmp_path / "run")
    (tmp_path / "run-1").mkdir()  # empty, but still somebody else's
    cfg = OmegaConf.create({"dir": f"${{{RESOLVER}:{tmp_path / 'run'}}}"})
    assert cfg.dir == str(tmp_path / "run-2") and (tmp_path / "run-2").is_dir()
    assert cfg.dir == str(tmp_path / "run-2")  # resolved again: the same folder, not run-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run-1", "run-2"]


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = run_cli(f"resume={tmp_path}")
    assert one_error_line(result) == (
        f"resume={tmp_path}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run"
    )


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
    error = one_error_line(result)
    assert str(read_only_folder / "run") in error and "hydra.run.dir=" in error
    assert list(read_only_folder.iterdir()) == []


def test_hydra_full_error_shows_the_traceback_instead(tmp_path):
    result = run_process("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr
