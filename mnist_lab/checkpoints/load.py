"""Load a checkpoint into the LightningModule that wrote it, running only code the user trusts."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object
from omegaconf import OmegaConf

from mnist_lab.checkpoints.paths import START, CheckpointError, resolve_checkpoint, resume_candidates
from mnist_lab.checkpoints.trust import RUN_RESOLVERS, RUN_TARGETS, TrustError, check_targets

CLASSIFIER = "mnist_lab.models.classifier.Classifier"  # what a checkpoint without a mnist_lab record holds
UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, AttributeError)


@dataclass
class LoadedModel:
    """A LightningModule rebuilt from a checkpoint, with what it was trained on."""

    model: L.LightningModule
    path: Path
    dataset: str  # what it was trained on, e.g. "MNIST"
    trained_with: str = ""  # the training command's overrides, e.g. "experiment=one_epoch"

    @property
    def how(self) -> str:
        """How it was trained, in words: "trained on MNIST with experiment=one_epoch"."""
        config = {"": "", "defaults": " with the default config"}.get(self.trained_with, f" with {self.trained_with}")
        return f"trained on {self.dataset}{config}"

    @property
    def name(self) -> str:
        """The network's class name (the module's, for a module without a `net`), e.g. "CNN"."""
        return type(getattr(self.model, "net", self.model)).__name__


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


def read_checkpoint(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, read with `weights_only=True`: tensors and plain containers, never code."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except UNREADABLE as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}); give ckpt_path= a .ckpt written by mnist_lab"
        ) from err
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no state_dict); give ckpt_path= a checkpoint from a mnist_lab run"
        )
    return checkpoint


def load_checkpoint(
    spec: str | Path, outputs_dir: str | Path = "outputs", map_location: str = "cpu", trust: Sequence[str] = ()
) -> LoadedModel:
    """Rebuild the LightningModule of a checkpoint from the checkpoint alone, on `map_location`.

    The module's class comes from the checkpoint's `mnist_lab` record (callbacks.provenance wrote it),
    its arguments from its hyperparameters. Only mnist_lab's modules and networks and torch's optimizers
    are built, plus what `trust` names (see trust.py)."""
    path = resolve_checkpoint(spec, outputs_dir)
    checkpoint = read_checkpoint(path, map_location)
    record = checkpoint.get("mnist_lab") if isinstance(checkpoint.get("mnist_lab"), dict) else {}
    hparams = checkpoint.get("hyper_parameters") or {}
    classifier_shaped = isinstance(hparams, dict) and {"net", "optimizer"} <= hparams.keys()
    module_name = record.get("module") or (CLASSIFIER if classifier_shaped else None)
    if not isinstance(hparams, dict) or not isinstance(module_name, str):
        raise CheckpointError(
            f"{path} is not a mnist_lab checkpoint (it names no LightningModule to rebuild); "
            "give ckpt_path= a checkpoint from a mnist_lab run"
        )
    check_targets({"_target_": module_name, **hparams}, trust, source=str(path))
    if "_instantiator" in hparams:  # Lightning's loader would call what it names
        raise TrustError(f"{path} names an instantiator, which mnist_lab never runs; give another ckpt_path=")
    module_class = get_object(module_name)
    if not (isinstance(module_class, type) and issubclass(module_class, L.LightningModule)):
        raise CheckpointError(f"{path} names {module_name}, which is not a LightningModule; give another ckpt_path=")
    try:  # Lightning's own loader, now that every _target_ the file names is trusted
        model = module_class.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except (InstantiationException, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: {module_class.__name__} cannot be rebuilt from its hyperparameters ({err.__cause__ or err}); "
            "its __init__ must call self.save_hyperparameters()"
        ) from err
    except RuntimeError as err:  # load_state_dict's refusal: say which keys, in one line
        built = module_class(**hparams)
        problem = misfit(built.state_dict(), checkpoint["state_dict"])
        if problem is None:
            raise
        raise CheckpointError(
            f"{path}: its weights do not fit its {type(getattr(built, 'net', built)).__name__} network ({problem}); "
            "give ckpt_path= a checkpoint written by mnist_lab, unmodified"
        ) from err
    model.eval()
    trained_with = record.get("trained_with") if isinstance(record.get("trained_with"), str) else ""
    return LoadedModel(model, path, record.get("dataset") or "MNIST", trained_with)


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from, and the newer ones that could not be read."""

    path: Path
    epochs_done: int  # full epochs the checkpoint holds (0: the state before the first)
    unreadable: list[tuple[Path, str]]  # (checkpoint, why), newest first

    @property
    def fallback(self) -> str | None:
        """One line for a resume that skips unreadable checkpoints: which, and where it goes on from."""
        if not self.unreadable:
            return None
        skipped = ", ".join(f"{p.name} ({why})" for p, why in self.unreadable)
        at = f"after epoch {self.epochs_done}" if self.epochs_done else "before its first epoch"
        return (
            f"{skipped} cannot be read: resuming from {self.path.name}, the newest readable checkpoint "
            f"in {self.path.parent} ({at})"
        )


def resume_from(run: Path, trust: Sequence[str] = ()) -> ResumePoint | None:
    """The newest readable checkpoint of a run folder to resume from, after checking that the
    folder's config and that checkpoint name only trusted code (newest_readable says the rest)."""
    check_run_config(run, trust)
    return newest_readable(run, trust)


def newest_readable(run: Path, trust: Sequence[str] | None = None) -> ResumePoint | None:
    """The newest checkpoint of a run folder that holds a whole training state, in the order of
    checkpoints.paths.resume_candidates (checked to name only trusted code unless `trust` is None).
    None when the folder has no checkpoint; CheckpointError when it has only unreadable ones."""
    unreadable: list[tuple[Path, str]] = []
    for checkpoint in resume_candidates(run):
        try:
            contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except UNREADABLE as err:
            unreadable.append((checkpoint, type(err).__name__))
            continue
        if not isinstance(contents, dict) or not {"epoch", "optimizer_states"} <= contents.keys():
            unreadable.append((checkpoint, "weights only, no training state"))
            continue
        if trust is not None:
            check_targets(contents.get("hyper_parameters", {}), trust, source=str(checkpoint))
        # Saved at an epoch's end, `epoch` is that epoch's index; start.ckpt is the state before any.
        return ResumePoint(checkpoint, 0 if checkpoint.name == START else contents["epoch"] + 1, unreadable)
    if not unreadable:
        return None
    raise CheckpointError(
        f"no checkpoint in {run / 'checkpoints'} can be read ("
        + ", ".join(f"{p.name}: {why}" for p, why in unreadable)
        + "); start a new run instead"
    )


def check_run_config(run: Path, trust: Sequence[str] = ()) -> None:
    """Refuse to resume a run whose saved config names code that is not trusted (mnist_lab's,
    torch's optimizers, Lightning's trainer parts, torchvision's datasets, `trust`)."""
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
    check_targets(config, trust, source=str(config_file), trusted=RUN_TARGETS, resolvers=RUN_RESOLVERS)
