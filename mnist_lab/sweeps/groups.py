"""Seed groups of a sweep: the jobs whose overrides differ only in `seed` (or the key named by
`--over`), with the mean, standard deviation and 95% t-interval of their scores, each group compared
with the best one by a t-test, paired by seed where the seeds match and Welch's otherwise.

The distributions are scipy.stats's; nothing here is a hand-written statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_lab.errors import UserError
from mnist_lab.sweeps.jobs import Job

CONFIDENCE = 0.95
METRICS = ("test/acc", "val/acc_best")
MORE_SEEDS = "seed=1,2,3"


@dataclass
class Spread:
    """One metric over a group's seeds: its mean, standard deviation and 95% t-interval (n >= 2)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1 in the denominator)."""
        import numpy as np

        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean: Student's t with n - 1 degrees of freedom."""
        if self.n < 2:
            return None
        from scipy import stats

        low, high = stats.t.interval(CONFIDENCE, self.n - 1, loc=self.mean, scale=stats.sem(self.values))
        return (self.mean, self.mean) if math.isnan(low) else (float(low), float(high))  # no spread at all


@dataclass
class Comparison:
    """A group against the best one: the difference of means, its 95% interval and the p-value."""

    diff: float
    interval: tuple[float, float] | None
    p: float | None
    test: str  # "paired by seed", "Welch", or why there is no test


@dataclass
class Group:
    """The jobs of a sweep that share every override but the one averaged over."""

    name: str  # the overrides that set the group apart
    jobs: list[Job]
    over: str  # the key averaged over, e.g. seed
    metric: str  # the metric the groups are ranked and compared by
    versus_best: Comparison | None = None
    spreads: dict[str, Spread] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spreads = {m: Spread([j.metrics[m] for j in self.done if j.metrics.get(m) is not None]) for m in METRICS}

    @property
    def done(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "done" and j.metrics.get(self.metric) is not None]

    @property
    def left_out(self) -> list[Job]:
        """Failed, interrupted and unfinished jobs: named, and left out of the statistics."""
        done = self.done
        return [j for j in self.jobs if j not in done]

    @property
    def n(self) -> int:
        return len(self.done)

    @property
    def scores(self) -> dict[str, float]:
        """The ranking metric by the value of the key averaged over (the seed)."""
        return {value_of(j, self.over) or j.name: j.metrics[self.metric] for j in self.done}

    def extreme(self, best: bool) -> tuple[str, float] | None:
        """The worst or best seed and its score."""
        scores = self.scores
        if not scores:
            return None
        seed = (max if best else min)(scores, key=scores.get)
        return seed, scores[seed]

    def mean_of(self, key: str) -> float | None:
        values = [j.metrics[key] for j in self.done if j.metrics.get(key) is not None]
        return sum(values) / len(values) if values else None


def key_of(override: str) -> str:
    """`+model.net.dropout=0.1` -> `model.net.dropout`."""
    return override.split("=", 1)[0].lstrip("+~")


def value_of(job: Job, key: str) -> str | None:
    """The job's value of `key`: its override, else its run's composed config, else None."""
    for override in job.overrides:
        if key_of(override) == key and "=" in override:
            return override.split("=", 1)[1]
    if job.folder is not None and (job.folder / ".hydra" / "config.yaml").is_file():
        from omegaconf import OmegaConf

        value = OmegaConf.select(OmegaConf.load(job.folder / ".hydra" / "config.yaml"), key)
        return None if value is None else str(value)
    return None


def ranking_metric(jobs: list[Job]) -> str:
    """test/acc, or val/acc_best where no job was tested (a search's trials)."""
    return "test/acc" if any(j.metrics.get("test/acc") is not None for j in jobs) else "val/acc_best"


def compare(group: Group, best: Group) -> Comparison:
    """`group` against `best`, on the ranking metric: paired by seed where both hold the same seeds."""
    from scipy import stats

    a, b = group.scores, best.scores
    diff = (group.spreads[group.metric].mean or 0.0) - (best.spreads[best.metric].mean or 0.0)
    if min(len(a), len(b)) < 2:
        return Comparison(diff, None, None, "n = 1: no test")
    if set(a) == set(b):
        seeds = sorted(a)
        result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        test = f"paired by {group.over}"
    else:
        result = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
        test = "Welch"
    low, high = result.confidence_interval(CONFIDENCE)
    if math.isnan(result.pvalue):  # no spread in the differences: nothing to test
        return Comparison(diff, None, None, f"{test}: no spread")
    return Comparison(diff, (float(low), float(high)), float(result.pvalue), test)


def group_jobs(jobs: list[Job], over: str = "seed") -> list[Group]:
    """The sweep's jobs in groups that differ only in `over`, best mean first, each compared with the best."""
    if over != "seed" and all(value_of(j, over) is None for j in jobs):  # seed: every run has one
        varied = sorted({key_of(o) for j in jobs for o in j.overrides if "=" in o})
        raise UserError(f"--over {over}: no job of the sweep sets it; name one of {', '.join(varied)}")
    kept = {j.name: tuple(sorted(o for o in j.overrides if key_of(o) != over)) for j in jobs}
    common = set.intersection(*(set(k) for k in kept.values())) if len(jobs) > 1 else set()
    names: dict[str, list[Job]] = {}
    for job in jobs:
        name = " ".join(o for o in kept[job.name] if o not in common) or "all jobs"
        names.setdefault(name, []).append(job)
    metric = ranking_metric(jobs)
    groups = [Group(name, members, over, metric) for name, members in names.items()]
    groups.sort(key=lambda g: (g.n == 0, -(g.spreads[metric].mean or 0.0), g.name))
    if groups and groups[0].n:
        for group in groups[1:]:
            if group.n:
                group.versus_best = compare(group, groups[0])
    return groups


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def diff_text(c: Comparison | None) -> str:
    if c is None:
        return "best"
    if c.interval is None:
        return f"{c.diff:+.4f}"
    return f"{c.diff:+.4f} [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]"


def mean_text(spread: Spread) -> str:
    """`0.9237 ± 0.0006`; the mean alone for one value, `-` for none."""
    if spread.mean is None:
        return "-"
    return fmt(spread.mean) if spread.std is None else f"{fmt(spread.mean)} ± {fmt(spread.std)}"


def interval_text(spread: Spread) -> str:
    ci = spread.interval
    return "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def seed_text(group: Group, best: bool) -> str:
    found = group.extreme(best)
    return "-" if found is None else f"{group.over}={found[0]} ({found[1]:.4f})"


def table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """The group table's head and rows, as text."""
    over, metric = (groups[0].over, groups[0].metric) if groups else ("seed", "test/acc")
    head = ["group", "n", "test/acc mean ± std", "95% CI", "val/acc_best mean ± std", "95% CI"]
    head += [f"worst {over}", f"best {over}", "epochs", "seconds", f"{metric} diff vs best [95% CI]", "p vs best"]
    lines = []
    for g in groups:
        test, val = g.spreads["test/acc"], g.spreads["val/acc_best"]
        lines.append(
            [
                g.name,
                str(g.n),
                mean_text(test),
                interval_text(test),
                mean_text(val),
                interval_text(val),
                seed_text(g, best=False),
                seed_text(g, best=True),
                fmt(g.mean_of("epochs_run"), 1),
                fmt(g.mean_of("train_seconds"), 1),
                diff_text(g.versus_best) if g.n else "-",
                p_text(g.versus_best.p) if g.versus_best else "-",
            ]
        )
    return head, lines


def title(groups: list[Group]) -> str:
    over, metric = groups[0].over, groups[0].metric
    return f"Groups over {over}: mean, spread and 95% t-interval; each compared with the best on {metric}"


def notes(groups: list[Group]) -> list[str]:
    """What the table needs said: the tests used, groups of one seed, the jobs left out."""
    lines = []
    tests = sorted({g.versus_best.test for g in groups if g.versus_best and g.versus_best.p is not None})
    if tests:
        lines.append(f"p: two-sided t-test against the best group ({', '.join(tests)}).")
    single = [g.name for g in groups if g.n == 1]
    if single:
        which = "every group" if len(single) == len(groups) > 1 else ", ".join(single)
        lines.append(
            f"n = 1 ({which}): no interval can be given; run each configuration with several seeds, "
            f"e.g. add {MORE_SEEDS} to the sweep's command."
        )
    for g in groups:
        if g.left_out:
            named = ", ".join(f"{j.name} ({j.status})" for j in g.left_out)
            lines.append(f"Left out of {g.name}: {named}.")
    return lines


def markdown(groups: list[Group]) -> str:
    """The group table and its notes, as Markdown."""
    if not groups:
        return ""
    from mnist_lab.sweeps import tables

    lines = [f"## {title(groups)}", "", *tables.markdown(*table(groups)), ""]
    return "\n".join(lines + notes(groups)) + "\n"


CSV_COLUMNS = [
    "group",
    "n",
    *(f"{m} {s}" for m in METRICS for s in ("mean", "std", "ci_low", "ci_high")),
    "worst seed",
    "worst",
    "best seed",
    "best",
    "epochs mean",
    "seconds mean",
    "diff vs best",
    "diff ci_low",
    "diff ci_high",
    "p vs best",
    "test",
    "left out",
]


def rows(groups: list[Group]) -> list[dict[str, Any]]:
    """One row per group for groups.csv (CSV_COLUMNS); the diff and p are on the ranking metric."""
    out = []
    for g in groups:
        row: dict[str, Any] = {"group": g.name, "n": g.n}
        for m in METRICS:
            spread = g.spreads[m]
            ci = spread.interval or (None, None)
            row.update({f"{m} mean": spread.mean, f"{m} std": spread.std, f"{m} ci_low": ci[0], f"{m} ci_high": ci[1]})
        worst, best = g.extreme(best=False) or (None, None), g.extreme(best=True) or (None, None)
        row.update({"worst seed": worst[0], "worst": worst[1], "best seed": best[0], "best": best[1]})
        row.update({"epochs mean": g.mean_of("epochs_run"), "seconds mean": g.mean_of("train_seconds")})
        c = g.versus_best
        if c is None and g.n and g is groups[0]:
            c = Comparison(0.0, None, None, "best")
        ci = (c.interval if c else None) or (None, None)
        row.update({"diff vs best": c.diff if c else None, "diff ci_low": ci[0], "diff ci_high": ci[1]})
        row.update({"p vs best": c.p if c else None, "test": c.test if c else None})
        row["left out"] = " ".join(j.name for j in g.left_out)
        out.append(row)
    return out


def write_csv(groups: list[Group], path: Path) -> None:
    """groups.csv: one row per group, for scripts."""
    import csv
    import io

    from mnist_lab.atomic import write_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows(groups))
    write_atomic(path, lambda f: f.write(buffer.getvalue().encode()))
