"""Images and seconds of training until the test accuracy first reaches a target, seed by seed, for the
real command and for a hand-written loop of the same recipe, side by side in one run.

    python benchmarks/time_to_accuracy.py                        # experiment=one_epoch, seeds 1-10, 0.99
    python benchmarks/time_to_accuracy.py --device cuda
    python benchmarks/time_to_accuracy.py --seeds 1 2 --every 20 -- trainer.precision=32-true

For each seed:
- `mnist_lab`: the real `python -m mnist_lab experiment=<preset> seed=<s>` with one more callback
  (accuracy_clock.py). Every `--every` mini-batches and at each epoch's end it stops the clock, scores
  the official test set (fp32, outside the timed training; the run makes no choice from it) and
  records [images seen, training seconds, accuracy].
- `hand loop`: hand_loop.py trains the same composed config in this process, without Lightning, and
  scores at the same numbers of images.
The images seen until the target are the machine-free figure; seconds depend on the CPU or GPU, so the
report names it. `ratio` is mnist_lab's training seconds over the hand loop's, for the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_command(preset: str, seed: int, device: str, every: int, extra: list[str]) -> dict:
    """The real command for one seed: its points and its metrics.json."""
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
            f"+callbacks.accuracy_clock={{_target_:accuracy_clock.AccuracyClock,path:{points},every:{every}}}",
            f"hydra.run.dir={folder}/run",
            *extra,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)})
        if result.returncode != 0:
            raise SystemExit(f"seed {seed} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        log = (Path(folder) / "run" / "train.log").read_text()
        return {
            "points": json.loads(points.read_text()),
            "metrics": json.loads((Path(folder) / "run" / "metrics.json").read_text()),
            "arithmetic": [line.split("] ", 1)[-1] for line in log.splitlines() if "arithmetic:" in line],
        }


def first_reach(points: list[list[float]], target: float) -> tuple[int, float] | tuple[None, None]:
    """(images seen, training seconds) at the first point whose accuracy is >= target."""
    return next(((images, seconds) for images, seconds, accuracy in points if accuracy >= target), (None, None))


def seed_row(seed: int, command: dict, loop: dict, target: float) -> dict:
    """One seed's line of the report."""
    images, seconds = first_reach(command["points"], target)
    loop_images, loop_seconds = first_reach(loop["points"], target)
    return {
        "seed": seed,
        "acc_after_run": command["points"][-1][2],
        "test_acc_metrics_json": command["metrics"].get("test/acc"),
        "images_to_target": images,
        "seconds_to_target": seconds,
        "train_seconds": command["points"][-1][1],
        "loop_acc_after_run": loop["points"][-1][2],
        "loop_images_to_target": loop_images,
        "loop_seconds_to_target": loop_seconds,
        "loop_train_seconds": loop["seconds"],
        "ratio": command["points"][-1][1] / loop["seconds"],
        "points": command["points"],
        "loop_points": loop["points"],
    }


def machine(device: str) -> dict:
    """The CPU model and its bf16 arithmetic, or the GPU's name."""
    from mnist_lab.training.hardware import cpu_flags, cpu_model

    flags = cpu_flags()
    facts = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }
    if device == "cuda":
        import torch

        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def summarise(rows: list[dict], target: float) -> dict:
    """Seeds reaching the target, the mean and worst of each figure."""
    reached = [r for r in rows if r["images_to_target"] is not None]
    accs = [r["acc_after_run"] for r in rows]

    def mean(key: str) -> float | None:
        values = [r[key] for r in reached if r[key] is not None]
        return round(statistics.mean(values), 3) if values else None

    return {
        "target": target,
        "seeds": len(rows),
        "reached": len(reached),
        "mean_acc": round(statistics.mean(accs), 4),
        "worst_acc": min(accs),
        "mean_images_to_target": mean("images_to_target"),
        "mean_seconds_to_target": mean("seconds_to_target"),
        "worst_seconds_to_target": max((r["seconds_to_target"] for r in reached), default=None),
        "mean_loop_seconds_to_target": mean("loop_seconds_to_target"),
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="one_epoch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--every", type=int, default=50, help="mini-batches between test scores (0: epoch ends)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/)")
    parser.add_argument("extra", nargs="*", help="more overrides for every run, after --")
    args = parser.parse_args(argv)

    import hand_loop

    cfg = hand_loop.recipe(args.preset, args.device, args.extra)
    data = hand_loop.mnist(args.device)
    rows = []
    for seed in args.seeds:
        command = run_command(args.preset, seed, args.device, args.every, args.extra)
        marks = {images for images, _, _ in command["points"]}
        loop = hand_loop.train(cfg, seed, data, score_on="test", at=marks)
        if "lightning" in sys.modules:  # it changes how torch checks for CUDA, on every Adam step
            raise SystemExit("the hand-written loop's process imported Lightning")
        rows.append(seed_row(seed, command, loop, args.target))
        print(f"seed {seed}: " + json.dumps({k: v for k, v in rows[-1].items() if "points" not in k}), flush=True)

    summary = {
        **summarise(rows, args.target),
        "preset": args.preset,
        "device": args.device,
        "overrides": args.extra,
        "machine": machine(args.device),
        "precision": cfg.trainer.precision,
        "arithmetic_log": command["arithmetic"],
        "rows": rows,
    }
    facts = summary["machine"]
    print(
        f"experiment={args.preset} on {args.device} ({facts.get('gpu') or facts['cpu']}, {facts['cores']} cores, "
        f"AVX-512 BF16 {'yes' if facts['avx512_bf16'] else 'no'}, AMX {'yes' if facts['amx_bf16'] else 'no'}; "
        f"precision {cfg.trainer.precision}): {summary['reached']}/{summary['seeds']} seeds reached test accuracy "
        f">= {args.target}; accuracy at the end mean {summary['mean_acc']:.4f}, worst {summary['worst_acc']:.4f}"
    )
    print("| seed | test acc | images to target | s to target | hand loop s to target | hand loop acc | ratio |")
    print("|---|---|---|---|---|---|---|")

    def fmt(value: float | None, spec: str) -> str:
        return "never" if value is None else format(value, spec)

    for r in rows:
        print(
            f"| {r['seed']} | {r['acc_after_run']:.4f} | {fmt(r['images_to_target'], ',')} | "
            f"{fmt(r['seconds_to_target'], '.2f')} | {fmt(r['loop_seconds_to_target'], '.2f')} | "
            f"{r['loop_acc_after_run']:.4f} | {r['ratio']:.3f} |"
        )
    out = args.out or HERE / "results" / f"time_to_accuracy_{args.preset}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
