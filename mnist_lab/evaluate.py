"""`python -m mnist_lab.evaluate`: a checkpoint's loss, accuracy, per-class scores and mistakes."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_precision,
    multiclass_recall,
)

from mnist_lab import plots
from mnist_lab.checkpoints import load_checkpoint
from mnist_lab.cli import hydra_main
from mnist_lab.inference import logits, test_images
from mnist_lab.io import write_json_atomic
from mnist_lab.nets import NUM_CLASSES


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Score the checkpoint on the official test set; write evaluation.json and two PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(cfg.ckpt_path, cfg.outputs_dir, trust=cfg.get("trust") or ())
    pixels, labels = test_images(loaded, cfg.data)
    scores = logits(loaded, pixels)
    probs = scores.softmax(dim=-1)
    confidence, predicted = probs.max(dim=-1)
    matrix = multiclass_confusion_matrix(scores, labels, NUM_CLASSES)
    precision = multiclass_precision(scores, labels, NUM_CLASSES, average=None)
    recall = multiclass_recall(scores, labels, NUM_CLASSES, average=None)
    report = {
        "checkpoint": str(loaded.path),
        "dataset": loaded.dataset,
        "images": len(labels),
        "test/loss": F.cross_entropy(scores, labels).item(),
        "test/acc": (predicted == labels).float().mean().item(),
        "per_class": {
            str(d): {"precision": precision[d].item(), "recall": recall[d].item(), "support": int((labels == d).sum())}
            for d in range(NUM_CLASSES)
        },
        "confusion_matrix": matrix.tolist(),
    }

    wrong = torch.nonzero(predicted != labels).flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][: cfg.mistakes]
    titles = [f"{labels[i]}/{predicted[i]} {confidence[i]:.2f}" for i in worst.tolist()]
    report["most_confident_mistakes"] = [
        {"index": i, "label": int(labels[i]), "prediction": int(predicted[i]), "probability": confidence[i].item()}
        for i in worst.tolist()
    ]
    plots.save(plots.confusion_matrix(matrix.numpy()), out_dir / "confusion_matrix.png")
    plots.save(plots.digit_grid(pixels[worst, 0].numpy(), titles, [True] * len(worst)), out_dir / "mistakes.png")
    write_json_atomic(out_dir / "evaluation.json", report)

    print(f"checkpoint: {loaded.path} ({type(loaded.model.net).__name__}, trained on {loaded.dataset})")
    print(f"test/loss {report['test/loss']:.4f}   test/acc {report['test/acc']:.4f}   ({len(labels):,} images)")
    print(f"{'digit':>5} {'precision':>9} {'recall':>6} {'support':>7}")
    for digit, row in report["per_class"].items():
        print(f"{digit:>5} {row['precision']:>9.4f} {row['recall']:>6.4f} {row['support']:>7}")
    print(f"wrote {out_dir / 'evaluation.json'}, confusion_matrix.png, mistakes.png")
    return report


main = hydra_main("evaluate", evaluate)

if __name__ == "__main__":
    main()
