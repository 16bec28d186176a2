"""Sweeps and scaling out: multirun summaries, parallel and cluster launchers, Optuna, DDP."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from mnist_lab.report import main as report_main
from mnist_lab.sweeps.summary import find_latest, read_sweep

from conftest import QUIET, compose_config, error_lines, free_port, one_error_line, run_cli, run_process

TESTS = Path(__file__).parent


# A few thousand images per job: the sweep machinery is under test, not the models.
SMALL = [
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=none",
]


def multirun(sweep: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli("-m", *args, *SMALL, f"hydra.sweep.dir={sweep}", cwd=sweep.parent, env=env)


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    with (sweep / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def job_metrics(sweep: Path, job: str) -> dict:
    return json.loads((sweep / job / "metrics.json").read_text())


def test_three_job_sweep_summary_matches_every_jobs_metrics_sorted_by_test_accuracy(tmp_path):
    sweep = tmp_path / "sweep"
    result = multirun(sweep, "model=softmax,mlp,cnn")
    assert result.returncode == 0, result.stderr
    (sweep / "summary.csv").unlink()  # the Hydra callback wrote one; the command must rebuild it

    printed = run_cli(str(sweep), module="mnist_lab.report")
    assert printed.returncode == 0, printed.stderr
    rows = summary_rows(sweep)
    assert sorted(r["job"] for r in rows) == ["0_softmax", "1_mlp", "2_cnn"]
    for row in rows:
        metrics = job_metrics(sweep, row["job"])
        assert row["status"] == "done" and row["stop_reason"] == metrics["stop_reason"]
        assert row["overrides"] == f"model={row['job'].split('_', 1)[1]}"  # the common overrides are listed once
        assert int(row["epochs"]) == metrics["epochs_run"] == 1
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert float(row["val/acc_best"]) == pytest.approx(metrics["val/acc_best"])
        assert float(row["seconds"]) == pytest.approx(metrics["train_seconds"])
    accuracies = [float(r["test/acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    markdown = (sweep / "summary.md").read_text()
    assert markdown in printed.stdout and f"tensorboard --logdir {sweep}" in markdown
    assert f"| {rows[0]['job']} | model=" in markdown


def test_a_failed_job_is_summarised_as_failed_and_the_others_are_kept(tmp_path):
    sweep = tmp_path / "sweep"
    result = multirun(sweep, "model=softmax", "optimizer.lr=0.01,-1,0.02")
    assert result.returncode != 0  # the sweep says that one of its jobs failed, in one line
    last = error_lines(result)[-1]  # after the job's own log line
    assert last.startswith("error: job 1_softmax of the sweep failed: optimizer.lr must be a number > 0, got -1")
    rows = {r["job"]: r for r in summary_rows(sweep)}
    assert rows["1_softmax"]["status"] == "failed"
    assert rows["1_softmax"]["stop_reason"].startswith("optimizer.lr must be a number > 0, got -1")
    assert list(rows)[-1] == "1_softmax"  # failed jobs come last
    for job in ("0_softmax", "2_softmax"):  # the job after the failure ran too
        assert rows[job]["status"] == "done"
        assert float(rows[job]["test/acc"]) == pytest.approx(job_metrics(sweep, job)["test/acc"])


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None = None, log: str = "") -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train.log").write_text(log)


def test_cut_off_and_killed_jobs_are_shown_not_dropped(tmp_path):
    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    done = {"epochs_run": 3, "stop_reason": "max_epochs", "val/acc_best": 0.9, "test/acc": 0.91, "train_seconds": 5.0}
    fake_job(sweep, "0_mlp", ["model=mlp"], done)
    fake_job(sweep, "1_cnn", ["model=cnn"], {"epochs_run": 1, "stop_reason": "interrupted", "val/acc_best": 0.95})
    fake_job(sweep, "2_cnn", ["model=cnn", "seed=2"], None, "[2026-01-01 10:00:00,000][mnist_lab][INFO] - started\n")
    fake_job(sweep, "3_mlp", ["model=mlp", "seed=3"], {**done, "test/acc": 0.93})
    fake_job(
        sweep,
        "4_mlp",
        ["model=mlp", "optimizer.lr=1e9"],
        {"epochs_run": 1, "stop_reason": "non_finite_loss"},
        "[2026-01-01 10:00:00,000][mnist_lab.cli.command][ERROR] - the training loss became nan in epoch 2\n",
    )
    jobs = read_sweep(sweep)
    assert [(j.name, j.status) for j in jobs] == [
        ("3_mlp", "done"),
        ("0_mlp", "done"),
        ("1_cnn", "interrupted"),
        ("4_mlp", "failed"),
        ("2_cnn", "no result"),
    ]
    assert jobs[3].error == "the training loss became nan in epoch 2"
    assert "killed, or still running" in jobs[-1].error


def test_report_latest_picks_the_newest_sweep_and_bad_folders_get_one_line(tmp_path, capsys):
    outputs = tmp_path / "outputs"
    for stamp in ("2026-01-01/09-00-00", "2026-01-02/08-00-00"):
        sweep = outputs / "multirun" / stamp
        fake_job(sweep, "0_mlp", ["model=mlp"], {"epochs_run": 1, "stop_reason": "max_epochs", "test/acc": 0.9})
        (sweep / "multirun.yaml").write_text("{}")
    os.utime(outputs / "multirun/2026-01-01/09-00-00/multirun.yaml", (2e9, 2e9))  # the newer one
    assert find_latest(outputs) == outputs / "multirun/2026-01-01/09-00-00"
    assert report_main(["latest", "--outputs", str(outputs)]) == 0
    assert (outputs / "multirun/2026-01-01/09-00-00/summary.md").is_file()
    assert report_main([str(tmp_path)]) == 1
    assert "holds no job folders" in capsys.readouterr().err
    assert report_main(["latest", "--outputs", str(tmp_path / "none")]) == 1
    assert "found no sweep" in capsys.readouterr().err


def test_optuna_search_of_three_trials_returns_the_best_and_resumes_from_its_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}", "test=false"]
    few = [*(a for a in SMALL if "limit_train_batches" not in a), "trainer.limit_train_batches=3"]  # CNN trials
    result = run_cli(*args, *few, f"hydra.sweep.dir={tmp_path / 'first'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    scores = [job_metrics(tmp_path / "first", f"{n}_cnn")["val/acc_best"] for n in range(3)]
    assert best["best_value"] == pytest.approx(max(scores))
    assert set(best["best_params"]) == {"optimizer.lr", "data.batch_size", "model.net.dropout"}
    summary = (tmp_path / "first" / "summary.md").read_text()
    assert (
        "Best parameters (optuna)" in summary and f"optimizer.lr={best['best_params']['optimizer.lr']:.4g}" in summary
    )

    again = run_cli(
        *args[:1], "hydra.sweeper.n_trials=1", *args[2:], *few, f"hydra.sweep.dir={tmp_path / 'second'}", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    import optuna

    study = optuna.load_study(study_name="mnist_lab_cnn", storage=storage)
    assert len(study.trials) == 4 and study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_ddp_trains_two_cpu_processes_into_one_run_folder_with_shared_weights(tmp_path):
    run = tmp_path / "run"
    probe = f"+callbacks.probe={{_target_:ddp_probe.Probe,folder:{tmp_path}}}"
    # Two processes of 50 images per step: the same 100 images per optimizer step as one process.
    result = run_process(
        "trainer=ddp",
        "data.batch_size=50",
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        probe,
        *QUIET,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, result.stderr
    ranks = [json.loads((tmp_path / f"probe_rank{r}.json").read_text()) for r in (0, 1)]
    # Each process trained on its own half of every epoch, and the gradients were averaged: same weights.
    assert len(ranks[0]["labels"]) == len(ranks[1]["labels"]) == 100 * 50
    assert ranks[0]["labels"] != ranks[1]["labels"]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["weights_abs"] == ranks[1]["weights_abs"]
    # One run: one metrics.json, one set of checkpoints, no folder per rank.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]
    assert (run / "train_ddp_process_1.log").is_file() and not (tmp_path / "outputs").exists()
    assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1
    ddp = json.loads((run / "metrics.json").read_text())
    single = run_cli(
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        *QUIET,
        f"hydra.run.dir={tmp_path / 'single'}",
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["epochs_run"] == one["epochs_run"] == 1
    # Rank r takes every other image of the shared order, so each step averages the gradients of
    # exactly the images one process would batch together: the same model up to float rounding.
    assert abs(ddp["test/acc"] - one["test/acc"]) < 0.002


def test_ddp_that_reruns_the_command_line_is_refused_inside_a_multirun(tmp_path):
    result = multirun(tmp_path / "sweep", "trainer=ddp", "model=softmax")
    assert result.returncode != 0
    assert "trainer.strategy=ddp cannot run inside a multirun" in result.stderr + result.stdout
    assert "ddp_spawn" in summary_rows(tmp_path / "sweep")[0]["stop_reason"]


@pytest.mark.slow
def test_ddp_spawn_runs_inside_a_multirun_with_full_metrics(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_process(
        "-m",
        "trainer=ddp",
        "trainer.strategy=ddp_spawn",
        "model=softmax",
        "trainer.max_epochs=5",
        "callbacks.accuracy_stop.stopping_threshold=0.6",
        "trainer.limit_train_batches=20",
        *QUIET,
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = job_metrics(sweep, "0_softmax")
    assert metrics["stop_reason"] == "accuracy_threshold" and metrics["epochs_run"] < 5
    assert len(metrics["epoch_seconds"]) == metrics["epochs_run"]
    # The spawned processes trained; the history comes back with their last checkpoint.
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, metrics["epochs_run"] + 1))
    assert metrics["history"][-1]["train/acc"] == pytest.approx(metrics["train/acc"])


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_and_submitit_launchers_run_a_two_job_sweep(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2", "threads=1"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    result = multirun(sweep, f"hydra/launcher={launcher}", *extra, "model=softmax,mlp")
    assert result.returncode == 0, result.stderr
    rows = {r["job"]: r for r in summary_rows(sweep)}
    assert {job: row["status"] for job, row in rows.items()} == {"0_softmax": "done", "1_mlp": "done"}
    for job in rows:
        assert float(rows[job]["test/acc"]) == pytest.approx(job_metrics(sweep, job)["test/acc"])
    if launcher == "submitit_local":
        assert (sweep / ".submitit").is_dir()  # submitit's own job records


def test_slurm_launcher_configs_compose_with_the_usual_knobs():
    cfg = compose_config(
        "train",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.timeout_min=120",
        return_hydra=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 4 and launcher.timeout_min == 120
    gpu = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.accelerator=gpu"]
    preset = compose_config("train", *gpu, return_hydra=True)
    assert preset.hydra.launcher._target_ == "hydra_plugins.mnist_lab_slurm.SlurmLauncher"
    assert preset.hydra.launcher.tasks_per_node == preset.hydra.launcher.gpus_per_node == 4  # one task per device
    cpu = compose_config("train", "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=2", return_hydra=True)
    assert cpu.hydra.launcher.tasks_per_node == 2 and cpu.hydra.launcher.gpus_per_node is None  # no GPU request
    assert cpu.hydra.launcher.nodes == 1
    two = compose_config("train", "hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", return_hydra=True)
    assert two.hydra.launcher.nodes == two.trainer.num_nodes == 2  # no "+": a Trainer flag like the others


# What SLURM sets in rank 0 of a job of two nodes, one task each.
SLURM_TWO_NODES = {
    "SLURM_JOB_ID": "7",
    "SLURM_JOB_NAME": "mnist_lab",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NODELIST": "node[1-2]",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}
# A 20 s rendezvous: were the checks gone, rank 0 would wait that long for rank 1, then fail, not hang.
TWO_NODES = ["trainer=ddp", "trainer.strategy.timeout.seconds=20", "trainer.num_nodes=2", "trainer.devices=1"]
TWO_NODES += ["trainer.accelerator=cpu", "model=softmax"]


def alone(rank: int) -> dict[str, str]:
    """Rank `rank` of a two-node SLURM job whose other rank never comes, with rank 0 on loopback."""
    return {
        **SLURM_TWO_NODES,
        "SLURM_NODELIST": "node1,node2",
        "SLURM_PROCID": str(rank),
        "SLURM_NODEID": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "GLOO_SOCKET_IFNAME": "lo",  # loopback on purpose: the name check stands aside
    }


def test_a_node_whose_name_resolves_to_a_loopback_address_is_one_line_before_any_rank_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")  # like Debian's "127.0.1.1 <hostname>"
    result = run_cli(*TWO_NODES, *QUIET, f"hydra.run.dir={tmp_path / 'run'}", env=SLURM_TWO_NODES)
    line = one_error_line(result)
    assert line.startswith("node localhost (rank 0) resolves its own name to ") and "a loopback address" in line
    assert "/etc/hosts" in line and "GLOO_SOCKET_IFNAME=" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_num_nodes_that_slurm_did_not_allocate_is_one_line_naming_the_fix(tmp_path):
    one_node = {**SLURM_TWO_NODES, "SLURM_NNODES": "1", "SLURM_NTASKS": "1", "SLURM_NODELIST": "node1"}
    line = one_error_line(run_cli(*TWO_NODES, *QUIET, f"hydra.run.dir={tmp_path / 'run'}", env=one_node))
    assert line == (
        "trainer.num_nodes=2, but SLURM gave this job 1 node(s) (node1); let hydra.launcher.nodes follow "
        "trainer.num_nodes (its default), or train with trainer.num_nodes=1"
    )


def test_a_node_that_never_joins_ends_at_the_configured_timeout_naming_its_rank_and_node(tmp_path):
    assert compose_config("train", "trainer=ddp").trainer.strategy.timeout.seconds == 180  # bounded by default
    env = alone(0)
    result = run_cli(*TWO_NODES, "trainer.strategy.timeout.seconds=1", *QUIET, f"hydra.run.dir={tmp_path}", env=env)
    assert one_error_line(result) == (
        "1 of 2 processes never joined within trainer.strategy.timeout.seconds=1: rank 1 (node2); check that it "
        f"started (its node's log) and reaches 127.0.0.1:{env['MASTER_PORT']}, or wait longer with "
        "trainer.strategy.timeout.seconds=<s>"
    )
    assert not (tmp_path / "metrics.json").exists()


def test_a_rank_that_cannot_reach_rank_0_ends_at_the_configured_timeout_naming_the_address(tmp_path):
    env = alone(1)  # no rank 0 listens at MASTER_PORT
    result = run_cli(*TWO_NODES, "trainer.strategy.timeout.seconds=1", *QUIET, f"hydra.run.dir={tmp_path}", env=env)
    assert one_error_line(result) == (
        f"rank 1 (node2) could not reach rank 0 at 127.0.0.1:{env['MASTER_PORT']} within "
        "trainer.strategy.timeout.seconds=1; check that rank 0's node runs and that 127.0.0.1 resolves here to "
        "its network address"
    )


def test_optuna_preset_maximises_over_learning_rate_batch_size_and_dropout():
    cfg = compose_config("train", "hparams_search=optuna", return_hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "data.batch_size", "model.net.dropout"}
    assert cfg.model.net._target_ == "mnist_lab.models.nets.CNN" and cfg.callbacks.accuracy_stop is None
    assert "storage" in sweeper
