"""`python -m mnist_lab.predict`: the tutorial's second script. Predict random test digits, or yours."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from mnist_lab.cli.command import run_command, run_folder
from mnist_lab.errors import UserError

if TYPE_CHECKING:
    from mnist_lab.checkpoints.load import LoadedModel

log = logging.getLogger(__name__)


def predict_test_digits(loaded: LoadedModel, cfg: DictConfig, out_dir: Path) -> dict:
    """Predict `n` random test digits; print one line each and their accuracy; save a grid."""
    import torch

    from mnist_lab import plots
    from mnist_lab.checkpoints.inference import datamodule_for, probabilities

    pixels, labels = datamodule_for(loaded, cfg.data).data_test.tensors
    generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
    index = torch.randperm(len(labels), generator=generator)[: cfg.n]
    probs = probabilities(loaded.model, pixels[index])
    confidence, predicted = probs.max(dim=-1)
    correct = predicted == labels[index]
    print(f"{'index':>6} {'label':>5} {'prediction':>10} {'probability':>11}")
    for i, label, pred, p in zip(index.tolist(), labels[index].tolist(), predicted.tolist(), confidence.tolist()):
        print(f"{i:>6} {label:>5} {pred:>10} {p:>11.4f}{'' if pred == label else '  wrong'}")
    accuracy = correct.float().mean().item()
    print(f"accuracy over {len(index)} test images: {accuracy:.4f} ({int(correct.sum())}/{len(index)})")
    titles = [f"{label}/{pred}" for label, pred in zip(labels[index].tolist(), predicted.tolist())]
    grid = plots.save(
        plots.digit_grid(pixels[index, 0].numpy(), titles, (~correct).tolist()), out_dir / "predictions.png"
    )
    return {
        "grid": grid,
        "accuracy": accuracy,
        "predictions": [
            {"index": i, "label": label, "prediction": pred, "probability": p}
            for i, label, pred, p in zip(
                index.tolist(), labels[index].tolist(), predicted.tolist(), confidence.tolist()
            )
        ],
    }


def predict_files(loaded: LoadedModel, paths: list[str], out_dir: Path) -> dict:
    """Predict the user's own digit images; name the ones that cannot be used, keep going."""
    import numpy as np
    import torch

    from mnist_lab import plots
    from mnist_lab.checkpoints.inference import probabilities
    from mnist_lab.data.segment import load_digit

    digits, names, failed = [], [], []
    for path in paths:
        try:
            digits.append(load_digit(path))
            names.append(path)
        except UserError as err:
            log.error(str(err))
            failed.append(path)
    results = []
    if digits:
        probs = probabilities(loaded.model, torch.from_numpy(np.stack(digits)).unsqueeze(1))
        for name, p in zip(names, probs):
            top = p.topk(3)
            top3 = ", ".join(f"{d} {v:.3f}" for v, d in zip(top.values.tolist(), top.indices.tolist()))
            print(f"{name}: {top.indices[0].item()}  (top 3: {top3})")
            results.append(
                {
                    "image": name,
                    "prediction": top.indices[0].item(),
                    "top3": [[d, v] for v, d in zip(top.values.tolist(), top.indices.tolist())],
                }
            )
        titles = [f"{Path(n).name[:12]}: {r['prediction']}" for n, r in zip(names, results)]
        grid = plots.save(
            plots.digit_grid(np.stack(digits), titles, [False] * len(digits)), out_dir / "predictions.png"
        )
    else:
        grid = None
    return {"grid": grid, "predictions": results, "failed": failed}


def show(png: Path) -> None:
    """Open the saved picture in a window when there is a display to open it on."""
    if sys.platform == "linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        log.warning("show=true: no display here; the picture is in %s", png)
        return
    import matplotlib.pyplot as plt

    try:
        plt.switch_backend(plt.rcParamsDefault["backend"])
        plt.imshow(plt.imread(png))
        plt.axis("off")
        plt.show()
    except Exception as err:  # a display that a GUI backend cannot use: the file is still there
        log.warning("show=true: cannot open a window (%s); the picture is in %s", err, png)


def predict(cfg: DictConfig, out_dir: Path) -> dict:
    """Load the checkpoint, predict test digits or the given images, write predictions.json."""
    from mnist_lab.atomic import write_json_atomic
    from mnist_lab.checkpoints.load import load_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(cfg.ckpt_path, cfg.outputs_dir, trust=cfg.get("trust") or ())
    print(f"checkpoint: {loaded.path} ({loaded.name}, trained on {loaded.dataset})")
    images = [cfg.images] if isinstance(cfg.images, str) else list(cfg.images or [])  # images=one.png
    result = predict_files(loaded, images, out_dir) if images else predict_test_digits(loaded, cfg, out_dir)
    if result["grid"] is not None:
        print(f"picture: {result['grid']}")
        if cfg.show:
            show(result["grid"])
    write_json_atomic(
        out_dir / "predictions.json",
        {"checkpoint": str(loaded.path), **{k: str(v) if isinstance(v, Path) else v for k, v in result.items()}},
    )
    if result.get("failed"):
        raise UserError(
            f"{len(result['failed'])} of {len(images)} images could not be used: " + ", ".join(result["failed"])
        )
    return result


def main() -> None:
    """`python -m mnist_lab.predict [overrides]`."""
    run_command("predict", lambda cfg: predict(cfg, run_folder()))


if __name__ == "__main__":
    main()
