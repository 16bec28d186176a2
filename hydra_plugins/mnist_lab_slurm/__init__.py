"""mnist_lab's SLURM launcher for Hydra (`hydra/launcher=slurm`); the work is done in mnist_lab.sweeps.slurm.

Hydra takes launchers only from the hydra_plugins namespace. mnist_lab is imported only inside the
methods, so that Hydra's plugin scan stays light in other applications.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:  # no sweeps extra: nothing to build on, and Hydra's plugin scan must not warn
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:

    class SlurmLauncher(SubmititSlurmLauncher):
        """hydra-submitit-launcher's SLURM launcher, with sbatch's refusals as one line, DDP across a
        job's SLURM tasks in one run folder, and requeued jobs that resume from their last checkpoint."""

        def __call__(
            self,
            sweep_overrides: list[str],
            job_dir_key: str,
            job_num: int,
            job_id: str,
            singleton_state: dict[type, Singleton],
        ) -> JobReturn:
            """Run one job of the sweep; this runs in every SLURM task of the job, on the cluster."""
            from mnist_lab.sweeps.slurm import run_task

            return run_task(self, sweep_overrides, job_dir_key, job_num, singleton_state)

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            """Submit the sweep's jobs to SLURM and wait for their results."""
            from mnist_lab.sweeps.slurm import launch

            return launch(self, job_overrides, initial_job_idx)
