"""run.json in every run folder: what produced the run. mnist_lab's version and git commit, the libraries'
versions, the machine, the precision and the command line as typed, so that a figure can be traced back."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RECORD = "run.json"
LIBRARIES = {"torch": "torch", "lightning": "lightning", "hydra": "hydra-core", "torchmetrics": "torchmetrics"}
NOT_COMPARED = ("started", "resumed")  # differ between any two runs
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # set by DDP, torchrun or SLURM


def typed(program: str, argv: list[str]) -> str:
    """The command line as typed: `python -m mnist_lab...` (`program`) or the console script, then its arguments."""
    head = program if argv[0].endswith(".py") else Path(argv[0]).name
    return " ".join([head, *map(shlex.quote, argv[1:])])


def git_state(checkout: Path) -> dict[str, Any] | None:
    """The commit of the git checkout mnist_lab runs from, and whether tracked files differ from it; None
    when mnist_lab is installed (not a checkout) or git cannot tell."""
    if not (checkout / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0 or status.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def gpus() -> list[str]:
    """The GPUs' names, per nvidia-smi (which, unlike asking torch, initialises no CUDA before DDP forks)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def version(distribution: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def record(command_line: str, precision: str | None) -> dict[str, Any]:
    """What this process is: mnist_lab, its checkout, the libraries, the machine, the precision, the command."""
    import mnist_lab
    from mnist_lab.training.hardware import cpu_model

    names = gpus()
    return {
        "mnist_lab": mnist_lab.__version__,
        "git": git_state(Path(mnist_lab.__file__).resolve().parent.parent),
        "python": platform.python_version(),
        **{name: version(distribution) for name, distribution in LIBRARIES.items()},
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "gpu": ", ".join(sorted(set(names))) or None,
        "gpu_count": len(names),
        "precision": precision,
        "command": command_line,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def is_first_process() -> bool:
    """Whether this is the run's first process (DDP's other processes share its folder and record nothing)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def write_record(folder: Path, command_line: str, precision: str | None = None) -> None:
    """Write `run.json` in the run folder; a run resumed in its folder keeps its first record and adds this
    one under `resumed`."""
    from mnist_lab.atomic import write_json_atomic

    if not is_first_process():
        return
    path, this = Path(folder) / RECORD, record(command_line, precision)
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict):
        this = {**earlier, "resumed": [*earlier.get("resumed", []), this]}
    write_json_atomic(path, this)


def record_trainer(folder: Path, precision: str, accelerator: str, devices: int) -> None:
    """Add what the trainer chose: its precision, and the accelerator and number of devices it trains on
    (to a run's latest record when it was resumed)."""
    from mnist_lab.atomic import write_json_atomic

    path = Path(folder) / RECORD
    if not is_first_process() or not path.is_file():
        return
    data = json.loads(path.read_text())
    latest = data["resumed"][-1] if data.get("resumed") else data
    latest.update(precision=precision, accelerator=accelerator, devices=devices)
    write_json_atomic(path, data)


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"git": {"commit": c}}` -> `{"git.commit": c}`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """The fields of run.json in which the runs of `folders` differ: field -> {run folder's name: value}.
    Runs without a run.json are left out."""
    records = {}
    for folder in folders:
        try:
            records[folder.name] = flat(json.loads((folder / RECORD).read_text()))
        except (OSError, ValueError):
            continue
    fields = sorted({key for r in records.values() for key in r if key.split(".")[0] not in NOT_COMPARED})
    return {
        key: {name: r.get(key) for name, r in records.items()}
        for key in fields
        if len({json.dumps(r.get(key)) for r in records.values()}) > 1
    }


def describe(differences: dict[str, dict[str, Any]]) -> str:
    """The differences as lines for a report; empty when there are none."""
    if not differences:
        return ""
    lines = ["What ran differs between the runs (their run.json):"]
    for key, values in differences.items():
        lines.append(f"- {key}: " + "; ".join(f"{name}: {value}" for name, value in values.items()))
    return "\n".join(lines)
