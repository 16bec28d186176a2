"""Config values checked before anything is built or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mnist_lab.errors import ConfigError
from mnist_lab.train import instantiate_all
from mnist_lab.training.checks import check_config, check_devices

from helpers import TESTS, one_error_line, run_process

HOOKED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # for hooked_run


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`, with its contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


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


def test_a_bad_config_value_is_one_line_before_anything_is_written(tmp_path):
    # An earlier run holds the very folder this run's clock names (outputs/<date>/<time>_mlp).
    # Every range check is in test_a_value_out_of_range_is_refused_with_what_is_allowed; this is what a user types.
    earlier_run(tmp_path / SAME_SECOND / "04-05-06_mlp")
    before = snapshot(tmp_path)
    result = run_process("optimizer.lr=-1", module="hooked_run", cwd=tmp_path, env=FROZEN)
    assert result.returncode == 1
    error = one_error_line(result)
    assert error.endswith("optimizer.lr must be a number > 0, got -1; e.g. optimizer.lr=0.001")
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # the earlier run is untouched
    new = {Path(k) for k in after.keys() - before.keys()}
    assert len({p.parts[:3] for p in new}) <= 1, new  # at most the run's own folder, with its log
    assert not any(p.name == "metrics.json" or "checkpoints" in p.parts for p in new)


BAD_VALUES = {
    "optimizer.lr=-1": "optimizer.lr must be a number > 0",
    "optimizer.lr=0": "optimizer.lr must be a number > 0",
    "data.batch_size=0": "data.batch_size must be an integer >= 1",
    "callbacks.accuracy_stop.stopping_threshold=1.5": "stopping_threshold must lie in (0, 1]",
    "callbacks.accuracy_stop.stopping_threshold=0": "stopping_threshold must lie in (0, 1]",
    "trainer.max_epochs=0": "trainer.max_epochs must be an integer >= 1",
    "trainer.devices=64": "trainer.devices=64 but this machine has",
    "threads=0": "threads must be an integer >= 1",
    "model.net.activation=swish": "activation must be one of",
    "model.net.dropout=1.5": "model.net.dropout must lie in [0, 1)",
    "data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:200}": (
        "data.augment.degrees must lie in [0, 180)"
    ),
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_a_value_out_of_range_is_refused_with_what_is_allowed(compose_cfg, override):
    cfg = compose_cfg(override)
    with pytest.raises((ConfigError, InstantiationException)) as refused:
        check_config(cfg)  # the ranges train() checks first; the rest are checked as the parts are built
        check_devices(cfg)
        instantiate(cfg.data)
        instantiate(cfg.model)
        instantiate_all(cfg.callbacks)
    error = refused.value.__cause__ if isinstance(refused.value, InstantiationException) else refused.value
    assert BAD_VALUES[override] in str(error)
