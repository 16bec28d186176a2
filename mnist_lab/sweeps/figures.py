"""The report's figures, drawn on matplotlib Figures of their own (no pyplot, no backend chosen):
learning curves by group, test accuracy seed by seed, and two runs' curves side by side."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mnist_lab.sweeps.groups import Group


def new_figure(width: float = 7.0, height: float = 4.2) -> Figure:
    """A Figure that belongs to no window: it is only ever saved."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def curve(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and values of one metric of a run's history, where it was recorded."""
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def epoch_ticks(ax: Any) -> None:
    """Whole epochs on the x axis, also when there is only one."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_xlim()
    if high - low < 2:
        ax.set_xlim(round((low + high) / 2) - 1, round((low + high) / 2) + 1)


def learning_curves(groups: Sequence[Group], key: str = "val/acc") -> Figure | None:
    """`key` against epoch: one line per group (the mean over its seeds at each epoch), with a band
    from the worst to the best seed. None when no job recorded a history."""
    fig = new_figure()
    ax = fig.subplots()
    drawn = False
    for group in groups:
        by_epoch: dict[int, list[float]] = {}
        for job in group.done:
            for epoch, value in zip(*curve(job.metrics.get("history") or [], key)):
                by_epoch.setdefault(epoch, []).append(value)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        means = [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]
        (line,) = ax.plot(epochs, means, marker="o", label=f"{group.name} (n={group.n})")
        low, high = [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs]
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
        ax.vlines(epochs, low, high, color=line.get_color(), alpha=0.6)  # the band, seen also at a single epoch
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    over = groups[0].over
    ax.set_title(f"{key} by epoch: mean over {over}s, band from worst to best {over}", fontsize=10)
    epoch_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def seed_scores(groups: Sequence[Group]) -> Figure | None:
    """The ranking metric of every seed, group by group, with each group's mean and 95% interval."""
    shown = [g for g in groups if g.n]
    if not shown:
        return None
    metric = shown[0].metric
    fig = new_figure(width=max(6.5, 1.1 * len(shown) + 3), height=4.2)
    ax = fig.subplots()
    for x, group in enumerate(shown):
        scores = sorted(group.scores.items(), key=lambda item: item[1])
        offsets = [0.3 * (i + 1) / len(scores) for i in range(len(scores))]  # worst to best: close ones stay apart
        ax.scatter([x + o for o in offsets], [v for _, v in scores], color="tab:blue", zorder=3)
        for offset, (seed, value) in zip(offsets, scores):
            ax.annotate(seed, (x + offset, value), xytext=(0, 5), textcoords="offset points", fontsize=7, ha="center")
        spread = group.spreads[metric]
        interval = spread.interval
        if interval is not None:
            ax.errorbar(
                [x - 0.15],
                [spread.mean],
                yerr=[[spread.mean - interval[0]], [interval[1] - spread.mean]],
                fmt="_",
                color="black",
                capsize=4,
                markersize=14,
            )
        else:
            ax.plot([x - 0.15], [spread.mean], "_", color="black", markersize=14)
    ax.set_xticks(range(len(shown)), [g.name for g in shown], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(shown) - 0.3)
    ax.set_ylabel(metric)
    ax.set_title(
        f"{metric} of each {shown[0].over} (labelled), worst to best; black: mean and 95% interval", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


def run_curves(histories: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> Figure:
    """Several runs' training and validation accuracy against epoch, in one figure."""
    fig = new_figure()
    ax = fig.subplots()
    for name, history in histories:
        (line,) = ax.plot(*curve(history, "val/acc"), marker="o", label=f"{name}: val/acc")
        ax.plot(
            *curve(history, "train/acc"), linestyle="--", marker="x", color=line.get_color(), label=f"{name}: train/acc"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("learning curves")
    epoch_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def optimization_history(trials: Sequence[tuple[int, float]], objective: str, maximize: bool) -> Figure:
    """A search's objective per trial, and the best value so far."""
    fig = new_figure()
    ax = fig.subplots()
    numbers, values = [n for n, _ in trials], [v for _, v in trials]
    best, so_far = [], None
    for value in values:
        so_far = value if so_far is None else (max if maximize else min)(so_far, value)
        best.append(so_far)
    ax.scatter(numbers, values, label=f"{objective} of the trial", zorder=3)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("optimization history", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def importance_bars(importances: dict[str, float]) -> Figure:
    """Each parameter's importance (as optuna.importance gives them), largest on top."""
    fig = new_figure(height=1.2 + 0.5 * len(importances))
    ax = fig.subplots()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    for y, name in enumerate(names):
        ax.annotate(
            f"{importances[name]:.3f}",
            (importances[name], y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("importance (optuna.importance)")
    ax.set_title("parameter importances", fontsize=10)
    return fig
