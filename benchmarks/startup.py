"""How long mnist_lab's commands take to answer where nothing trains, and to get ready to train.

    python benchmarks/startup.py                      # this checkout
    python benchmarks/startup.py --compare <checkout> # and another checkout of mnist_lab, side by side

Each command runs `--runs` times (default 5) in a fresh interpreter, interleaved across checkouts so
that a slow spell of the machine falls on both; the figure is the median wall time. The goal: every
command that trains nothing answers within 1 s on 2 cores. Results: benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_lab.training.hardware import cpu_model

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 1.0
# What a training run imports before it trains: torch, Lightning and mnist_lab's training modules.
TRAINING_IMPORTS = (
    "import lightning, torch, torchmetrics; import lightning.pytorch.loggers; "
    "import mnist_lab.train; "
    + "; ".join(
        f"import {m}"
        for m in (
            "mnist_lab.models.classifier",
            "mnist_lab.data.datamodule",
            "mnist_lab.training.callbacks",
            "mnist_lab.training.outcome",
        )
    )
)
TRAINING_IMPORTS_BEFORE = (
    "import lightning, torch, torchmetrics; import lightning.pytorch.loggers; import mnist_lab.train"
)
CASES = {
    "python -m mnist_lab --help": ["-m", "mnist_lab", "--help"],
    "python -m mnist_lab --cfg job": ["-m", "mnist_lab", "--cfg", "job"],
    "python -m mnist_lab modle=cnn (a typo)": ["-m", "mnist_lab", "modle=cnn"],
    "python -m mnist_lab optimizer.lr=-1 (a bad value)": ["-m", "mnist_lab", "optimizer.lr=-1"],
    "python -m mnist_lab.predict --help": ["-m", "mnist_lab.predict", "--help"],
    "python -m mnist_lab.evaluate --help": ["-m", "mnist_lab.evaluate", "--help"],
    "python -m mnist_lab.export --help": ["-m", "mnist_lab.export", "--help"],
    "python -m mnist_lab.serve --help": ["-m", "mnist_lab.serve", "--help"],
    "python -m mnist_lab.report --help": ["-m", "mnist_lab.report", "--help"],
}
TRAINING = "imports of a training run"


def seconds(checkout: Path, args: list[str], cwd: Path) -> float:
    """Wall seconds of `python <args>` with `checkout` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, timeout=300)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout of mnist_lab to time beside this one")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args()
    checkouts = {"this": ROOT, **({"compare": args.compare.resolve()} if args.compare else {})}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    with tempfile.TemporaryDirectory() as cwd:  # a run folder of a typo or bad value is removed; none is left
        for _ in range(args.runs):
            for name, checkout in checkouts.items():
                imports = TRAINING_IMPORTS if name == "this" else TRAINING_IMPORTS_BEFORE
                for case, case_args in {**CASES, TRAINING: ["-c", imports]}.items():
                    times[name].setdefault(case, []).append(seconds(checkout, case_args, Path(cwd)))
    medians = {
        name: {case: round(statistics.median(t), 3) for case, t in cases.items()} for name, cases in times.items()
    }
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; median of {args.runs} runs, seconds")
    header = f"{'command':<52} {'this':>7}" + (f" {'compare':>8}" if args.compare else "")
    print(header)
    for case in [*CASES, TRAINING]:
        row = f"{case:<52} {medians['this'][case]:>7.2f}"
        if args.compare:
            row += f" {medians['compare'][case]:>8.2f}"
        print(row)
    slow = [case for case in CASES if medians["this"][case] > GOAL_S]
    print(
        f"goal: every command that trains nothing answers within {GOAL_S:.0f} s: "
        + ("met" if not slow else f"missed by {slow}")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"cpu": cpu_model(), "runs": args.runs, "median_s": medians, "raw_s": times}, indent=2)
    )
    return 0 if not slow else 1


if __name__ == "__main__":
    sys.exit(main())
