"""Find and load mnist_lab checkpoints: a .ckpt file, a run folder, or `latest`."""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mnist_lab.classifier import Classifier
from mnist_lab.errors import UserError

DATA_STATE_KEY = "MNISTDataModule"  # where Lightning stores MNISTDataModule.state_dict()


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or not a mnist_lab model."""


@dataclass
class LoadedModel:
    """A Classifier rebuilt from a checkpoint, with what it was trained on."""

    model: Classifier
    path: Path
    dataset: str  # torchvision class name, e.g. "MNIST"
    mean: float   # input scaling used in training: (pixels in [0, 1] - mean) / std
    std: float

    def scale(self, pixels: torch.Tensor) -> torch.Tensor:
        """Scale images with pixels in [0, 1] as the model saw them in training."""
        return (pixels - self.mean) / self.std


def newest_run(outputs_dir: Path) -> Path:
    """The training run under `outputs_dir` whose checkpoint was written last."""
    checkpoints = list(outputs_dir.glob("**/checkpoints/*.ckpt")) if outputs_dir.is_dir() else []
    if not checkpoints:
        raise CheckpointError(
            f"ckpt_path=latest found no training run with checkpoints under {outputs_dir.resolve()}; "
            "train one first (python -m mnist_lab) or give ckpt_path=<run folder or .ckpt file>"
        )
    return max(checkpoints, key=lambda p: p.stat().st_mtime).parent.parent


def best_checkpoint(run_dir: Path) -> Path:
    """A run folder's best checkpoint: metrics.json's best_ckpt, else the non-last one, else last.ckpt."""
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        try:
            best = json.loads(metrics_file.read_text()).get("best_ckpt")
        except (json.JSONDecodeError, OSError):
            best = None
        if best and (run_dir / "checkpoints" / Path(best).name).is_file():
            return run_dir / "checkpoints" / Path(best).name  # the folder may have moved since
    candidates = sorted((p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "start.ckpt"),
                        key=lambda p: (p.name == "last.ckpt", p.name))
    if not candidates:
        raise CheckpointError(f"no checkpoints in {run_dir / 'checkpoints'}; give ckpt_path=<a .ckpt file>")
    return candidates[0]


def resolve_checkpoint(spec: str | Path, outputs_dir: str | Path = "outputs") -> Path:
    """Turn `ckpt_path` (a .ckpt file, a run folder, or `latest`) into a checkpoint file."""
    if str(spec) == "latest":
        return best_checkpoint(newest_run(Path(outputs_dir)))
    path = Path(spec).expanduser()
    if path.is_dir():
        return best_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give ckpt_path=<.ckpt file, run folder or latest>")
    return path


def load_checkpoint(spec: str | Path, outputs_dir: str | Path = "outputs", map_location: str = "cpu") -> LoadedModel:
    """Rebuild the Classifier from a checkpoint alone, on `map_location` (CPU by default)."""
    path = resolve_checkpoint(spec, outputs_dir)
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}); "
                              "give ckpt_path= a .ckpt written by mnist_lab") from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not {"net", "optimizer"} <= hparams.keys() or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a mnist_lab checkpoint (no Classifier hyperparameters); "
                              "give ckpt_path= a checkpoint from a mnist_lab run")
    model = Classifier(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(map_location).eval()
    data = checkpoint.get(DATA_STATE_KEY, {})
    return LoadedModel(model, path, data.get("dataset", "MNIST"), data.get("mean", 0.0), data.get("std", 1.0))
