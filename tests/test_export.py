"""`python -m mnist_lab.export`: one model file (ONNX, TorchScript) that runs without mnist_lab."""

from __future__ import annotations

import shutil

import onnxruntime
import torch

from mnist_lab.checkpoints.load import load_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.export import export

from helpers import compose_config, run_cli


def test_onnx_export_is_one_file_that_runs_alone(mlp_run, tmp_path):
    run_dir, metrics = mlp_run
    out = tmp_path / "export" / "model.onnx"
    result = run_cli(
        f"ckpt_path={run_dir}",
        "format=onnx",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'e'}",
        module="mnist_lab.export",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no model.onnx.data beside it
    alone = tmp_path / "elsewhere" / "model.onnx"
    alone.parent.mkdir()
    shutil.move(out, alone)
    dm = MNISTDataModule(download=False)
    dm.setup()
    x, y = dm.data_test.tensors
    session = onnxruntime.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": x[:1000].numpy()})[0]
    assert (logits.argmax(1) == y[:1000].numpy()).mean() > 0.85


def test_torchscript_export_gives_the_checkpoints_logits(cnn_run, test_set, tmp_path):
    # ONNX goes through the real command in test_onnx_export_is_one_file_that_runs_alone.
    run_dir, _ = cnn_run
    result = export(compose_config("export", f"ckpt_path={run_dir}", "format=torchscript"), tmp_path)
    assert result["max_abs_difference"] <= 1e-5
    x = test_set[0][200:264]
    expected = load_checkpoint(run_dir).model(x).detach()
    assert torch.allclose(torch.jit.load(str(result["path"]))(x), expected, atol=1e-5)


def test_export_never_overwrites_an_existing_file(cnn_run, tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("keep me")
    result = run_cli_module(
        "export", f"ckpt_path={cnn_run[0]}", "format=torchscript", f"out={target}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 1 and "already exists" in result.stdout + result.stderr
    assert target.read_text() == "keep me"


def run_cli_module(module: str, *args: str):
    return run_cli(*args, module=f"mnist_lab.{module}")
