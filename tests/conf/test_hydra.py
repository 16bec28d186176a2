"""The launchers (conf/hydra/launcher/ and the sweeps extra's): a two-job sweep in parallel and on
submitit, the SLURM launcher's knobs."""

from __future__ import annotations

import pytest

from helpers import compose_config, job_metrics, multirun, summary_rows

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


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
