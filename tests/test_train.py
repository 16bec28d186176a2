"""Real training runs: learning, the tutorial's stop rule, run folders, checkpoints, TensorBoard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier

from helpers import fit, free_port, run_cli

METRIC_KEYS = {"test/acc", "test/loss", "val/acc_best", "epochs_run", "stop_reason", "best_ckpt", "train_seconds"}
SCALARS = {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc"}


def scalars(run_dir: Path, tag: str) -> list[float]:
    """One tag's values, in order, from a run folder's TensorBoard event files."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_one_epoch_of_adam_teaches_the_mlp_above_90_percent(mlp_run):
    _, metrics = mlp_run
    assert metrics["test/acc"] > 0.90
    assert metrics["stop_reason"] == "max_epochs" and metrics["epochs_run"] == 1


def test_one_epoch_of_softmax_regression_reaches_88_percent(tmp_path):
    metrics = fit(tmp_path, "model=softmax", "trainer.max_epochs=1")  # 550 steps of 100 images
    assert metrics["test/acc"] > 0.88
    assert METRIC_KEYS <= metrics.keys()


def test_100_steps_teach_the_cnn_above_90_percent(cnn_run):
    _, metrics = cnn_run  # one step is one mini-batch of 100 images
    assert metrics["test/acc"] > 0.90
    assert METRIC_KEYS <= metrics.keys()


def test_run_folder_holds_metrics_checkpoints_and_event_files(mlp_run):
    run_dir, metrics = mlp_run
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == metrics and METRIC_KEYS <= on_disk.keys()
    assert Path(on_disk["best_ckpt"]).parent == run_dir / "checkpoints"
    assert Path(on_disk["best_ckpt"]).is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert on_disk["train_seconds"] > 0 and on_disk["val/acc_best"] > 0.9


def test_accuracy_stop_fires_at_the_first_epoch_above_the_threshold_not_before(tmp_path):
    common = ["model=softmax", "trainer.limit_train_batches=50", "seed=7"]
    fit(tmp_path / "free", *common, "trainer.max_epochs=4", "callbacks.accuracy_stop=null")
    accs = scalars(tmp_path / "free", "train/acc")
    assert len(accs) == 4 and accs[1] < accs[2]
    threshold = (accs[1] + accs[2]) / 2  # passed for the first time in the third epoch

    stopped = fit(
        tmp_path / "stopped",
        *common,
        "trainer.max_epochs=10",
        f"callbacks.accuracy_stop.stopping_threshold={threshold}",
    )
    assert stopped["stop_reason"] == "accuracy_threshold" and stopped["epochs_run"] == 3
    assert scalars(tmp_path / "stopped", "train/acc") == pytest.approx(accs[:3])


def test_best_checkpoint_alone_rebuilds_the_model_and_reproduces_test_accuracy(mlp_run):
    _, metrics = mlp_run
    model = Classifier.load_from_checkpoint(metrics["best_ckpt"], map_location="cpu").eval()
    dm = MNISTDataModule(download=False)
    dm.setup()
    x, y = dm.data_test.tensors
    with torch.no_grad():
        logits = model(x)
    assert (logits.argmax(1) == y).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)

    # The same weights in a network built by hand give the same logits.
    state = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    net = instantiate(model.hparams.net)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    with torch.no_grad():
        assert torch.equal(net(x[:100]), logits[:100])
    assert torch.allclose(model.predict_step((x[:100], y[:100]), 0).sum(1), torch.ones(100))


def test_same_seed_gives_the_same_run(tmp_path):
    runs = [
        fit(tmp_path / name, "model=softmax", "trainer.max_epochs=1", "trainer.limit_train_batches=30")
        for name in ("a", "b")
    ]
    assert runs[0]["test/acc"] == runs[1]["test/acc"] and runs[0]["test/loss"] == runs[1]["test/loss"]


def test_event_files_hold_every_metric_and_the_model_graph(mlp_run):
    run_dir, _ = mlp_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert SCALARS <= set(events.Tags()["scalars"])
    assert events.Tags()["graph"]
    assert {"test/confusion_matrix", "test/mistakes"} <= set(events.Tags()["images"])
    assert any("MLP[net]" in node.name for node in events.Graph().node)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def test_tensorboard_serves_the_run_scalars_and_graph(mlp_run):
    run_dir, _ = mlp_run
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline, tags = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not SCALARS <= set(tags.get(".", {})):
            time.sleep(0.5)
            try:
                tags = json.loads(_get(f"{base}/scalars/tags"))
            except OSError:
                continue
        assert SCALARS <= set(tags["."])
        assert json.loads(_get(f"{base}/graphs/info"))["."]["run_graph"] is True
        assert b"MLP[net]" in _get(f"{base}/graphs/graph?run=.&conceptual=false")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_multirun_gives_each_job_its_own_complete_run_folder(tmp_path):
    result = run_cli(
        "-m",
        "model=softmax,mlp",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=40",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0_softmax", "1_mlp"]
    for job, model in zip(jobs, ["SoftmaxRegression", "MLP"]):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["model"] == model and metrics["test/acc"] > 0.3
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "train.log").stat().st_size > 0
        assert (job / "checkpoints" / "last.ckpt").is_file() and list(job.glob("events.out.tfevents.*"))


def test_an_epoch_schedule_steps_as_each_epoch_ends_and_channels_last_is_kept(tmp_path):
    metrics = fit(
        tmp_path,
        "model=cnn",
        "model.net.channels_last=true",
        "scheduler=cosine",
        "data.batch_size=512",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "callbacks.accuracy_stop=null",
        "test=false",
    )
    assert metrics["epochs_run"] == 2
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # one 512-image batch per epoch
    # conf/scheduler/cosine.yaml says interval: epoch: the end of a 2-epoch cosine decay.
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 2
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    model = Classifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert model.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_training_keeps_the_plain_networks_checkpoint_keys(tmp_path):
    fit(tmp_path, "model=softmax", "compile=true", "trainer.max_epochs=1", "trainer.limit_train_batches=20")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {k for k in state if k.startswith("net")} == {"net.layers.1.weight", "net.layers.1.bias"}
    assert not any("_orig_mod" in k for k in state)
    assert Classifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").hparams.compile is True


def test_label_smoothing_softens_the_training_targets_only():
    torch.manual_seed(0)
    net = {"_target_": "mnist_lab.models.nets.SoftmaxRegression"}
    optimizer = {"_target_": "torch.optim.Adam", "_partial_": True}
    model = Classifier(net=net, optimizer=optimizer, label_smoothing=0.3)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    logits = model(x)
    smoothed = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.3)
    assert model.step_loss((x, y)).item() == pytest.approx(smoothed.item())
    model.validation_step((x, y), 0)  # validation and test score the plain cross-entropy
    assert model.val_loss.compute().item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    assert smoothed.item() != pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    with pytest.raises(ValueError, match=r"model.label_smoothing must lie in \[0, 1\)"):
        Classifier(net=net, optimizer=optimizer, label_smoothing=1.0)
