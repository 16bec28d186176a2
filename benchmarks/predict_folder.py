"""Images per second of `python -m mnist_lab.predict images=<folder>` on a folder of small images, batched
(batch_size=1000, the default) against one at a time (batch_size=1).

    python benchmarks/predict_folder.py                          # 10,000 images, a short CNN trained first
    python benchmarks/predict_folder.py --ckpt <run folder|.ckpt> --images 10000 --rounds 3

The folder holds MNIST test digits as 28x28 PNG files, dark on white, as a scan would be. Each batch size
runs the real command `--rounds` times (interleaved, so that a slow spell of the machine falls on both),
without the picture (grid=0); the figure is the median wall time less the median time of the same command
on one image (the interpreter's start and the checkpoint's load), so that images/s counts the images
alone. Both runs must predict the same digits. The goal: batched faster than one at a time. Results:
benchmarks/results/predict_folder.json.
"""

from __future__ import annotations

import argparse
import csv
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
BATCHED, ONE_AT_A_TIME = 1000, 1


def write_folder(folder: Path, count: int) -> None:
    """`count` MNIST test digits as small PNG files (cycling through the 10,000 test images)."""
    import numpy as np
    from PIL import Image

    from mnist_lab.data.datamodule import MNISTDataModule

    data = MNISTDataModule(download=False)
    data.setup("test")
    digits = (data.data_test.tensors[0][:, 0].numpy() * 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(255 - digits[i % len(digits)]).save(folder / f"{i:05d}.png")


def train_checkpoint(folder: Path) -> Path:
    """A short CNN fit through the real command (its accuracy does not matter here, its cost does)."""
    run = folder / "train"
    command = [sys.executable, "-m", "mnist_lab", "model=cnn", "trainer.max_epochs=1"]
    command += ["trainer.limit_train_batches=50", "trainer.limit_val_batches=1", "test=false", "logger=none"]
    command += ["trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]
    subprocess.run(command, check=True, capture_output=True, timeout=1800, cwd=folder)
    return run


def predict_seconds(ckpt: Path, images: Path, batch_size: int, run_dir: Path) -> tuple[float, list[str]]:
    """Wall seconds of the predict command over `images`, and the digits it predicted."""
    command = [sys.executable, "-m", "mnist_lab.predict", f"ckpt_path={ckpt}", f"images={images}"]
    command += [f"batch_size={batch_size}", "grid=0", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=run_dir.parent)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"predict failed:\n{result.stderr[-3000:]}")
    with (run_dir / "predictions.csv").open() as f:
        return seconds, [row["prediction"] for row in csv.DictReader(f)]


def main() -> int:
    """Measure and report; exit 1 when batched prediction is not faster than one image at a time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="images in the folder (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each batch size (default 3)")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint or training run folder (default: train a short CNN)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict_folder.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_folder(work / "images", args.images)
        write_folder(work / "one", 1)
        ckpt = args.ckpt.absolute() if args.ckpt else train_checkpoint(work)
        times: dict[str, list[float]] = {"start": [], "batched": [], "one_at_a_time": []}
        answers: dict[str, list[str]] = {}
        for round_ in range(args.rounds):
            for name, folder, batch in (
                ("start", work / "one", BATCHED),
                ("batched", work / "images", BATCHED),
                ("one_at_a_time", work / "images", ONE_AT_A_TIME),
            ):
                seconds, predicted = predict_seconds(ckpt, folder, batch, work / f"{name}_{round_}")
                times[name].append(seconds)
                answers[name] = predicted
                print(f"round {round_ + 1}: {name:<13} {seconds:7.2f} s", flush=True)
    if answers["batched"] != answers["one_at_a_time"] or len(answers["batched"]) != args.images:
        raise SystemExit("batched and one-at-a-time predictions differ")
    start = statistics.median(times["start"])
    rate = {
        name: args.images / max(statistics.median(times[name]) - start, 1e-9) for name in ("batched", "one_at_a_time")
    }
    summary = {
        "images": args.images,
        "rounds": args.rounds,
        "seconds": {name: [round(s, 3) for s in values] for name, values in times.items()},
        "images_per_second": {name: round(value, 1) for name, value in rate.items()},
        "batched_over_one_at_a_time": round(rate["batched"] / rate["one_at_a_time"], 2),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": os.environ.get("OMP_NUM_THREADS")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.images:,} images: batched {rate['batched']:,.0f} images/s, one at a time "
        f"{rate['one_at_a_time']:,.0f} images/s ({summary['batched_over_one_at_a_time']}x); wrote {args.out}"
    )
    met = rate["batched"] > rate["one_at_a_time"]
    print("goal met: batched is faster than one at a time" if met else "goal NOT met: batched is not faster")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
