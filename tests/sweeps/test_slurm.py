"""Sweeps on a real SLURM cluster: jobs with the default resources, DDP across a job's SLURM tasks,
sbatch's refusals, and jobs requeued or signalled mid-training that resume in their own folder and
end exactly like an uninterrupted one. On two nodes: one DDP job across both, equal to two processes
on one node, and a job that loses a node mid-training, is requeued by SLURM and ends the same.

`tests/slurm/start_cluster.sh --nodes 2` starts such a cluster (as root; CI runs it first). Without
a cluster that answers `sinfo`, these tests are skipped; without its partition "two", the two-node ones.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import QUIET, TESTS, comparable

pytestmark = pytest.mark.long  # run first (tests/conftest.py)

ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # probes


def no_cluster() -> str | None:
    """Why no SLURM cluster can run these tests; None when one can."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM on this machine (no sinfo/sbatch); tests/slurm/start_cluster.sh --nodes 2 starts one (as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer: no SLURM controller is up; tests/slurm/start_cluster.sh --nodes 2 starts one"
    if out.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc", "comp")) for s in out.stdout.split()):
        said = (out.stdout + out.stderr).strip()
        return f"no SLURM node is up ({said}); tests/slurm/start_cluster.sh --nodes 2 starts one"
    return None


def no_two_nodes() -> str | None:
    """Why no two-node partition can run the two-node tests; None when one can."""
    if NO_CLUSTER is not None:
        return NO_CLUSTER
    states = subprocess.run(["sinfo", "-h", "-p", "two", "-o", "%T"], capture_output=True, text=True, timeout=20)
    if not any(s.startswith(("idle", "mix", "alloc", "comp")) for s in states.stdout.split()):
        return "no two-node partition 'two' is up; tests/slurm/start_cluster.sh --nodes 2 starts one (as root)"
    return None


NO_CLUSTER = no_cluster()
NO_TWO_NODES = no_two_nodes()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")]
two_nodes = pytest.mark.skipif(NO_TWO_NODES is not None, reason=NO_TWO_NODES or "")
START_CLUSTER = TESTS / "slurm" / "start_cluster.sh"

# One CPU and no step faster than 40 ms: a signal sent after the first epoch lands mid-training.
PACED = "+callbacks.pace={_target_:probes.Pace,seconds:0.04}"
SHORT = ["trainer.limit_val_batches=5", "trainer.limit_test_batches=5", "logger=none"]


class Sweep:
    """`python -m mnist_lab -m hydra/launcher=slurm ...` in the background, under a SLURM job name
    of its own, so that `cancel` ends exactly its jobs."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        self.folder, self.name = folder, f"mnist_lab_test_{uuid.uuid4().hex[:8]}"
        command = [
            sys.executable,
            "-m",
            "mnist_lab",
            "-m",
            "hydra/launcher=slurm",
            f"hydra.launcher.name={self.name}",
            *args,
            *QUIET,
            f"hydra.sweep.dir={folder}",
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=folder.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **ENV},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 240) -> int:
        """The sweep's exit code, once it has ended and all its output is read."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def job_id(self, index: int) -> str:
        """SLURM's id of job `index` of the sweep (an element of its job array)."""
        wait_for(lambda: self._queued(index), f"job {index} of the sweep in squeue", self)
        return self._queued(index)

    def _queued(self, index: int) -> str:
        ids = squeue("-h", "--array", "-o", "%i", f"--name={self.name}").split()
        return next((i for i in ids if i.endswith(f"_{index}") or (index == 0 and "_" not in i)), "")

    def cancel(self) -> None:
        """Cancel every SLURM job of this sweep and end the sweep's own process."""
        subprocess.run(["scancel", f"--name={self.name}", f"--user={getpass.getuser()}"], timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        deadline = time.monotonic() + 60  # gone from the node, so that the next test finds its CPUs free
        while squeue("-h", f"--name={self.name}").strip() and time.monotonic() < deadline:
            time.sleep(0.5)


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", *args], capture_output=True, text=True, timeout=60).stdout


def wait_for(condition: Callable[[], object], what: str, sweep: Sweep, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert sweep.proc.poll() is None, f"the sweep ended before {what}:\n{sweep.output[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{sweep.output[-3000:]}"
        time.sleep(0.1)


@pytest.fixture
def slurm_sweep():
    """Start `Sweep`s; whatever happens in the test, their SLURM jobs are cancelled at the end."""
    started: list[Sweep] = []

    def start(folder: Path, *args: str) -> Sweep:
        started.append(Sweep(folder, list(args)))
        return started[-1]

    yield start
    for sweep in started:
        sweep.cancel()


def release(job_id: str) -> None:
    """Start a requeued job now, not after the two minutes SLURM holds it back. Not within the second
    of its requeue: slurmd revokes the first run's credential to the second, and a run that starts in
    that same second is refused as revoked (the job then fails)."""
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True, timeout=60)


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def submitted_script(sweep: Path) -> str:
    """The sbatch script submitit wrote for the sweep's jobs."""
    return next(sweep.glob(".submitit/**/*_submission.sh")).read_text()


def job_log(sweep: Path, job_id: str) -> str:
    """What submitit's side of a job printed (rank 0), over all of its runs."""
    return "".join(p.read_text() for p in sweep.glob(f".submitit/{job_id}/{job_id}_0_log.*"))


def test_two_job_sweep_runs_as_slurm_jobs_with_the_default_resources(tmp_path, slurm_sweep):
    sweep = tmp_path / "sweep"
    run = slurm_sweep(sweep, "model=softmax,mlp", "trainer.max_epochs=1", "trainer.limit_train_batches=50", *SHORT)
    assert run.wait() == 0, run.output
    assert "sacct" not in run.output  # no accounting on this cluster: job states come from squeue, quietly
    with (sweep / "summary.csv").open() as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert {job: r["status"] for job, r in rows.items()} == {"0_softmax": "done", "1_mlp": "done"}
    for job, row in rows.items():
        assert metrics(sweep / job)["epochs_run"] == 1 and (sweep / job / ".hydra" / "config.yaml").is_file()
        assert float(row["test/acc"]) == pytest.approx(metrics(sweep / job)["test/acc"])
    assert len(list(sweep.glob(".submitit/*_[01]/*_result.pkl"))) == 2  # each job ran as a SLURM job
    script = submitted_script(sweep)
    # A CPU partition takes the defaults: no GPU request, the partition's own CPUs and memory.
    assert "--ntasks-per-node=1" in script and "--signal=USR2@120" in script
    assert not any(flag in script for flag in ("--gpus-per-node", "--cpus-per-task", "--mem"))


def test_ddp_trains_across_two_slurm_tasks_into_one_run_folder(tmp_path, slurm_sweep):
    sweep = tmp_path / "sweep"
    probe = f"+callbacks.probe={{_target_:probes.Probe,folder:{tmp_path}}}"
    run = slurm_sweep(
        sweep,
        "trainer=ddp",
        "trainer.devices=2",
        "data.batch_size=50",
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        probe,
        *SHORT,
    )
    assert run.wait() == 0, run.output
    assert "--ntasks-per-node=2" in submitted_script(sweep)  # SLURM started both processes
    ranks = [json.loads((tmp_path / f"probe_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["labels"]) == len(ranks[1]["labels"]) == 100 * 50 and ranks[0]["labels"] != ranks[1]["labels"]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["weights_abs"] == ranks[1]["weights_abs"]
    job = sweep / "0_softmax"
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()) == ["0_softmax"]
    assert metrics(job)["epochs_run"] == 1 and len(list(job.glob("checkpoints/epoch_*.ckpt"))) == 1
    assert "MEMBER: 1/2" in (job / "train.log").read_text()
    assert "MEMBER: 2/2" in (job / "train_ddp_process_1.log").read_text()


@pytest.mark.parametrize(
    ("override", "said", "fix"),
    [
        (
            "trainer.accelerator=gpu",
            "Invalid generic resource (gres) specification",
            "choose one that has with hydra.launcher.partition=",
        ),
        (
            "hydra.launcher.partition=nosuch",
            "invalid partition specified: nosuch",
            "choose one of this cluster's partitions with hydra.launcher.partition=",
        ),
        pytest.param(
            "trainer.num_nodes=2",
            "Node count specification invalid",
            "ask for 2 nodes (trainer.num_nodes=2) and partition cpu has 1; partitions with 2 or more nodes: "
            "two: choose one with hydra.launcher.partition=two",
            marks=two_nodes,
        ),
    ],
    ids=["gpus-on-a-cpu-partition", "unknown-partition", "more-nodes-than-the-partition-has"],
)
def test_a_job_sbatch_refuses_is_one_line_naming_the_fix(tmp_path, slurm_sweep, override, said, fix):
    run = slurm_sweep(tmp_path / "sweep", "model=softmax", override)
    assert run.wait() == 1
    errors = [line for line in run.lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.output, run.output
    assert errors[0].startswith("error: sbatch refused the sweep's jobs (") and said in errors[0] and fix in errors[0]
    assert not squeue("-h", f"--name={run.name}").strip() and not (tmp_path / "sweep").exists()  # nothing ran


def test_jobs_requeued_or_signalled_mid_training_resume_in_their_folder_and_end_like_an_uninterrupted_one(
    tmp_path, slurm_sweep
):
    # Three identical jobs: 0 runs through; 1 is requeued (what preemption does: SIGTERM, then the
    # job is queued again); 2 gets the signal submitit asks SLURM to send before the time limit.
    sweep = tmp_path / "sweep"
    run = slurm_sweep(
        sweep,
        "seed=42,42,42",
        "model=mlp",
        "model.net.dropout=0.2",
        "callbacks.accuracy_stop=null",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=30",
        PACED,
        *SHORT,
    )
    jobs = [sweep / f"{n}_mlp" for n in range(3)]
    stopped, ids = {}, {}
    for n, send in ((1, ["scontrol", "requeue"]), (2, ["scancel", "--signal=USR2"])):
        job_id = ids[n] = run.job_id(n)
        wait_for((jobs[n] / "checkpoints" / "last.ckpt").is_file, f"job {n}'s first epoch", run)
        subprocess.run([*send, job_id], check=True, timeout=60)
        if n == 1:  # SIGTERM reached training: it stopped after its step and kept its last full epoch
            wait_for(lambda: (jobs[1] / "metrics.json").is_file(), "job 1's record of the interruption", run)
            stopped = metrics(jobs[1])
        wait_for(lambda j=job_id: squeue("-h", "-o", "%T", f"--jobs={j}").strip() == "PENDING", f"requeue of {n}", run)
        release(job_id)
    assert run.wait() == 0, run.output

    assert stopped["stop_reason"] == "interrupted" and 1 <= stopped["epochs_run"] < 3
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0_mlp",
        "1_mlp",
        "2_mlp",
    ]  # no new folder: each came back into its own
    for n in (1, 2):
        assert "SLURM restart 1 of this job: resuming" in job_log(sweep, ids[n])
        assert (
            f"Restoring states from the checkpoint path at {jobs[n] / 'checkpoints' / 'last.ckpt'}"
            in (jobs[n] / "train.log").read_text()
        )
    whole = comparable(metrics(jobs[0]))
    assert whole["epochs_run"] == 3 and whole["stop_reason"] == "max_epochs"
    assert comparable(metrics(jobs[1])) == whole and comparable(metrics(jobs[2])) == whole
    trained = [weights(job) for job in jobs]
    assert all(torch.equal(trained[0][k], w[k]) for w in trained[1:] for k in trained[0])


# One DDP job of three epochs, two processes of one CPU thread each (so that the sums agree bit for
# bit wherever they run), paced so that a node can be lost mid-epoch.
DDP_RUN = [
    "trainer=ddp",
    "seed=42",
    "threads=1",
    "model=mlp",
    "model.net.dropout=0.2",
    "callbacks.accuracy_stop=null",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=30",
    "+callbacks.pace={_target_:probes.Pace,seconds:0.1}",
    *SHORT,
]
ON_TWO_NODES = ["hydra.launcher.partition=two", "trainer.num_nodes=2", "trainer.devices=1"]


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of the uninterrupted DDP job over node1 and node2."""
    sweep = tmp_path_factory.mktemp("two_nodes") / "sweep"
    run = Sweep(sweep, [*DDP_RUN, *ON_TWO_NODES])
    try:
        assert run.wait() == 0, run.output
    finally:
        run.cancel()
    return sweep / "0_mlp"


def weights(job: Path) -> dict[str, torch.Tensor]:
    return torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
@two_nodes
def test_one_ddp_job_spans_two_nodes_and_equals_two_processes_on_one_node(tmp_path, slurm_sweep, two_node_run):
    job = two_node_run
    assert sorted(p.name for p in job.parent.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0_mlp"]
    assert "--nodes=2" in submitted_script(job.parent) and "--ntasks-per-node=1" in submitted_script(job.parent)
    # Each rank logs where it ran: rank 0 on node1, rank 1 on node2, each at its own address.
    assert "rank 0 of 2 on node node1 (10.231.0.11)" in (job / "train.log").read_text()
    assert "rank 1 of 2 on node node2 (10.231.0.12)" in (job / "train_ddp_process_1.log").read_text()
    assert metrics(job)["epochs_run"] == 3

    one_node = tmp_path / "sweep"
    run = slurm_sweep(one_node, *DDP_RUN, "trainer.devices=2")  # two SLURM tasks on this machine's node
    assert run.wait() == 0, run.output
    # The same sums, in a different process layout: equal up to float32 rounding (seen: 8e-8 at most).
    one, two = comparable(metrics(one_node / "0_mlp")), comparable(metrics(job))
    assert [pytest.approx(row, abs=1e-6) for row in two.pop("history")] == one.pop("history")
    assert one == pytest.approx(two, abs=1e-6)
    same, other = weights(one_node / "0_mlp"), weights(job)
    assert all(torch.allclose(same[k], other[k], rtol=0, atol=1e-6) for k in same)


def nodes_idle(*nodes: str) -> bool:
    """Whether every one of `nodes` is idle: up, and done with every earlier job."""
    out = subprocess.run(["sinfo", "-h", "-N", "-n", ",".join(nodes), "-o", "%T"], capture_output=True, text=True)
    return out.stdout.split() == ["idle"] * len(nodes)


def namespace_processes(namespace: str) -> list[str]:
    """The pids of every process of a node of the two-node cluster (its network namespace)."""
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=20)
    return out.stdout.split()


@pytest.mark.slow
@two_nodes
def test_a_job_that_loses_a_node_mid_training_is_requeued_and_ends_like_an_uninterrupted_one(
    tmp_path, slurm_sweep, two_node_run
):
    sweep = tmp_path / "sweep"
    job = sweep / "0_mlp"
    run = slurm_sweep(sweep, *DDP_RUN, *ON_TWO_NODES)
    job_id = run.job_id(0)
    try:
        wait_for((job / "checkpoints" / "last.ckpt").is_file, "the first epoch", run)
        time.sleep(1)  # into the second epoch
        # node2 is lost: every process in its network namespace dies at once, slurmd included.
        subprocess.run(["kill", "-9", *namespace_processes("mlab-node2")], check=True, timeout=20)
        # Rank 0 says what it lost, in one line; SLURM finds node2 gone and queues the job again.
        wait_for(lambda: "mid-training" in (job / "train.log").read_text(), "rank 0's line on the lost node", run)
        wait_for(lambda: squeue("-h", "-o", "%T", f"--jobs={job_id}").strip() == "PENDING", "the requeue", run, 180)
    finally:  # node2 comes back (as a repaired node does), whatever happened above
        subprocess.run([str(START_CLUSTER), "--nodes", "2"], check=True, timeout=120, capture_output=True)
    wait_for(lambda: nodes_idle("node1", "node2"), "node1 and node2 idle again", run)
    release(job_id)
    assert run.wait() == 0, run.output

    lost = [line for line in (job / "train.log").read_text().splitlines() if "mid-training" in line]
    assert len(lost) == 1 and lost[0].split(" - ", 1)[1].startswith(
        "rank 0 (node1) lost the process on node2 (10.231.0.12) mid-training ("
    )
    assert f"resume with python -m mnist_lab resume={job}" in lost[0]
    assert "SLURM restart 1 of this job: resuming" in job_log(sweep, job_id)
    assert (
        f"Restoring states from the checkpoint path at {job / 'checkpoints' / 'last.ckpt'}"
        in (job / "train.log").read_text()
    )
    assert comparable(metrics(job)) == comparable(metrics(two_node_run))
    resumed, whole = weights(job), weights(two_node_run)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
