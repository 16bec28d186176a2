"""benchmarks/reproduction.py: the report's curves come from the runs' own TensorBoard events."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reproduction", ROOT / "benchmarks" / "reproduction.py")
reproduction = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduction)


def test_curve_reads_each_epochs_training_cost_and_accuracy_as_the_tutorial_numbers_them(mlp_run):
    run_dir, metrics = mlp_run
    curve = reproduction.curve(run_dir)
    assert list(curve) == [1]  # the tutorial prints epochs from 1
    loss, acc = curve[1]
    assert loss == pytest.approx(metrics["train/loss"]) and acc == pytest.approx(metrics["train/acc"])


def test_report_puts_seeds_published_numbers_and_targets_in_its_tables(mlp_run, tmp_path):
    run_dir, metrics = mlp_run
    runs = tmp_path / "runs"
    for group in ("tutorial_mlp", "best_mlp"):
        for seed in (1, 2):
            (runs / group).mkdir(parents=True, exist_ok=True)
            (runs / group / f"seed{seed}").symlink_to(run_dir)
    markdown = reproduction.report(runs, tmp_path / "docs" / "REPRODUCTION.md")
    assert (tmp_path / "docs" / "reproduction_curves.png").stat().st_size > 10_000
    acc = f"{metrics['test/acc']:.4f}"
    assert f"| {acc} ({acc}-{acc}) | 201 epochs logged, test 0.9113 |" in markdown
    assert f"| 1 | 5.25198 | 0.30315 | {metrics['train/loss']:.5f} | {metrics['train/acc']:.5f} |" in markdown
    assert "| 11 | 0.89775 | 0.77602 | stopped | stopped |" in markdown  # the runs had one epoch
    met = "met" if metrics["test/acc"] >= 0.985 else "NOT met"
    assert f"| best_mlp | 1, 2 | {acc}, {acc} | {acc} ({acc}-{acc}) | >= 0.985 ({met}) |" in markdown
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 1
