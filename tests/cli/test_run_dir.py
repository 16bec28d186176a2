"""Run folders: a command that fails before training leaves none."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import one_error_line, run_cli, run_process


def test_a_command_that_fails_before_training_leaves_no_folder(tmp_path):
    for args in (
        ["trainer.max_epochs=0"],
        ["data=fashion_mnist", f"data.root={tmp_path / 'none'}", "data.download=false"],
    ):
        assert run_cli(*args, cwd=tmp_path).returncode == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "none").exists()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`, with its contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def earlier_run(folder: Path) -> Path:
    """A folder that looks like a finished run: config, metrics and a checkpoint."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / "metrics.json").write_text('{"test/acc": 0.99}')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("module", ["mnist_lab", "mnist_lab.predict"])
def test_a_folder_that_holds_a_run_is_never_reused_without_resume(tmp_path, module):
    earlier = earlier_run(tmp_path / "earlier")
    before = snapshot(tmp_path)
    result = run_cli(
        "model=softmax" if module == "mnist_lab" else "n=1", f"hydra.run.dir={earlier}", module=module, cwd=tmp_path
    )
    assert result.returncode == 1
    error = one_error_line(result)
    assert error.startswith(f"hydra.run.dir={earlier} already holds a run") and "new folder" in error
    assert ("resume=" in error) == (module == "mnist_lab")
    assert snapshot(tmp_path) == before


def test_commands_that_run_nothing_leave_no_folder(tmp_path):
    for args in (["--cfg", "job"], ["--help"], ["--cfg", "hydra", "--resolve"]):
        result = run_process(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write to: chmod for a normal user; for root, a read-only tmpfs."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(locked)]).returncode:
        pytest.skip("root without permission to mount a read-only file system")
    try:
        yield locked
    finally:
        subprocess.run(["umount", str(locked)])


def test_read_only_output_folder_is_one_error_line(read_only_folder):
    result = run_cli(f"hydra.run.dir={read_only_folder / 'run'}")
    assert result.returncode == 1
    error = one_error_line(result)
    assert str(read_only_folder / "run") in error and "hydra.run.dir=" in error
    assert list(read_only_folder.iterdir()) == []
