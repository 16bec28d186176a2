"""Users' digit images in MNIST's format: cropped, fitted to 20 pixels, centred by mass; bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.data.images import ImageError
from mnist_lab.data.segment import load_digit


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    dm = MNISTDataModule(download=False)
    dm.setup()
    return dm.data_test.tensors


def render_digit(pixels: torch.Tensor, path: Path, scale: int = 10, margin: int = 60) -> Path:
    """Draw a test digit as a large dark-on-white PNG with a wide margin, as a user's scan might be."""
    ink = (pixels[0].numpy() * 255).astype(np.uint8)
    big = Image.fromarray(255 - ink).resize((28 * scale, 28 * scale), Image.BILINEAR)
    page = Image.new("L", (28 * scale + 2 * margin, 28 * scale + margin), 255)
    page.paste(big, (margin + 17, margin // 3))
    page.convert("RGB").save(path)
    return path


def test_user_digit_is_cropped_fitted_to_20_pixels_and_centred_by_mass(tmp_path, test_set):
    digit = load_digit(render_digit(test_set[0][0], tmp_path / "seven.png"))
    assert digit.shape == (28, 28) and digit.min() == 0.0 and digit.max() == pytest.approx(1.0, abs=0.01)
    rows, cols = np.nonzero(digit > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21
    ys, xs = np.indices(digit.shape)
    assert abs((ys * digit).sum() / digit.sum() - 14) <= 1 and abs((xs * digit).sum() / digit.sum() - 14) <= 1


def test_image_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: not an image"):
        load_digit(empty)
