"""Seconds of training until the test accuracy first reaches a target, over several seeds.

    python benchmarks/time_to_accuracy.py                              # experiment=fast_cpu, 5 seeds, 0.99
    python benchmarks/time_to_accuracy.py --preset fast --device cuda
    python benchmarks/time_to_accuracy.py --preset fast_cpu --seeds 1 2 --target 0.98 -- trainer.max_epochs=2

Each seed is the real `python -m mnist_lab experiment=<preset> seed=<s>` command with one more
callback (benchmarks/accuracy_clock.py): at the end of every training epoch it stops the clock,
scores the official test set (outside the timed training; the run makes no choice from it) and
records (training seconds so far, test accuracy). A seed's time is the training seconds at the first
epoch end whose test accuracy is >= the target; a seed that never gets there counts as a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_seed(preset: str, seed: int, device: str, extra: list[str]) -> dict:
    """One real run; returns its (seconds, accuracy) points and metrics.json."""
    with tempfile.TemporaryDirectory() as folder:
        points = Path(folder) / "points.json"
        cmd = [
            sys.executable,
            "-m",
            "mnist_lab",
            f"experiment={preset}",
            f"seed={seed}",
            f"trainer.accelerator={device}",
            "trainer.enable_progress_bar=false",
            "logger=none",
            f"+callbacks.accuracy_clock={{_target_:accuracy_clock.AccuracyClock,path:{points}}}",
            f"hydra.run.dir={folder}/run",
            *extra,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)})
        if result.returncode != 0:
            raise SystemExit(f"seed {seed} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return {
            "points": json.loads(points.read_text()),
            "metrics": json.loads((Path(folder) / "run" / "metrics.json").read_text()),
        }


def first_reach(points: list[list[float]], target: float) -> float | None:
    """Training seconds at the first point whose accuracy is >= target."""
    return next((seconds for seconds, accuracy in points if accuracy >= target), None)


def summarise(runs: dict[int, dict], target: float) -> dict:
    """Seeds reaching the target, their mean and worst seconds, and the final accuracies."""
    times = {seed: first_reach(run["points"], target) for seed, run in runs.items()}
    reached = [t for t in times.values() if t is not None]
    return {
        "target": target,
        "seeds": len(runs),
        "reached": len(reached),
        "mean_seconds": round(statistics.mean(reached), 2) if reached else None,
        "worst_seconds": round(max(reached), 2) if reached else None,
        "seconds_per_seed": {str(s): (round(t, 2) if t is not None else None) for s, t in times.items()},
        "final_test_acc": {str(s): run["points"][-1][1] for s, run in runs.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast_cpu")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/)")
    parser.add_argument("extra", nargs="*", help="more overrides for every run, after --")
    args = parser.parse_args(argv)

    runs = {seed: run_seed(args.preset, seed, args.device, args.extra) for seed in args.seeds}
    summary = summarise(runs, args.target)
    summary.update(
        preset=args.preset,
        device=args.device,
        overrides=args.extra,
        machine=f"{platform.processor() or platform.machine()}",
        points={str(s): r["points"] for s, r in runs.items()},
    )
    print(
        f"experiment={args.preset} on {args.device}: {summary['reached']}/{summary['seeds']} seeds reached "
        f"test accuracy >= {args.target}; mean {summary['mean_seconds']} s, worst {summary['worst_seconds']} s "
        "of training"
    )
    print("| preset | device | seeds >= target | mean s | worst s | final test accuracy (per seed) |")
    print("|---|---|---|---|---|---|")
    finals = ", ".join(f"{a:.4f}" for a in summary["final_test_acc"].values())
    print(
        f"| {args.preset} | {args.device} | {summary['reached']}/{summary['seeds']} | {summary['mean_seconds']} | "
        f"{summary['worst_seconds']} | {finals} |"
    )
    out = args.out or HERE / "results" / f"time_to_accuracy_{args.preset}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
