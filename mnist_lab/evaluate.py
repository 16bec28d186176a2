"""`python -m mnist_lab.evaluate`: a checkpoint's loss, accuracy, per-class scores and mistakes."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from mnist_lab import plots
from mnist_lab.atomic import write_json_atomic
from mnist_lab.checkpoints import load_checkpoint
from mnist_lab.cli import hydra_main
from mnist_lab.inference import datamodule_for, probabilities


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Test the checkpoint on the official test set as training does; write evaluation.json and two PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(cfg.ckpt_path, cfg.outputs_dir, trust=cfg.get("trust") or ())
    datamodule = datamodule_for(loaded, cfg.data)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # no device banner
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    # The test phase's own metrics: the numbers a training run's test/acc and test/loss come from.
    (scores,) = trainer.test(loaded.model, datamodule=datamodule, verbose=False)
    matrix = loaded.model.test_confusion_matrix  # rows: labels, columns: predictions
    correct = matrix.diag().double()
    precision, recall = correct / matrix.sum(0).clamp(min=1), correct / matrix.sum(1).clamp(min=1)
    report = {
        "checkpoint": str(loaded.path),
        "dataset": loaded.dataset,
        "images": int(matrix.sum()),
        "test/loss": scores["test/loss"],
        "test/acc": scores["test/acc"],
        "per_class": {
            str(d): {"precision": precision[d].item(), "recall": recall[d].item(), "support": int(matrix[d].sum())}
            for d in range(len(matrix))
        },
        "confusion_matrix": matrix.tolist(),
    }

    pixels, labels = datamodule.data_test.tensors
    confidence, predicted = probabilities(loaded.model, pixels).max(dim=-1)
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
    print(f"test/loss {report['test/loss']:.4f}   test/acc {report['test/acc']:.4f}   ({report['images']:,} images)")
    print(f"{'digit':>5} {'precision':>9} {'recall':>6} {'support':>7}")
    for digit, row in report["per_class"].items():
        print(f"{digit:>5} {row['precision']:>9.4f} {row['recall']:>6.4f} {row['support']:>7}")
    print(f"wrote {out_dir / 'evaluation.json'}, confusion_matrix.png, mistakes.png")
    return report


main = hydra_main("evaluate", evaluate)

if __name__ == "__main__":
    main()
