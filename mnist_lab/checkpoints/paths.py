"""Where a run keeps its checkpoints, and which one a command means: a .ckpt file, a run folder, or
`latest`. Paths only: cheap to import."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_lab.errors import UserError

LAST = "last.ckpt"  # the state after the latest full epoch (callbacks.last_checkpoint)
START = "start.ckpt"  # the state a fit started from, until its first last.ckpt (callbacks.interrupt)


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or not a mnist_lab model."""


def newest_run(outputs_dir: Path) -> Path:
    """The training run under `outputs_dir` whose checkpoint was written last."""
    checkpoints = list(outputs_dir.glob("**/checkpoints/*.ckpt")) if outputs_dir.is_dir() else []
    if not checkpoints:
        raise CheckpointError(
            f"ckpt_path=latest found no training run with checkpoints under {outputs_dir.resolve()}; "
            "train one first (python -m mnist_lab) or give ckpt_path=<run folder or .ckpt file>"
        )
    return max(checkpoints, key=lambda p: p.stat().st_mtime).parent.parent


def best_checkpoint(run_dir: Path) -> Path:
    """A run folder's best checkpoint: metrics.json's best_ckpt, else the non-last one, else last.ckpt."""
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        try:
            best = json.loads(metrics_file.read_text()).get("best_ckpt")
        except (json.JSONDecodeError, OSError):
            best = None
        if best and (run_dir / "checkpoints" / Path(best).name).is_file():
            return run_dir / "checkpoints" / Path(best).name  # the folder may have moved since
    candidates = sorted(
        (p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != START),
        key=lambda p: (p.name == LAST, p.name),
    )
    if not candidates:
        raise CheckpointError(f"no checkpoints in {run_dir / 'checkpoints'}; give ckpt_path=<a .ckpt file>")
    return candidates[0]


def resume_point(run_dir: Path) -> Path | None:
    """The checkpoint a run folder resumes from: its last full epoch (last.ckpt), else the state its
    first epoch started from (start.ckpt); None when it saved neither."""
    for name in (LAST, START):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def resume_candidates(run_dir: Path) -> list[Path]:
    """Every checkpoint a run folder could resume from, newest first: resume_point's choice, then the
    others (its best checkpoints hold a whole training state too) by the time they were written."""
    first = resume_point(run_dir)
    others = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p != first and p.is_file()]
    return ([first] if first is not None else []) + sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def resolve_checkpoint(spec: str | Path, outputs_dir: str | Path = "outputs") -> Path:
    """Turn `ckpt_path` (a .ckpt file, a run folder, or `latest`) into a checkpoint file."""
    if str(spec) == "latest":
        return best_checkpoint(newest_run(Path(outputs_dir)))
    path = Path(spec).expanduser()
    if path.is_dir():
        return best_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give ckpt_path=<.ckpt file, run folder or latest>")
    return path
