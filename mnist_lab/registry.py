"""The configs' resolvers and the SLURM launcher, made known to OmegaConf and Hydra by `register()`,
which every entry point calls first (nothing is registered on import).

- `${mnist_lab.new_dir:<folder>}` claims a run folder that no two runs share: two runs started in the
  same second name the same `<date>/<time>_<model>` folder, so it creates the first of `<folder>`,
  `<folder>-1`, `<folder>-2`, ... that does not exist yet, with one `mkdir` that fails if another
  process got there first.
- `${mnist_lab.fast_precision:}` is the machine's fast arithmetic (mnist_lab.training.hardware).
- `${mnist_lab.slurm_gpus:<accelerator>,<devices>}` is what conf/hydra/launcher/slurm.yaml asks for.
- `${mnist_lab.sweep_group:${hydra:mode},${hydra:sweep.dir}}` names the group a sweep's jobs share in
  an experiment tracker (conf/logger/wandb.yaml).
"""

from __future__ import annotations

import atexit
import itertools
import os
from pathlib import Path

from omegaconf import OmegaConf

from mnist_lab.training.hardware import fast_precision

NEW_DIR = "mnist_lab.new_dir"
FAST_PRECISION = "mnist_lab.fast_precision"
SLURM_GPUS = "mnist_lab.slurm_gpus"
SWEEP_GROUP = "mnist_lab.sweep_group"

claimed: dict[str, str] = {}  # `${mnist_lab.new_dir:<folder>}` -> the folder this process created for it


def drop_if_empty(folders: list[str]) -> None:
    """Remove each folder in turn while it is empty (a command that resolved a run folder but ran nothing)."""
    for folder in folders:
        try:
            os.rmdir(folder)  # fails, as it should, once the run has written anything there
        except OSError:
            return


def new_dir(folder: str) -> str:
    """Create and return the first of `folder`, `folder-1`, `folder-2`, ... that did not exist;
    the same answer for the same `folder` for the rest of this process."""
    if folder not in claimed:
        parent = Path(folder).absolute().parent
        created = [p for p in (parent, *parent.parents) if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count():
            candidate = folder if n == 0 else f"{folder}-{n}"
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            claimed[folder] = candidate
            # A command that resolved the folder but ran nothing (`--cfg hydra --resolve`) leaves none.
            atexit.register(drop_if_empty, [os.path.abspath(candidate), *map(str, created)])
            break
    return claimed[folder]


def slurm_gpus(accelerator: str, devices: int) -> int | None:
    """GPUs per node that conf/hydra/launcher/slurm.yaml asks for: `devices` when training on GPUs,
    else None (no GPU request at all, which every partition accepts). The submitting machine cannot
    know what accelerator=auto will find on the nodes, so only gpu/cuda asks for GPUs."""
    return devices if str(accelerator).lower() in ("gpu", "cuda") else None


def sweep_group(mode: object, sweep_dir: str) -> str | None:
    """The sweep's folder, which names the group its jobs share in an experiment tracker; None for a single run."""
    return str(sweep_dir) if str(mode).endswith("MULTIRUN") else None


def register_resolvers() -> None:
    """Make the configs' resolvers known to OmegaConf (every process that composes or runs a config)."""
    OmegaConf.register_new_resolver(NEW_DIR, new_dir, replace=True)
    OmegaConf.register_new_resolver(FAST_PRECISION, fast_precision, replace=True)
    OmegaConf.register_new_resolver(SLURM_GPUS, slurm_gpus, replace=True)
    OmegaConf.register_new_resolver(SWEEP_GROUP, sweep_group, replace=True)


def register() -> None:
    """The resolvers, and hydra/launcher=slurm's launcher made known to Hydra: its plugin scan cannot list
    an editable install's hydra_plugins. Without the sweeps extra there is no launcher to register."""
    from hydra.core.plugins import Plugins

    register_resolvers()
    plugins = Plugins.instance()  # scan first: the scan re-runs the plugin modules it finds
    try:
        from hydra_plugins.mnist_lab_slurm import SlurmLauncher
    except ImportError:
        return
    plugins.register(SlurmLauncher)
