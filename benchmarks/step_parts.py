"""Where a stacked step's time goes: microseconds per mini-batch, part by part, beside the hand loop.

    python benchmarks/step_parts.py                 # the MLP, 3 epochs (the first left out), 3 rounds
    python benchmarks/step_parts.py --model softmax

`mnist_lab`: the real `python -m mnist_lab model=<m> steps=stacked` with the module swapped for
timed_stacked.py's `TimedStacked`, which is StackedClassifier with a clock around each part of its training step:
Lightning's batch fetch, the batch hooks, forward and loss, zero_grad, backward, the optimizer step
(`LightningOptimizer.step`, split at the precision plugin's closure and at the module's
`on_before_optimizer_step`, which Lightning calls after every callback's), and Lightning's own work
between two of its steps. `hand loop`: the same parts of train_speed.py's loop, in this process,
which never imports Lightning. Each side shows its fastest of `--rounds` runs, interleaved. The clocks
cost about a microsecond a part, on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("fetch", "batch hooks", "forward + loss", "zero_grad", "backward", "optimizer step", "between steps")
STEP_PARTS = ("before the closure", "callback and module hooks", "Adam and after")


class Clock:
    """Seconds per part, summed over the mini-batches of the epochs after the first."""

    def __init__(self) -> None:
        self.parts: Counter[str] = Counter()
        self.batches = 0
        self.last = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.parts[part] += now - self.last
        self.last = now

    def per_batch(self) -> dict[str, float]:
        """Microseconds per mini-batch, part by part."""
        return {part: round(s / self.batches * 1e6, 1) for part, s in self.parts.items()}


def command_parts(model: str, epochs: int) -> dict[str, float]:
    """The real command's parts, per mini-batch, in the last epoch."""
    with tempfile.TemporaryDirectory() as folder:
        parts = Path(folder) / "parts.json"
        cmd = [
            sys.executable,
            "-m",
            "mnist_lab",
            f"model={model}",
            "steps=stacked",
            "model._target_=timed_stacked.TimedStacked",
            f"+model.parts={parts}",
            f"trainer.max_epochs={epochs}",
            "callbacks.accuracy_stop=null",
            "test=false",
            f"hydra.run.dir={folder}/run",
        ]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"the command failed:\n{result.stderr[-3000:]}")
        return json.loads(parts.read_text())


def loop_parts(model: str, epochs: int) -> dict[str, float]:
    """train_speed.py's hand loop, part by part, per mini-batch, in the last epoch."""
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mnist_lab.cli.command import config_dir
    from mnist_lab.data import files

    torch.manual_seed(0)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", "paths.output_dir=."])
    net = instantiate(cfg.model.net)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    x, y = files.load(files.dataset("MNIST"), None)["train"]
    xs, ys = x[5000:].unsqueeze(1).to(torch.float32).div_(255), y[5000:]
    for _ in range(epochs):
        clock = Clock()
        for index in torch.randperm(len(xs)).split(cfg.data.batch_size):
            xb, yb = xs[index], ys[index]
            clock.lap("fetch")
            loss = F.cross_entropy(net(xb), yb)
            clock.lap("forward + loss")
            optimizer.zero_grad(set_to_none=True)
            clock.lap("zero_grad")
            loss.backward()
            clock.lap("backward")
            optimizer.step()
            clock.lap("optimizer step")
            clock.batches += 1
    if "lightning" in sys.modules:
        raise SystemExit("the hand-written loop imported Lightning")
    return clock.per_batch()


def timed(parts: dict[str, float]) -> float:
    """Microseconds per mini-batch over the timed parts."""
    return sum(us for part, us in parts.items() if part != "untimed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp", choices=["softmax", "mlp"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, interleaved; the fastest is shown")
    args = parser.parse_args()

    from mnist_lab.training.hardware import cpu_model

    rounds = [(command_parts(args.model, args.epochs), loop_parts(args.model, args.epochs)) for _ in range(args.rounds)]
    # Each side's fastest round: a slow spell of a shared machine only ever adds time.
    command, loop = (min(side, key=timed) for side in zip(*rounds))
    command["optimizer step"] = sum(command.get(part, 0.0) for part in STEP_PARTS)
    print(
        f"model={args.model}, microseconds per mini-batch, last of {args.epochs} epochs, "
        f"fastest of {args.rounds} rounds ({cpu_model()})"
    )
    print("| part | steps=stacked | hand loop | added |")
    print("|---|---|---|---|")
    for part in PARTS:
        ours, theirs = command.get(part, 0.0), loop.get(part, 0.0)
        print(f"| {part} | {ours:.1f} | {theirs:.1f} | {ours - theirs:+.1f} |")
        if part == "optimizer step":
            print("".join(f"| - {p} | {command.get(p, 0.0):.1f} | | |\n" for p in STEP_PARTS), end="")
    total, loop_total = timed(command) - command["optimizer step"], timed(loop)
    print(f"| all | {total:.1f} | {loop_total:.1f} | {total - loop_total:+.1f} ({total / loop_total:.2f}x) |")


if __name__ == "__main__":
    main()
