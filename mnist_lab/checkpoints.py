"""Find and load mnist_lab checkpoints: a .ckpt file, a run folder, or `latest`."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from mnist_lab.classifier import Classifier
from mnist_lab.errors import UserError
from mnist_lab.trust import RUN_RESOLVERS, RUN_TARGETS, TrustError, check_targets

LAST = "last.ckpt"  # the state after the latest full epoch (callbacks.last_checkpoint)
START = "start.ckpt"  # the state a fit started from, until its first last.ckpt (callbacks.interrupt)


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or not a mnist_lab model."""


@dataclass
class LoadedModel:
    """A Classifier rebuilt from a checkpoint, with what it was trained on."""

    model: Classifier
    path: Path
    dataset: str  # what it was trained on, e.g. "MNIST"


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
    candidates = sorted(
        (p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != START),
        key=lambda p: (p.name == LAST, p.name),
    )
    if not candidates:
        raise CheckpointError(f"no checkpoints in {run_dir / 'checkpoints'}; give ckpt_path=<a .ckpt file>")
    return candidates[0]


def resume_point(run_dir: Path) -> Path | None:
    """The checkpoint a run folder resumes from: its last full epoch (last.ckpt), else the state its
    first epoch started from (start.ckpt); None when it saved neither."""
    for name in (LAST, START):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


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


def misfit(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> str | None:
    """How a state_dict does not fit a model's, e.g. "3 missing, 1 unexpected key(s) (first: net.fc.bias)"."""
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    shaped = sorted(
        k
        for k in expected.keys() & given.keys()
        if not isinstance(given[k], torch.Tensor) or given[k].shape != expected[k].shape
    )
    counts = [
        f"{len(keys)} {kind}"
        for keys, kind in ((missing, "missing"), (unexpected, "unexpected"), (shaped, "mis-shaped"))
        if keys
    ]
    return f"{', '.join(counts)} key(s) (first: {(missing + unexpected + shaped)[0]})" if counts else None


def load_checkpoint(
    spec: str | Path, outputs_dir: str | Path = "outputs", map_location: str = "cpu", trust: Sequence[str] = ()
) -> LoadedModel:
    """Rebuild the Classifier from a checkpoint alone, on `map_location` (CPU by default). Only
    mnist_lab's networks and torch's optimizers are built, plus what `trust` names (see trust.py)."""
    path = resolve_checkpoint(spec, outputs_dir)
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}); give ckpt_path= a .ckpt written by mnist_lab"
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(hparams, dict)
        or not {"net", "optimizer"} <= hparams.keys()
        or not isinstance(state, dict)
        or not all(isinstance(k, str) for k in state)
    ):
        raise CheckpointError(
            f"{path} is not a mnist_lab checkpoint (no Classifier hyperparameters); "
            "give ckpt_path= a checkpoint from a mnist_lab run"
        )
    check_targets(hparams, trust, source=str(path))
    try:
        model = Classifier(**hparams)
    except (InstantiationException, TypeError) as err:
        raise CheckpointError(
            f"{path}: its network cannot be built ({err.__cause__ or err}); "
            "give ckpt_path= a checkpoint from a mnist_lab run"
        ) from err
    model.on_load_checkpoint(checkpoint)  # what Lightning's own loader runs first: older checkpoints
    problem = misfit(model.state_dict(), checkpoint["state_dict"])
    if problem is not None:
        raise CheckpointError(
            f"{path}: its weights do not fit its {type(model.net).__name__} network ({problem}); "
            "give ckpt_path= a checkpoint written by mnist_lab, unmodified"
        )
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:  # anything misfit() did not foresee
        raise CheckpointError(
            f"{path}: its weights do not fit its {type(model.net).__name__} network "
            f"({str(err).splitlines()[0]}); give ckpt_path= a checkpoint written by mnist_lab, "
            "unmodified"
        ) from err
    model.to(map_location).eval()
    legacy = checkpoint.get("MNISTDataModule", {})  # where checkpoints before `dataset` kept it
    return LoadedModel(model, path, checkpoint.get("dataset") or legacy.get("dataset", "MNIST"))


def check_run_files(run: Path, checkpoint: Path, trust: Sequence[str] = ()) -> None:
    """Refuse to resume a run whose saved config or checkpoint names code that is not trusted
    (mnist_lab's, torch's optimizers, Lightning's trainer parts, torchvision's datasets, `trust`)."""
    config_file = run / ".hydra" / "config.yaml"
    try:
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    except Exception as err:  # noqa: BLE001 - whatever the parser met, the file is not a run's config
        raise CheckpointError(
            f"{config_file} is not a readable run config ({type(err).__name__}); "
            "give resume= the folder of a mnist_lab run"
        ) from err
    if not isinstance(config, dict) or {"hydra", "defaults"} & config.keys():
        raise TrustError(
            f"{config_file} has a hydra or defaults section, which no mnist_lab run saves and which "
            "would run code before any check; give resume= the folder of a mnist_lab run"
        )
    if "module" in config and "classifier" not in config:
        raise CheckpointError(
            f"{config_file} was written by an older mnist_lab (its config has module:, now classifier:); "
            "start a new run, or rename module: to classifier: and mnist_lab.io. to mnist_lab.atomic. in that file"
        )
    check_targets(config, trust, source=str(config_file), trusted=RUN_TARGETS, resolvers=RUN_RESOLVERS)
    try:
        hparams = torch.load(checkpoint, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        AttributeError,
    ) as err:
        raise CheckpointError(
            f"{checkpoint} is not a readable checkpoint ({type(err).__name__}); start a new run instead"
        ) from err
    check_targets(hparams, trust, source=str(checkpoint))
