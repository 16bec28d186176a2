"""`python -m mnist_lab.report`: the newest sweep's table, and one line for a folder that is not a sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from mnist_lab.report import main as report_main
from mnist_lab.sweeps.summary import find_latest


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None = None, log: str = "") -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train.log").write_text(log)


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
