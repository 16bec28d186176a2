"""Writes that a kill cannot leave half done: checkpoints and metrics.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from helpers import QUIET, TESTS, wait_for

HOOKED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # for hooked_run


# The smallest real run: softmax regression, one step per epoch, no test, no TensorBoard.
TINY = [
    "model=softmax",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "callbacks.accuracy_stop=null",
    *QUIET,
]


def ckpt_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.ckpt")]


@pytest.mark.parametrize(
    ("file", "skip"),
    [
        pytest.param("last.ckpt", 1, id="while-overwriting-last.ckpt"),
        pytest.param("metrics.json", 0, id="while-writing-metrics.json"),
    ],
)
def test_sigkill_inside_a_write_never_leaves_a_broken_checkpoint_or_metrics_file(tmp_path, children, file, skip):
    # tests/hooked_run.py stops the chosen write halfway (its first half on disk) for a minute:
    # the kill lands inside it every time. last.ckpt is killed while replacing the first epoch's.
    run, marker = tmp_path / "run", tmp_path / "writing"
    child = children(
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        module="hooked_run",
        env={**HOOKED, "HOOK_SLOW_WRITE": file, "HOOK_SLOW_WRITE_SKIP": str(skip), "HOOK_MARKER": str(marker)},
    )
    wait_for(marker.exists, alive=child)
    assert Path(marker.read_text()).parent in (run, run / "checkpoints")  # mnist_lab's own write, half done
    child.kill()

    checked = ckpt_files(run)
    for path in checked:
        checkpoint = torch.load(path, weights_only=True)
        assert "state_dict" in checkpoint and checkpoint["hyper_parameters"]["net"]
    if file == "last.ckpt":
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0  # the earlier one, whole
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    assert checked
