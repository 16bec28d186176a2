"""Seconds per training epoch and peak memory: mnist_lab vs a hand-written loop vs torchvision's usual path.

    python benchmarks/train_speed.py                      # CPU, all three models
    python benchmarks/train_speed.py --device cuda --epochs 6
    python benchmarks/train_speed.py --against ../other-checkout   # this checkout's command beside another's

(a) `lightning`: mnist_lab's real command (`python -m mnist_lab ...`), default callbacks, logger and
    progress bar, read back from the run's metrics.json (`epoch_seconds`: training, no validation):
    Lightning's ordinary loop, one mini-batch per step, as a default run trains.
(m) `against` (with `--against DIR`): the same command run from the checkout in DIR (its code and its
    conf/), interleaved with (a), for a side-by-side comparison of two versions of mnist_lab.
(b) `loop`: a plain PyTorch loop, same network, optimizer and batch size, data held as tensors, in a
    process that never imports Lightning.
(c) `torchvision`: the same loop fed by torchvision MNIST + ToTensor + DataLoader.
Each variant runs in its own process so that its peak memory is its own. Every timing is the median
of the epochs after the first. `--rounds` runs all variants of a model one after another that many
times; a ratio is the median of the rounds' own ratios, so that a slow spell of a shared machine
falls on both sides of it; beside it, `fastest` divides the variants' fastest rounds, which a slow
spell on either side cannot move. `--threads N` runs every variant on N torch threads.
`--cnn-images` trains the CNN on a subset on CPU (times scaled to 55k): the training split shrinks
(`data.val_size`), so that no batch limit changes the path the run takes.
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

TRAIN_IMAGES = 55_000
CHECKOUT = Path(__file__).resolve().parent.parent
COMMANDS = ("lightning", "against")  # (a), (m): the real command, from this checkout or another
LOOPS = ("loop", "torchvision")  # (b), (c)
RATIOS = {"a/b": ("lightning", "loop"), "a/m": ("lightning", "against"), "c/a": ("torchvision", "lightning")}
MNIST_TRAIN = 60_000  # the training file's images: validation split + training split


def extracted_mnist(folder: str) -> str:
    """torchvision's MNIST reads uncompressed files: extract the packaged copy into `folder`."""
    import gzip

    from mnist_lab.data.files import PACKAGED

    raw = Path(folder) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in (PACKAGED / "MNIST").glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return folder


def lightning_command(model: str, args: argparse.Namespace, images: int, run_dir: str) -> list[str]:
    """(a) The user's command; its run folder's metrics.json holds each epoch's training seconds."""
    cmd = [
        sys.executable,
        "-m",
        "mnist_lab",
        f"model={model}",
        f"trainer.max_epochs={args.epochs}",
        "callbacks.accuracy_stop=null",
        "test=false",
        f"trainer.accelerator={args.device}",
        f"data.batch_size={args.batch_size}",
        f"hydra.run.dir={run_dir}",
    ]
    if images < TRAIN_IMAGES:  # a smaller training split, validated on one batch
        cmd += [f"data.val_size={MNIST_TRAIN - images}", "trainer.limit_val_batches=1"]
    if args.threads:
        cmd.append(f"threads={args.threads}")
    return cmd


def run_loop(
    model: str, device: str, epochs: int, images: int, batch_size: int, torchvision_path: bool, threads: int | None
) -> dict:
    """(b) and (c): a hand-written training loop over tensors, or over torchvision's DataLoader, in a
    process that never imports Lightning (importing it changes how torch checks for CUDA)."""
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mnist_lab.cli.command import config_dir
    from mnist_lab.data import files as datasets

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", "paths.output_dir=."])
    net = instantiate(cfg.model.net).to(device)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())

    if torchvision_path:
        from torch.utils.data import DataLoader, Subset
        from torchvision.datasets import MNIST
        from torchvision.transforms import ToTensor

        root = extracted_mnist(tempfile.mkdtemp())
        train = Subset(MNIST(root, train=True, transform=ToTensor()), range(5000, 5000 + images))
        loader = DataLoader(train, batch_size=batch_size, shuffle=True)
        batches = lambda: ((x.to(device), y.to(device)) for x, y in loader)  # noqa: E731
    else:
        x, y = datasets.load(datasets.dataset("MNIST"), None)["train"]
        # The training split (after the first 5,000 images), as floats in [0, 1] on the device.
        xs = x[5000 : 5000 + images].unsqueeze(1).to(device, torch.float32).div_(255)
        ys = y[5000 : 5000 + images].to(device)

        def batches():
            order = torch.randperm(len(xs), device=device)
            for i in range(0, len(xs), batch_size):
                idx = order[i : i + batch_size]
                yield xs[idx], ys[idx]

    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in batches():
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if "lightning" in sys.modules:
        raise SystemExit("the hand-written loop imported Lightning")
    return {"epoch_seconds": seconds}


def worker(args: argparse.Namespace) -> None:
    """Run variant (b) or (c) in this process and print its result as JSON."""
    result = run_loop(
        args.model,
        args.device,
        args.epochs,
        args.images,
        args.batch_size,
        torchvision_path=args.worker == "torchvision",
        threads=args.threads,
    )
    if args.device == "cuda":
        import torch

        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def measure(variant: str, model: str, args: argparse.Namespace, images: int) -> dict:
    """One variant in a fresh process: median epoch seconds (scaled to 55k images) and peak RSS."""
    env = dict(os.environ)
    checkout = args.against.resolve() if variant == "against" else CHECKOUT  # whose code and conf/ run
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as run_dir:
        if variant in COMMANDS:
            cmd = lightning_command(model, args, images, run_dir)
        else:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                variant,
                "--model",
                model,
                "--device",
                args.device,
                "--epochs",
                str(args.epochs),
                "--images",
                str(images),
                "--batch-size",
                str(args.batch_size),
                *(["--threads", str(args.threads)] if args.threads else []),
            ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"{variant} {model} failed: {' '.join(cmd)}")
        if variant in COMMANDS:
            result = {"epoch_seconds": json.loads((Path(run_dir) / "metrics.json").read_text())["epoch_seconds"]}
        else:
            result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    later = result["epoch_seconds"][1:] or result["epoch_seconds"]
    result["seconds_per_epoch"] = statistics.median(later) * TRAIN_IMAGES / images
    return result


def median_run(runs: list[dict]) -> dict:
    """The run with the median seconds per epoch (of an odd number; the faster middle one of an even)."""
    return sorted(runs, key=lambda r: r["seconds_per_epoch"])[(len(runs) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant, interleaved")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every variant (default: torch's)")
    parser.add_argument(
        "--cnn-images",
        type=int,
        default=None,
        help="train the CNN on this many images (default: 11,000 on CPU, all on CUDA)",
    )
    parser.add_argument("--against", type=Path, default=None, help="a checkout to run (m), the same command, from")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/)")
    parser.add_argument("--worker", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=TRAIN_IMAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    cnn_images = args.cnn_images or (11_000 if args.device == "cpu" else TRAIN_IMAGES)
    variants = ("lightning", *(["against"] if args.against else []), *LOOPS)
    ratios = {name: pair for name, pair in RATIOS.items() if set(pair) <= set(variants)}
    rows = {}
    for model in args.models:
        images = cnn_images if model == "cnn" else TRAIN_IMAGES
        rounds = [{v: measure(v, model, args, images) for v in variants} for _ in range(args.rounds)]
        rows[model] = {v: median_run([r[v] for r in rounds]) for v in variants}
        rows[model]["images_per_epoch"] = images
        rows[model]["rounds"] = [{v: r[v]["seconds_per_epoch"] for v in variants} for r in rounds]
        for name, (top, bottom) in ratios.items():
            per_round = [r[top]["seconds_per_epoch"] / r[bottom]["seconds_per_epoch"] for r in rounds]
            best = {v: min(r[v]["seconds_per_epoch"] for r in rounds) for v in (top, bottom)}
            rows[model][name] = {
                "median": statistics.median(per_round),
                "min": min(per_round),
                "max": max(per_round),
                "fastest": best[top] / best[bottom],
            }

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mnist_lab",
                "model=softmax",
                "trainer.max_epochs=1",
                f"trainer.accelerator={args.device}",
                f"hydra.run.dir={run_dir}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    command_seconds = time.perf_counter() - start

    print(
        f"seconds per epoch of 55,000 images, batch {args.batch_size}, {args.device} "
        f"({cpu_model()}, {os.cpu_count()} cores, {args.threads or 'default'} threads), median of {args.rounds} rounds"
    )
    if args.against:
        print(f"(m) runs the same command from {args.against.resolve()}")
    titles = {"lightning": "(a) mnist_lab, default", "against": "(m) the other checkout"}
    titles.update({"loop": "(b) hand loop", "torchvision": "(c) torchvision"})
    rss_of = [v for v in variants if v != "against"]
    header = [*(titles[v] for v in variants), *ratios, f"peak RSS {'/'.join(rss_of)} (MB)"]
    print(f"| model | {' | '.join(header)} |")
    print("|---" * (len(variants) + len(ratios) + 2) + "|")
    for model, r in rows.items():
        seconds = " | ".join(f"{r[v]['seconds_per_epoch']:.3f}" for v in variants)
        rss = "/".join(f"{r[v]['peak_rss_mb']:.0f}" for v in rss_of)
        note = f" ({r['images_per_epoch']:,} images, scaled)" if r["images_per_epoch"] < TRAIN_IMAGES else ""
        shown = " | ".join(f"{r[name]['median']:.2f}" for name in ratios)
        print(f"| {model}{note} | {seconds} | {shown} | {rss} |")
    for model, r in rows.items():
        for name, (top, bottom) in ratios.items():
            by_round = ", ".join(f"{x[top] / x[bottom]:.2f}" for x in r["rounds"])
            print(f"{model} {name} by round: {by_round}; fastest rounds: {r[name]['fastest']:.2f}")
    print(f"whole command, 1-epoch softmax run with start-up and test: {command_seconds:.1f} s")

    out = args.out or Path(__file__).parent / "results" / f"train_speed_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": args.device,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "threads": args.threads,
                "cpu": cpu_model(),
                "against": str(args.against.resolve()) if args.against else None,
                "models": rows,
                "command_seconds_softmax_1_epoch": command_seconds,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
