"""The dataset files: a damaged copy is named with the fix, in Python and on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.errors import DataCorruptError

from helpers import one_error_line, run_cli


def write_split(
    raw: Path,
    prefix: str,
    images: np.ndarray,
    labels: np.ndarray,
    image_magic: int = 2051,
    label_magic: int = 2049,
    cut: int = 0,
) -> None:
    image_bytes = (
        image_magic.to_bytes(4, "big")
        + len(images).to_bytes(4, "big")
        + (28).to_bytes(4, "big") * 2
        + images.astype(np.uint8).tobytes()
    )
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(image_bytes[: len(image_bytes) - cut])
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        label_magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    )


CORRUPTIONS = {
    "wrong image magic": (dict(image_magic=2049), "magic number 2049, not 2051"),
    "wrong label magic": (dict(label_magic=7), "magic number 7, not 2049"),
    "truncated images": (dict(cut=100), "bytes where its header promises"),
    "counts disagree": (dict(n_labels=19), "has 20 images but"),
    "label out of range": (dict(bad_label=11), "holds label 11, outside the digits 0-9"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_idx_files_are_named_with_the_fix(tmp_path, case):
    options, message = CORRUPTIONS[case]
    options = dict(options)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, options.pop("n_labels", 20))
    if "bad_label" in options:
        labels[3] = options.pop("bad_label")
    write_split(raw, "train", rng.integers(0, 256, (20, 28, 28)), labels, **options)
    write_split(raw, "t10k", rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5))
    with pytest.raises(DataCorruptError, match=message) as err:
        MNISTDataModule(root=tmp_path, download=False, val_size=5).setup()
    assert "replace" in str(err.value)


def test_corrupt_data_on_the_command_line_is_one_error_line(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_split(raw, "train", np.zeros((20, 28, 28)), np.zeros(20), image_magic=1)
    write_split(raw, "t10k", np.zeros((5, 28, 28)), np.zeros(5))
    result = run_cli(f"data.root={tmp_path}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    error = one_error_line(result)
    assert "train-images-idx3-ubyte has magic number 1" in error
