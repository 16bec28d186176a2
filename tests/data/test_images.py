"""Users' digit images in MNIST's format: cropped, fitted to 20 pixels, centred by mass; bad files named."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lab.data.images import ImageError
from mnist_lab.data.segment import load_digit

from helpers import render_digit


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
