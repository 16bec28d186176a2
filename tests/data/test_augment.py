"""The augmentations: batched and drawn per image (position, stroke width, blur, bend, contrast, resolution), chained,
applied to training batches only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mnist_lab.data.augment import Blur, Chain, Contrast, Elastic, RandomAffine, Resolution, StrokeWidth
from mnist_lab.data.datamodule import MNISTDataModule

from helpers import recorded_fit


def square(n: int = 1) -> torch.Tensor:
    """n images of a bright 8x8 square centred in the 28x28 frame."""
    x = torch.zeros(n, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0
    return x


def centre(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, col) of each image in a (N, 1, 28, 28) batch."""
    grid = torch.arange(28, dtype=torch.float32)
    mass = x.sum(dim=(1, 2, 3))
    return torch.stack([(x.sum(dim=(1, 3)) * grid).sum(-1) / mass, (x.sum(dim=(1, 2)) * grid).sum(-1) / mass], 1)


def test_zero_ranges_leave_images_unchanged():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(RandomAffine(degrees=0, translate=0, scale=0)(x), x, atol=1e-5)


def test_shifts_stay_within_the_translate_fraction_and_differ_per_image():
    torch.manual_seed(0)
    moved = centre(RandomAffine(degrees=0, translate=0.1, scale=0)(square(64))) - 13.5
    assert moved.abs().max() <= 0.1 * 28 + 0.1
    assert moved.abs().max() > 1.5  # it does move them
    assert len({tuple(m) for m in moved.round(decimals=2).tolist()}) == 64  # one draw per image


def test_rotation_and_zoom_keep_a_centred_square_centred_and_its_mass_within_range():
    torch.manual_seed(0)
    out = RandomAffine(degrees=30, translate=0, scale=0.2)(square(32))
    assert (centre(out) - 13.5).abs().max() < 0.2
    mass = out.sum(dim=(1, 2, 3)) / 64
    assert mass.min() > 0.8**2 - 0.05 and mass.max() < 1.2**2 + 0.05 and mass.std() > 0.01


@pytest.mark.parametrize(("name", "value"), [("degrees", 200), ("translate", 1.5), ("scale", -0.1)])
def test_out_of_range_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=f"data.augment.{name} must lie in"):
        RandomAffine(**{name: value})


def test_data_module_augments_training_batches_only():
    dm = MNISTDataModule(augment=RandomAffine(degrees=0, translate=0.2, scale=0))
    batch = (square(8), torch.arange(8))
    dm.trainer = SimpleNamespace(training=True)
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert not torch.equal(x, batch[0]) and torch.equal(y, batch[1])
    dm.trainer = SimpleNamespace(training=False)  # validation, test, predict
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)  # the model summary's example input is a bare tensor
    assert dm.on_after_batch_transfer(batch[0], 0) is batch[0]


def test_augmentation_transforms_the_training_batches_of_a_real_fit(tmp_path):
    args = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "seed=3"]
    plain, _ = recorded_fit(tmp_path, *args, name="plain")
    augment = "data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:10,translate:0.1,scale:0.1}"
    moved, metrics = recorded_fit(tmp_path, *args, augment, name="moved")
    assert moved["first_labels"] == plain["first_labels"]  # the same images, in the same order ...
    assert moved["first_pixels"] != pytest.approx(plain["first_pixels"], rel=1e-3)  # ... moved
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_stroke_width_makes_some_digits_thicker_and_others_thinner_and_none_at_p_0():
    torch.manual_seed(0)
    x = square(64)
    ink = StrokeWidth(p=1.0)(x).sum(dim=(1, 2, 3))
    assert (ink > x[0].sum() + 1).any() and (ink < x[0].sum() - 1).any()  # dilated and eroded, per image
    assert torch.equal(StrokeWidth(p=0.0)(x), x)


def test_blur_softens_edges_per_image_and_keeps_the_ink():
    torch.manual_seed(0)
    x = square(32)
    blurred = Blur(p=1.0, sigma=1.0)(x)
    assert ((blurred > 0.05) & (blurred < 0.95)).sum(dim=(1, 2, 3)).unique().numel() > 1  # widths differ
    assert blurred.sum(dim=(1, 2, 3)) == pytest.approx(x.sum(dim=(1, 2, 3)), rel=1e-3)
    assert torch.equal(Blur(p=0.0)(x), x)


def test_elastic_bends_each_digit_by_at_most_alpha_pixels():
    torch.manual_seed(0)
    x = square(32)
    bent = Elastic(p=1.0, alpha=2.0)(x)
    assert not torch.allclose(bent[0], bent[1]) and (centre(bent) - centre(x)).abs().max() <= 2.0
    assert torch.allclose(Elastic(p=0.0)(x), x, atol=1e-5)


def test_contrast_changes_the_inks_strength_but_never_makes_paper_ink():
    torch.manual_seed(0)
    x = square(32)
    x[..., 10:18, 10] = 0.5  # a soft edge, which the power bends
    changed = Contrast(p=1.0, gamma=1.6, low=0.6)(x)
    assert changed[x == 0].eq(0).all() and changed.max() <= 1.0
    peaks, edges = changed.amax(dim=(1, 2, 3)), changed[:, 0, 12, 10] / changed[:, 0, 12, 12]
    assert peaks.min() >= 0.6 - 1e-6 and peaks.std() > 0 and edges.std() > 0


def test_resolution_merges_fine_detail_at_a_side_drawn_per_image_and_keeps_the_ink():
    torch.manual_seed(0)
    x = torch.zeros(32, 1, 28, 28)
    x[..., 6:22, 12] = x[..., 6:22, 15] = 1.0  # two 1-px strokes with a 2-px gap, as a 0's sides
    seen = Resolution(p=1.0, low=0.4)(x)
    gap = seen[:, 0, 14, 13:15].mean(1)
    assert gap.max() > 0.2 and gap.unique().numel() > 3  # the gap fills in, by how much depends on each image's side
    assert seen.sum(dim=(1, 2, 3)) == pytest.approx(x.sum(dim=(1, 2, 3)), rel=0.2)
    assert torch.equal(Resolution(p=0.0)(x), x)
    with pytest.raises(ValueError, match="data.augment.low must lie in"):
        Resolution(low=1.0)


def test_a_chain_applies_its_steps_in_order_and_leaves_out_the_null_ones():
    chain = Chain(thicker=StrokeWidth(p=1.0, amount=0.0), bend=None, contrast=Contrast(p=1.0, gamma=1.0, low=0.5))
    assert list(chain.steps) == ["thicker", "contrast"]
    torch.manual_seed(0)
    assert chain(square(8)).amax(dim=(1, 2, 3)).min() < 1.0  # contrast ran after the no-op step
