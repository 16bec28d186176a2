"""run.json: every run folder records what ran, and the report names what differs between runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import lightning
import torch

import mnist_lab

from helpers import QUIET, run_cli

TINY = [
    "model=softmax",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=none",
    *QUIET,
]
CHECKOUT = Path(mnist_lab.__file__).resolve().parent.parent


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=30).stdout


def test_every_run_folder_records_the_code_libraries_machine_precision_and_command_line(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run_dir}"]
    assert run_cli(*args).returncode == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["mnist_lab"] == mnist_lab.__version__
    if (CHECKOUT / ".git").exists():  # run from a checkout: its commit, and whether tracked files changed
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
        assert record["git"] == {"commit": git("rev-parse", "HEAD").strip(), "dirty": dirty}
    assert record["python"] == platform.python_version()
    assert record["torch"] == metadata.version("torch") and torch.__version__.startswith(record["torch"])
    assert record["lightning"] == lightning.__version__ and record["hydra"] == metadata.version("hydra-core")
    assert record["torchmetrics"] == metadata.version("torchmetrics")
    assert record["cpu_cores"] == os.cpu_count() and record["cpu"]
    assert (record["accelerator"], record["devices"], record["precision"]) == ("cpu", 1, "32-true")
    assert record["command"] == "python -m mnist_lab " + " ".join(args)

    predicted = tmp_path / "predict"
    quoted = "images=[]"  # as a shell would pass it, quoted back when the line is written down
    result = run_cli(f"ckpt_path={run_dir}", "n=2", quoted, f"hydra.run.dir={predicted}", module="mnist_lab.predict")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((predicted / "run.json").read_text())
    assert (
        record["command"]
        == f"python -m mnist_lab.predict ckpt_path={run_dir} n=2 'images=[]' hydra.run.dir={predicted}"
    )
    assert record["precision"] == "32-true" and record["torch"]


def test_a_resumed_run_keeps_its_first_record_and_adds_the_resumes(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*TINY, f"hydra.run.dir={run_dir}").returncode == 0
    first = json.loads((run_dir / "run.json").read_text())
    assert run_cli(f"resume={run_dir}", "trainer.max_epochs=2").returncode == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["command"] == first["command"] and record["started"] == first["started"]
    (resumed,) = record["resumed"]
    assert resumed["command"] == f"python -m mnist_lab resume={run_dir} trainer.max_epochs=2"
    assert resumed["precision"] == "32-true"


def test_the_report_names_what_ran_differently_in_a_sweeps_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    assert run_cli("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}").returncode == 0
    same = run_cli(str(sweep), module="mnist_lab.report")
    assert same.returncode == 0 and "What ran differs" not in same.stdout
    # The second job as if it had run on another machine, with another torch.
    record = json.loads((sweep / "1_softmax" / "run.json").read_text())
    record.update(torch="2.3.0", cpu="Another CPU")
    (sweep / "1_softmax" / "run.json").write_text(json.dumps(record))
    differs = run_cli(str(sweep), module="mnist_lab.report")
    assert differs.returncode == 0, differs.stderr
    ours = json.loads((sweep / "0_softmax" / "run.json").read_text())
    lines = differs.stdout.split("What ran differs between the runs (their run.json):\n", 1)[1].splitlines()
    assert lines[:2] == [
        f"- cpu: 0_softmax: {ours['cpu']}; 1_softmax: Another CPU",
        f"- torch: 0_softmax: {ours['torch']}; 1_softmax: 2.3.0",
    ]
