"""Figures are drawn without pyplot: importing mnist_lab never chooses or switches matplotlib's backend."""

from __future__ import annotations

import subprocess
import sys

from mnist_lab import plots


def test_importing_the_model_and_the_figures_leaves_the_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg');"
        "import mnist_lab.models.classifier, mnist_lab.plots, mnist_lab.training.callbacks;"
        "print(matplotlib.get_backend())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"  # the user's choice, kept


def test_a_figure_is_saved_as_png_without_pyplot(tmp_path):
    import numpy as np

    matrix = np.diag(np.arange(1, 11))
    path = plots.save(plots.confusion_matrix(matrix), tmp_path / "matrix.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = plots.digit_grid(np.zeros((3, 28, 28)), ["1/7", "2/2", "3/3"], [True, False, False], columns=3)
    assert plots.save(grid, tmp_path / "grid.png").stat().st_size > 0
