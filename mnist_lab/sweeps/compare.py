"""Two runs side by side (`python -m mnist_lab.report <run> <run>`): the config keys whose values
differ, both runs' metrics, and both learning curves in one figure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mnist_lab.errors import UserError
from mnist_lab.sweeps import tables


@dataclass
class Run:
    """A run folder's composed config and metrics.json."""

    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name


def dotted(config: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: the keys as overrides spell them."""
    if not isinstance(config, dict) or not config:
        return {prefix: config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(dotted(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def read_run(folder: Path) -> Run:
    """A run from its folder; one line naming the problem when it is not a finished run's folder."""
    config_file, metrics_file = folder / ".hydra" / "config.yaml", folder / "metrics.json"
    if not config_file.is_file() or not metrics_file.is_file():
        raise UserError(
            f"{folder} is not a run folder (no .hydra/config.yaml and metrics.json); "
            "give two run folders, e.g. outputs/<date>/<time>_mlp, or one sweep folder"
        )
    return Run(folder, yaml.safe_load(config_file.read_text()) or {}, json.loads(metrics_file.read_text()))


# Keys that differ between any two runs without saying how they were trained.
UNCOMPARED = ("paths.", "hydra.", "ckpt_path")


def differing(a: Run, b: Run) -> list[tuple[str, Any, Any]]:
    """The config keys whose values differ, with both values ("-" where a run lacks the key)."""
    flat_a, flat_b = dotted(a.config), dotted(b.config)
    keys = sorted(k for k in set(flat_a) | set(flat_b) if not k.startswith(UNCOMPARED))
    missing = "-"
    return [
        (k, flat_a.get(k, missing), flat_b.get(k, missing))
        for k in keys
        if flat_a.get(k, missing) != flat_b.get(k, missing)
    ]


def scalar(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metric_rows(a: Run, b: Run) -> list[list[str]]:
    """Both runs' scalar metrics (not their lists: the history is the figure)."""
    keys = [
        k
        for k in dict.fromkeys([*a.metrics, *b.metrics])
        if not isinstance(a.metrics.get(k, b.metrics.get(k)), (list, dict))
    ]
    return [[k, scalar(a.metrics.get(k)), scalar(b.metrics.get(k))] for k in keys if k != "best_ckpt"]


def compare(a: Run, b: Run, out: Path) -> str:
    """The comparison as Markdown; writes both learning curves into `out`/<a>_vs_<b>.png."""
    from mnist_lab.atomic import write_atomic
    from mnist_lab.sweeps.figures import png, run_curves

    names = (f"A: {a.name}", f"B: {b.name}")
    lines = [f"# {a.folder} (A) vs {b.folder} (B)", "", "## Config keys that differ", ""]
    diffs = differing(a, b)
    lines += tables.markdown(["key", "A", "B"], [[k, str(x), str(y)] for k, x, y in diffs]) if diffs else ["none"]
    lines += ["", "## Metrics", "", *tables.markdown(["metric", "A", "B"], metric_rows(a, b)), ""]
    histories = [a.metrics.get("history") or [], b.metrics.get("history") or []]
    if any(histories):
        out.mkdir(parents=True, exist_ok=True)
        figure = out / f"{a.name}_vs_{b.name}.png"
        data = png(run_curves(list(zip(names, histories))))
        write_atomic(figure, lambda f: f.write(data))
        lines.append(f"Learning curves of both: {figure}")
    else:
        lines.append("No learning curves: neither metrics.json holds a history (runs made before it was recorded).")
    return "\n".join(lines) + "\n"
