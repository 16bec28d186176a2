"""Run folders that no two runs share: `${mnist_lab.new_dir:<folder>}` in a config claims a new one.

Two runs started in the same second name the same `<date>/<time>_<model>` folder; the resolver
creates the first of `<folder>`, `<folder>-1`, `<folder>-2`, ... that does not exist yet, with one
`mkdir` that fails if another process got there first. The entry point registers the resolver
(mnist_lab.cli.command.register).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
from pathlib import Path

from mnist_lab.cli.command_line import CommandLine
from mnist_lab.errors import UserError

RESOLVER = "mnist_lab.new_dir"
GROUP_RESOLVER = "mnist_lab.sweep_group"
RUN_MARKERS = (".hydra", "metrics.json", "checkpoints")  # what every run leaves in its folder

_claimed: dict[str, str] = {}
_new_explicit: list[str] = []  # hydra.run.dir folders that did not exist before this command


def _drop_if_empty(folders: list[str]) -> None:
    for folder in folders:
        try:
            os.rmdir(folder)  # fails, as it should, once the run has written anything there
        except OSError:
            return


def new_dir(folder: str) -> str:
    """Create and return the first of `folder`, `folder-1`, `folder-2`, ... that did not exist;
    the same answer for the same `folder` for the rest of this process."""
    if folder not in _claimed:
        parent = Path(folder).absolute().parent
        created = [p for p in (parent, *parent.parents) if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count():
            candidate = folder if n == 0 else f"{folder}-{n}"
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            _claimed[folder] = candidate
            # A command that resolved the folder but ran nothing (`--cfg hydra --resolve`) leaves none.
            atexit.register(_drop_if_empty, [os.path.abspath(candidate), *map(str, created)])
            break
    return _claimed[folder]


def sweep_group(mode: object, sweep_dir: str) -> str | None:
    """`${mnist_lab.sweep_group:${hydra:mode},${hydra:sweep.dir}}`: the sweep's folder, which names
    the group its jobs share in an experiment tracker; None for a single run."""
    return str(sweep_dir) if str(mode).endswith("MULTIRUN") else None


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
    """Remove the run folder this command made when it failed before training wrote anything
    (no checkpoints, no metrics.json): a typo or missing data leaves nothing behind."""
    folder = os.path.abspath(folder)
    if folder not in {os.path.abspath(f) for f in _claimed.values()} | set(_new_explicit):
        return  # an earlier run's folder (resume) or one that existed before
    if any(os.path.exists(os.path.join(folder, marker)) for marker in ("metrics.json", "checkpoints")):
        return
    shutil.rmtree(folder, ignore_errors=True)
    parent, cwd = Path(folder).parent, Path.cwd().absolute()
    while cwd in parent.parents and _exists(parent) and not any(parent.iterdir()):
        parent.rmdir()  # the date folder (and outputs/) when this run was their only one
        parent = parent.parent
