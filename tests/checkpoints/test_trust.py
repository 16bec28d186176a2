"""Checkpoints and run folders from elsewhere: rebuilding a model runs only code that is trusted,
and a file that names anything else, or whose weights do not fit, is one error line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_lab.checkpoints.load import CheckpointError, load_checkpoint
from mnist_lab.checkpoints.trust import RUN_RESOLVERS, RUN_TARGETS, TrustError, check_targets
from mnist_lab.cli.command import config_dir

from helpers import QUIET, TESTS, one_error_line, run_cli

USER_CODE = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # user_nets
TINY = [
    "model=softmax",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "callbacks.accuracy_stop=null",
    *QUIET,
]
MAKEDIRS = "os.makedirs"

# How each command rebuilds the model of a run folder.
COMMANDS = {
    "predict": ("mnist_lab.predict", ["n=2"]),
    "evaluate": ("mnist_lab.evaluate", []),
    "export": ("mnist_lab.export", ["format=torchscript"]),
    "resume": ("mnist_lab", []),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder written by `python -m mnist_lab`: config, checkpoints, metrics.json."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = run_cli(*TINY, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return run


def copy_run(trained: Path, tmp_path: Path, change_checkpoint=None, change_config=None) -> Path:
    """A copy of the trained run folder, its checkpoints and saved config changed as given."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for path in (run / "checkpoints").glob("*.ckpt"):
        if change_checkpoint is not None:
            checkpoint = torch.load(path, weights_only=True)
            change_checkpoint(checkpoint)
            torch.save(checkpoint, path)
    if change_config is not None:
        config = OmegaConf.load(run / ".hydra" / "config.yaml")
        change_config(config)
        OmegaConf.save(config, run / ".hydra" / "config.yaml")
    return run


def planted(victim: Path) -> dict:
    """A config node that, if instantiated, creates the folder `victim`."""
    return {"_target_": MAKEDIRS, "name": str(victim)}


def command(name: str, run: Path, *extra: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    module, args = COMMANDS[name]
    where = f"resume={run}" if name == "resume" else f"ckpt_path={run}"
    return run_cli(where, *args, *extra, module=module, cwd=cwd, env=env)


# predict, evaluate and export share one loader: the optimizer case is left to `-m slow` for two of them.
ATTACKS = [
    *((name, "net") for name in COMMANDS),
    ("predict", "optimizer"),
    ("resume", "optimizer"),
    *(pytest.param(name, "optimizer", marks=pytest.mark.slow) for name in ("evaluate", "export")),
]


@pytest.mark.parametrize(("name", "key"), ATTACKS)
def test_a_checkpoint_naming_other_code_is_refused_before_anything_runs(trained, tmp_path, name, key):
    victim = tmp_path / "created_by_the_checkpoint"
    run = copy_run(trained, tmp_path, lambda c: c["hyper_parameters"].__setitem__(key, planted(victim)))
    error = one_error_line(command(name, run, cwd=tmp_path))
    assert not victim.exists()
    assert f"{key}._target_ names {MAKEDIRS}" in error and f"trust=[{MAKEDIRS}]" in error
    assert str(run / "checkpoints") in error


@pytest.mark.parametrize("key", ["net", "optimizer"])
def test_the_python_loader_refuses_it_too(trained, tmp_path, key):
    victim = tmp_path / "created_by_the_checkpoint"
    run = copy_run(trained, tmp_path, lambda c: c["hyper_parameters"].__setitem__(key, planted(victim)))
    with pytest.raises(TrustError, match=rf"{key}\._target_ names {MAKEDIRS}.*trust=\[{MAKEDIRS}\]"):
        load_checkpoint(run)
    assert not victim.exists()


def test_a_checkpoint_naming_an_instantiator_is_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path, lambda c: c["hyper_parameters"].__setitem__("_instantiator", "os.makedirs"))
    with pytest.raises(TrustError, match="names an instantiator"):
        load_checkpoint(run)


SNEAKED = {  # nets whose building would create the folder `victim`, each hiding the call otherwise
    "through-a-trusted-module": lambda victim: {
        "_target_": "mnist_lab.models.nets.torch.os.makedirs",
        "name": str(victim),
    },
    "through-a-resolver": lambda victim: {
        "_target_": "mnist_lab.models.nets.SoftmaxRegression",
        "init": f"${{oc.create:{{_target_: os.makedirs, name: '{victim}'}}}}",
    },
    "nested-in-a-list": lambda victim: {
        "_target_": "mnist_lab.models.nets.SoftmaxRegression",
        "init": [planted(victim)],
    },
}


@pytest.mark.parametrize("sneaked", SNEAKED)
def test_code_cannot_be_sneaked_past_the_check(trained, tmp_path, sneaked):
    victim = tmp_path / "created_by_the_checkpoint"
    run = copy_run(trained, tmp_path, lambda c: c["hyper_parameters"].__setitem__("net", SNEAKED[sneaked](victim)))
    with pytest.raises(TrustError):
        load_checkpoint(run, trust=["mnist_lab."])
    assert not victim.exists()


class MakesFolder:
    """Unpickling it creates a folder: what a checkpoint written by a stranger may hold."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __reduce__(self):
        return os.makedirs, (self.folder,)


def test_resume_never_unpickles_code_from_a_checkpoint(trained, tmp_path):
    victim = tmp_path / "created_by_the_checkpoint"
    run = copy_run(trained, tmp_path, lambda c: c.__setitem__("extra", MakesFolder(victim)))
    error = one_error_line(command("resume", run, cwd=tmp_path))
    assert not victim.exists() and "can be read (" in error and "last.ckpt: UnpicklingError" in error


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c, victim: c.callbacks.__setitem__("planted", planted(victim)), id="a-callback"),
        pytest.param(lambda c, victim: c.data.__setitem__("_target_", MAKEDIRS), id="the-data", marks=pytest.mark.slow),
        pytest.param(lambda c, victim: c.__setitem__("hydra", {"callbacks": {"planted": planted(victim)}}), id="hydra"),
        pytest.param(
            lambda c, victim: c.__setitem__("notes", "${mnist_lab.new_dir:" + str(victim) + "}"), id="a-resolver"
        ),
    ],
)
def test_resume_refuses_a_run_config_naming_other_code(trained, tmp_path, change):
    victim = tmp_path / "created_by_the_config"
    run = copy_run(trained, tmp_path, change_config=lambda c: change(c, victim))
    error = one_error_line(command("resume", run, cwd=tmp_path))
    assert error.startswith(f"{run / '.hydra' / 'config.yaml'}") and not victim.exists()


def test_trust_lets_a_users_own_network_load(trained, tmp_path):
    own = {"_target_": "user_nets.MySoftmax", "init": "default"}  # tests/user_nets.py
    run = copy_run(
        trained,
        tmp_path,
        lambda c: c["hyper_parameters"].__setitem__("net", own),
        lambda c: c.model.net.__setitem__("_target_", own["_target_"]),
    )
    with pytest.raises(TrustError, match=r"net\._target_ names user_nets\.MySoftmax.*trust=\[user_nets\.MySoftmax\]"):
        load_checkpoint(run)
    original = load_checkpoint(trained).model
    x = torch.rand(5, 1, 28, 28)
    for trust in (["user_nets.MySoftmax"], ["user_nets."]):
        model = load_checkpoint(run, trust=trust).model
        assert type(model.net).__name__ == "MySoftmax" and torch.equal(model(x), original(x))

    refused = command("predict", run, cwd=tmp_path, env=USER_CODE)
    assert "trust=[user_nets.MySoftmax]" in one_error_line(refused)
    for name, more in (("predict", []), ("resume", ["trainer.max_epochs=2"])):
        result = command(name, run, "trust=[user_nets.MySoftmax]", *more, cwd=tmp_path, env=USER_CODE)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2  # resumed, trained on


def test_weights_that_do_not_fit_their_network_are_one_error_line(trained, tmp_path):
    def misfit(checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        del state["net.layers.1.bias"]
        state["net.extra.weight"] = torch.zeros(1)
        state["net.layers.1.weight"] = torch.zeros(10, 28)

    run = copy_run(trained, tmp_path, misfit)
    with pytest.raises(CheckpointError, match=r"1 missing, 1 unexpected, 1 mis-shaped key\(s\)"):
        load_checkpoint(run)
    error = one_error_line(command("predict", run, cwd=tmp_path))
    assert "weights do not fit its SoftmaxRegression network" in error and str(run / "checkpoints") in error


def targets_in(folder: Path) -> set[str]:
    """Every `_target_` that the YAML files under `folder` name."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            found.update([node["_target_"]] if isinstance(node.get("_target_"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in folder.rglob("*.yaml"):
        walk(OmegaConf.to_container(OmegaConf.load(path)))
    return found


def test_everything_mnist_lab_configs_build_is_trusted_on_resume_and_in_checkpoints():
    conf = Path(config_dir())
    run_config = targets_in(conf) - targets_in(conf / "hydra")  # Hydra's own section is not saved with a run
    for target in sorted(run_config):
        check_targets({"x": {"_target_": target}}, trusted=RUN_TARGETS, resolvers=RUN_RESOLVERS)
    for group in ("model", "optimizer", "scheduler"):
        for target in sorted(targets_in(conf / group)):
            check_targets({"x": {"_target_": target}})  # what a checkpoint's hyperparameters hold
    assert {"mnist_lab.models.nets.CNN", "torch.optim.Adam", "lightning.pytorch.Trainer"} <= run_config
