"""Run folders: a command that fails before training leaves none."""

from __future__ import annotations

from helpers import run_cli


def test_a_command_that_fails_before_training_leaves_no_folder(tmp_path):
    for args in (
        ["trainer.max_epochs=0"],
        ["data=fashion_mnist", f"data.root={tmp_path / 'none'}", "data.download=false"],
    ):
        assert run_cli(*args, cwd=tmp_path).returncode == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "none").exists()
