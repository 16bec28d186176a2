"""One writer per run folder: a training run, its resume, or a SLURM job's requeued task holds the
folder's lock (filelock's FileLock, an flock the kernel drops when its holder dies, so a lock left by
a killed run never blocks). The lock file stays; beside it `.lock.holder` says who holds it.

Only the process that launched the run locks it: DDP's other processes (started by Lightning, by
torchrun, or as SLURM tasks of rank > 0) write into the folder under their launcher's lock.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_lab.errors import UserError

LOCK = ".lock"
HOLDER = ".lock.holder"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")  # set > 0 in a run's other processes
OWN_JOB_WAIT_S = 60.0  # a requeued SLURM job waits this long for its own earlier task to let go


class FolderInUse(UserError):
    """Another live process writes into this run folder."""


def launches_its_run() -> bool:
    """Whether this process is the one that launched its run (rank 0 or no DDP at all)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def holder(folder: Path) -> dict:
    """Who holds `folder`'s lock, as its holder wrote it ({} when it cannot be read)."""
    try:
        said = json.loads((folder / HOLDER).read_text())
    except (OSError, ValueError):
        return {}
    return said if isinstance(said, dict) else {}


def describe(who: dict) -> str:
    """`process 123 on node1 (SLURM job 45), since 2026-12-04 01:40:03`, or what of it is known."""
    if not who:
        return "another process"
    job = f" (SLURM job {who['slurm_job']})" if who.get("slurm_job") else ""
    return f"process {who.get('pid', '?')} on {who.get('host', '?')}{job}, since {who.get('since', '?')}"


def own_job_holds_it(who: dict) -> bool:
    """Whether the holder is an earlier task of this very SLURM job (this one a requeue of it)."""
    job = os.environ.get("SLURM_JOB_ID")
    return bool(job) and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and who.get("slurm_job") == job


def refusal(folder: Path) -> FolderInUse:
    """The one line for a folder that another process writes."""
    return FolderInUse(
        f"the run folder {folder} is in use by {describe(holder(folder))}: one run writes a folder at a time; "
        f"wait for it to end (or stop it), then run the command again"
    )


@contextmanager
def one_writer(folder: str | Path) -> Iterator[None]:
    """Hold `folder`'s lock for the block (in the process that launched the run; the others share
    it); FolderInUse at once when a live process holds it, unless that is this SLURM job's own
    earlier task, which is waited for."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    if not launches_its_run():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not own_job_holds_it(holder(folder)):
            raise refusal(folder) from None
        try:
            lock.acquire(timeout=OWN_JOB_WAIT_S)
        except Timeout:
            raise refusal(folder) from None
    try:
        who = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "since": datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        (folder / HOLDER).write_text(json.dumps(who) + "\n")
        yield
    finally:
        (folder / HOLDER).unlink(missing_ok=True)
        lock.release()


def check_free(folder: str | Path) -> None:
    """FolderInUse now, before anything is written, when a live process holds `folder`'s lock."""
    from filelock import FileLock, Timeout

    if not (Path(folder) / LOCK).exists() or not launches_its_run():
        return
    lock = FileLock(str(Path(folder) / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not own_job_holds_it(holder(Path(folder))):
            raise refusal(Path(folder)) from None
        return
    lock.release()
