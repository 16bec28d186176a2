"""`${mnist_lab.new_dir:<folder>}`: a run folder no two runs share, also when they start in the same second."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_lab.registry import NEW_DIR as RESOLVER

from helpers import QUIET, TESTS

HOOKED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # for hooked_run

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


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


FROZEN = {**HOOKED, "HOOK_NOW": "2001-02-03T04:05:06"}  # every run believes it started then


SAME_SECOND = Path("outputs", "2001-02-03")


def earlier_run(folder: Path) -> Path:
    """A folder that looks like a finished run: config, metrics and a checkpoint."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / "metrics.json").write_text('{"test/acc": 0.99}')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    return folder


def yaml_seed(folder: Path) -> int:
    """The seed a run folder's saved config holds."""
    return next(
        int(line.split(":")[1])
        for line in (folder / ".hydra" / "config.yaml").read_text().splitlines()
        if line.startswith("seed:")
    )


def test_two_runs_started_in_the_same_second_get_a_folder_each(tmp_path, children):
    runs = [
        children(*TINY, "trainer.max_epochs=1", f"seed={seed}", module="hooked_run", cwd=tmp_path, env=FROZEN)
        for seed in (1, 2)
    ]
    assert [run.wait() for run in runs] == [0, 0], runs[0].output[-2000:] + runs[1].output[-2000:]
    folders = sorted((tmp_path / SAME_SECOND).iterdir())
    assert [f.name for f in folders] == ["04-05-06_softmax", "04-05-06_softmax-1"]
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert Path(metrics["best_ckpt"]).parent == folder / "checkpoints"
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
        assert (folder / ".hydra" / "config.yaml").is_file()
        assert f"run folder: {folder}" in (folder / "train.log").read_text()
    seeds = {yaml_seed(folder) for folder in folders}
    assert seeds == {1, 2}  # each process wrote only into its own folder


@pytest.mark.slow
def test_ddp_processes_share_the_folder_their_launcher_claimed(tmp_path, children):
    # Lightning starts rank 1 by rerunning the command line with hydra.run.dir=<rank 0's folder>.
    run = children(
        *TINY,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        module="hooked_run",
        cwd=tmp_path,
        env=FROZEN,
    )
    assert run.wait() == 0, run.output[-3000:]
    (folder,) = (tmp_path / SAME_SECOND).iterdir()
    assert folder.name == "04-05-06_softmax" and (folder / "train_ddp_process_1.log").is_file()
    assert (folder / "metrics.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()


def test_the_run_folder_resolver_claims_the_first_free_name_once(tmp_path):
    earlier_run(tmp_path / "run")
    (tmp_path / "run-1").mkdir()  # empty, but still somebody else's
    cfg = OmegaConf.create({"dir": f"${{{RESOLVER}:{tmp_path / 'run'}}}"})
    assert cfg.dir == str(tmp_path / "run-2") and (tmp_path / "run-2").is_dir()
    assert cfg.dir == str(tmp_path / "run-2")  # resolved again: the same folder, not run-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run-1", "run-2"]
