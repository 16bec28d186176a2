"""Files that are never half-written: write beside the target, flush to disk, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mnist_lab.disk import writing


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write` on a temporary file in `path`'s folder, fsync it, then rename it to `path`:
    a process killed at any moment leaves either the old file or the complete new one. A full disk
    raises DiskFullError naming `path` (torch's own error of it may not say so)."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with writing(path):  # judged before the partial file is removed, while the disk is still full
            os.fchmod(fd, 0o644)  # mkstemp makes files private; run outputs are not
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    write_atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))
