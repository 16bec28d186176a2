"""What an Optuna search's report adds: the best trial, the optimization history and each
parameter's importance, from Optuna's own functions on a study rebuilt from the sweep's jobs (a
search without a storage keeps its study in memory only)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import yaml

from mnist_lab.sweeps.jobs import Job


@dataclass
class Search:
    """An Optuna search's results: its study, best trial, importances and figures (PNG bytes)."""

    study: Any
    objective: str
    importances: dict[str, float] | None
    note: str | None = None  # why there are no importances
    figures: dict[str, bytes] = field(default_factory=dict)

    @property
    def best(self) -> Any:
        return self.study.best_trial


def sweeper_config(jobs: list[Job]) -> dict[str, Any] | None:
    """The sweep's `hydra.sweeper` settings, from a job's .hydra/hydra.yaml."""
    for job in jobs:
        path = job.folder / ".hydra" / "hydra.yaml" if job.folder else None
        if path is not None and path.is_file():
            return ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper")
    return None


def is_optuna(jobs: list[Job]) -> bool:
    """Whether Optuna's sweeper ran the sweep."""
    sweeper = sweeper_config(jobs) or {}
    return "optuna" in str(sweeper.get("_target_", "")).lower()


def distribution(spec: str, values: list[Any]) -> Any:
    """Optuna's distribution for a parameter of hydra.sweeper.params (`interval(0, 1)`, `choice(...)`,
    `tag(log, ...)`), read with Hydra's own override parser; the values tried when it reads none."""
    import optuna.distributions as d
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    try:
        sweep = OverridesParser.create().parse_override(f"x={spec}").value()
    except HydraException:  # a spec Hydra cannot read: fall back to the values tried
        sweep = None
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return (d.IntLogUniformDistribution if log else d.IntUniformDistribution)(sweep.start, sweep.end)
        return (d.LogUniformDistribution if log else d.UniformDistribution)(float(sweep.start), float(sweep.end))
    if isinstance(sweep, RangeSweep):
        return d.CategoricalDistribution(list(sweep.range()))
    if isinstance(sweep, ChoiceSweep):
        return d.CategoricalDistribution(list(sweep.list))
    return d.CategoricalDistribution(sorted(set(values), key=str))


def typed(value: str, dist: Any) -> Any:
    """An override's value as the distribution holds it."""
    import optuna.distributions as d

    parsed = yaml.safe_load(value)
    if isinstance(dist, (d.UniformDistribution, d.LogUniformDistribution)):
        return float(parsed)
    if isinstance(dist, (d.IntUniformDistribution, d.IntLogUniformDistribution)):
        return int(parsed)
    return parsed


def rebuild_study(jobs: list[Job], objective: str = "val/acc_best") -> Any:
    """An in-memory Optuna study with one trial per job (by job number), valued by `objective`."""
    import optuna

    sweeper = sweeper_config(jobs) or {}
    specs = dict(sweeper.get("params") or {})
    overrides = {j.name: dict(o.split("=", 1) for o in j.overrides if "=" in o) for j in jobs}
    values = {k: [overrides[j.name][k] for j in jobs if k in overrides[j.name]] for k in specs}
    dists = {k: distribution(str(specs[k]), [yaml.safe_load(v) for v in values[k]]) for k in specs if values[k]}
    direction = str(sweeper.get("direction") or "maximize")
    study = optuna.create_study(direction=direction if direction in ("minimize", "maximize") else "maximize")
    for job in sorted(jobs, key=lambda j: j.number):
        params = {k: typed(overrides[job.name][k], dist) for k, dist in dists.items() if k in overrides[job.name]}
        value = job.metrics.get(objective)
        finished = job.status == "done" and value is not None
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                value=float(value) if finished else None,
                state=optuna.trial.TrialState.COMPLETE if finished else optuna.trial.TrialState.FAIL,
                user_attrs={"job": job.name},
            )
        )
    return study


def importance_evaluator() -> Any:
    """Optuna's mean-decrease-in-impurity evaluator, seeded: the same sweep gets the same report.
    Not its default (fANOVA), which in the Optuna 2.x that hydra-optuna-sweeper runs on fails on the
    trees of current scikit-learn."""
    import optuna

    return optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)


def analyse(jobs: list[Job], objective: str = "val/acc_best") -> Search | None:
    """The search's best trial, optimization history and parameter importances; None when no trial finished."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per rebuilt trial
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = rebuild_study(jobs, objective)
            if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                return None
            return figures(Search(study, objective, None))
    finally:
        optuna.logging.set_verbosity(verbosity)


def figures(search: Search) -> Search:
    """Add the importances (optuna.importance) and the figures of the history and the importances."""
    import optuna

    from mnist_lab.sweeps.figures import importance_bars, optimization_history, png

    try:
        found = optuna.importance.get_param_importances(search.study, evaluator=importance_evaluator())
        search.importances = dict(found)
    except (RuntimeError, ValueError, ImportError) as err:
        search.note = f"no parameter importance: {err}"
    complete = [t for t in search.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    maximize = search.study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = [(t.number, t.value) for t in complete]
    search.figures["optuna_history"] = png(optimization_history(trials, search.objective, maximize))
    if search.importances:
        search.figures["optuna_importance"] = png(importance_bars(search.importances))
    return search


def best_line(search: Search) -> str:
    """`Best trial: #3 (job 3_cnn), val/acc_best 0.9812: optimizer.lr=0.0012 ...`."""
    best = search.best
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    trial = f"#{best.number} (job {best.user_attrs.get('job')}) of {len(search.study.trials)}"
    return f"Best trial: {trial}, {search.objective} {best.value:.4f}: {params}"


def markdown(search: Search) -> str:
    """The best trial and the importances, as Markdown."""
    lines = ["## Search (Optuna)", "", best_line(search), ""]
    if search.importances:
        lines += ["| parameter | importance (optuna.importance) |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in search.importances.items()]
    elif search.note:
        lines.append(search.note)
    return "\n".join(lines) + "\n\n"
