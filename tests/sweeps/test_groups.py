"""`python -m mnist_lab.report`: seed groups and their statistics, checked against values computed
here by formula; the figures; report.html in Chromium; Optuna's extras; two runs side by side."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from matplotlib.collections import PolyCollection

from mnist_lab.sweeps.figures import learning_curves
from mnist_lab.sweeps.groups import group_jobs
from mnist_lab.sweeps.jobs import read_sweep
from mnist_lab.sweeps.summary import find_latest

from helpers import QUIET, run_cli

T_975_DF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (any table)


def paired_p_df2(t: float) -> float:
    """Two-sided p of Student's t with 2 degrees of freedom, in closed form: 1 - |t| / sqrt(t^2 + 2)."""
    return 1 - abs(t) / math.sqrt(t * t + 2)


def sample_std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The issue's sweep, as typed: softmax and the MLP, three seeds each, one epoch (about 15 s);
    returns the working folder and the sweep folder under its outputs/multirun."""
    here = tmp_path_factory.mktemp("two_models")
    args = ["-m", "model=softmax,mlp", "seed=1,2,3", "trainer.max_epochs=1", *QUIET, "logger=none"]
    result = run_cli(*args, cwd=here)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = [p.parent for p in here.glob("outputs/multirun/*/*/multirun.yaml")]
    assert {"groups.csv", "report.html", "curves.png"} <= {p.name for p in sweep.iterdir()}  # at the sweep's end
    return here, sweep


def job_scores(sweep: Path, model: str, key: str = "test/acc") -> dict[int, float]:
    """Each seed's score of one model, read from the jobs' own metrics.json."""
    scores = {}
    for folder in sweep.glob(f"*_{model}"):
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
        scores[seed] = json.loads((folder / "metrics.json").read_text())[key]
    return scores


def test_two_models_three_seeds_are_two_groups_of_three_with_t_intervals_and_a_paired_test(two_models):
    here, sweep = two_models
    printed = run_cli("latest", module="mnist_lab.report", cwd=here)
    assert printed.returncode == 0, printed.stderr
    groups = {row["group"]: row for row in read_csv(sweep / "groups.csv")}
    assert list(groups) == ["model=mlp", "model=softmax"]  # best mean first
    mlp, softmax = job_scores(sweep, "mlp"), job_scores(sweep, "softmax")
    for name, scores in (("model=mlp", mlp), ("model=softmax", softmax)):
        row, values = groups[name], list(scores.values())
        mean, std = sum(values) / 3, sample_std(values)
        assert int(row["n"]) == 3
        assert float(row["test/acc mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(row["test/acc std"]) == pytest.approx(std, rel=1e-9)
        half = T_975_DF2 * std / math.sqrt(3)
        assert float(row["test/acc ci_low"]) == pytest.approx(mean - half, rel=1e-9)
        assert float(row["test/acc ci_high"]) == pytest.approx(mean + half, rel=1e-9)
        assert (row["worst seed"], row["best seed"]) == (
            str(min(scores, key=scores.get)),
            str(max(scores, key=scores.get)),
        )
        assert f"| {name} | 3 | {mean:.4f} ± {std:.4f} | [{mean - half:.4f}, {mean + half:.4f}] |" in printed.stdout

    # softmax against the best (the MLP), paired by seed: the differences' mean, interval and p.
    diffs = [softmax[s] - mlp[s] for s in (1, 2, 3)]
    d, sd = sum(diffs) / 3, sample_std(diffs)
    t = d / (sd / math.sqrt(3))
    row = groups["model=softmax"]
    assert row["test"] == "paired by seed"
    assert float(row["diff vs best"]) == pytest.approx(d, rel=1e-9)
    assert float(row["diff ci_low"]) == pytest.approx(d - T_975_DF2 * sd / math.sqrt(3), rel=1e-9)
    assert float(row["diff ci_high"]) == pytest.approx(d + T_975_DF2 * sd / math.sqrt(3), rel=1e-9)
    assert float(row["p vs best"]) == pytest.approx(paired_p_df2(t), rel=1e-6)
    assert float(row["p vs best"]) < 0.05  # the MLP's lead over softmax is more than chance
    assert groups["model=mlp"]["diff vs best"] == "0.0" and groups["model=mlp"]["p vs best"] == ""
    assert "Jobs, sorted by test/acc" in printed.stdout.split("## Groups over seed")[1]  # the job table below


def test_the_learning_curve_is_the_mean_over_seeds_with_a_band_from_worst_to_best(two_models):
    _, sweep = two_models
    groups = group_jobs(read_sweep(sweep))
    fig = learning_curves(groups)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    for group, line, band in zip(groups, ax.lines, bands, strict=True):
        histories = [json.loads((sweep / j.name / "metrics.json").read_text())["history"] for j in group.jobs]
        assert all([r["epoch"] for r in h] == [1] for h in histories)
        values = [h[0]["val/acc"] for h in histories]
        assert list(line.get_xdata()) == [1] and line.get_ydata()[0] == pytest.approx(np.mean(values))
        vertices = band.get_paths()[0].vertices[:, 1]
        assert vertices.min() == pytest.approx(min(values)) and vertices.max() == pytest.approx(max(values))
    assert (sweep / "curves.png").is_file() and (sweep / "seeds.png").is_file()


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def done(test_acc: float) -> dict:
    return {
        "epochs_run": 2,
        "stop_reason": "max_epochs",
        "val/acc_best": test_acc - 0.01,
        "test/acc": test_acc,
        "train_seconds": 3.0,
    }


def test_unmatched_seeds_get_welchs_test_and_one_seed_says_how_to_add_more(tmp_path):
    from scipy import stats

    sweep = tmp_path / "sweep"
    a = {1: 0.95, 2: 0.97, 3: 0.96}
    b = {4: 0.91, 5: 0.95}
    for n, (seed, acc) in enumerate(a.items()):
        fake_job(sweep, f"{n}_cnn", ["model=cnn", f"seed={seed}"], done(acc))
    for n, (seed, acc) in enumerate(b.items(), start=3):
        fake_job(sweep, f"{n}_mlp", ["model=mlp", f"seed={seed}"], done(acc))
    fake_job(sweep, "5_mlp", ["model=mlp", "seed=6"], {"epochs_run": 1, "stop_reason": "non_finite_loss"})
    fake_job(sweep, "6_softmax", ["model=softmax", "seed=1"], done(0.92))
    printed = run_cli(str(sweep), module="mnist_lab.report")
    assert printed.returncode == 0, printed.stderr
    rows = {row["group"]: row for row in read_csv(sweep / "groups.csv")}
    assert list(rows) == ["model=cnn", "model=mlp", "model=softmax"]

    # Welch's t and its Welch-Satterthwaite degrees of freedom, by formula; the t distribution's tail from scipy.
    x, y = list(b.values()), list(a.values())
    va, vb = sample_std(x) ** 2 / len(x), sample_std(y) ** 2 / len(y)
    t = (np.mean(x) - np.mean(y)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    mlp = rows["model=mlp"]
    assert mlp["test"] == "Welch" and int(mlp["n"]) == 2 and mlp["left out"] == "5_mlp"
    assert float(mlp["p vs best"]) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert float(mlp["diff vs best"]) == pytest.approx(np.mean(x) - np.mean(y), rel=1e-9)
    assert float(mlp["diff ci_low"]) == pytest.approx(np.mean(x) - np.mean(y) - half, rel=1e-9)
    assert float(mlp["diff ci_high"]) == pytest.approx(np.mean(x) - np.mean(y) + half, rel=1e-9)
    assert float(mlp["test/acc mean"]) == pytest.approx(np.mean(x), abs=1e-12)  # the failed job left out

    one = rows["model=softmax"]
    assert int(one["n"]) == 1 and one["test/acc std"] == one["test/acc ci_low"] == one["p vs best"] == ""
    assert "n = 1 (model=softmax): no interval can be given" in printed.stdout and "seed=1,2,3" in printed.stdout
    assert "Left out of model=mlp: 5_mlp (failed)." in printed.stdout


def test_over_names_another_key_to_average_over(tmp_path):
    sweep = tmp_path / "sweep"
    for n, (lr, acc, lead) in enumerate([(0.01, 0.91, 0.05), (0.02, 0.93, 0.04), (0.03, 0.92, 0.06)]):
        fake_job(sweep, f"{n}_mlp", ["model=mlp", f"optimizer.lr={lr}", "seed=1"], done(acc))
        fake_job(sweep, f"{n + 3}_cnn", ["model=cnn", f"optimizer.lr={lr}", "seed=1"], done(acc + lead))
    printed = run_cli(str(sweep), "--over", "optimizer.lr", module="mnist_lab.report")
    assert printed.returncode == 0, printed.stderr
    rows = {row["group"]: row for row in read_csv(sweep / "groups.csv")}
    assert list(rows) == ["model=cnn", "model=mlp"] and all(int(r["n"]) == 3 for r in rows.values())
    assert float(rows["model=cnn"]["test/acc mean"]) == pytest.approx(0.97, abs=1e-12)
    assert rows["model=mlp"]["test"] == "paired by optimizer.lr"  # the same learning rates on both sides
    assert rows["model=mlp"]["best seed"] == "0.02"
    typo = run_cli(str(sweep), "--over", "optimizer.lrr", module="mnist_lab.report")
    assert typo.returncode == 1 and typo.stderr.strip() == (
        "error: --over optimizer.lrr: no job of the sweep sets it; name one of model, optimizer.lr, seed"
    )


def test_latest_finds_the_newest_sweep_whichever_sweeper_wrote_it(tmp_path):
    """Hydra's basic sweeper (any launcher: basic, joblib, submitit, SLURM) writes multirun.yaml; Optuna's
    writes none, and its folder holds only the jobs' folders until the search ends."""
    outputs = tmp_path / "outputs"
    basic = outputs / "multirun" / "2026-01-01" / "09-00-00"
    fake_job(basic, "0_mlp", ["model=mlp"], done(0.9))
    (basic / "multirun.yaml").write_text("{}")
    (basic / ".submitit").mkdir()
    searching = outputs / "multirun" / "2026-01-01" / "10-00-00"
    fake_job(searching, "0_cnn", ["optimizer.lr=0.001"], done(0.98))
    os.utime(basic / "multirun.yaml", (1e9, 1e9))
    os.utime(basic / "0_mlp" / ".hydra" / "overrides.yaml", (1e9, 1e9))
    assert find_latest(outputs) == searching
    os.utime(basic / "multirun.yaml", (2e9, 2e9))
    assert find_latest(outputs) == basic
    assert run_cli("latest", "--outputs", str(tmp_path / "none"), module="mnist_lab.report").returncode == 1


def test_an_optuna_search_reports_its_best_trial_history_and_importances(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    few = [*QUIET, "logger=none", "test=false", "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    few += ["trainer.limit_val_batches=2", "hparams_search=optuna", "model=mlp", "hydra.sweeper.n_trials=3"]
    result = run_cli(*few, f"hydra.sweeper.storage={storage}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = [p.parent for p in tmp_path.glob("outputs/multirun/*/*/optimization_results.yaml")]
    assert not (sweep / "multirun.yaml").exists()
    printed = run_cli("latest", module="mnist_lab.report", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr

    study = optuna.load_study(study_name="mnist_lab_cnn", storage=storage)  # what Optuna itself kept
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    (line,) = [line for line in printed.stdout.splitlines() if line.startswith("Best trial:")]
    assert line.startswith(f"Best trial: #{study.best_trial.number} (job {study.best_trial.number}_mlp) of 3, ")
    assert f"val/acc_best {study.best_value:.4f}: " in line and study.best_value == best["best_value"]
    for key, value in best["best_params"].items():
        assert (f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}") in line.split(": ", 2)[2]
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    )
    assert set(importances) == {"optimizer.lr", "data.batch_size", "model.net.dropout"}
    for name, value in importances.items():
        assert f"| {name} | {value:.3f} |" in printed.stdout
    page = (sweep / "report.html").read_text()
    assert 'id="optuna_history"' in page and 'id="optuna_importance"' in page
    assert (sweep / "optuna_history.png").read_bytes()[:4] == b"\x89PNG"


def test_two_runs_side_by_side_show_differing_keys_both_metrics_and_both_curves(two_models, tmp_path):
    _, sweep = two_models
    a, b = sweep / "0_softmax", sweep / "4_mlp"
    printed = run_cli(str(a), str(b), "--out", str(tmp_path), module="mnist_lab.report")
    assert printed.returncode == 0, printed.stderr
    configs = [yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) for run in (a, b)]
    assert configs[0]["seed"] != configs[1]["seed"]
    assert f"| seed | {configs[0]['seed']} | {configs[1]['seed']} |" in printed.stdout
    nets = [c["model"]["net"]["_target_"] for c in configs]
    assert f"| model.net._target_ | {nets[0]} | {nets[1]} |" in printed.stdout
    assert "| trainer.max_epochs |" not in printed.stdout  # the same in both
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    assert f"| test/acc | {metrics[0]['test/acc']:.4f} | {metrics[1]['test/acc']:.4f} |" in printed.stdout
    figure = tmp_path / "0_softmax_vs_4_mlp.png"
    assert figure.read_bytes()[:4] == b"\x89PNG" and str(figure) in printed.stdout
    bad = run_cli(str(a), str(tmp_path), module="mnist_lab.report")
    assert bad.returncode == 1 and "is not a run folder" in bad.stderr
    one = run_cli(str(a), module="mnist_lab.report")
    assert one.returncode == 1 and "is a run, not a sweep" in one.stderr and f"report {a} <other run>" in one.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
CHROMIUM_ARGS += ["--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def test_report_html_shows_the_groups_and_both_figures_in_chromium_with_no_request_leaving(two_models):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    _, sweep = two_models
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto((sweep / "report.html").as_uri())
            rows = page.locator("table.groups tbody tr")
            assert rows.count() == 2 and rows.nth(0).locator("td").nth(0).text_content() == "model=mlp"
            assert rows.nth(1).locator("td").nth(1).text_content() == "3"
            (softmax,) = [row for row in read_csv(sweep / "groups.csv") if row["group"] == "model=softmax"]
            p = float(softmax["p vs best"])
            assert rows.nth(1).locator("td").last.text_content() == (f"{p:.2g}" if p >= 1e-4 else "<1e-4")
            assert page.locator("table.jobs tbody tr").count() == 6
            for name in ("curves", "seeds"):
                figure = page.locator(f"img#{name}")
                assert figure.is_visible()
                assert figure.evaluate("img => img.complete && img.naturalWidth") > 300
        finally:
            browser.close()
    assert requests and all(urlsplit(url).scheme in ("file", "data") for url in requests), requests


def test_the_report_draws_without_pyplot_and_leaves_the_backend_alone(two_models):
    """Its figures are plain matplotlib Figures: a program that imports mnist_lab keeps its own backend."""
    _, sweep = two_models
    code = (
        "import sys, matplotlib; from pathlib import Path; matplotlib.use('svg'); import mnist_lab.report;"
        "from mnist_lab.sweeps.summary import write_summary;"
        f"write_summary(Path({str(sweep)!r}));"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "svg"]
    assert (sweep / "report.html").stat().st_size > 10_000
