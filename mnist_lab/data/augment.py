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


def per_image(x: Tensor, p: float) -> Tensor:
    """A (N, 1, 1, 1) mask, true for each image of the batch `x` with probability `p`."""
    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)


class StrokeWidth(nn.Module):
    """Strokes made thicker or thinner per image, as a fat marker or a fine pen draws them: a blend of up
    to `amount` toward a 3x3 dilation or a 2x2 erosion, for a share `p` of the images."""

    def __init__(self, p: float = 0.5, amount: float = 1.0) -> None:
        super().__init__()
        self.p, self.amount = p, amount

    def forward(self, x: Tensor) -> Tensor:
        thicker = F.max_pool2d(x, 3, stride=1, padding=1)
        thinner = -F.max_pool2d(F.pad(-x, (0, 1, 0, 1), value=-1.0), 2, stride=1)
        grow = per_image(x, 0.5)
        target = grow * thicker + (1 - grow) * thinner
        blend = per_image(x, self.p) * torch.rand_like(grow) * self.amount
        return x + blend * (target - x)

    def extra_repr(self) -> str:
        return f"p={self.p}, amount={self.amount}"


class Blur(nn.Module):
    """A Gaussian blur of random width up to `sigma` pixels per image, as a low-resolution scan or an
    out-of-focus photo shows a digit, for a share `p` of the images."""

    def __init__(self, p: float = 0.5, sigma: float = 1.0) -> None:
        super().__init__()
        self.p, self.sigma = p, sigma

    def forward(self, x: Tensor) -> Tensor:
        # torchvision's gaussian_blur takes one sigma per call: a grouped convolution gives each image its own.
        n, c, h, w = x.shape
        sigma = (torch.rand(n, device=x.device) * self.sigma).clamp(min=0.05)
        offsets = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
        line = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
        line = line / line.sum(1, keepdim=True)
        kernels = (line[:, :, None] * line[:, None, :]).repeat_interleave(c, 0)[:, None]
        blurred = F.conv2d(x.reshape(1, n * c, h, w), kernels, padding=2, groups=n * c).reshape(n, c, h, w)
        keep = per_image(x, self.p)
        return keep * blurred + (1 - keep) * x

    def extra_repr(self) -> str:
        return f"p={self.p}, sigma={self.sigma}"


class Elastic(nn.Module):
    """A smooth random bend of up to `alpha` pixels per image, as hands write the same digit differently:
    displacements drawn on a `grid` x `grid` lattice and interpolated, for a share `p` of the images."""

    def __init__(self, p: float = 0.5, alpha: float = 2.0, grid: int = 4) -> None:
        super().__init__()
        self.p, self.alpha, self.grid = p, alpha, grid

    def forward(self, x: Tensor) -> Tensor:
        # torchvision's ElasticTransform draws one displacement per call, shared by a whole batch.
        n, _, h, w = x.shape
        coarse = (torch.rand(n, 2, self.grid, self.grid, device=x.device) * 2 - 1) * per_image(x, self.p)
        # In grid_sample's units an image spans 2, so a shift of one pixel is 2 / side.
        shift = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True) * (2 * self.alpha / max(h, w))
        identity = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(n, 2, 3)
        grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False) + shift.permute(0, 2, 3, 1).to(x.dtype)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, grid={self.grid}"


class Contrast(nn.Module):
    """Ink of another strength and edge per image, as pens and scanners give it: pixels raised to a power
    in [1 / gamma, gamma] and scaled by a peak in [low, 1], for a share `p` of the images."""

    def __init__(self, p: float = 0.5, gamma: float = 1.6, low: float = 0.6) -> None:
        super().__init__()
        self.p, self.gamma, self.low = p, gamma, low

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        power = self.gamma ** (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1)
        peak = self.low + (1 - self.low) * torch.rand(n, 1, 1, 1, device=x.device)
        changed = x.clamp(min=0) ** power * peak
        keep = per_image(x, self.p)
        return keep * changed + (1 - keep) * x

    def extra_repr(self) -> str:
        return f"p={self.p}, gamma={self.gamma}, low={self.low}"


class Resolution(nn.Module):
    """A digit seen at a lower resolution and enlarged back, as a low-resolution scan or a small digit in a
    photo reaches the model: shrunk with an antialiased bilinear filter to a side in [`low`, 1) of its own
    and enlarged back, for a share `p` of the images."""

    def __init__(self, p: float = 0.3, low: float = 0.4) -> None:
        super().__init__()
        if not 0 < low < 1:
            raise ValueError(f"data.augment.low must lie in (0, 1), got {low!r}")
        self.p, self.low = p, low

    def forward(self, x: Tensor) -> Tensor:
        # One resize pair per side length drawn: a 28x28 batch at low=0.4 has at most 18 of them.
        n, _, h, w = x.shape
        sides = (h * (self.low + (1 - self.low) * torch.rand(n, device=x.device))).round().clamp(min=2).long()
        chosen = per_image(x, self.p).flatten().bool()
        out = x.clone()
        for side in sides[chosen].unique().tolist():
            pick = chosen & (sides == side)
            small = F.interpolate(x[pick], size=(side, round(side * w / h)), mode="bilinear", antialias=True)
            out[pick] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}, low={self.low}"


class Chain(nn.Module):
    """Augmentations applied one after another in the order given, each drawing its own randomness per
    image; a step given as None is left out (`data.augment.blur=null`)."""

    def __init__(self, **steps: nn.Module | None) -> None:
        super().__init__()
        self.steps = nn.ModuleDict({name: step for name, step in steps.items() if step is not None})

    def forward(self, x: Tensor) -> Tensor:
        for step in self.steps.values():
            x = step(x)
        return x
