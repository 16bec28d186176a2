"""A full disk, met for real on a small tmpfs: one line naming the file and the space left, nothing
half-written, and a training run that resumes to exactly the end it would have reached."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from mnist_lab.disk import full_disk_os_error, is_disk_full

from disk_filler import fill
from helpers import QUIET, comparable, one_error_line, run_cli

TESTS_ON_PATH = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
}
# Softmax regression, two steps an epoch, three epochs, one thread: runs compared bit for bit.
RUN = [
    "model=softmax",
    "threads=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "callbacks.accuracy_stop=null",
    "trainer.max_epochs=3",
    *QUIET,
]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs of its own (the tests run as root in CI), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "none", str(disk)]).returncode:
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """RUN uninterrupted, on a disk with room."""
    folder = tmp_path_factory.mktemp("whole") / "run"
    result = run_cli(*RUN, "logger=none", f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stdout[-2000:]
    return folder


# Where the disk fills -> the file whose write meets it first (relative to the run folder).
MOMENTS = {
    "checkpoint": (["logger=none", "+callbacks.fill.epoch=1"], "checkpoints/epoch_001-"),
    "metrics.json": (["logger=none", "+callbacks.fill.when=fit_end"], "metrics.json"),
    "logger file": (["logger=csv", "+callbacks.fill.when=batch_end"], "csv/metrics.csv"),
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_disk_that_fills_mid_run_ends_it_in_one_line_and_resume_reaches_the_same_end(small_disk, whole_run, moment):
    overrides, first_failed = MOMENTS[moment]
    run, filler = small_disk / "run", small_disk / "filler"
    result = run_cli(
        *RUN,
        *overrides,
        "+callbacks.fill._target_=disk_filler.FillDisk",
        f"+callbacks.fill.filler={filler}",
        f"hydra.run.dir={run}",
        env=TESTS_ON_PATH,
    )
    error = one_error_line(result)  # exit code 1, no traceback
    assert error.startswith(f"the disk is full: cannot write {run / first_failed}"), error
    assert " free there)" in error and "the checkpoints written before are intact (" in error
    assert error.endswith(f"free some space, then resume with: python -m mnist_lab resume={run}")
    kept = sorted((run / "checkpoints").glob("*.ckpt"))
    assert kept and not list(run.rglob("*.tmp"))  # no half-written file left beside them
    for checkpoint in kept:
        assert "state_dict" in torch.load(checkpoint, weights_only=True)

    filler.unlink()  # the user frees some space
    resumed = run_cli(f"resume={run}", "callbacks.fill=null", "trust=[disk_filler.]", env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert comparable(run) == comparable(whole_run)
    weights = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (whole_run, run)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize(
    ("module", "args", "output"),
    [
        ("mnist_lab.predict", ["n=100"], "predictions.png"),
        ("mnist_lab.export", ["format=torchscript"], "model.pt"),
    ],
)
def test_predict_and_export_on_a_full_disk_say_so_in_one_line_and_leave_no_half_file(
    small_disk, cnn_run, module, args, output
):
    filler = small_disk / "filler"
    fill(filler)
    os.truncate(filler, filler.stat().st_size - 64_000)  # room for the run's config and log, not the output
    run = small_disk / "out"
    error = one_error_line(run_cli(f"ckpt_path={cnn_run[0]}", *args, f"hydra.run.dir={run}", module=module))
    assert error.startswith(f"the disk is full: cannot write {run / output} ("), error
    assert "free there); free some space, or write elsewhere with hydra.run.dir=<folder>" in error
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p != filler]  # no half file, no empty run


def test_torch_loses_the_oserror_of_a_full_disk_and_the_file_system_tells_instead(small_disk, tmp_path):
    fill(small_disk / "filler")
    path = small_disk / "weights.pt"
    with pytest.raises(RuntimeError) as raised:  # torch's C++ writer, given a path
        torch.save({"w": torch.zeros(100_000)}, path)
    assert full_disk_os_error(raised.value) is None  # nothing in its chain says ENOSPC
    assert is_disk_full(raised.value, path)
    assert not is_disk_full(raised.value, tmp_path / "weights.pt")  # the same words where there is room
