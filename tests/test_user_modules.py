"""A LightningModule of the user's own, in a file outside mnist_lab (tests/user_modules.py), chosen by
config: it trains, tests, predicts, evaluates, exports and serves through the same commands, and its
checkpoints run only once the user trusts its code."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnist_lab.data.datamodule import MNISTDataModule

from helpers import QUIET, TESTS, one_error_line, run_cli, run_process, start_server, stop

pytestmark = pytest.mark.long  # run first (tests/conftest.py)

USER_CODE = {"PYTHONPATH": str(TESTS)}  # where user_modules.py lives
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=50", "callbacks.accuracy_stop=null", *QUIET]
MODULES = {
    # a subclass of Classifier with an argument of its own
    "SmoothedClassifier": ["model=softmax", "model._target_=user_modules.SmoothedClassifier", "+model.smoothing=0.1"],
    # a LightningModule with nothing of mnist_lab in it, from a config folder of the user's
    "TinyModule": [f"hydra.searchpath=[file://{TESTS / 'user_conf'}]", "model=tiny"],
}


@pytest.fixture(scope="module", params=list(MODULES))
def user_run(request, tmp_path_factory) -> tuple[str, Path, dict]:
    """One short real training run of the user's module through `python -m mnist_lab`."""
    folder = tmp_path_factory.mktemp(request.param)
    result = run_cli(*MODULES[request.param], *SHORT, f"hydra.run.dir={folder / 'run'}", cwd=folder, env=USER_CODE)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return request.param, folder / "run", json.loads((folder / "run" / "metrics.json").read_text())


def typed(module: str) -> str:
    """The overrides a run of `module` was typed with, less Hydra's own: what its checkpoint records."""
    return " ".join(o for o in [*MODULES[module], *SHORT] if not o.startswith("hydra."))


def command(name: str, run: Path, out: Path, *args: str):
    """`python -m mnist_lab.<name>` on the run; the server in a process of its own, bounded."""
    run_args = (f"ckpt_path={run}", f"hydra.run.dir={out}", *args)
    if name == "serve":  # a server that starts never ends
        return run_process(*run_args, "port=0", module="mnist_lab.serve", env=USER_CODE, timeout=60)
    return run_cli(*run_args, module=f"mnist_lab.{name}", env=USER_CODE)


def test_the_users_module_trains_and_tests_through_the_command(user_run):
    module, run, metrics = user_run
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["mnist_lab"] == {
        "module": f"user_modules.{module}",
        "dataset": "MNIST",
        "trained_with": typed(module),
    }
    assert checkpoint["global_step"] == 50 and metrics["test/acc"] > 0.6
    if module == "SmoothedClassifier":
        assert checkpoint["hyper_parameters"]["smoothing"] == 0.1


@pytest.mark.parametrize("name", ["predict", "serve"])  # evaluate and export load as predict does
def test_its_checkpoint_runs_nothing_until_trusted(user_run, tmp_path, name):
    module, run, _ = user_run
    error = one_error_line(command(name, run, tmp_path / "out"))
    assert f"names user_modules.{module}" in error and f"trust=[user_modules.{module}]" in error
    assert not (tmp_path / "out").exists()


def test_predict_evaluate_and_export_take_its_predict_step(user_run, tmp_path):
    module, run, metrics = user_run
    trust = f"trust=[user_modules.{module}]"
    predicted = command("predict", run, tmp_path / "p", trust, "n=20", "seed=0")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]) == 20

    evaluated = command("evaluate", run, tmp_path / "e", trust)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)  # what training's test measured

    exported = command("export", run, tmp_path / "x", trust, "format=torchscript")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "largest probability difference" in exported.stdout and (tmp_path / "x" / "model.pt").is_file()


def test_the_server_reads_digits_with_it_as_predict_does(user_run, tmp_path):
    module, run, _ = user_run
    trust = f"trust=[user_modules.{module}]"
    datamodule = MNISTDataModule(download=False)
    datamodule.setup()
    seven = tmp_path / "seven.png"  # the first official test digit, as a user's image file
    Image.fromarray((datamodule.data_test.tensors[0][0, 0] * 255).byte().numpy()).save(seven)
    predicted = command("predict", run, tmp_path / "p", trust, f"images={seven}")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (expected,) = json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]

    process, server = start_server(run, tmp_path, trust, env=USER_CODE)
    try:
        health = server.request("GET", "/health").json()
        page = server.request("GET", "/").body.decode()
        answer = server.predict(seven.read_bytes()).json()
    finally:
        stop(process)
    network = "SoftmaxRegression" if module == "SmoothedClassifier" else module
    assert health == {"status": "ok", "model": network, "dataset": "MNIST", "trained_with": typed(module)}
    assert f"a {network} trained on MNIST with {html.escape(typed(module))} reads it" in page
    assert answer["digit"] == expected["prediction"] and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
