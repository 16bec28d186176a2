"""A full disk (or a full quota), recognised however deep in an error's chain it lies, said in one
sentence that names the file and the space left. Standard library only: cheap to import."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_lab.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT)
# torch's C++ writers (torch.save or torch.jit.save to a path) report a failed write with these
# words and without the OSError behind it: there only the file system itself can say it is full.
TORCH_WRITE_FAILED = ("inline_container", "iostream error", "file write failed", "PytorchStreamWriter failed")
NEARLY_FULL = 1 << 20  # bytes: less than this free when such a write failed counts as a full disk


class DiskFullError(UserError):
    """A file could not be written because its file system (or the user's quota) is full."""

    def __init__(self, path: str | Path, free: int | None) -> None:
        self.path, self.free = Path(path), free
        space = f"{human_bytes(free)} free there" if free is not None else "its free space unknown"
        super().__init__(f"the disk is full: cannot write {self.path} ({space})")


def human_bytes(size: int) -> str:
    """`0 B`, `12.3 kB`, `4.1 MB`, `2.0 GB`: a size as people read it."""
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def free_bytes(path: str | Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system that holds `path`."""
    for folder in (Path(path), *Path(path).absolute().parents):
        try:
            stat = os.statvfs(folder)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return None


def chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then every exception it was raised from or while handling (`__cause__`, `__context__`)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def full_disk_os_error(err: BaseException) -> OSError | None:
    """The OSError with ENOSPC or EDQUOT in `err`'s chain, if there is one."""
    return next((e for e in chain(err) if isinstance(e, OSError) and e.errno in FULL), None)


def file_being_written(err: OSError) -> str | None:
    """The file an OSError that names none (a failed flush or close) was writing: the innermost open
    file among the local variables of the frames it was raised through."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            if not isinstance(value, io.IOBase):
                continue
            for attr in ("path", "name"):  # fsspec's local files keep the path; built-in files the name
                try:
                    name = getattr(value, attr, None)
                except Exception:  # noqa: BLE001 - a file object that cannot say: try the next one
                    name = None
                if isinstance(name, str) and name:
                    return os.path.abspath(name)
    return None


def is_disk_full(err: BaseException, path: str | Path | None = None) -> bool:
    """Whether `err` (raised while writing `path`) comes from a full disk or quota: an OSError saying
    so anywhere in its chain, or torch's RuntimeError of a failed write while `path`'s file system
    is (nearly) full."""
    if full_disk_os_error(err) is not None:
        return True
    if path is None or not any(
        isinstance(e, RuntimeError) and any(words in str(e) for words in TORCH_WRITE_FAILED) for e in chain(err)
    ):
        return False
    free = free_bytes(Path(path).parent)
    return free is not None and free < NEARLY_FULL


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an error of a full disk while writing `path` into DiskFullError naming `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if is_disk_full(err, path):
            raise DiskFullError(path, None) from err
        raise


def disk_full_error(err: BaseException, folder: str | Path) -> DiskFullError | None:
    """`err` as a DiskFullError, with the space free now (after what failed was cleaned up): the one
    in its chain, or one for an OSError of a full disk met while writing in `folder` (a logger's file,
    which names no file when it fails on flush). None when the disk is not full."""
    known = next((e for e in chain(err) if isinstance(e, DiskFullError)), None)
    if known is not None:
        return DiskFullError(known.path, free_bytes(known.path.parent))
    errors = [e for e in chain(err) if isinstance(e, OSError) and e.errno in FULL]
    if not errors:
        return None
    names = (e.filename or e.filename2 or file_being_written(e) for e in errors)
    name = next((str(n) for n in names if n), None)
    if name is None:
        return DiskFullError(f"a file in {folder}", free_bytes(folder))
    return DiskFullError(name, free_bytes(Path(name).parent))
