"""Run folders: a new run never writes into an earlier one's, a folder that cannot be written is refused
before Hydra tries, and a command that failed before training leaves none behind. The folders
themselves are claimed by `${mnist_lab.new_dir:<folder>}` (mnist_lab.registry).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mnist_lab import registry
from mnist_lab.cli.command_line import CommandLine
from mnist_lab.errors import UserError

RUN_MARKERS = (".hydra", "metrics.json", "checkpoints")  # what every run leaves in its folder

_new_explicit: list[str] = []  # hydra.run.dir folders that did not exist before this command


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder we may not look into is not one we could write into either
        return False


def check_new_run_dir(line: CommandLine, resumable: bool = False) -> None:
    """Refuse `hydra.run.dir=<folder>` when that folder already holds a run: a new run never
    writes into an earlier one's folder (`resume=` is the way back into a training run)."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or line.multirun:
        return  # a DDP process that Lightning started for its run, or a sweep (its own folders)
    target = line.value("hydra.run.dir")
    if not isinstance(target, str) or not target or "${" in target:
        return
    folder = Path(target).expanduser()
    if not _exists(folder):
        _new_explicit.append(os.path.abspath(folder))
    found = next((marker for marker in RUN_MARKERS if _exists(folder / marker)), None)
    if found is not None:
        back = f", or continue that run with resume={folder}" if resumable else ""
        raise UserError(
            f"hydra.run.dir={folder} already holds a run (it has {found}); give a new folder "
            f"or leave hydra.run.dir out{back}"
        )


def check_writable(line: CommandLine, default: str = "outputs") -> None:
    """Refuse to start when the run folder cannot be written (before Hydra tries and fails)."""
    target = line.value("hydra.sweep.dir" if line.multirun else "hydra.run.dir") or default
    if not isinstance(target, str) or "${" in target:
        return
    folder = Path(target).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise UserError(
            f"cannot write the run folder {folder}: {existing} is not writable; run from a "
            "writable folder or set hydra.run.dir=<a writable folder>"
        )


def discard_if_unused(folder: str | Path) -> None:
    """Remove the run folder this command made when it failed before writing any result (only Hydra's
    config, the log and run.json are there): a typo or missing data leaves nothing behind, while the
    predictions of the images that could be read, say, are kept."""
    folder = os.path.abspath(folder)
    if folder not in {os.path.abspath(f) for f in registry.claimed.values()} | set(_new_explicit):
        return  # an earlier run's folder (resume) or one that existed before
    bookkeeping = {".hydra", "run.json", ".lock", ".lock.holder"}
    if any(p.name not in bookkeeping and p.suffix != ".log" for p in Path(folder).iterdir() if _exists(p)):
        return
    shutil.rmtree(folder, ignore_errors=True)
    parent, cwd = Path(folder).parent, Path.cwd().absolute()
    while cwd in parent.parents and _exists(parent) and not any(parent.iterdir()):
        parent.rmdir()  # the date folder (and outputs/) when this run was their only one
        parent = parent.parent
