"""Sweep summary: every job of a multirun, and the groups they form over seeds
(`python -m mnist_lab.report` prints it).

Reads each job's `.hydra/overrides.yaml` and `metrics.json` (its `train.log` for jobs that failed)
and writes, in the sweep folder: `summary.md` and `summary.csv` (the jobs, sorted by test accuracy),
`groups.csv` (the seed groups with their statistics), the figures `curves.png` and `seeds.png`, and
`report.html`, all of it on one page. The `SweepSummary` Hydra callback writes the tables as a
multirun's jobs end, and everything once the sweep has ended.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lab.atomic import write_atomic
from mnist_lab.errors import UserError
from mnist_lab.sweeps import groups as grouping
from mnist_lab.sweeps import tables as text
from mnist_lab.sweeps.jobs import Job, read_job, read_sweep
from mnist_lab.sweeps.page import JOBS as JOBS_TITLE

__all__ = ["Job", "SweepSummary", "find_latest", "read_job", "read_sweep", "write_summary"]

COLUMNS = ["job", "overrides", "status", "epochs", "stop_reason", "val/acc_best", "test/acc", "seconds"]
# What a sweep folder holds from the moment it starts, whichever launcher and sweeper ran it: Hydra's
# basic sweeper writes multirun.yaml, Optuna's does not, and every job writes its overrides.yaml first.
STARTED = ("multirun.yaml", "*/.hydra/overrides.yaml", "optimization_results.yaml")


def started(sweep: Path) -> float:
    """When the sweep last started something: the newest of its markers (STARTED)."""
    return max((p.stat().st_mtime for pattern in STARTED for p in sweep.glob(pattern)), default=0.0)


def find_latest(outputs: Path = Path("outputs")) -> Path:
    """The newest sweep folder under `outputs/multirun/`, whichever launcher and sweeper ran it."""
    sweeps = {p.parent for p in outputs.glob("multirun/*/*/multirun.yaml")}
    sweeps |= {p.parent.parent.parent for p in outputs.glob("multirun/*/*/*/.hydra/overrides.yaml")}
    if not sweeps:
        raise UserError(
            f"found no sweep under {outputs.resolve() / 'multirun'}; run one with "
            "python -m mnist_lab -m model=softmax,mlp,cnn seed=1,2,3, or give the sweep folder"
        )
    return max(sweeps, key=lambda p: (started(p), str(p)))


def _best_params(sweep: Path) -> dict[str, Any] | None:
    """The search's result, when an optimising sweeper (Optuna) wrote one."""
    results = sweep / "optimization_results.yaml"
    return yaml.safe_load(results.read_text()) if results.is_file() else None


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value)


def job_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """The job table's rows; the overrides shown are those that set each job apart."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    return [j.row([o for o in j.overrides if o not in common]) for j in jobs]


def job_table(jobs: list[Job]) -> tuple[list[str], list[list[str]]]:
    """The job table's head and rows, as text."""
    return COLUMNS, [[_cell(c, row[c]) for c in COLUMNS] for row in job_rows(jobs)]


def header(sweep: Path, jobs: list[Job]) -> list[str]:
    """What the sweep ran: how many jobs ended how, the overrides they share, the search's best."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    done = sum(j.status == "done" for j in jobs)
    lines = [f"{len(jobs)} jobs: {done} done, {len(jobs) - done} failed, cut off or without result."]
    if common:
        lines.append("Overrides common to every job: `" + " ".join(sorted(common)) + "`")
    best = _best_params(sweep)
    if best and "best_params" in best:
        params = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["best_params"].items()
        )
        value = _cell("val/acc_best", best.get("best_value"))
        lines.append(f"Best parameters ({best.get('name', 'search')}): `{params}` with val/acc_best {value}")
    return lines


def tables(
    sweep: Path, jobs: list[Job], groups: list[grouping.Group] | None = None, extra: str = ""
) -> tuple[str, str]:
    """The summary as Markdown (the groups, `extra`, the jobs) and the job table as CSV."""
    groups = grouping.group_jobs(jobs) if groups is None else groups
    lines = [f"# Sweep summary: {sweep}", ""]
    for line in header(sweep, jobs):
        lines += [line, ""]
    lines += [grouping.markdown(groups)]
    if extra:
        lines += [extra]
    lines += [f"## {JOBS_TITLE}", "", *text.markdown(*job_table(jobs)), ""]
    lines += [f"Compare the runs' curves: `tensorboard --logdir {sweep}`", ""]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(job_rows(jobs))
    return "\n".join(lines), buffer.getvalue()


def write_summary(sweep: Path, over: str = "seed", full: bool = True) -> str:
    """Write summary.md, summary.csv and groups.csv in the sweep folder, and with `full` the figures
    and report.html; returns the Markdown."""
    jobs = read_sweep(sweep)
    groups = grouping.group_jobs(jobs, over)
    search, figures = None, {}
    if full:
        from mnist_lab.sweeps import figures as draw
        from mnist_lab.sweeps import search as optuna_search

        for name, fig in (("curves", draw.learning_curves(groups)), ("seeds", draw.seed_scores(groups))):
            if fig is not None:
                figures[name] = draw.png(fig)
        if optuna_search.is_optuna(jobs):
            search = optuna_search.analyse(jobs)
            if search is not None:
                figures.update(search.figures)
    extra = ""
    if search is not None:
        from mnist_lab.sweeps.search import markdown as search_markdown

        extra = search_markdown(search)
    if figures:
        extra += "Figures: " + ", ".join(f"{name}.png" for name in figures) + "; all of it on one page: report.html\n"
    markdown, table = tables(sweep, jobs, groups, extra)
    write_atomic(sweep / "summary.md", lambda f: f.write(markdown.encode()))
    write_atomic(sweep / "summary.csv", lambda f: f.write(table.encode()))
    grouping.write_csv(groups, sweep / "groups.csv")
    for name, data in figures.items():
        write_atomic(sweep / f"{name}.png", lambda f, data=data: f.write(data))
    if full:
        from mnist_lab.sweeps.page import sweep_page

        page = sweep_page(str(sweep), header(sweep, jobs), groups, search, figures, job_table(jobs))
        write_atomic(sweep / "report.html", lambda f: f.write(page.encode()))
    return markdown


class SweepSummary(Callback):
    """Hydra callback: rewrite the sweep's tables as each job of a multirun ends, and the whole report
    once more at the end (when the search's best parameters are known)."""

    def _write(self, config: DictConfig, full: bool) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            try:
                write_summary(Path(config.hydra.sweep.dir), full=full)
            except (UserError, OSError) as err:  # a summary must never fail the jobs themselves
                print(f"warning: no sweep summary: {err}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self._write(config, full=False)  # the tables only: figures wait for the sweep's end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config, full=True)
