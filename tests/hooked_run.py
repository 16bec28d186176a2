"""`python -m hooked_run [args]` is `python -m mnist_lab [args]` with test-only hooks that make rare
moments happen on purpose, chosen by environment variables (run it with tests/ on PYTHONPATH):

HOOK_NOW=2001-02-03T04:05:06  the clock Hydra's ${now:...} reads: runs started "in the same second".
HOOK_SLOW_WRITE=<text>         the first write into a file whose name holds <text> writes half its
                               bytes to disk, creates HOOK_MARKER (holding the file's path), then
                               waits a minute: a kill lands inside the write.
HOOK_SLOW_WRITE_SKIP=<n>       ... the first such write after n such files were written in full.

It imports nothing heavy itself, so that a command that fails before training fails as fast as
`python -m mnist_lab` does.
"""

from __future__ import annotations

import builtins
import datetime
import os
import time
from pathlib import Path
from typing import Any

PAUSE = 60.0  # seconds; the tests kill the process long before


class _HalfWrite:
    """A writable file whose first non-empty write stops halfway, flushed to disk, for a minute."""

    def __init__(self, file: Any, name: str) -> None:
        self._file, self._name = file, name

    def write(self, data: bytes | str) -> int:
        if len(data) > 1:
            self._file.write(data[: len(data) // 2])
            self._file.flush()
            os.fsync(self._file.fileno())
            Path(os.environ["HOOK_MARKER"]).write_text(self._name)
            time.sleep(PAUSE)
        return self._file.write(data)

    def __enter__(self) -> _HalfWrite:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _install_slow_write(text: str, skip: int) -> None:
    seen = 0
    real_open, real_fdopen = builtins.open, os.fdopen

    def wrap(file: Any, name: str, mode: str) -> Any:
        nonlocal seen
        if text not in Path(name).name or not set(mode) & set("wax+"):
            return file
        seen += 1
        return _HalfWrite(file, name) if seen > skip else file

    def hooked_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return wrap(real_open(file, mode, *args, **kwargs), str(file), mode)

    def hooked_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return wrap(real_fdopen(fd, mode, *args, **kwargs), os.readlink(f"/proc/self/fd/{fd}"), mode)

    builtins.open, os.fdopen = hooked_open, hooked_fdopen


def _install_clock(now: str) -> None:
    import hydra.core.utils

    frozen = datetime.datetime.fromisoformat(now)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:  # type: ignore[override]
            return frozen

    hydra.core.utils.datetime = Frozen  # what Hydra's ${now:} resolver calls


if __name__ == "__main__":
    if "HOOK_NOW" in os.environ:
        _install_clock(os.environ["HOOK_NOW"])
    if "HOOK_SLOW_WRITE" in os.environ:
        _install_slow_write(os.environ["HOOK_SLOW_WRITE"], int(os.environ.get("HOOK_SLOW_WRITE_SKIP", "0")))
    from mnist_lab.train import main

    main()
