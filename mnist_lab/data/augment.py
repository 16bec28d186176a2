"""Batched data augmentation that runs on the training device, after batches reach it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomAffine(nn.Module):
    """A random rotation, scaling and shift per image, drawn independently for every image of a batch.

    `degrees`: rotations in [-degrees, degrees]; `translate`: shifts up to that fraction of the
    image in x and y; `scale`: zoom in [1 - scale, 1 + scale]. Works on (N, C, H, W) batches with
    one `affine_grid` + `grid_sample` call for the whole batch.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        for name, value, top in (("degrees", degrees, 180), ("translate", translate, 1), ("scale", scale, 1)):
            if not 0 <= value < top:
                raise ValueError(f"data.augment.{name} must lie in [0, {top}), got {value!r}")
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]

        def uniform(limit: float) -> Tensor:
            return (torch.rand(n, device=x.device) * 2 - 1) * limit

        angle = uniform(math.radians(self.degrees))
        zoom = 1 + uniform(self.scale)
        cos, sin = angle.cos() / zoom, angle.sin() / zoom
        # affine_grid maps output to input coordinates in [-1, 1], so a shift of t image widths is 2t.
        theta = torch.stack(
            [
                torch.stack([cos, -sin, uniform(2 * self.translate)], 1),
                torch.stack([sin, cos, uniform(2 * self.translate)], 1),
            ],
            dim=1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}"
