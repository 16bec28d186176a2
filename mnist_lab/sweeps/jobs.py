"""The jobs of a sweep, as their folders record them: overrides, metrics.json, and the error a
failed job logged."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnist_lab.errors import UserError

FINISHED = ("accuracy_threshold", "max_epochs")  # metrics.json stop reasons of a completed fit
_ERROR_LINE = re.compile(r"\]\[ERROR\] - (.*)")


@dataclass
class Job:
    """One job of a sweep, as its folder records it."""

    name: str
    overrides: list[str]
    status: str  # done | failed | interrupted | no result
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    folder: Path | None = None

    @property
    def number(self) -> int:
        head = self.name.split("_", 1)[0]
        return int(head) if head.isdigit() else 0

    def row(self, shown: list[str]) -> dict[str, Any]:
        """The job's row of the table; `shown` are the overrides that set it apart."""
        m = self.metrics
        return {
            "job": self.name,
            "overrides": " ".join(shown),
            "status": self.status,
            "epochs": m.get("epochs_run"),
            "stop_reason": m.get("stop_reason") or self.error,
            "val/acc_best": m.get("val/acc_best"),
            "test/acc": m.get("test/acc"),
            "seconds": m.get("train_seconds"),
        }


def last_error(log_file: Path) -> str | None:
    """The last ERROR line a job logged, if any."""
    if not log_file.is_file():
        return None
    errors = _ERROR_LINE.findall(log_file.read_text(errors="replace"))
    return errors[-1].strip() if errors else None


def read_job(folder: Path) -> Job:
    """A job's overrides, metrics and status from its folder."""
    overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
    metrics_file = folder / "metrics.json"
    try:
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    except json.JSONDecodeError:
        metrics = {}
    reason, logged = metrics.get("stop_reason"), last_error(folder / "train.log")
    if reason in FINISHED:
        status, error = "done", None
    elif reason == "interrupted":
        status, error = "interrupted", None
    elif reason or logged:  # a non-finite loss, or an error before metrics.json
        status, error = "failed", logged or f"stopped: {reason}"
    else:
        status, error = "no result", "no metrics.json: killed, or still running"
    return Job(folder.name, [str(o) for o in overrides], status, metrics, error, folder)


def _rank(job: Job) -> tuple:
    order = {"done": 0, "interrupted": 1, "failed": 2, "no result": 3}[job.status]
    test, val = job.metrics.get("test/acc"), job.metrics.get("val/acc_best")
    return order, -(test if test is not None else -1.0), -(val if val is not None else -1.0), job.number


def read_sweep(sweep: Path) -> list[Job]:
    """Every job folder of a sweep, best test accuracy first; failed and cut-off jobs last."""
    folders = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    if not folders:
        raise UserError(
            f"{sweep} holds no job folders (<job>/.hydra/overrides.yaml); give the folder of a "
            "multirun, e.g. outputs/multirun/<date>/<time>, or latest"
        )
    return sorted((read_job(f) for f in folders), key=_rank)
