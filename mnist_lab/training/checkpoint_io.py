"""Checkpoints that are never half-written (`trainer.plugins`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mnist_lab.atomic import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic in the checkpoint's own folder (Lightning's own
    staging file lives in the system temp folder, whose rename is a copy across file systems)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomic(path, lambda f: torch.save(checkpoint, f))
