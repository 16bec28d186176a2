"""What every entry point shares: where the configs are, quiet logs, and one-line user errors."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from hydra.errors import InstantiationException

from mnist_lab.errors import UserError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> str:
    """The folder holding the Hydra configs: conf/ in a checkout, mnist_lab/conf in a wheel."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ with train.yaml beside {_PACKAGE_DIR}; reinstall mnist_lab")


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


def entry_point(task: F) -> F:
    """Wrap a Hydra task: set up logging, and turn user errors into one logged line and exit code 1."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return task(*args, **kwargs)
        except (UserError, InstantiationException) as err:
            log.error(str(err))
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
