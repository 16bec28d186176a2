"""One entry path for every command: the command line read once, by Hydra's own parser; nothing
registered on import; and answers without torch where nothing trains."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnist_lab.cli.command_line import read_command_line

from helpers import run_process

COMMANDS = ["mnist_lab", "mnist_lab.predict", "mnist_lab.evaluate", "mnist_lab.export", "mnist_lab.serve"]


@pytest.mark.parametrize(
    ("args", "key", "value"),
    [
        (["trust=[my_pkg.Net,other.]"], "trust", ["my_pkg.Net", "other."]),
        (["+trust=[my_pkg.Net]"], "trust", ["my_pkg.Net"]),
        (["++trust=[my_pkg.Net]"], "trust", ["my_pkg.Net"]),
        (["hydra.run.dir='runs/my run'"], "hydra.run.dir", "runs/my run"),
        (['hydra.run.dir="runs/a=b"'], "hydra.run.dir", "runs/a=b"),
        (["resume=latest", "resume=outputs/x"], "resume", "outputs/x"),  # the last one wins, as in Hydra
        (["-m", "model=cnn,mlp", "seed=1"], "seed", 1),
        (["--cfg", "job", "seed=3"], "seed", 3),
    ],
)
def test_the_command_line_is_read_once_by_hydras_parser(args, key, value):
    line = read_command_line(["prog", *args])
    assert line.value(key) == value
    assert line.argv() == ["prog", *args]


def test_hydras_flags_are_told_apart_from_overrides():
    line = read_command_line(["prog", "-m", "--config-name", "x", "model=cnn,mlp", "--cfg", "job"])
    assert line.multirun and line.flags == ["-m", "--config-name", "x", "--cfg", "job"]
    assert line.texts == ["model=cnn,mlp"] and line.runs_nothing  # another config: no typo check of ours
    assert read_command_line(["prog", "model=[oops"]).overrides is None  # Hydra itself says what is wrong


def test_importing_mnist_lab_registers_nothing():
    code = (
        "import mnist_lab.train, mnist_lab.predict, mnist_lab.evaluate, mnist_lab.export, mnist_lab.report;"
        "import mnist_lab.serve.__main__, mnist_lab.cli.command, mnist_lab.training.hardware, mnist_lab.registry;"
        "from omegaconf import OmegaConf;"
        "from hydra.core.plugins import Plugins;"
        "names = ['mnist_lab.new_dir', 'mnist_lab.fast_precision', 'mnist_lab.slurm_gpus'];"
        "print([n for n in names if OmegaConf.has_resolver(n)])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--cfg", "job"], ["modle=cnn"], ["optimizer.lr=-1"]],
    ids=["help", "cfg-job", "typo", "bad-value"],
)
def test_a_command_that_trains_nothing_never_imports_torch(tmp_path, args):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mnist_lab", *args], capture_output=True, text=True, cwd=tmp_path
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "mnist_lab.train" in imported  # the command ran
    assert not {"torch", "lightning"} & imported
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("module", COMMANDS[1:])
def test_every_commands_help_answers_without_torch(tmp_path, module):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert result.returncode == 0 and "Options (key=value)" in result.stdout
    assert not {"torch", "lightning", "fastapi"} & imported


HYDRAS_HELP = """
import sys
import hydra
from mnist_lab.cli.command import config_dir
from mnist_lab.registry import register
register()
sys.argv = ["prog", "--help", *sys.argv[2:]]
hydra.main(version_base="1.3", config_path=config_dir(), config_name=sys.argv_name)(lambda cfg: None)()
"""


@pytest.mark.parametrize(("module", "config"), [("mnist_lab", "train"), ("mnist_lab.predict", "predict")])
def test_help_is_the_page_hydra_renders_from_the_same_template(tmp_path, module, config):
    ours = subprocess.run([sys.executable, "-m", module, "--help", "seed=7"], capture_output=True, text=True)
    script = HYDRAS_HELP.replace("sys.argv_name", repr(config))
    hydras = subprocess.run([sys.executable, "-c", script, "x", "seed=7"], capture_output=True, text=True)
    assert ours.returncode == hydras.returncode == 0, ours.stderr + hydras.stderr
    assert ours.stdout == hydras.stdout


def test_hydra_full_error_shows_the_traceback_instead(tmp_path):
    result = run_process("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr
