"""`python -m mnist_lab.evaluate`: a checkpoint's loss, accuracy, per-class scores and mistakes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mnist_lab.cli.command import run_command, run_folder


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Score the checkpoint's predictions on the official test set; write evaluation.json and two PNGs."""
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    from mnist_lab import plots
    from mnist_lab.atomic import write_json_atomic
    from mnist_lab.checkpoints.inference import datamodule_for, probabilities
    from mnist_lab.checkpoints.load import load_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(cfg.ckpt_path, cfg.outputs_dir, trust=cfg.get("trust") or ())
    datamodule = datamodule_for(loaded, cfg.data)
    pixels, labels = datamodule.data_test.tensors
    # Everything from the module's predict_step, the one thing any checkpoint's module is asked for.
    probs = probabilities(loaded.model, pixels)
    confidence, predicted = probs.max(dim=-1)
    classes = probs.shape[1]
    matrix = multiclass_confusion_matrix(predicted, labels, classes)  # rows: labels, columns: predictions
    correct = matrix.diag().double()
    precision, recall = correct / matrix.sum(0).clamp(min=1), correct / matrix.sum(1).clamp(min=1)
    true_class = probs.double().gather(1, labels[:, None]).clamp(min=torch.finfo(torch.float64).tiny)
    report = {
        "checkpoint": str(loaded.path),
        "dataset": loaded.dataset,
        "images": int(matrix.sum()),
        "test/loss": -true_class.log().mean().item(),  # cross-entropy, from the probabilities
        "test/acc": (predicted == labels).double().mean().item(),
        "per_class": {
            str(d): {"precision": precision[d].item(), "recall": recall[d].item(), "support": int(matrix[d].sum())}
            for d in range(classes)
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

    print(f"checkpoint: {loaded.path} ({loaded.name}, {loaded.how})")
    print(f"test/loss {report['test/loss']:.4f}   test/acc {report['test/acc']:.4f}   ({report['images']:,} images)")
    print(f"{'digit':>5} {'precision':>9} {'recall':>6} {'support':>7}")
    for digit, row in report["per_class"].items():
        print(f"{digit:>5} {row['precision']:>9.4f} {row['recall']:>6.4f} {row['support']:>7}")
    print(f"wrote {out_dir / 'evaluation.json'}, confusion_matrix.png, mistakes.png")
    return report


def main() -> None:
    """`python -m mnist_lab.evaluate [overrides]`."""
    run_command("evaluate", lambda cfg: evaluate(cfg, run_folder()))


if __name__ == "__main__":
    main()
