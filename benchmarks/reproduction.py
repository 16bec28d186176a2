"""Write docs/REPRODUCTION.md and its plot from real run folders of the tutorial and best presets.

    python benchmarks/reproduction.py --runs runs

`--runs` holds one folder per group of seeds, each with one run folder per seed, e.g.
`runs/tutorial_mlp/seed1`, made by
`python -m mnist_lab experiment=tutorial_mlp seed=1 hydra.run.dir=runs/tutorial_mlp/seed1`.
Groups: tutorial_softmax, tutorial_softmax_normal (model.net.init=normal), tutorial_mlp, tutorial_cnn,
best_softmax, best_mlp, best_cnn; missing groups are left out of the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# The tutorial's published logs: epoch -> (cost, training accuracy), and its test accuracy.
PUBLISHED = {
    "tutorial_mlp": (
        {
            1: (5.25198, 0.30315),
            11: (0.89775, 0.77602),
            21: (0.64263, 0.82938),
            31: (0.52474, 0.85504),
            41: (0.45274, 0.87211),
            51: (0.40308, 0.88496),
            61: (0.36560, 0.89400),
            161: (0.20485, 0.93944),
            171: (0.19650, 0.94225),
            181: (0.18897, 0.94424),
            191: (0.18194, 0.94656),
            201: (0.17524, 0.94880),
        },
        0.9113,
        201,
    ),
    "tutorial_softmax": (
        {
            1: (10.12062, 0.12273),
            11: (1.31484, 0.74938),
            21: (0.97869, 0.80429),
            31: (0.83487, 0.82842),
            71: (0.61011, 0.86305),
            81: (0.58191, 0.86751),
            91: (0.55826, 0.87131),
            191: (0.43436, 0.89205),
            201: (0.42729, 0.89313),
            211: (0.42070, 0.89489),
            471: (0.33196, 0.91184),
            481: (0.33010, 0.91236),
            491: (0.32824, 0.91265),
        },
        0.9106,
        None,
    ),
}
TITLES = {
    "tutorial_softmax": "softmax regression, zero init as the tutorial's code shows",
    "tutorial_softmax_normal": "softmax regression, N(0, 1) init",
    "tutorial_mlp": "MLP 784-256-256-10, sigmoid, N(0, 1) init, SGD 0.01",
    "tutorial_cnn": "CNN, N(0, 1) init, Adam 0.001",
}
COLUMN = {
    "tutorial_softmax": "mnist_lab, zeros",
    "tutorial_softmax_normal": "mnist_lab, N(0, 1)",
    "tutorial_mlp": "mnist_lab",
}
TARGETS = {"best_softmax": 0.925, "best_mlp": 0.985, "best_cnn": 0.995}


def curve(run: Path) -> dict[int, tuple[float, float]]:
    """Epoch (1-based, as the tutorial prints) -> (train/loss, train/acc) from a run's TensorBoard events."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    # One train/acc point per finished epoch, filed under the optimizer step it ended at.
    points = sorted((e.step, e.value) for e in events.Scalars("train/acc") if e.step in loss)
    return {epoch: (loss[step], acc) for epoch, (step, acc) in enumerate(points, start=1)}


def read_group(folder: Path) -> list[dict[str, Any]]:
    """Every finished seed of a group: its metrics, overrides and curve."""
    runs = []
    for run in sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:])):
        if not (run / "metrics.json").is_file():
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        runs.append({"seed": run.name[4:], "metrics": metrics, "overrides": overrides, "curve": curve(run)})
    return runs


def spread(values: list[float], digits: int = 4) -> str:
    """mean (min-max) of a list."""
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def command(run: dict[str, Any]) -> str:
    shown = [o for o in run["overrides"] if not o.startswith(("seed=", "threads=", "trainer.enable_progress_bar"))]
    return "python -m mnist_lab " + " ".join(shown) + " seed=<N>"


def curve_table(name: str, groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Published cost/accuracy beside the mean of our seeds at the published epochs."""
    published, _, _ = PUBLISHED[name]
    columns = [g for g in (name, f"{name}_normal") if g in groups]
    head = (
        "| epoch | published cost | published accuracy | "
        + " | ".join(f"{COLUMN[g]}: cost | accuracy" for g in columns)
        + " |"
    )
    lines = [head, "|" + "---|" * (3 + 2 * len(columns))]
    for epoch, (cost, acc) in published.items():
        cells = [str(epoch), f"{cost:.5f}", f"{acc:.5f}"]
        for group in columns:
            points = [r["curve"][epoch] for r in groups[group] if epoch in r["curve"]]
            n = f" ({len(points)} of {len(groups[group])} seeds)" if 0 < len(points) < len(groups[group]) else ""
            cells += (
                [f"{statistics.mean(p[0] for p in points):.5f}", f"{statistics.mean(p[1] for p in points):.5f}{n}"]
                if points
                else ["stopped", "stopped"]
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(groups: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Training accuracy and cost per epoch: published points over our seeds' curves."""
    shown = [g for g in ("tutorial_softmax", "tutorial_mlp") if g in groups]
    fig, axes = plt.subplots(2, len(shown), figsize=(6 * len(shown), 7), squeeze=False)
    for col, name in enumerate(shown):
        published = PUBLISHED[name][0]
        for row, (index, label) in enumerate([(1, "training accuracy"), (0, "cost (cross-entropy)")]):
            ax = axes[row][col]
            for group, style in ((name, "-"), (f"{name}_normal", "--")):
                for run in groups.get(group, []):
                    epochs = sorted(run["curve"])
                    tag = "zeros" if group == "tutorial_softmax" else ("N(0, 1)" if "softmax" in group else "")
                    ax.plot(
                        epochs,
                        [run["curve"][e][index] for e in epochs],
                        style,
                        lw=1,
                        alpha=0.8,
                        label=f"mnist_lab {tag} seed {run['seed']}".replace("  ", " "),
                    )
            ax.plot(list(published), [v[index] for v in published.values()], "ko", ms=4, label="published")
            ax.set(title=f"{name}: {label}", xlabel="epoch", ylabel=label)
            if index == 0:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(runs_dir: Path, out: Path) -> str:
    """The Markdown report; writes the plot beside it."""
    groups = {g.name: runs for g in sorted(runs_dir.iterdir()) if g.is_dir() and (runs := read_group(g))}
    image = out.parent / "reproduction_curves.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    plot(groups, image)
    lines = [
        "# Reproducing the tutorial, then beating it",
        "",
        f"Generated by `python benchmarks/reproduction.py --runs {runs_dir.name}` from the run folders "
        "listed below (one per seed), on a 2-core x86_64 CPU. Each group's command is given; "
        "`seed=<N>` took the values of the seed column. The runs were made two to four side by side with "
        "`threads=1` each (left out of the commands), so their seconds are those of one core.",
        "",
    ]

    lines += [
        "## Faithful replays of the tutorial",
        "",
        "Stop epoch and test accuracy over seeds (mean, range in brackets):",
        "",
        "| preset | seeds | stop epochs | stop reason | test accuracy | published | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("tutorial_softmax", "tutorial_softmax_normal", "tutorial_mlp", "tutorial_cnn"):
        if name not in groups:
            continue
        runs = groups[name]
        epochs = [r["metrics"]["epochs_run"] for r in runs]
        reasons = sorted({r["metrics"]["stop_reason"] for r in runs})
        published = PUBLISHED.get(name.removesuffix("_normal"))
        ref = (
            f"{published[0] and max(published[0])} epochs logged, test {published[1]}"
            if published
            else "no published log"
        )
        lines.append(
            f"| {name} ({TITLES[name]}) | {', '.join(r['seed'] for r in runs)} | "
            f"{', '.join(map(str, epochs))} (mean {statistics.mean(epochs):.0f}) | {', '.join(reasons)} | "
            f"{spread([r['metrics']['test/acc'] for r in runs])} | {ref} | `{command(runs[0])}` |"
        )
    lines += [
        "",
        "The published softmax log ends at epoch 491 (softmax regression never reaches 95% training "
        "accuracy, so the stop does not fire): its replays run 500 epochs. The tutorial publishes no CNN log; "
        "`tutorial_cnn` uses Adam 0.001 and dropout 0.25, as the classic TensorFlow example it follows.",
    ]
    for name in ("tutorial_softmax", "tutorial_mlp"):
        if name in groups:
            lines += [
                "",
                f"### {name}: published log beside mnist_lab's (mean over seeds)",
                "",
                *curve_table(name, groups),
            ]
    if {"tutorial_softmax", "tutorial_softmax_normal"} <= groups.keys():
        first = {
            g: statistics.mean(r["curve"][1][0] for r in groups[g])
            for g in ("tutorial_softmax", "tutorial_softmax_normal")
        }
        test = {
            g: statistics.mean(r["metrics"]["test/acc"] for r in groups[g])
            for g in ("tutorial_softmax", "tutorial_softmax_normal")
        }
        lines += [
            "",
            f"Which initialisation made the published softmax curve: N(0, 1). Its epoch-1 cost "
            f"({first['tutorial_softmax_normal']:.2f}, published 10.12) and whole curve follow the log, and "
            f"its test accuracy is {test['tutorial_softmax_normal']:.4f} (published 0.9106); zero weights "
            f"start from cost log 10 = 2.30, so their first epoch averages {first['tutorial_softmax']:.2f}, "
            f"nowhere near 10.12, and they end higher, at {test['tutorial_softmax']:.4f}. "
            "The preset keeps the code's zeros; "
            "`model.net.init=normal` replays the log.",
        ]
    lines += ["", f"![training curves]({image.name})", ""]

    lines += [
        "## Best presets",
        "",
        "Same layer sizes as the tutorial; see `conf/experiment/best_*.yaml` for what changed.",
        "",
        "Seconds are each run's fitting time (`train_seconds`, validation included); runs that shared the "
        "2 cores with other work took longer, so the shortest is the clean figure.",
        "",
        "| preset | seeds | test accuracy per seed | mean (range) | target | epochs "
        "| seconds of fitting per run | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("best_softmax", "best_mlp", "best_cnn"):
        if name not in groups:
            continue
        runs = groups[name]
        accs = [r["metrics"]["test/acc"] for r in runs]
        met = "met" if statistics.mean(accs) >= TARGETS[name] else "NOT met"
        seconds = [r["metrics"]["train_seconds"] for r in runs]
        lines.append(
            f"| {name} | {', '.join(r['seed'] for r in runs)} | {', '.join(f'{a:.4f}' for a in accs)} | "
            f"{spread(accs)} | >= {TARGETS[name]} ({met}) | "
            f"{', '.join(str(r['metrics']['epochs_run']) for r in runs)} | "
            f"{', '.join(f'{t:.0f}' for t in seconds)} (shortest {min(seconds) / 60:.1f} min) | "
            f"`{command(runs[0])}` |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of <group>/seed<N> run folders")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "REPRODUCTION.md")
    args = parser.parse_args()
    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # several graph events per run folder
    args.out.write_text(report(args.runs, args.out))
    print(f"wrote {args.out} and {args.out.parent / 'reproduction_curves.png'}")


if __name__ == "__main__":
    main()
