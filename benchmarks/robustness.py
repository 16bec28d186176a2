"""How well checkpoints read digits written differently: MNIST's test set, transformed.

    python benchmarks/robustness.py outputs/2026-11-30/12-00-00 outputs/2026-11-30/12-05-00

Each argument is what `ckpt_path=` takes (a run folder, a .ckpt, `last`). Every checkpoint is scored
on the 10,000 official test digits as they are, and with each transform applied to all of them:
thicker and thinner strokes (a 3x3 dilation, a 2x2 erosion), a slant either way (shear 0.3), the
digit moved off-centre by 3 pixels (right, up), shrunk to 60% and enlarged to 130%. The
transforms are fixed, so every checkpoint sees the same images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from hand_loop import accuracy, mnist
from torch import Tensor


def affine(x: Tensor, matrix: list[list[float]]) -> Tensor:
    """Apply the 2x3 `matrix` (output to input coordinates in [-1, 1], as affine_grid takes it)."""
    theta = torch.tensor(matrix, dtype=x.dtype).expand(len(x), 2, 3)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


def shift(pixels: float) -> float:
    """A shift of `pixels` in affine_grid's units (the image spans 2), moving the digit that way."""
    return -2 * pixels / 28


TRANSFORMS = {
    "as is": lambda x: x,
    "thicker (3x3 dilation)": lambda x: F.max_pool2d(x, 3, stride=1, padding=1),
    "thinner (2x2 erosion)": lambda x: -F.max_pool2d(F.pad(-x, (0, 1, 0, 1), value=-1.0), 2, stride=1),
    "slant right (shear 0.3)": lambda x: affine(x, [[1, 0.3, 0], [0, 1, 0]]),
    "slant left (shear -0.3)": lambda x: affine(x, [[1, -0.3, 0], [0, 1, 0]]),
    "off-centre (3 px right)": lambda x: affine(x, [[1, 0, shift(3)], [0, 1, 0]]),
    "off-centre (3 px up)": lambda x: affine(x, [[1, 0, 0], [0, 1, shift(-3)]]),
    "small (60%)": lambda x: affine(x, [[1 / 0.6, 0, 0], [0, 1 / 0.6, 0]]),
    "large (130%)": lambda x: affine(x, [[1 / 1.3, 0, 0], [0, 1 / 1.3, 0]]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "robustness.json")
    args = parser.parse_args()
    from mnist_lab.checkpoints.load import load_checkpoint  # here: levers.py uses this file without Lightning

    x, labels = mnist("cpu")["test"]
    transformed = {name: transform(x).clamp(0, 1) for name, transform in TRANSFORMS.items()}
    results = {}
    for spec in args.checkpoints:
        loaded = load_checkpoint(spec)
        name = f"{loaded.name} ({loaded.trained_with or loaded.path})"
        results[name] = {t: accuracy(loaded.model, images_t, labels) for t, images_t in transformed.items()}
        results[name]["mean of the transforms"] = sum(list(results[name].values())[1:]) / (len(TRANSFORMS) - 1)

    names = list(results)
    print("| digits | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in [*TRANSFORMS, "mean of the transforms"]:
        print(f"| {row} | " + " | ".join(f"{results[n][row]:.4f}" for n in names) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
