"""What every entry point shares: where the configs are, quiet logs, and one-line user errors."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lab import hardware  # noqa: F401  registers ${mnist_lab.fast_precision:} for the presets
from mnist_lab.errors import Interrupted, UserError
from mnist_lab.overrides import check_overrides
from mnist_lab.run_dir import (  # also registers the resolver the configs' run folders use
    check_new_run_dir,
    discard_if_unused,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> str:
    """The folder holding the Hydra configs: conf/ in a checkout, mnist_lab/conf in a wheel."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ with train.yaml beside {_PACKAGE_DIR}; reinstall mnist_lab")


def check_writable(argv: list[str], default: str = "outputs") -> None:
    """Refuse to start when the run folder cannot be written (before Hydra tries and fails)."""
    target = default
    for arg in argv[1:]:
        if arg.startswith(("hydra.run.dir=", "hydra.sweep.dir=")):
            target = arg.split("=", 1)[1]
    if "${" in target:
        return
    folder = Path(target).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise UserError(
            f"cannot write the run folder {folder}: {existing} is not writable; run from a "
            "writable folder or set hydra.run.dir=<a writable folder>"
        )


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡")


def setup_logging() -> None:
    """Send Lightning's messages through Hydra's handlers (console and the run's log file)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropTips())  # Lightning's advertisements for its cloud services
    # TensorBoard's graph export traces the model with torch.jit, which torch now flags as deprecated.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def user_message(err: Exception) -> str | None:
    """One line for an error the user caused and can fix; None for anything else (a bug)."""
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, InstantiationException):  # a constructor refused a config value
        return f"{err.__cause__ or err}; fix that override"
    # Imported here, so that reading the configs (config_dir) does not import Lightning.
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, MisconfigurationException):  # Lightning's own words on Trainer settings
        return f"{err}; fix the trainer.* override"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        return (
            f"cannot write {err.filename or 'a file'}: {err.strerror}; free some space or choose a "
            "writable folder with hydra.run.dir=<folder>"
        )
    return None


def entry_point(task: F) -> F:
    """Wrap a Hydra task: set up logging; turn user errors into one logged line and exit code 1
    (HYDRA_FULL_ERROR=1 shows the traceback instead), and an interrupt into the resume command.
    In a multirun a failed job is logged and left to Hydra, so that the other jobs go on."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return task(*args, **kwargs)
        except Interrupted as stop:
            log.warning(
                "training interrupted by %s; the run keeps its last full epoch; resume with: "
                "python -m mnist_lab resume=%s",
                stop.signal_name,
                HydraConfig.get().runtime.output_dir,
            )
            sys.exit(128 + stop.signum)
        except Exception as err:
            message = user_message(err)
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                # Log it in the job's own log (the sweep summary quotes it) and let Hydra mark the
                # job failed: the sweep's other jobs still run, and the sweep exits non-zero.
                log.error(message or f"{type(err).__name__}: {err}")
                raise
            if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            log.error(message)
            discard_if_unused(HydraConfig.get().runtime.output_dir)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def refuse_before_hydra(check: Callable[[list[str]], Any]) -> None:
    """Run a check of the command line before Hydra writes anything; a UserError exits with one line."""
    try:
        check(sys.argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def hydra_main(config_name: str, task: Callable[[DictConfig, Path], Any]) -> Callable[[], Any]:
    """A console entry point that composes `conf/<config_name>.yaml` with the command line and runs
    `task(cfg, run folder)` inside `entry_point`, in a folder no earlier run has used."""

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    @entry_point
    def main(cfg: DictConfig) -> Any:
        return task(cfg, Path(HydraConfig.get().runtime.output_dir))

    def run() -> Any:
        command = f"python -m mnist_lab.{config_name}"
        refuse_before_hydra(lambda argv: check_overrides(config_dir(), config_name, argv, command))
        refuse_before_hydra(check_new_run_dir)
        return main()

    return run
