"""Sweeps on SLURM (`hydra/launcher=slurm`): sbatch's refusals as one line, one run folder per job
however many SLURM tasks train it, and requeued jobs that resume where they stopped.

The launcher class lives in hydra_plugins/mnist_lab_slurm (Hydra takes launchers only from there)
and calls the functions below. A job that SLURM requeues (preemption, `scontrol requeue`, or
submitit itself at the time limit) runs the same pickled call again, in the same folder: there it
resumes from the folder's last full epoch, as `python -m mnist_lab resume=<folder>` would, and so
ends exactly as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

# What sbatch says (lower case) -> the override that fixes it.
FIXES = (
    (
        "generic resource",
        "that partition has no such GPUs: choose one that has with "
        "hydra.launcher.partition={partitions}, or train on CPUs (leave trainer.accelerator=gpu out)",
    ),
    ("partition", "choose one of this cluster's partitions with hydra.launcher.partition={partitions}"),
    ("memory", "ask for what a node has with hydra.launcher.mem_gb=<GB per node>, or null for the partition's default"),
    (
        "node configuration",
        "ask for what a node has: fewer hydra.launcher.cpus_per_task, fewer "
        "trainer.devices (one task each) or hydra.launcher.mem_gb=null "
        "(`sinfo -o '%P %c %m %G'` lists each partition's CPUs, memory and GPUs)",
    ),
    ("processors", "ask for fewer CPUs with hydra.launcher.cpus_per_task=<n>, or fewer tasks with trainer.devices=<n>"),
    ("account", "name your SLURM account with hydra.launcher.account=<account>"),
    ("qos", "name a QOS you may use with hydra.launcher.qos=<qos>"),
    ("time limit", "ask for less time with hydra.launcher.timeout_min=<minutes>"),
)


def partitions() -> str:
    """This cluster's partitions as `a|b|c`, or `<name>` when sinfo cannot tell."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "<name>"
    return "|".join(sorted(set(out.split()))) or "<name>"


def partition_nodes() -> tuple[dict[str, int], str | None]:
    """Each partition's node count, per sinfo, and the default partition's name ({}, None when sinfo cannot tell)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-s", "-o", "%P|%D"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}, None
    sizes, default = {}, None
    for line in out.splitlines():
        name, _, count = line.strip().partition("|")
        if name and count.isdigit():
            if name.endswith("*"):
                name = default = name.removesuffix("*")
            sizes[name] = sizes.get(name, 0) + int(count)
    return sizes, default


def node_count_fix(nodes: int, partition: str | None) -> str:
    """What to do when a job asks for more nodes (`nodes`) than its partition (None: the default) has."""
    sizes, default = partition_nodes()
    name = partition or default
    has = f"partition {name} has {sizes[name]}" if name in sizes else f"partition {name or '(the default)'}"
    asked = f"the jobs ask for {nodes} nodes (trainer.num_nodes={nodes}) and {has}"
    enough = sorted(p for p, count in sizes.items() if count >= nodes and p != name)
    if enough:
        return (
            f"{asked}; partitions with {nodes} or more nodes: {', '.join(enough)}: choose one with "
            f"hydra.launcher.partition={enough[0]}, or train on fewer nodes with trainer.num_nodes=<n>"
        )
    largest = max(sizes.values(), default=1)
    return f"{asked}; no partition has {nodes} nodes: train on at most {largest} with trainer.num_nodes={largest}"


def submission_error(sbatch_stderr: str, params: dict[str, Any] | None = None) -> str:
    """One sentence for sbatch's refusal: its own words, then the override that fixes it (`params`:
    the launcher's, for the nodes and partition the jobs asked for)."""
    words = "; ".join(
        line.strip().removeprefix("sbatch: error: ") for line in sbatch_stderr.splitlines() if line.strip()
    )
    params = params or {}
    if "node count" in words.lower() and isinstance(params.get("nodes"), int):
        return f"sbatch refused the sweep's jobs ({words}): {node_count_fix(params['nodes'], params.get('partition'))}"
    fix = next((fix for key, fix in FIXES if key in words.lower()), "fix the hydra.launcher.* setting it names")
    if "{partitions}" in fix:
        fix = fix.format(partitions=partitions())
    return f"sbatch refused the sweep's jobs ({words}): {fix}"


def refuse(message: str) -> None:
    """End the sweep with one error line, no traceback."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def drop_if_nothing_ran(sweep: Path) -> None:
    """Remove a refused sweep's folder when it holds only what the attempt wrote (Hydra's
    multirun.yaml, submitit's files), with the empty folders above it inside the working folder:
    a command that ran nothing leaves no folder."""
    if any(p.name not in ("multirun.yaml", ".submitit") for p in sweep.iterdir()):
        return
    shutil.rmtree(sweep / ".submitit", ignore_errors=True)
    (sweep / "multirun.yaml").unlink(missing_ok=True)
    here, sweep = Path.cwd(), sweep.absolute()
    for folder in (sweep, *sweep.parents):
        if folder == here or (folder != sweep and here not in folder.parents):
            return
        try:
            folder.rmdir()  # fails, as it should, at the first folder that holds anything else
        except OSError:
            return


def restarts() -> int:
    """How many times SLURM has requeued this job (0 on its first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def prepare_task(config: DictConfig, rank: int) -> None:
    """Adjust one SLURM task's job config: tasks of rank > 0 are DDP's other processes of rank 0's
    run (their own log file, no second copy of .hydra/), and a requeued job resumes in its folder."""
    if rank > 0:  # as Lightning's own DDP launcher does for the processes it starts
        with open_dict(config.hydra):
            config.hydra.job.name = f"{config.hydra.job.name}_ddp_process_{rank}"
            config.hydra.output_subdir = None
    if restarts() == 0:
        return
    HydraConfig.instance().set_config(config)  # the folder's name may read hydra:runtime.choices
    from mnist_lab.checkpoints.load import newest_readable  # torch: only a requeued task needs it

    folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    point = newest_readable(folder)
    if point is not None:
        config.ckpt_path = str(point.path.absolute())
        if point.fallback:
            print(f"warning: {folder}: {point.fallback}", flush=True)
        print(f"SLURM restart {restarts()} of this job: resuming {folder} from {point.path.name}", flush=True)


def run_task(
    launcher: Any, sweep_overrides: list[str], job_dir_key: str, job_num: int, singleton_state: dict[type, Singleton]
) -> JobReturn:
    """One SLURM task of one job of the sweep, on the cluster: the plugin's job, plus prepare_task."""
    import submitit

    Singleton.set_state(singleton_state)
    setup_globals()
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, sweep_overrides)
    with open_dict(config.hydra.job):
        config.hydra.job.id = submitit.JobEnvironment().job_id
        config.hydra.job.num = job_num
    prepare_task(config, int(os.environ.get("SLURM_PROCID") or 0))
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=config,
        job_dir_key=job_dir_key,
        job_subdir_key="hydra.sweep.subdir",
    )


def executor(params: dict[str, Any]) -> Any:
    """submitit's SLURM executor for the launcher's parameters, mapped as the plugin maps them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(params)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init["slurm_max_num_timeout"] = params.pop("max_num_timeout")
    result = submitit.AutoExecutor(cluster="slurm", **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    result.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    return result


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Submit the sweep's jobs as one SLURM job array and wait for their results, as the plugin does;
    a refusal by sbatch ends the sweep with one line."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import log
    from submitit.core.utils import FailedJobError

    sweep = launcher.config.hydra.sweep
    folder = Path(str(sweep.dir))
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        drop_if_nothing_ran(folder)
        refuse(
            "hydra/launcher=slurm needs SLURM's sbatch and srun, which are not on this machine's PATH; "
            "run the sweep on the cluster (a login node), or run its jobs here with hydra/launcher=submitit_local"
        )
    if "mode" in sweep:
        os.chmod(folder, mode=int(str(sweep.mode), 8))
    log.info(f"Submitit 'slurm' sweep output dir : {folder}")
    jobs_args: list[tuple[Any, ...]] = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        jobs_args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    submitter = executor(launcher.params)
    try:
        # submitit prints sbatch's complaint itself before raising it: say it once, below.
        with contextlib.redirect_stderr(io.StringIO()):
            jobs = submitter.map_array(launcher, *zip(*jobs_args))
    except FailedJobError as err:
        drop_if_nothing_ran(folder)
        refuse(submission_error(str(err), dict(launcher.params)))
    if not keeps_accounting():
        watcher = queue_watcher()
        for job in jobs:
            watch_with(job, watcher)
    return [result_of(job, overrides) for job, overrides in zip(jobs, job_overrides)]


class JobLost(CompactHydraException):
    """A SLURM job of the sweep ended without a result: cancelled, killed, or out of time."""


def result_of(job: Any, overrides: Sequence[str]) -> JobReturn:
    """The job's own JobReturn; a job that ended without one fails in one line, after the others
    were waited for (Hydra then reports the first failure)."""
    from submitit.core.utils import UncompletedJobError

    try:
        return job.results()[0]
    except UncompletedJobError:
        failed = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        failed.return_value = JobLost(
            f"SLURM job {job.job_id} ended without a result (state {job.state}); its log is {job.paths.stderr}"
        )
        return failed


def keeps_accounting() -> bool:
    """Whether this cluster keeps job accounting, which submitit reads with sacct."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: leave submitit as it is
    storage = next(
        (
            line.split("=", 1)[1].strip()
            for line in config.splitlines()
            if line.split("=", 1)[0].strip() == "AccountingStorageType"
        ),
        "",
    )
    return storage not in ("", "(null)", "accounting_storage/none")


class QueueWatcher:
    """submitit's job-state watcher, asking squeue instead of sacct, for clusters that keep no
    accounting: there sacct fails at every poll, and a job that ends without a result (cancelled,
    killed) would be waited for forever. squeue knows a job until MinJobAge after it ended; a job it
    no longer lists has left the queue. It answers what submitit's jobs ask their watcher."""

    INCOMPLETE = ("READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED")

    def __init__(self, delay_s: float = 60) -> None:
        from submitit.slurm.slurm import SlurmInfoWatcher

        self.parser = SlurmInfoWatcher()  # for its reading of `JobID|State|NodeList` lines
        self.delay_s = delay_s
        self.jobs: set[str] = set()
        self.info: dict[str, dict[str, str]] = {}
        self.since = self.checked = float("-inf")

    def register_job(self, job_id: str) -> None:
        """Watch `job_id` too, and ask squeue at the next question."""
        self.jobs.add(job_id)
        self.since, self.checked = time.time(), float("-inf")

    def update(self) -> None:
        """Ask squeue about every watched job that has not ended."""
        waiting = {job for job in self.jobs if not self.ended(job)}
        if not waiting:
            return
        command = ["squeue", f"--user={os.getuid()}", "--noheader", "--array", "--states=all", "--format=%i|%T|%N"]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return  # ask again at the next question
        finally:
            self.checked = time.time()
        listed = self.parser.read_info("JobID|State|NodeList\n" + out)
        self.info.update(listed)
        for job in waiting - set(listed):
            self.info[job] = {"State": "LEFT_QUEUE"}  # ended, and no longer known to SLURM

    def get_info(self, job_id: str, mode: str = "standard") -> dict[str, str]:
        """What squeue last said of `job_id`; `mode`: force (ask now), standard (every few seconds) or cache."""
        if job_id not in self.jobs:
            self.register_job(job_id)
        # As submitit's own watcher: ask at 2 s, 4 s, 8 s ... after the last job started, then every delay_s.
        wait = min(self.delay_s, max(2.0, (time.time() - self.since) / 2))
        if mode == "force" or (mode == "standard" and time.time() - self.checked > wait):
            self.update()
        return self.info.get(job_id, {})

    def get_state(self, job_id: str, mode: str = "standard") -> str:
        """`job_id`'s SLURM state (UNKNOWN until squeue has listed it)."""
        return self.get_info(job_id, mode).get("State") or "UNKNOWN"

    def ended(self, job_id: str) -> bool:
        """Whether `job_id` has ended, by what squeue last said."""
        return self.info.get(job_id, {}).get("State", "UNKNOWN").upper() not in self.INCOMPLETE

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        """Whether `job_id` has ended."""
        self.get_state(job_id, mode)
        return self.ended(job_id)


def queue_watcher() -> QueueWatcher:
    """The watcher for clusters that keep no accounting."""
    return QueueWatcher(delay_s=60)


def watch_with(job: Any, watcher: QueueWatcher) -> None:
    """Have `job` (and each of its tasks) report its state through `watcher`."""
    job.watcher = watcher
    watcher.register_job(job.job_id)
    if job.num_tasks > 1:
        for task in range(job.num_tasks):
            watch_with(job.task(task), watcher)
