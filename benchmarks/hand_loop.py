"""A preset's recipe as a hand-written PyTorch loop: the yardstick of time_to_accuracy.py, and the
quick trainer of levers.py.

It reads the preset's composed config, so it trains what `python -m mnist_lab experiment=<preset>`
trains: the network, the optimizer, the learning-rate schedule (stepped per mini-batch where it spans
the run), the batch size and epochs, label smoothing, augmentation, bf16 autocast and the input
scaling. It never imports Lightning.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Collection

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mnist_lab.cli.command import config_dir
from mnist_lab.data import files
from mnist_lab.registry import register

VAL_SIZE = 5000  # the first training images, as MNISTDataModule splits them


def recipe(preset: str, device: str, overrides: list[str] = ()) -> DictConfig:
    """The composed, resolved config of `python -m mnist_lab experiment=<preset> <overrides>`."""
    register()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={preset}", f"trainer.accelerator={device}", "paths.output_dir=.", *overrides],
        )
    OmegaConf.resolve(cfg)
    return cfg


def mnist(device: str) -> dict[str, tuple[Tensor, Tensor]]:
    """The tutorial's splits as float images in [0, 1], shaped (N, 1, 28, 28), on `device`."""
    splits = files.load(files.dataset("MNIST"), None)
    (x, y), (test_x, test_y) = splits["train"], splits["test"]

    def floats(images: Tensor) -> Tensor:
        return images.unsqueeze(1).to(device, torch.float32).div_(255)

    x, test_x = floats(x), floats(test_x)
    return {
        "val": (x[:VAL_SIZE], y[:VAL_SIZE].to(device)),
        "train": (x[VAL_SIZE:], y[VAL_SIZE:].to(device)),
        "test": (test_x, test_y.to(device)),
    }


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: Tensor, y: Tensor, scale: Callable[[Tensor], Tensor] = lambda t: t) -> float:
    """Share of images `x` that `net`, in eval mode (fp32), classifies as `y`; its mode is kept."""
    was_training = net.training
    net.eval()
    correct = sum((net(scale(xb)).argmax(-1) == yb).sum().item() for xb, yb in zip(x.split(2000), y.split(2000)))
    net.train(was_training)
    return correct / len(y)


def train(
    cfg: DictConfig,
    seed: int,
    data: dict[str, tuple[Tensor, Tensor]],
    score_on: str = "test",
    at: Collection[int] = (),
) -> dict:
    """Train `cfg`'s recipe with `seed`; score split `score_on` when the images seen reach a count in
    `at`, and at every epoch's end, outside the clock. Returns the points [images seen, training
    seconds, accuracy], the training seconds, and the trained `net` with its input `scale`."""
    torch.manual_seed(seed)
    device = cfg.trainer.accelerator
    net = instantiate(cfg.model.net).to(device)
    optimizer = instantiate(cfg.model.optimizer)(params=net.parameters())
    epochs, batch_size = cfg.trainer.max_epochs, cfg.data.batch_size
    x, y = data["train"]
    batches = -(-len(x) // batch_size)
    limit = cfg.trainer.get("limit_train_batches")  # as Lightning reads it: a count, or a share of the epoch
    batches = batches if limit is None else min(batches, limit if isinstance(limit, int) else int(limit * batches))
    per_epoch = min(batches * batch_size, len(x))
    steps = epochs * batches
    scheduler = None
    if cfg.model.get("scheduler") is not None:
        settings = {k: v for k, v in cfg.model.scheduler.items() if k != "interval"}  # Lightning's key
        partial = instantiate(settings)
        spans_run = cfg.model.scheduler.get("interval") == "step"
        takes_steps = "total_steps" in inspect.signature(partial.func).parameters
        scheduler = partial(optimizer=optimizer, **({"total_steps": steps} if takes_steps else {}))
    augment = instantiate(cfg.data.augment) if cfg.data.get("augment") is not None else None
    smoothing = cfg.model.get("label_smoothing", 0.0)
    mean, std = (x.mean().item(), x.std().item()) if cfg.data.get("normalize") else (0.0, 1.0)
    scale = (lambda t: (t - mean) / std) if cfg.data.get("normalize") else (lambda t: t)  # noqa: E731
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.trainer.precision == "bf16-mixed")
    shuffle = torch.Generator().manual_seed(seed)

    points, seconds, images = [], 0.0, 0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=shuffle).to(device)
        for index in order.split(batch_size)[:batches]:
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb)
            with autocast:
                loss = F.cross_entropy(net(scale(xb)), yb, label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None and spans_run:
                scheduler.step()
            images += len(index)
            if images in at and images % per_epoch:
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - start
                points.append([images, seconds, accuracy(net, *data[score_on], scale)])
                start = time.perf_counter()
        if scheduler is not None and not spans_run:
            scheduler.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        points.append([images, seconds, accuracy(net, *data[score_on], scale)])
    return {"points": points, "seconds": seconds, "net": net, "scale": scale}
