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


PROGRESS_ABOVE = 300  # more images than this: a progress bar, and a count per digit instead of a line each


def has_pattern(entry: str) -> bool:
    """Whether `images=` names a glob pattern rather than a file (a file whose name holds `*` is a file)."""
    return any(c in entry for c in "*?[") and not Path(entry).exists()


def expand_images(entries: list[str]) -> tuple[list[str], list[str]]:
    """The image files that `images=` names: files as given, a folder's image files and a pattern's, each
    sorted by name; and what a folder or pattern holds besides (other files, subfolders), to skip."""
    import glob

    from mnist_lab.data.images import IMAGE_SUFFIXES

    images, skipped = [], []
    for entry in entries:
        if has_pattern(entry):
            found = sorted(glob.glob(entry, recursive=True))
            if not found:
                raise UserError(f"images={entry} matches no file; check the pattern (quote it in the shell)")
        elif Path(entry).is_dir():
            found = sorted(str(p) for p in Path(entry).iterdir())
        else:
            images.append(entry)  # a file as named: read it, or say why not
            continue
        takes = [f for f in found if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if not takes:
            kinds = ", ".join(IMAGE_SUFFIXES)
            raise UserError(f"images={entry} holds no image file ({kinds}); give a folder or pattern of images")
        images += takes
        skipped += [f + ("/" if Path(f).is_dir() else "") for f in found if f not in takes]
    return images, skipped


def read_digits(paths: list[str]) -> tuple[list, list[str], list[str]]:
    """Each readable image as an MNIST digit, with its name; the unreadable ones are logged and listed."""
    from mnist_lab.data.segment import load_digit

    digits, names, failed = [], [], []
    for path in paths:
        try:
            digits.append(load_digit(path))
            names.append(path)
        except UserError as err:
            log.error(str(err))
            failed.append(path)
    return digits, names, failed


def predict_files(loaded: LoadedModel, paths: list[str], out_dir: Path, batch_size: int, grid: int) -> dict:
    """Predict the user's own digit images, `batch_size` at a time; name the ones that cannot be used,
    keep going; the picture shows the first `grid`."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from mnist_lab import plots
    from mnist_lab.checkpoints.inference import probabilities

    many = len(paths) > PROGRESS_ABOVE
    results, failed, shown, shown_titles = [], [], [], []
    with tqdm(total=len(paths), unit="image", desc="predict", disable=not many, file=sys.stderr) as bar:
        for start in range(0, len(paths), batch_size):
            digits, names, unread = read_digits(paths[start : start + batch_size])
            failed += unread
            if digits:
                pixels = torch.from_numpy(np.stack(digits)).unsqueeze(1)
                for name, digit, p in zip(names, digits, probabilities(loaded.model, pixels, batch_size)):
                    top = p.topk(3)
                    results.append(
                        {
                            "image": name,
                            "prediction": top.indices[0].item(),
                            "top3": [[d, v] for v, d in zip(top.values.tolist(), top.indices.tolist())],
                        }
                    )
                    if len(shown) < grid:
                        shown.append(digit)
                        shown_titles.append(f"{Path(name).name[:12]}: {results[-1]['prediction']}")
            bar.update(len(names) + len(unread))
    if many:
        counts = np.bincount([r["prediction"] for r in results], minlength=10)
        print(f"predicted {len(results)} images; per digit: " + ", ".join(f"{d}: {n}" for d, n in enumerate(counts)))
    else:
        for r in results:
            top3 = ", ".join(f"{d} {v:.3f}" for d, v in r["top3"])
            print(f"{r['image']}: {r['prediction']}  (top 3: {top3})")
    grid_png = None
    if shown:
        figure = plots.digit_grid(np.stack(shown), shown_titles, [False] * len(shown))
        grid_png = plots.save(figure, out_dir / "predictions.png")
        if len(results) > len(shown):
            print(f"the picture shows the first {len(shown)} of {len(results)} images (grid=<n> for more)")
    return {"grid": grid_png, "predictions": results, "failed": failed}


def csv_rows(result: dict) -> list[dict]:
    """predictions.csv's rows: one per image (an unreadable one with its error), or per test digit."""
    rows = []
    for r in result["predictions"]:
        if "top3" not in r:  # a test digit: index, label, prediction, probability
            rows.append(r)
            continue
        (first, p1), (second, p2), (third, p3) = r["top3"]
        rows.append(
            {
                "image": r["image"],
                "prediction": first,
                "probability": round(p1, 6),
                "second": second,
                "second_probability": round(p2, 6),
                "third": third,
                "third_probability": round(p3, 6),
                "error": "",
            }
        )
    rows += [{"image": path, "error": "cannot be used (see the log)"} for path in result.get("failed", [])]
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows as CSV, atomically; the columns are the first row's."""
    import csv
    import io

    from mnist_lab.atomic import write_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["image"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda f: f.write(buffer.getvalue().encode()))


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
    entries = [cfg.images] if isinstance(cfg.images, str) else list(cfg.images or [])  # images=one.png
    images, skipped = expand_images(entries)
    if skipped:
        log.warning("skipped %d that are not image files: %s", len(skipped), ", ".join(skipped))
    if images:
        result = predict_files(loaded, images, out_dir, cfg.batch_size, cfg.grid)
    else:
        result = predict_test_digits(loaded, cfg, out_dir)
    if result["grid"] is not None:
        print(f"picture: {result['grid']}")
        if cfg.show:
            show(result["grid"])
    record = {"checkpoint": str(loaded.path), **{k: str(v) if isinstance(v, Path) else v for k, v in result.items()}}
    write_json_atomic(out_dir / "predictions.json", {**record, "skipped": skipped})
    write_csv(out_dir / "predictions.csv", csv_rows(result))
    print(f"predictions: {out_dir / 'predictions.csv'}")
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
