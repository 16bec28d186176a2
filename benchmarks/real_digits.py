"""Digits unlike MNIST's, read through the real predict command: photos of pen on paper, fat markers,
low-resolution scans, mouse drawings and printed fonts.

    python benchmarks/real_digits.py outputs/2026-12-04/10-00-00_cnn outputs/2026-12-04/10-05-00_cnn

Each argument is what `ckpt_path=` takes. Every set is drawn afresh from a seed, never stored:

- pen photo: the strokes of an MNIST test digit redrawn with a thin ballpoint (3-6% of the digit's
  height) in dark blue or black ink on grey, tinted paper; a lighting gradient and a soft shadow over
  one side; the digit off-centre and turned a little; sensor noise, a slight blur, JPEG. Some sheets
  carry specks of dirt, ruled lines or the dark table beyond the sheet's edge.
- marker: the same strokes with a fat marker (16-28% of the height) in black, blue, red or green.
- low-res scan: the strokes at a handwriting pen's width in a 28-40 px scan of a 14-22 px digit,
  blurred, then enlarged 4-10 times (bilinear or nearest) and saved as JPEG.
- mouse: the strokes wobbled and drawn on the page's own 280x280 pad with its pen (#111, 20 px).
- MNIST as PNG: the test digit itself, as it is or black on white, at 1-10 times its size: what
  must read as well as before.
- postal scan: the test digit itself cropped to its own box and scanned at 16x16, as postal codes
  were, its strokes meeting the picture's edges; dark on light or light on dark, at 1-4 times that size.
- squared paper: the strokes in grey pencil on a school notebook's squared sheet, lines 4-8% apart.
- printed: the ten digits in every font the machine has, at random sizes, places and shades.

With `--stress`, three harder sets, never used to make a choice, show how far beyond these the
reading holds: a finer pen (1.2-2.4% of the height), a fatter marker (28-40%) and a tiny scan of a
9-13 px digit.

The strokes come from MNIST's test images 0-4,999, which no model trains or validates on (the harder
half of the test set: the other half's writers are neater). `--split report` draws each set's digits
for the figures; `--split dev`, for making choices, draws others of the same half, never one that a
report set draws, with other seeds. Each set is scored by
`python -m mnist_lab.predict ckpt_path=<run> images=<folder>` and, beside it, by a naive reading:
the whole picture resized to 28x28 (inverted when the paper is light). `--in-process` compares many
runs quickly: each picture is prepared once in this process, by the code predict runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage
from skimage import morphology, transform

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
SPLITS = {"report": 0, "dev": 7000}  # each split's seed offset
WRITERS = np.arange(5000)  # MNIST's test images 0-4,999: the harder half, whose writers a model reads worst


def strokes(digit: np.ndarray, height: int) -> np.ndarray:
    """The centre lines of a 28x28 MNIST digit, scaled so that its 20x20 box is `height` px tall."""
    scale = height / 20
    size = max(8, round(28 * scale))
    big = transform.resize(digit.astype(np.float32) / 255, (size, size), order=3, anti_aliasing=False)
    return morphology.skeletonize(big > 0.4)


def pen(skeleton: np.ndarray, radius: float) -> np.ndarray:
    """The ink a round pen of `radius` px leaves along `skeleton`, anti-aliased, in [0, 1]."""
    distance = ndimage.distance_transform_edt(~skeleton)
    return np.clip(radius + 0.5 - distance, 0, 1)


def turned(ink: np.ndarray, rng: np.random.Generator, degrees: float, wobble: float = 0.0) -> np.ndarray:
    """`ink` rotated by up to `degrees` and, with `wobble` px, bent by a smooth random displacement."""
    ink = transform.rotate(ink, rng.uniform(-degrees, degrees), resize=True, order=1)
    if wobble:
        h, w = ink.shape
        fields = [ndimage.gaussian_filter(rng.normal(size=(h, w)), max(h, w) / 6) for _ in range(2)]
        fields = [f / (np.abs(f).max() + 1e-9) * wobble for f in fields]
        ys, xs = np.indices((h, w), dtype=np.float32)
        ink = ndimage.map_coordinates(ink, [ys + fields[0], xs + fields[1]], order=1)
    return ink


def place(canvas_shape: tuple[int, int], ink: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """`ink` pasted at a random place, up to `spread` of the canvas away from its centre."""
    out = np.zeros(canvas_shape, np.float32)
    h, w = ink.shape
    H, W = canvas_shape
    cy = H / 2 + rng.uniform(-spread, spread) * H
    cx = W / 2 + rng.uniform(-spread, spread) * W
    top = int(np.clip(cy - h / 2, 0, max(0, H - h)))
    left = int(np.clip(cx - w / 2, 0, max(0, W - w)))
    out[top : top + h, left : left + w] = ink[: H - top, : W - left]
    return out


def paint(paper: np.ndarray, ink: np.ndarray, colour: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Ink of `colour` (RGB, 0-255) laid on `paper` (H, W, 3) with coverage `ink` in [0, 1]."""
    a = (ink * opacity)[..., None]
    return paper * (1 - a) + colour * a


def encode(rgb: np.ndarray, path: Path, rng: np.random.Generator, jpeg: tuple[int, int] | None) -> Path:
    """Save as JPEG at a random quality in `jpeg`, or as PNG when it is None."""
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if jpeg is None:
        image.save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    image.save(path.with_suffix(".jpg"), quality=int(rng.integers(*jpeg)))
    return path.with_suffix(".jpg")


def pen_photo(
    digit: np.ndarray, rng: np.random.Generator, path: Path, nib: tuple[float, float] = (0.015, 0.03)
) -> Path:
    """A ballpoint digit on grey paper, photographed in uneven light; the pen's radius a share `nib` of
    the height."""
    H, W = int(rng.integers(700, 1100)), int(rng.integers(700, 1100))
    height = int(rng.uniform(0.22, 0.42) * min(H, W))
    ink = turned(pen(strokes(digit, height), rng.uniform(*nib) * height), rng, 8)
    ink = ndimage.gaussian_filter(place((H, W), ink, rng, 0.15), rng.uniform(0.5, 1.2))
    for _ in range(int(rng.integers(0, 4))):  # specks of dirt
        y, x = rng.integers(0, H), rng.integers(0, W)
        ys, xs = np.ogrid[:H, :W]
        ink = np.maximum(ink, ((ys - y) ** 2 + (xs - x) ** 2 <= rng.uniform(1.5, 4) ** 2) * 0.8)
    tint = rng.uniform(150, 215) * (1 + rng.uniform(-0.06, 0.06, size=3))
    paper = np.broadcast_to(tint, (H, W, 3)).astype(np.float32)
    if rng.random() < 0.3:  # ruled lines, light blue
        rows = np.zeros((H, W), np.float32)
        gap = int(rng.integers(H // 14, H // 8))
        for y in range(int(rng.integers(0, gap)), H, gap):
            rows[y : y + 2] = 0.5
        paper = paint(paper, rows, np.array([120, 150, 210]))
    ys, xs = np.mgrid[:H, :W] / max(H, W)
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.15, 0.35) * ((np.cos(angle) * xs + np.sin(angle) * ys) - 0.5)
    edge = rng.uniform(0.1, 0.5)  # a soft shadow beyond a line across one side
    across = np.cos(angle + np.pi) * xs + np.sin(angle + np.pi) * ys
    light = light * (
        1 - rng.uniform(0.3, 0.55) / (1 + np.exp(-(across - across.max() + edge) / rng.uniform(0.02, 0.08)))
    )
    rgb = paint(paper, ink, np.array([[25, 30, 90], [25, 25, 30]][int(rng.integers(2))]), rng.uniform(0.7, 0.95))
    if rng.random() < 0.2:  # the table beyond the sheet's edge
        side = int(rng.uniform(0.03, 0.08) * W)
        rgb[:, W - side :] = rng.uniform(30, 80)
    rgb = rgb * light[..., None] + rng.normal(0, rng.uniform(3, 9), size=(H, W, 1))
    return encode(rgb, path, rng, (60, 90))


def marker(digit: np.ndarray, rng: np.random.Generator, path: Path, nib: tuple[float, float] = (0.08, 0.14)) -> Path:
    """A fat marker digit on white paper; the marker's radius a share `nib` of the height."""
    H = W = int(rng.integers(400, 800))
    height = int(rng.uniform(0.4, 0.7) * H)
    ink = turned(pen(strokes(digit, height), rng.uniform(*nib) * height), rng, 6)
    ink = place((H, W), ink, rng, 0.1)
    colour = np.array([[20, 20, 20], [20, 40, 160], [180, 20, 30], [20, 120, 40]][int(rng.integers(4))])
    paper = np.full((H, W, 3), rng.uniform(225, 255), np.float32)
    rgb = paint(paper, ink, colour, rng.uniform(0.85, 1.0)) + rng.normal(0, 3, size=(H, W, 1))
    return encode(rgb, path, rng, (75, 95))


def lowres_scan(digit: np.ndarray, rng: np.random.Generator, path: Path, tall: tuple[int, int] = (14, 23)) -> Path:
    """A small, blurred scan of a handwritten digit `tall` px high, enlarged."""
    height = int(rng.integers(*tall))
    H, W = int(height * rng.uniform(1.4, 1.9)), int(height * rng.uniform(1.3, 1.9))
    ink = place((4 * H, 4 * W), pen(strokes(digit, 4 * height), rng.uniform(0.06, 0.12) * 4 * height), rng, 0.08)
    ink = transform.resize(ink, (H, W), anti_aliasing=True)  # the scanner's coarse grid
    ink = ndimage.gaussian_filter(ink, rng.uniform(0.5, 1.1))
    gray = rng.uniform(225, 250) - ink * rng.uniform(150, 210) + rng.normal(0, 2, size=(H, W))
    factor = int(rng.integers(4, 11))
    small = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    big = small.resize((W * factor, H * factor), [Image.BILINEAR, Image.NEAREST][int(rng.integers(2))])
    return encode(np.asarray(big.convert("RGB"), np.float32), path, rng, (70, 90))


def mouse(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """Strokes drawn with the mouse on the page's 280x280 pad, with its pen."""
    height = int(rng.uniform(110, 230))
    ink = turned(pen(strokes(digit, height), 10.0), rng, 10, wobble=rng.uniform(2, 6))
    ink = np.clip(ink, 0, 1)
    if max(ink.shape) > 270:  # turned and bent beyond the pad: drawn a little smaller
        ink = transform.resize(ink, tuple(int(s * 270 / max(ink.shape)) for s in ink.shape))
    ink = place((280, 280), ink, rng, 0.12)
    rgb = paint(np.full((280, 280, 3), 255.0, np.float32), ink, np.array([17, 17, 17]))
    return encode(rgb, path, rng, None)


def mnist_like(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """The MNIST digit itself as a PNG: as it is, or black on white, at 1 to 10 times its size."""
    pixels = digit if rng.random() < 0.5 else 255 - digit
    factor = int(rng.integers(1, 11))
    image = Image.fromarray(pixels.astype(np.uint8)).resize((28 * factor, 28 * factor), Image.BILINEAR)
    return encode(np.asarray(image.convert("RGB"), np.float32), path, rng, None)


def postal_scan(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """The digit cropped to its own box and scanned at 16x16, as postal codes were: its longest side fills
    the picture and its strokes meet the picture's edges. Dark on light or light on dark, a little noise,
    saved at 1-4 times that size."""
    rows, cols = np.nonzero(digit > 30)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32)
    shape = tuple(max(1, round(side * 16 / max(crop.shape))) for side in crop.shape)
    small = np.zeros((16, 16), np.float32)
    top, left = (16 - shape[0]) // 2, (16 - shape[1]) // 2
    small[top : top + shape[0], left : left + shape[1]] = transform.resize(crop, shape, anti_aliasing=True)
    ink = small / max(small.max(), 1.0)
    gray = rng.uniform(200, 255) - ink * rng.uniform(150, 200) + rng.normal(0, rng.uniform(0, 6), size=(16, 16))
    gray = 255 - gray if rng.random() < 0.5 else gray
    factor = int(rng.integers(1, 5))
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).resize((16 * factor, 16 * factor), Image.NEAREST)
    return encode(np.asarray(image.convert("RGB"), np.float32), path, rng, None)


def squared_paper(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """A pencil digit on a school notebook's squared sheet: grey strokes, fainter than a pen's, over lines
    4-8% of the sheet apart."""
    H, W = int(rng.integers(500, 900)), int(rng.integers(500, 900))
    height = int(rng.uniform(0.3, 0.5) * min(H, W))
    ink = turned(pen(strokes(digit, height), rng.uniform(0.02, 0.04) * height), rng, 6)
    ink = ndimage.gaussian_filter(place((H, W), ink, rng, 0.12), 0.8)
    grid = np.zeros((H, W), np.float32)
    gap = int(rng.uniform(0.04, 0.08) * min(H, W))
    start = int(rng.integers(0, gap))
    grid[start::gap] = grid[start + 1 :: gap] = 0.6
    grid[:, start::gap] = grid[:, start + 1 :: gap] = 0.6
    paper = paint(np.full((H, W, 3), rng.uniform(225, 250), np.float32), grid, np.array([150, 190, 170]))
    rgb = paint(paper, ink, np.array([70, 70, 75]), rng.uniform(0.45, 0.7)) + rng.normal(0, 4, size=(H, W, 1))
    return encode(rgb, path, rng, (70, 92))


def font_files() -> list[Path]:
    """Every TrueType or OpenType font the machine has."""
    return sorted(p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))


def printed(label: int, font: Path, rng: np.random.Generator, path: Path) -> Path:
    """`label` printed in `font` on light paper."""
    H, W = int(rng.integers(150, 400)), int(rng.integers(150, 400))
    size = int(rng.uniform(0.3, 0.7) * min(H, W))
    shade = int(rng.uniform(0, 80))
    image = Image.new("RGB", (W, H), tuple([int(rng.uniform(220, 255))] * 3))
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), str(label), font=face)
    x = (W - (right - left)) / 2 + rng.uniform(-0.15, 0.15) * W - left
    y = (H - (bottom - top)) / 2 + rng.uniform(-0.15, 0.15) * H - top
    draw.text((x, y), str(label), fill=(shade, shade, shade), font=face)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))
    return encode(np.asarray(image, np.float32), path, rng, (75, 95) if rng.random() < 0.5 else None)


DRAWN: dict[str, Callable[[np.ndarray, np.random.Generator, Path], Path]] = {
    "pen photo": pen_photo,
    "marker": marker,
    "low-res scan": lowres_scan,
    "mouse": mouse,
    "MNIST as PNG": mnist_like,
}
# Kinds added after the sets above: a digit cropped to its own box, and squared paper. Their report
# digits are drawn from those the report's sets above already hold, so the dev split stays as it was.
ADDED: dict[str, Callable[[np.ndarray, np.random.Generator, Path], Path]] = {
    "postal scan": postal_scan,
    "squared paper": squared_paper,
}
# Harder than the sets above, never used to make a choice: how far beyond them the reading holds.
STRESS: dict[str, Callable[[np.ndarray, np.random.Generator, Path], Path]] = {
    "finer pen photo": partial(pen_photo, nib=(0.006, 0.012)),
    "fatter marker": partial(marker, nib=(0.14, 0.2)),
    "tiny scan": partial(lowres_scan, tall=(9, 14)),
}


def report_picks(k: int, n: int) -> np.ndarray:
    """The test images that the report split's `k`-th drawn set takes, `n` of them."""
    return np.random.default_rng(SPLITS["report"] + k).choice(WRITERS, size=n, replace=False)


def build(folder: Path, n: int, split: str, stress: bool = False) -> dict[str, list[tuple[Path, int]]]:
    """Write every set under `folder` (with `stress`, the STRESS sets too): {set: [(image file, label)]}."""
    from mnist_lab.data import files

    test_x, test_y = files.load(files.dataset("MNIST"), None)["test"]
    seed = SPLITS[split]
    reserved = np.unique(np.concatenate([report_picks(k, n) for k in range(len(DRAWN))]))
    # The dev split never draws a digit that a report set draws, so that no choice sees one.
    pool = WRITERS if split == "report" else np.setdiff1d(WRITERS, reserved)
    sets: dict[str, list[tuple[Path, int]]] = {}

    def drawn(
        name: str,
        draw: Callable[[np.ndarray, np.random.Generator, Path], Path],
        rng_seed: int,
        writers: np.ndarray = pool,
    ) -> None:
        rng = np.random.default_rng(rng_seed)
        out = folder / name.replace(" ", "_")
        out.mkdir(parents=True)
        picks = rng.choice(writers, size=n, replace=False)
        sets[name] = [
            (draw(test_x[i].numpy(), rng, out / f"{j:04d}_{int(test_y[i])}"), int(test_y[i]))
            for j, i in enumerate(picks)
        ]

    for k, (name, draw) in enumerate(DRAWN.items()):
        drawn(name, draw, seed + k)
    for k, (name, draw) in enumerate(ADDED.items()):
        drawn(name, draw, seed + 200 + k, reserved if split == "report" else pool)
    fonts = font_files()
    if fonts:
        rng = np.random.default_rng(seed + len(DRAWN))
        out = folder / "printed"
        out.mkdir(parents=True)
        sets["printed"] = [
            (printed(label, font, rng, out / f"{f:03d}_{label}"), label)
            for f, font in enumerate(fonts)
            for label in range(10)
        ]
    for k, (name, draw) in enumerate(STRESS.items() if stress else ()):
        drawn(name, draw, seed + 100 + k)
    return sets


def naive(image: Path) -> np.ndarray:
    """The whole picture resized to 28x28, inverted when its border is light: the reading to beat."""
    gray = Image.open(image).convert("L").resize((28, 28), Image.BILINEAR)
    pixels = np.asarray(gray, np.float32) / 255
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 1 - pixels if np.median(border) > 0.5 else pixels


def predict_command(ckpt: str, images: list[Path], out: Path, checkout: Path | None = None) -> dict[str, int | None]:
    """{image: digit} from `python -m mnist_lab.predict` (of another `checkout` when given); an image it
    refuses reads as None."""
    listed = "[" + ",".join(str(p) for p in images) + "]"
    command = [
        sys.executable,
        "-m",
        "mnist_lab.predict",
        f"ckpt_path={ckpt}",
        f"images={listed}",
        f"hydra.run.dir={out}",
    ]
    out.mkdir(parents=True)  # made beforehand: a command that refuses an image never removes it
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())} if checkout else None
    # From inside the checkout: `python -m` puts the working folder first on the import path.
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env, cwd=checkout)
    if not (out / "predictions.json").exists():
        raise SystemExit(f"predict failed:\n{(done.stdout + done.stderr)[-2000:]}")
    answers = json.loads((out / "predictions.json").read_text())["predictions"]
    found = {a["image"]: a["prediction"] for a in answers}
    return {str(p): found.get(str(p)) for p in images}


def score(
    ckpt: str, sets: dict[str, list[tuple[Path, int]]], work: Path, baseline: Path | None = None
) -> dict[str, dict[str, float]]:
    """Each set's accuracy through the predict command, through the naive resize and, with `baseline`,
    through that checkout's predict command."""
    import torch

    from mnist_lab.checkpoints.inference import probabilities
    from mnist_lab.checkpoints.load import load_checkpoint

    model = load_checkpoint(ckpt).model
    rows = {}
    for name, items in sets.items():
        started = time.perf_counter()
        read = predict_command(ckpt, [p for p, _ in items], work / f"predict_{abs(hash((ckpt, name)))}")
        seconds = time.perf_counter() - started
        pixels = torch.from_numpy(np.stack([naive(p) for p, _ in items])).unsqueeze(1)
        resized = probabilities(model, pixels).argmax(1).tolist()
        labels = [label for _, label in items]
        if baseline:
            before = predict_command(
                ckpt, [p for p, _ in items], work / f"baseline_{abs(hash((ckpt, name)))}", baseline
            )
        rows[name] = {
            "n": len(items),
            **({"baseline": sum(before[str(p)] == label for p, label in items) / len(items)} if baseline else {}),
            "predict": sum(read[str(p)] == label for p, label in items) / len(items),
            "naive resize": sum(r == label for r, label in zip(resized, labels)) / len(items),
            "refused": sum(read[str(p)] is None for p, _ in items),
            "seconds": round(seconds, 1),
        }
    return rows


def global_paper(picture: np.ndarray, side: int = 320) -> np.ndarray:
    """ink_map with one shade for the whole paper (its border's median), as before the local estimate."""
    from mnist_lab.data import segment

    rgb = segment.resized(picture.astype(np.float32), segment.working_size(picture.shape, side))
    rgb = rgb[..., None] if rgb.ndim == 2 else rgb
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    paper = np.median(border, axis=0)
    return segment.against_paper(rgb, np.broadcast_to(paper, rgb.shape), bool(paper.mean() > 127))


def every_mark(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """digit_mask keeping every mark that stands out from the paper: no lines, specks or edges left out."""
    from mnist_lab.data import segment

    mask = segment.ink_mask(ink)
    if not mask.any():
        raise segment.NoDigitError(f"{name}: no digit found")
    return mask


# Each step of mnist_lab.data.segment, and what replaces it when it is left out.
ABLATIONS = {
    "the paper's shade, measured locally": ("ink_map", global_paper),
    "only the digit's own marks": ("digit_mask", every_mark),
    "the digit's strokes the crop cut": ("CUT", 0.0),
    "the lines across the sheet": ("ruled_lines", np.zeros_like),
    "MNIST's stroke width": ("normalise_strokes", lambda digit, mask: digit),
    "the ink's soft edges kept": ("strokes", lambda ink, mask: mask.astype(np.float32)),
}


def prepared(items: list[tuple[Path, int]]) -> tuple[np.ndarray, list[bool]]:
    """Each picture prepared in this process by mnist_lab.data.segment.load_digit, the code predict runs:
    (N, 1, 28, 28) digits, and whether each was read (a refused one is blank)."""
    from mnist_lab.data import segment

    digits, read = [], []
    for path, _ in items:
        try:
            digits.append(segment.load_digit(path))
            read.append(True)
        except segment.ImageError:
            digits.append(np.zeros((28, 28), np.float32))
            read.append(False)
    return np.stack(digits)[:, None], read


def accuracy(model, digits: np.ndarray, read: list[bool], items: list[tuple[Path, int]]) -> float:
    """The share of `items` read and read right by `model` from their prepared `digits`."""
    import torch

    from mnist_lab.checkpoints.inference import probabilities

    guesses = probabilities(model, torch.from_numpy(digits)).argmax(1).tolist()
    return sum(ok and g == label for ok, g, (_, label) in zip(read, guesses, items)) / len(items)


def in_process(checkpoints: list[str], sets: dict[str, list[tuple[Path, int]]]) -> dict[str, dict[str, float]]:
    """Each checkpoint's accuracy on each set, every picture prepared once in this process: many
    checkpoints compared in the time the command takes for one."""
    from mnist_lab.checkpoints.load import load_checkpoint

    ready = {name: prepared(items) for name, items in sets.items()}
    models = {spec: load_checkpoint(spec).model for spec in checkpoints}
    return {
        spec: {name: accuracy(model, *ready[name], items) for name, items in sets.items()}
        for spec, model in models.items()
    }


def ablate(ckpt: str, sets: dict[str, list[tuple[Path, int]]]) -> dict[str, dict[str, float]]:
    """Each set's accuracy with every preparation step, and with each step left out in turn (in this
    process, through mnist_lab.data.segment.load_digit)."""
    from mnist_lab.checkpoints.load import load_checkpoint
    from mnist_lab.data import segment

    model = load_checkpoint(ckpt).model

    def scores() -> dict[str, float]:
        return {name: accuracy(model, *prepared(items), items) for name, items in sets.items()}

    rows = {"every step": scores()}
    for step, (attribute, replacement) in ABLATIONS.items():
        kept = getattr(segment, attribute)
        setattr(segment, attribute, replacement)
        try:
            rows[f"without {step}"] = scores()
        finally:
            setattr(segment, attribute, kept)
    return rows


def photo_seconds(folder: Path, rounds: int = 5) -> dict[str, float]:
    """Seconds load_digit takes for a 12-megapixel phone photo (4000x3000) of a pen digit, as JPEG, as
    HEIC in 512-px tiles (how a phone writes it) and as HEIC in one piece: the median of `rounds`,
    each reading the file from disk."""
    import pillow_heif

    from mnist_lab.data import files
    from mnist_lab.data.segment import load_digit

    test_x, _ = files.load(files.dataset("MNIST"), None)["test"]
    rng = np.random.default_rng(12)
    small = Image.open(pen_photo(test_x[0].numpy(), rng, folder / "photo")).resize((4000, 3000), Image.BICUBIC)
    noisy = np.asarray(small, np.float32) + rng.normal(0, 4, size=(3000, 4000, 1))
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    photo.save(folder / "photo_12mp.jpg", quality=93)  # about 3 MB, as a phone saves it
    pillow_heif.from_pillow(photo).save(folder / "photo_12mp_tiles.heic", quality=80, tile_size=512)
    pillow_heif.from_pillow(photo).save(folder / "photo_12mp_one_piece.heic", quality=80)
    seconds = {}
    for path in (folder / "photo_12mp.jpg", folder / "photo_12mp_tiles.heic", folder / "photo_12mp_one_piece.heic"):
        load_digit(path)  # imports and first-call costs are not the photo's
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            load_digit(path)
            times.append(time.perf_counter() - started)
        seconds[f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)"] = round(float(np.median(times)), 3)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="what ckpt_path= takes: a run folder, a .ckpt, latest")
    parser.add_argument("--n", type=int, default=300, help="images per drawn set (printed: 10 per font)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="report")
    parser.add_argument("--keep", type=Path, help="write the sets here and keep them, to look at")
    parser.add_argument("--baseline", type=Path, help="another checkout whose predict command to score beside")
    parser.add_argument("--goal", type=float, default=0.97, help="the accuracy every set must reach")
    parser.add_argument("--stress", action="store_true", help="also score the harder STRESS sets (no goal)")
    parser.add_argument(
        "--ablate", action="store_true", help="also score each preparation step left out (1st checkpoint)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="score in this process, each picture prepared once, not through the command (to compare many runs)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "real_digits.json")
    args = parser.parse_args()
    if args.in_process and args.baseline:
        parser.error("--baseline scores another checkout's predict command; it cannot run --in-process")
    args.checkpoints = [str(Path(c).resolve()) if Path(c).exists() else c for c in args.checkpoints]

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        sets = build(folder / "sets", args.n, args.split, args.stress)
        if args.in_process:
            quick = in_process(args.checkpoints, sets)
            results = {
                spec: {name: {"n": len(sets[name]), "predict": acc} for name, acc in row.items()}
                for spec, row in quick.items()
            }
        else:
            results = {spec: score(spec, sets, Path(tmp), args.baseline) for spec in args.checkpoints}
        photo = {} if args.in_process else photo_seconds(Path(tmp))
        ablation = ablate(args.checkpoints[0], sets) if args.ablate else {}
    columns = ["predict"] if args.in_process else ["predict", "naive resize", *(["baseline"] if args.baseline else [])]
    print("| set | n | " + " | ".join(f"{s}: {c}" for s in args.checkpoints for c in columns) + " |")
    print("|---|---|" + "---|" * len(columns) * len(args.checkpoints))
    for name in sets:
        cells = " | ".join(f"{results[s][name][c]:.3f}" for s in args.checkpoints for c in columns)
        print(f"| {name} | {len(sets[name])} | {cells} |")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if ablation:
        print(f"\n| preparation ({args.checkpoints[0]}) | " + " | ".join(sets) + " |")
        print("|---|" + "---|" * len(sets))
        for row, accuracies in ablation.items():
            print(f"| {row} | " + " | ".join(f"{accuracies[name]:.3f}" for name in sets) + " |")
    for kind, seconds in photo.items():
        print(f"a 12-megapixel photo, {kind}: prepared in {seconds:.3f} s (goal <= 1 s)")
    summary = {
        "split": args.split,
        "in_process": args.in_process,
        "cpu": cpu,
        "results": results,
        "photo_seconds": photo,
        "ablation": ablation,
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out} ({cpu})")
    short = [
        (s, name)
        for s in results
        for name, row in results[s].items()
        if row["predict"] < args.goal and name not in STRESS
    ]
    for s, name in short:
        print(f"below the goal of {args.goal}: {s}, {name} ({results[s][name]['predict']:.3f})")


if __name__ == "__main__":
    main()
