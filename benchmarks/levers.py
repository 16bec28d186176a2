"""Which levers lift the one-epoch CNN: validation accuracy after one epoch, lever by lever.

    python benchmarks/levers.py                                    # every lever on one_epoch, seeds 1 2
    python benchmarks/levers.py --seeds 1 2 3 --levers base batch_64
    python benchmarks/levers.py --with model.net.norm=false model.label_smoothing=0 --levers base

Each lever is a set of config overrides on top of the base preset, trained by the hand-written loop of
hand_loop.py (the preset's own recipe, no Lightning start-up) and scored on the validation split only:
the test set plays no part in the choice. The last column scores the same models on the validation
digits transformed as robustness.py transforms the test digits (strokes, slant, position, size).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import hand_loop
import robustness

HERE = Path(__file__).resolve().parent

# Each lever is applied alone to the base (the preset and --with); "base" is the base as it is.
LEVERS: dict[str, list[str]] = {
    "base": [],
    "batch_128": ["data.batch_size=128"],
    "batch_64": ["data.batch_size=64"],
    "lr_0.002": ["optimizer.lr=0.002"],
    "lr_0.004": ["optimizer.lr=0.004"],
    "lr_0.008": ["optimizer.lr=0.008"],
    "betas_0.9_0.99": ["+optimizer.betas=[0.9,0.99]"],
    "label_smoothing_0.1": ["model.label_smoothing=0.1"],
    "dropout_0.1": ["model.net.dropout=0.1"],
    "batch_norm": ["model.net.norm=true"],
    "warmup_0.1": ["scheduler.pct_start=0.1"],
    "augment_light": [
        "data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:5,translate:0.05,scale:0.05}"
    ],
    "augment_best_cnn": [
        "data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:10,translate:0.1,scale:0.1}"
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="one_epoch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), help=f"from: {', '.join(LEVERS)}")
    parser.add_argument("--with", dest="extra", nargs="*", default=[], help="overrides added to every lever")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "levers.json")
    args = parser.parse_args()

    data = hand_loop.mnist(args.device)
    x, y = data["val"]
    transformed = [transform(x).clamp(0, 1) for name, transform in robustness.TRANSFORMS.items() if name != "as is"]
    rows = {}
    print("| lever | overrides | val acc, mean | val acc, worst seed | transformed val digits, mean |")
    print("|---|---|---|---|---|")
    for name in args.levers:
        cfg = hand_loop.recipe(args.preset, args.device, [*args.extra, *LEVERS[name]])
        scores, robust = [], []
        for seed in args.seeds:
            run = hand_loop.train(cfg, seed, data, score_on="val")
            scores.append(run["points"][-1][2])
            robust += [hand_loop.accuracy(run["net"], images, y, run["scale"]) for images in transformed]
        rows[name] = {
            "overrides": LEVERS[name],
            "val_acc": scores,
            "mean": statistics.mean(scores),
            "min": min(scores),
            "transformed_val_acc": statistics.mean(robust),
        }
        print(
            f"| {name} | {' '.join(LEVERS[name]) or '-'} | {statistics.mean(scores):.4f} | {min(scores):.4f} "
            f"| {statistics.mean(robust):.4f} |",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"preset": args.preset, "with": args.extra, "seeds": args.seeds, "levers": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
