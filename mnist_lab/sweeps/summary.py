"""Sweep summary: every job of a multirun in one table (`python -m mnist_lab.report` prints it).

Reads each job's `.hydra/overrides.yaml` and `metrics.json` (its `train.log` for jobs that failed),
prints a table sorted by test accuracy and writes it as `summary.md` and `summary.csv` in the
sweep folder. The `SweepSummary` Hydra callback writes the same files as a multirun's jobs end.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lab.atomic import write_atomic
from mnist_lab.errors import UserError

FINISHED = ("accuracy_threshold", "max_epochs")  # metrics.json stop reasons of a completed fit
COLUMNS = ["job", "overrides", "status", "epochs", "stop_reason", "val/acc_best", "test/acc", "seconds"]
_ERROR_LINE = re.compile(r"\]\[ERROR\] - (.*)")


@dataclass
class Job:
    """One job of a sweep, as its folder records it."""

    name: str
    overrides: list[str]
    status: str  # done | failed | interrupted | no result
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

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
    return Job(folder.name, [str(o) for o in overrides], status, metrics, error)


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


def find_latest(outputs: Path = Path("outputs")) -> Path:
    """The newest sweep folder under `outputs/multirun/`."""
    sweeps = [p.parent for p in outputs.glob("multirun/*/*/multirun.yaml")]
    if not sweeps:
        raise UserError(
            f"found no sweep under {outputs.resolve() / 'multirun'}; run one with "
            "python -m mnist_lab -m model=softmax,mlp,cnn, or give the sweep folder"
        )
    return max(sweeps, key=lambda p: (p / "multirun.yaml").stat().st_mtime)


def _best_params(sweep: Path) -> dict[str, Any] | None:
    """The search's result, when an optimising sweeper (Optuna) wrote one."""
    results = sweep / "optimization_results.yaml"
    return yaml.safe_load(results.read_text()) if results.is_file() else None


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def tables(sweep: Path, jobs: list[Job]) -> tuple[str, str]:
    """The summary as Markdown and as CSV."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    rows = [j.row([o for o in j.overrides if o not in common]) for j in jobs]
    done = sum(j.status == "done" for j in jobs)
    counts = f"{len(jobs)} jobs: {done} done, {len(jobs) - done} failed, cut off or without result."
    lines = [f"# Sweep summary: {sweep}", "", f"{counts} Sorted by test/acc (val/acc_best where untested)."]
    if common:
        lines += ["", "Overrides common to every job: `" + " ".join(sorted(common)) + "`"]
    best = _best_params(sweep)
    if best and "best_params" in best:
        params = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["best_params"].items()
        )
        value = _cell("val/acc_best", best.get("best_value"))
        lines += ["", f"Best parameters ({best.get('name', 'search')}): `{params}` with val/acc_best {value}"]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |" for row in rows]
    lines += ["", f"Compare the runs' curves: `tensorboard --logdir {sweep}`", ""]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return "\n".join(lines), buffer.getvalue()


def write_summary(sweep: Path) -> str:
    """Write `summary.md` and `summary.csv` in the sweep folder; returns the Markdown."""
    markdown, table = tables(sweep, read_sweep(sweep))
    write_atomic(sweep / "summary.md", lambda f: f.write(markdown.encode()))
    write_atomic(sweep / "summary.csv", lambda f: f.write(table.encode()))
    return markdown


class SweepSummary(Callback):
    """Hydra callback: rewrite the sweep's summary as each job of a multirun ends, and once more at
    the end (when the search's best parameters are known)."""

    def _write(self, config: DictConfig) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            try:
                write_summary(Path(config.hydra.sweep.dir))
            except (UserError, OSError) as err:  # a summary must never fail the jobs themselves
                print(f"warning: no sweep summary: {err}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config)
