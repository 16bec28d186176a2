"""One writer per run folder: a second process that wants a run's folder ends at once in one line,
and a lock left by a killed run blocks nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_lab.cli.run_lock import HOLDER, FolderInUse, one_writer

from helpers import TINY_RUN, one_error_line, run_cli

TESTS = Path(__file__).resolve().parent.parent
ON_PATH = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
# Softmax regression, each step slowed to 0.2 s (tests/probes.py): a run that is still training
# seconds after it started, however fast the machine.
PACED = [*TINY_RUN, "+callbacks.pace={_target_:probes.Pace,seconds:0.2}"]


def start(*args: str, log: Path) -> subprocess.Popen:
    """`python -m mnist_lab <args>` in its own process, its output in `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mnist_lab", *args], stdout=out, stderr=subprocess.STDOUT, env=ON_PATH
        )


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def test_two_resumes_of_one_run_started_together_leave_one_writer(tmp_path):
    # What happens when SLURM requeues a job and its user resumes it by hand at the same moment.
    run = tmp_path / "run"
    assert run_cli(*PACED, "trainer.max_epochs=1", f"hydra.run.dir={run}", env=ON_PATH).returncode == 0
    resume = [f"resume={run}", "trainer.max_epochs=8", "trust=[probes.]"]
    first = start(*resume, log=tmp_path / "first.log")
    time.sleep(1.0)
    second = start(*resume, log=tmp_path / "second.log")
    try:
        codes = sorted(p.wait(timeout=300) for p in (first, second))
    finally:
        for p in (first, second):
            p.kill()
    assert codes == [0, 1], [(tmp_path / f"{n}.log").read_text()[-3000:] for n in ("first", "second")]
    loser = second if second.returncode == 1 else first
    winner = first if loser is second else second
    text = (tmp_path / ("second.log" if loser is second else "first.log")).read_text()
    assert "Traceback" not in text
    (line,) = [x for x in text.splitlines() if "[ERROR]" in x or x.startswith("error:")]
    assert f"the run folder {run} is in use by process {winner.pid} on {socket.gethostname()}, since " in line
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 8 and metrics["stop_reason"] == "max_epochs"
    assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1  # one best checkpoint, no "-v1" twin
    assert not (run / HOLDER).exists()


def test_a_second_command_on_a_running_run_ends_at_once_and_a_killed_runs_lock_blocks_nothing(tmp_path):
    run = tmp_path / "run"
    training = start(*PACED, "trainer.max_epochs=30", f"hydra.run.dir={run}", log=tmp_path / "train.log")
    try:
        wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), "a first epoch", training)
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
        started = time.monotonic()
        error = one_error_line(run_cli(f"resume={run}", "trust=[probes.]"))
        assert time.monotonic() - started < 5
        assert error == (
            f"the run folder {run} is in use by process {training.pid} on {socket.gethostname()}, since "
            f"{json.loads((run / HOLDER).read_text())['since']}: one run writes a folder at a time; "
            "wait for it to end (or stop it), then run the command again"
        )
        assert "resume=" not in (run / "train.log").read_text()  # the refused command wrote nothing there
        assert before.keys() <= {p for p in run.rglob("*") if p.is_file()}
    finally:
        training.send_signal(signal.SIGKILL)
        training.wait(timeout=30)
    assert (run / HOLDER).exists()  # the killed run could not tidy up
    resumed = run_cli(f"resume={run}", "trust=[probes.]", "callbacks.pace=null", env=ON_PATH)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 30


HOLD = """
import sys, time
from mnist_lab.cli.run_lock import one_writer
with one_writer(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_requeued_slurm_job_takes_the_lock_over_from_its_own_earlier_task(tmp_path, monkeypatch):
    # The earlier task of SLURM job 77 still exits while its requeue starts; another job must not wait.
    earlier = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), "1.5"],
        stdout=subprocess.PIPE,
        text=True,
        env={**ON_PATH, "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "0", "SLURM_PROCID": "0"},
    )
    try:
        assert earlier.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        monkeypatch.setenv("SLURM_PROCID", "0")
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        monkeypatch.setenv("SLURM_JOB_ID", "78")
        started = time.monotonic()
        with pytest.raises(FolderInUse, match=rf"in use by process {earlier.pid} on .* \(SLURM job 77\), since "):
            with one_writer(tmp_path):
                pass
        assert time.monotonic() - started < 1.0  # another job's task: refused at once
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        with one_writer(tmp_path):
            assert time.monotonic() - held_at >= 1.4  # it waited for the earlier task to let go
            assert json.loads((tmp_path / HOLDER).read_text())["pid"] == os.getpid()
    finally:
        earlier.kill()
        earlier.wait(timeout=30)
