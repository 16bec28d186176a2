"""`tune=lr_find`: Lightning's learning-rate finder over a run's own config, its suggestion printed, plotted
and written as the override that uses it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_lab.errors import UserError

log = logging.getLogger(__name__)
SKIP_BEGIN, SKIP_END = 10, 1  # Lightning's suggestion() leaves out the curve's first 10 points and its last


def steepest(lrs: list[float], losses: list[float], mode: str) -> int | None:
    """The index where the finder's smoothed loss falls fastest as plotted: its slope against log10(lr)
    in exponential mode (the plot's log axis), against lr in linear mode; None without two finite points.

    Lightning's suggestion() takes the slope against lr in both modes (its issue #21141): on an
    exponential sweep that puts the point at the foot of the descent, for softmax regression with Adam
    8x below where the plotted loss falls fastest."""
    import numpy as np

    lr, loss = np.asarray(lrs[SKIP_BEGIN:-SKIP_END]), np.asarray(losses[SKIP_BEGIN:-SKIP_END])
    finite = np.flatnonzero(np.isfinite(loss))
    if len(finite) < 2:
        return None
    x = np.log10(lr[finite]) if mode == "exponential" else lr[finite]
    return SKIP_BEGIN + int(finite[np.argmin(np.gradient(loss[finite], x))])


def find_lr(cfg: DictConfig, output_dir: Path) -> float:
    """Run `Tuner.lr_find` on the configured model, data and trainer (no logger, no checkpoints); suggest the
    rate where its loss falls fastest; save the plot as lr_find.png, the curve as lr_find.json and the
    override as lr_find.txt; return the rate (a resumed run: the rate its folder records)."""
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    from mnist_lab import plots
    from mnist_lab.atomic import write_atomic, write_json_atomic

    found = output_dir / "lr_find.json"
    if cfg.get("ckpt_path") and found.is_file():  # a run resumed in its folder keeps the rate it trained with
        lr = json.loads(found.read_text())["suggestion"]
        log.info("resuming with the learning rate found before: optimizer.lr=%g", lr)
        return lr
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    settings = {key: value for key, value in cfg.tune.items() if key != "apply"}
    # The finder's budget is its own num_training mini-batches, however few the run's epochs would allow.
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, max_epochs=-1, max_steps=-1
    )
    model: L.LightningModule = instantiate(cfg.model)
    if not model.automatic_optimization:  # the finder raises the rate once per Lightning step
        raise UserError(
            "tune=lr_find needs a LightningModule with automatic optimization (one optimizer step per "
            "Lightning step); find the rate with one that has it, then train with optimizer.lr=<rate>"
        )
    finder = Tuner(trainer).lr_find(model, datamodule=instantiate(cfg.data), update_attr=False, **settings)
    index = steepest(finder.results["lr"], finder.results["loss"], cfg.tune.mode) if finder is not None else None
    if index is None:
        tried = len(finder.results["lr"]) if finder is not None else 0
        raise UserError(
            f"the learning-rate finder tried {tried} rates (of tune.num_training={cfg.tune.num_training}), too few "
            "to find where the loss falls fastest; try more with tune.num_training=<n>, or, if the loss diverged "
            "early, a lower tune.max_lr or tune.early_stop_threshold=null"
        )
    lr = float(f"{finder.results['lr'][index]:.3g}")
    override = f"optimizer.lr={lr:g}"
    figure = finder.plot()  # Lightning's plot, with its red point where this suggestion lies
    figure.axes[0].plot(finder.results["lr"][index], finder.results["loss"][index], "o", markersize=10, color="red")
    plots.save(figure, output_dir / "lr_find.png")
    write_json_atomic(
        output_dir / "lr_find.json",
        {"suggestion": lr, "index": index, "override": override, **settings, **finder.results},
    )
    write_atomic(output_dir / "lr_find.txt", lambda f: f.write(f"{override}\n".encode()))
    others = [o for o in HydraConfig.get().overrides.task if not o.split("=", 1)[0].lstrip("+~").startswith("tune")]
    print(f"suggested learning rate: {lr:g} (where the loss falls fastest; plot: {output_dir / 'lr_find.png'})")
    print(f"override: {override} (in {output_dir / 'lr_find.txt'})")
    if not cfg.tune.apply:
        print(f"train with it: python -m mnist_lab {' '.join([*others, override])}  (or add tune.apply=true)")
    return lr
