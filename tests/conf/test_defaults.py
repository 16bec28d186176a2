"""conf/train.yaml's defaults: the MLP, Adam 1e-3, batch 100, the 95% stop, no scheduler; the stop switched off."""

from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from mnist_lab.train import instantiate_all


def test_defaults_are_the_mlp_adam_1e3_batch_100_and_the_95_percent_stop(compose_cfg):
    cfg = compose_cfg()
    assert cfg.model.net._target_ == "mnist_lab.models.nets.MLP" and cfg.model.net.activation == "sigmoid"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
    assert cfg.data.batch_size == 100 and cfg.data.normalize is False
    stop = [c for c in instantiate_all(cfg.callbacks) if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].monitor == "train/acc" and stop[0].stopping_threshold == 0.95


def test_stop_rule_can_be_switched_off_leaving_the_checkpoints(compose_cfg):
    callbacks = instantiate_all(compose_cfg("callbacks.accuracy_stop=null").callbacks)
    assert not any(isinstance(c, EarlyStopping) for c in callbacks)
    checkpoints = {(c.monitor, c.filename) for c in callbacks if isinstance(c, ModelCheckpoint)}
    assert checkpoints == {("val/acc", "epoch_{epoch:03d}-val_acc_{val/acc:.4f}"), (None, "last")}


def test_no_scheduler_by_default_and_the_module_gets_every_group(compose_cfg):
    cfg = compose_cfg()
    assert cfg.scheduler is None and cfg.model.scheduler is None
    assert cfg.model.optimizer == cfg.optimizer
