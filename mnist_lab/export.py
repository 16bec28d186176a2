"""`python -m mnist_lab.export`: a model file that runs without mnist_lab (ONNX or TorchScript)."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from mnist_lab.atomic import write_atomic
from mnist_lab.cli.command import run_command, run_folder
from mnist_lab.errors import UserError

if TYPE_CHECKING:
    import lightning as L
    from torch import Tensor

log = logging.getLogger(__name__)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def export_onnx(module: L.LightningModule, example: Tensor, path: Path) -> Tensor:
    """Write an ONNX file with a dynamic batch size; return onnxruntime's logits for `example`."""
    import torch

    try:
        import onnxruntime
    except ImportError as err:
        raise UserError('format=onnx needs onnx, onnxscript and onnxruntime: pip install -e ".[export]"') from err
    for name in ("onnxscript", "onnx_ir"):  # their optimiser narrates every pass at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    model = io.BytesIO()  # written whole below: a full disk leaves no half file
    module.to_onnx(
        model,
        example,
        input_names=["images"],
        output_names=["logits"],
        dynamo=True,
        verbose=False,
        dynamic_shapes=({0: torch.export.Dim("batch")},),  # the first argument of forward
        external_data=False,
    )  # one self-contained file, not model.onnx + model.onnx.data
    write_atomic(path, lambda f: f.write(model.getvalue()))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": example.numpy()})[0])


def export_torchscript(module: L.LightningModule, example: Tensor, path: Path) -> Tensor:
    """Write a TorchScript file; return the reloaded file's logits for `example`."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the format asked for
        traced = module.to_torchscript(method="trace", example_inputs=example)
        write_atomic(path, lambda f: torch.jit.save(traced, f))  # a full disk leaves no half file
        return torch.jit.load(str(path))(example)


def export(cfg: DictConfig, out_dir: Path) -> dict:
    """Export the checkpoint's model and check its outputs against the checkpoint's on a test batch."""
    import torch

    from mnist_lab.checkpoints.inference import datamodule_for, probabilities
    from mnist_lab.checkpoints.load import load_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.format not in SUFFIXES:
        raise UserError(f"format={cfg.format} is not supported; use format=onnx or format=torchscript")
    path = Path(cfg.out) if cfg.out else out_dir / f"model{SUFFIXES[cfg.format]}"
    if path.exists():
        raise UserError(f"{path} already exists; choose another out= or remove it first")
    loaded = load_checkpoint(cfg.ckpt_path, cfg.outputs_dir, trust=cfg.get("trust") or ())
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels, _ = datamodule_for(loaded, cfg.data).data_test.tensors
    example = pixels[:100]
    module = loaded.model.eval()  # pixels in [0, 1] -> logits: its input scaling is part of it
    with torch.no_grad():
        exported = (export_onnx if cfg.format == "onnx" else export_torchscript)(module, example, path)
    difference = (exported.softmax(dim=-1) - probabilities(module, example)).abs().max().item()
    if difference > cfg.tolerance:
        path.unlink()
        raise UserError(
            f"the exported model's probabilities differ from the checkpoint's by {difference:.2e} "
            f"(> tolerance={cfg.tolerance}); nothing was written. Export takes the module's forward(x), which "
            "must return logits whose softmax is its predict_step"
        )
    print(f"checkpoint: {loaded.path} ({loaded.name})")
    print(f"wrote {path} ({cfg.format}, input 'images' float32 (N, 1, 28, 28) in [0, 1], output logits (N, 10))")
    print(f"checked on {len(example)} test images: largest probability difference {difference:.2e} <= {cfg.tolerance}")
    return {"path": path, "max_abs_difference": difference}


def main() -> None:
    """`python -m mnist_lab.export [overrides]`."""
    run_command("export", lambda cfg: export(cfg, run_folder()))


if __name__ == "__main__":
    main()
