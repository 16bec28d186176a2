"""Figures shared by the test phase, predict and evaluate: digit grids and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no backend is chosen or switched


def digit_grid(images: np.ndarray, titles: Sequence[str], wrong: Sequence[bool], columns: int = 5) -> Figure:
    """Images (N, 28, 28) in a grid, each titled; wrong ones titled in red with a red frame."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title, bad in zip(axes.flat, images, titles, wrong):
        ax.imshow(image, cmap="Greys", interpolation="nearest")
        ax.set_title(title, fontsize=9, color="red" if bad else "black")
        if bad:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: np.ndarray) -> Figure:
    """A 10x10 confusion matrix (rows: true label, columns: prediction) with counts in the cells."""
    fig = Figure(figsize=(6, 5.4))
    ax = fig.subplots()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color="white" if row == col else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    ax.set_title(f"confusion matrix ({matrix.sum():,} images, {np.trace(matrix) / matrix.sum():.2%} correct)")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG, atomically: a full disk leaves no half picture."""
    from mnist_lab.atomic import write_atomic

    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path
