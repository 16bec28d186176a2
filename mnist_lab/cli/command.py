"""The one entry path of every command: read the command line, check it, then let Hydra compose the
config and run the command's task, with user errors as one line."""

from __future__ import annotations

import errno
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lab import registry
from mnist_lab.cli import run_dir
from mnist_lab.cli.command_line import CommandLine, read_command_line
from mnist_lab.cli.help import render_help
from mnist_lab.cli.overrides import check_overrides
from mnist_lab.cli.run_record import typed, write_record
from mnist_lab.disk import DiskFullError, disk_full_error
from mnist_lab.errors import Interrupted, UserError

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def config_dir() -> str:
    """The folder holding the Hydra configs: conf/ in a checkout, mnist_lab/conf in a wheel."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ with train.yaml beside {PACKAGE_DIR}; reinstall mnist_lab")


class DropTips(logging.Filter):
    """Drop Lightning's advertisements for its cloud services."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡")


def setup_logging() -> None:
    """Send Lightning's messages through Hydra's handlers (console and the run's log file)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        handler.addFilter(DropTips())
    # A log file on a full disk must not print a traceback per line over the one-line error that
    # says so: the console still shows every line. (logging's documented setting for production.)
    logging.raiseExceptions = False
    # TensorBoard's graph export traces the model with torch.jit, which torch now flags as deprecated.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def user_message(err: Exception, folder: str | Path = ".") -> str | None:
    """One line for an error the user caused and can fix; None for anything else (a bug).
    `folder`: the run folder, where a full disk that names no file was met."""
    if isinstance(err, UserError) and not isinstance(err, DiskFullError):
        return str(err)
    full = disk_full_error(err, folder)  # wherever in the chain: torch and loggers wrap it
    if full is not None:
        return f"{full}; free some space, or write elsewhere with hydra.run.dir=<folder>, then run it again"
    if isinstance(err, InstantiationException):  # a constructor refused a config value
        return f"{err.__cause__ or err}; fix that override"
    if "lightning" in sys.modules:  # only a run that imported Lightning can meet its exceptions
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if isinstance(err, MisconfigurationException):  # Lightning's own words on Trainer settings
            return f"{err}; fix the trainer.* override"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EROFS):
        name = err.filename or "a file"
        return f"cannot write {name}: {err.strerror}; choose a writable folder with hydra.run.dir=<folder>"
    return None


class JobFailed(CompactHydraException):
    """A job of a multirun that failed for a reason the user can fix: Hydra ends the sweep with this
    one line instead of a traceback."""


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig, command_line: str = "") -> Any:
    """Run a command's task inside Hydra, with run.json recording what ran (`command_line`: as typed):
    user errors become one logged line and exit code 1 (HYDRA_FULL_ERROR=1 shows the traceback instead),
    an interrupt the command that resumes. In a multirun a failed job is logged and left to Hydra, so
    that the other jobs go on."""
    registry.register_resolvers()  # a job on a cluster node is a process of its own
    setup_logging()
    try:
        # Commands other than training predict in float32; training records the precision its trainer chose.
        write_record(HydraConfig.get().runtime.output_dir, command_line, None if "trainer" in cfg else "32-true")
        return task(cfg)
    except Interrupted as stop:
        log.warning(
            "training interrupted by %s; the run keeps its last full epoch; resume with: python -m mnist_lab resume=%s",
            stop.signal_name,
            HydraConfig.get().runtime.output_dir,
        )
        sys.exit(128 + stop.signum)
    except Exception as err:
        message = user_message(err, HydraConfig.get().runtime.output_dir)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Log it in the job's own log (the sweep summary quotes it) and let Hydra mark the job
            # failed: the sweep's other jobs still run, and the sweep exits non-zero.
            log.error(message or f"{type(err).__name__}: {err}")
            if message is None:
                raise
            job = Path(HydraConfig.get().runtime.output_dir).name
            raise JobFailed(f"error: job {job} of the sweep failed: {message}") from err
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error(message)
        run_dir.discard_if_unused(HydraConfig.get().runtime.output_dir)
        sys.exit(1)


def run_command(
    name: str,
    task: Callable[[DictConfig], Any],
    rewrite: Callable[[CommandLine], CommandLine] | None = None,
) -> Any:
    """`python -m mnist_lab[.name] [overrides]`: check the command line (after `rewrite`, e.g. resume=),
    then compose `conf/<name>.yaml` with it and run `task(cfg)` in a new run folder."""
    registry.register()
    line = read_command_line(sys.argv)
    command = "python -m mnist_lab" + ("" if name == "train" else f".{name}")
    command_line = typed(command, sys.argv)
    try:
        resuming = rewrite is not None and line.has("resume")
        if rewrite is not None:
            line = rewrite(line)
        check_overrides(config_dir(), name, line, command)
        if not resuming:  # resume= is the one way back into a run's folder
            run_dir.check_new_run_dir(line, resumable=name == "train")
        run_dir.check_writable(line)
        if {"--help", "-h"} & set(line.flags):
            print(render_help(config_dir(), name, line))
            sys.exit(0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.argv = line.argv()
    main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=name)(
        lambda cfg: run_task(task, cfg, command_line)
    )
    return main()


def run_folder() -> Path:
    """This command's run folder, which Hydra made."""
    return Path(HydraConfig.get().runtime.output_dir)
