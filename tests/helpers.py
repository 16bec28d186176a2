"""What tests share besides fixtures: composed configs, real runs and commands (in this process or a new
one), a server to talk to, and the one error line a user error prints. Tests import it by name
(`from helpers import run_cli`); tests/conftest.py holds the fixtures."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
import logging
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from mnist_lab.cli.command import config_dir
from mnist_lab.train import train

if TYPE_CHECKING:
    import torch

TESTS = Path(__file__).resolve().parent  # tests/: user modules and callbacks that runs name by import path
# Quiet, fast runs: no progress bar, no model summary.
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_train(output_dir: Path, *overrides: str) -> DictConfig:
    """The train config as `python -m mnist_lab` would compose it, writing into `output_dir`."""
    return compose_config("train", f"paths.output_dir={output_dir}", *QUIET, *overrides)


def compose_config(name: str, *overrides: str, return_hydra: bool = False) -> DictConfig:
    """One of the entry points' configs (train, predict, evaluate, export) with overrides."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=return_hydra)


def fit(output_dir: Path, *overrides: str) -> dict[str, Any]:
    """One real in-process training run; returns its metrics.json contents."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return train(compose_train(output_dir, *overrides))


def run_process(
    *args: str,
    module: str = "mnist_lab",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run `python -m mnist_lab ...` (or another entry point) in a new interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_cli(
    *args: str, module: str = "mnist_lab", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m mnist_lab ...` (or another entry point) run inside this process: the same command
    line, the same Hydra main, output and exit code, without a new interpreter's seconds of imports.
    For the tests whose subject is not the process itself (signals, kills and imports are)."""
    import lightning  # noqa: F401  first, so that what its import sets in os.environ stays set
    import torch
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    # A run as a DDP rank sets the process's rank for Lightning's rank-zero-only calls (loggers among them).
    ranks = [(f, f.rank) for f in {id(f): f for f in (rank_zero_only, utils_rank_zero_only)}.values()]

    saved_argv, saved_env, saved_cwd = sys.argv[:], dict(os.environ), os.getcwd()
    saved_threads, root = torch.get_num_threads(), logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [module, *args]
    os.environ.update(env or {})
    os.chdir(cwd or saved_cwd)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exit:
                if isinstance(exit.code, str):
                    err.write(exit.code + "\n")
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            except Exception:  # what the interpreter would print before exiting with 1
                err.write(traceback.format_exc())
                code = 1
    finally:
        GlobalHydra.instance().clear()
        for handler in root.handlers[:]:
            if handler not in saved_handlers:  # the run's own: console and train.log
                root.removeHandler(handler)
                handler.close()
        root.handlers[:], root.level = saved_handlers, saved_level
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        torch.set_num_threads(saved_threads)
        for function, rank in ranks:
            function.rank = rank
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


@dataclass
class Server:
    url: str
    log: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(self.url).port, timeout=30)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def predict(self, image: bytes, content_type: str = "image/png") -> Answer:
        return self.request("POST", "/predict", image, {"Content-Type": content_type})

    def healthy(self) -> bool:
        return self.request("GET", "/health").status == 200

    def refusals(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "[WARNING] - refused" in line]


def start_server(
    ckpt: Path, folder: Path, *overrides: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Server]:
    """`python -m mnist_lab.serve` on a free port (port=0), once it answers on the URL it logs."""
    log = folder / "server.log"
    command = ["-m", "mnist_lab.serve", f"ckpt_path={ckpt}", "port=0", f"hydra.run.dir={folder / 'run'}", *overrides]
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, *command], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited:\n{log.read_text()[-3000:]}")
        url = re.search(r"open (http://127\.0\.0\.1:\d+)/", log.read_text())
        try:
            if url and Server(url[1], log).healthy():
                return process, Server(url[1], log)
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no answer on /health:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (as the system hands them out)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The error lines of a command that failed as a user error should: exit code 1, no traceback."""
    text = result.stdout + result.stderr
    errors = [line for line in text.splitlines() if "[ERROR]" in line or line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in text and errors, text[-3000:]
    return errors


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a command that failed as a user error should, less its log prefix."""
    (line,) = error_lines(result)
    return line.split("[ERROR] - ", 1)[-1].removeprefix("error: ")


def shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, *overrides: str) -> tuple[Path, dict[str, Any]]:
    """A training run made once per session, also under pytest-xdist, whose workers share it
    through a lock in their common temporary folder; returns the run folder and its metrics."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' folders share
    run_dir = root / name / "run"  # alone in its outputs folder: ckpt_path=latest finds it there
    with FileLock(str(root / f"{name}.lock")):
        if not (run_dir / "metrics.json").is_file():
            fit(run_dir, *overrides)
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


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


def wait_for(condition: Callable[[], object], timeout: float = 120, alive: Child | None = None) -> None:
    """Wait until `condition()` holds; fail after `timeout` s, or once `alive` has exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive is None or alive.proc.poll() is None, f"exited early:\n{alive.output[-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def comparable(metrics: dict[str, Any] | Path) -> dict[str, Any]:
    """A run's metrics.json (or the dict) without what differs between identical runs: seconds, the
    best checkpoint's path, the resume record, and each history row's seconds."""
    if isinstance(metrics, Path):
        metrics = json.loads((metrics / "metrics.json").read_text())
    kept = {k: v for k, v in metrics.items() if "seconds" not in k and k not in ("best_ckpt", "resume")}
    kept["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in metrics.get("history", [])]
    return kept


RECORDED_FIT = [
    "trainer.accelerator=cpu",
    "model=softmax",
    "test=false",
    "callbacks.accuracy_stop=null",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    *QUIET,
]


def recorded_fit(tmp_path: Path, *overrides: str, name: str = "run") -> tuple[dict, dict]:
    """A small softmax fit through the real command with tests/probes.py's Recorder; what it recorded and
    the run's metrics.json."""
    record = tmp_path / f"{name}.json"
    recorder = f"+callbacks.recorder={{_target_:probes.Recorder,path:{record}}}"
    result = run_cli(
        *RECORDED_FIT,
        recorder,
        *overrides,
        f"hydra.run.dir={tmp_path / name}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return json.loads(record.read_text()), json.loads((tmp_path / name / "metrics.json").read_text())


# A sweep's job: a few thousand images, since the sweep machinery is under test, not the models.
SWEEP_JOB = [
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=none",
]


def multirun(sweep: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m mnist_lab -m <args>` with small jobs, its sweep folder `sweep`."""
    return run_cli("-m", *args, *SWEEP_JOB, f"hydra.sweep.dir={sweep}", cwd=sweep.parent, env=env)


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    """The rows of a sweep's summary.csv."""
    with (sweep / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def job_metrics(sweep: Path, job: str) -> dict:
    """A sweep job's metrics.json."""
    return json.loads((sweep / job / "metrics.json").read_text())


def render_digit(pixels: torch.Tensor, path: Path, scale: int = 10, margin: int = 60) -> Path:
    """Draw a test digit as a large dark-on-white PNG with a wide margin, as a user's scan might be."""
    import numpy as np
    from PIL import Image

    ink = (pixels[0].numpy() * 255).astype(np.uint8)
    big = Image.fromarray(255 - ink).resize((28 * scale, 28 * scale), Image.BILINEAR)
    page = Image.new("L", (28 * scale + 2 * margin, 28 * scale + margin), 255)
    page.paste(big, (margin + 17, margin // 3))
    page.convert("RGB").save(path)
    return path


# Softmax regression, two steps an epoch, one thread, no logger: runs that can be compared bit for bit.
TINY_RUN = [
    "model=softmax",
    "threads=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "callbacks.accuracy_stop=null",
    *QUIET,
]
