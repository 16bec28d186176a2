"""logger=wandb: offline W&B runs, read back from the files they write; no network, no account."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import QUIET, run_cli

pytest.importorskip("wandb")

TINY = [
    "model=softmax",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "logger=wandb",
    *QUIET,
]


@pytest.fixture(autouse=True)
def no_wandb_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs' own mode decides, whatever the shell that runs the tests says."""
    monkeypatch.delenv("WANDB_MODE", raising=False)


def wandb_env(tmp_path: Path) -> dict[str, str]:
    """W&B's own folders inside the test's, and an address where nothing answers: a run that tried
    the network would fail, not upload."""
    return {
        "WANDB_DIR": str(tmp_path / "wandb_dir"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_BASE_URL": "http://127.0.0.1:9",
    }


def records(run_file: Path) -> Iterator[object]:
    """The records of a `.wandb` file: a LevelDB-style log (32 KiB blocks of chunks with a 7-byte
    header: CRC, length, type) after a 7-byte W&B header, each record one of W&B's protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, chunk = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            return
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def read_run(folder: Path) -> dict:
    """An offline W&B run as W&B recorded it: its run record, config, final summary and artifacts."""
    (run_file,) = folder.glob("offline-run-*/run-*.wandb")
    # W&B's service writes the file behind the finished run (the process's exit waits for it): read it
    # once it holds the run's exit record.
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in records(run_file)):
        assert time.monotonic() < deadline, f"{run_file} has no exit record after 60 s"
        time.sleep(0.2)
    run, config, summary, artifacts = None, {}, {}, []
    for record in records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "summary":
            for item in record.summary.update:
                summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        elif kind == "artifact":
            artifacts.append(record.artifact)
    return {"run": run, "config": config, "summary": summary, "artifacts": artifacts, "file": run_file}


def test_a_wandb_run_is_written_offline_with_its_config_metrics_graph_and_best_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=wandb_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb sync" in result.stdout + result.stderr  # W&B says how to upload it later
    metrics = json.loads((run_dir / "metrics.json").read_text())
    wandb_run = read_run(run_dir / "wandb")
    assert wandb_run["run"].project == "mnist_lab" and wandb_run["run"].display_name == "train_softmax"
    assert not wandb_run["run"].run_group  # a single run is in no group
    config = wandb_run["config"]
    assert config["model"]["net"]["_target_"] == "mnist_lab.models.nets.SoftmaxRegression"
    assert config["optimizer"]["lr"] == 0.001 and config["trainer"]["max_epochs"] == 1
    summary = wandb_run["summary"]  # the last value of each metric, as W&B shows it
    assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert summary["val/acc_best"] == pytest.approx(metrics["val/acc_best"])
    assert summary["trainer/global_step"] == 5 and "train/loss" in summary
    (graph,) = run_dir.glob("wandb/offline-run-*/files/media/graph/*.graph.json")
    layers = [node["class_name"] for node in json.loads(graph.read_text())["nodes"]]
    assert layers == ["Flatten(start_dim=1, end_dim=-1)", "Linear(in_features=784, out_features=10, bias=True)"]
    (artifact,) = wandb_run["artifacts"]  # the best checkpoint alone; last.ckpt is for resuming
    assert artifact.type == "model" and set(artifact.aliases) == {"best", "latest"}
    assert json.loads(artifact.metadata)["original_filename"] == Path(metrics["best_ckpt"]).name
    assert [entry.path for entry in artifact.manifest.contents] == ["model.ckpt"]


def test_each_job_of_a_multirun_is_its_own_wandb_run_in_the_sweeps_group(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=wandb_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {job: read_run(sweep / job / "wandb") for job in ("0_softmax", "1_softmax")}
    assert len({r["run"].run_id for r in runs.values()}) == 2
    assert {r["run"].run_group for r in runs.values()} == {str(sweep)}
    for job, wandb_run in runs.items():
        assert wandb_run["config"]["seed"] == int(job[0]) + 1
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert wandb_run["summary"]["test/acc"] == pytest.approx(metrics["test/acc"])


def test_wandb_mode_from_the_environment_decides_where_the_default_offline_run_goes(tmp_path):
    env = {**wandb_env(tmp_path), "WANDB_MODE": "disabled"}
    result = run_cli(*TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file() and not list(tmp_path.rglob("offline-run-*"))
