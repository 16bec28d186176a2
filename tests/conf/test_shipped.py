"""The configs and MNIST ship inside the wheel: an installed mnist_lab trains offline from any folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_configs_and_mnist_and_trains_offline_from_any_folder(tmp_path):
    # setuptools builds in the checkout's build/ and reuses what it finds there: one left by an
    # earlier build would ship files since renamed. Build afresh, and leave no build/ behind.
    build = ROOT / "build"
    shutil.rmtree(build, ignore_errors=True)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(ROOT),
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(tmp_path),
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
    finally:
        shutil.rmtree(build, ignore_errors=True)
    wheel = next(tmp_path.glob("mnist_lab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split("mnist_lab/conf/", 1)[1] for n in names if "mnist_lab/conf/" in n}
    in_checkout = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == in_checkout
    assert {n for n in names if n.endswith(".gz")} == {
        f"mnist_lab/data/packaged/MNIST/{split}-{kind}-idx{d}-ubyte.gz"
        for split in ("train", "t10k")
        for kind, d in (("images", 3), ("labels", 1))
    }
    assert "mnist_lab/serve/static/index.html" in names  # the serve page
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mnist-lab = mnist_lab.train:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    site = tmp_path / "site"  # a non-editable install, imported from another working folder
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_lab",
            "model=softmax",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=100",
            "trainer.enable_progress_bar=false",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        f"reading the copy packaged with mnist_lab ({site / 'mnist_lab' / 'data' / 'packaged' / 'MNIST'})"
        in result.stdout
    )
    (metrics,) = elsewhere.glob("outputs/*/*/metrics.json")
    assert json.loads(metrics.read_text())["test/acc"] > 0.8
