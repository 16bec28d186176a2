"""Find the digit in a picture the way a person sees it, and frame it the way MNIST framed its digits.

The steps, each for a way real pictures differ from MNIST's:
1. the paper's own shade is measured locally, so shadows, lighting gradients and tinted paper are
   not ink, and coloured ink counts in whichever channel shows it; the lines of a ruled or squared
   sheet are taken out of the ink;
2. ink is what stands out from the paper's noise, kept with its faint connected parts (hysteresis);
3. ruled lines, specks, the sheet's edge and other marks that are not the digit's strokes are left out,
   yet a digit cropped to its own box keeps the strokes that meet the picture's edges;
4. strokes wider or thinner, relative to the digit, than MNIST's own range are brought toward MNIST's
   width: a fine pen's thickened, a sharp-edged fat marker's thinned (a blurred scan's left as it is);
5. the digit is fitted into 20x20 with area-averaged edges and placed in 28x28 by its centre of mass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_lab.data.images import ImageError, read_image

WORK_SIDE = 320  # pictures are analysed at most this size: a ballpoint stroke in a phone photo stays >= 1 px
MIN_SIDE = 112  # smaller ones (a 28x28 digit, a small scan) are enlarged first, so that strokes can be measured
PAPER_GRID = 36  # the paper's shade is estimated on a grid this size, in windows a third of it wide
MIN_INK = 0.15  # a digit's strokes are at least this much darker (or lighter) than the paper around them
PEAK_PIXELS = 20  # a digit has at least this many pixels of ink at the working size (a small, thin 1)
# Stroke width over the digit's height (its 20x20 box), as MNIST's training images measure with
# stroke_ratio() after ink_map and digit_mask (500 training images): median 0.19, middle half 0.16-0.21.
MNIST_STROKE_RATIO = 0.19
# Only strokes beyond MNIST's own spread are changed: through to_mnist, 9 in 10 of MNIST's test digits lie
# within 0.6-1.4 times that ratio, which the model has learnt to read (and StrokeWidth widens in training).
THIN, FAT = 0.5, 1.6
SHARP = 0.2  # a sharp stroke has less than this share of its ink in mid-tones (a blurred one about half)
FLAT_NOISE = 2.0  # a picture made on a screen varies less than this over its bare paper; a photo's noise more
LINE_SPAN = 0.6  # a straight run of ink across this much of the picture is a ruled line or an edge
DARK_GROUND = 100  # a dark ground (a blackboard, MNIST's black) is darker than this over most of the picture
CUT = 2.0  # a mark meeting the picture's edge over at most this many stroke widths is a stroke the crop cut
RIVAL_MASS = 0.4  # a separate mark with this share of the digit's ink is a second digit


class NoDigitError(ImageError):
    """An image that decodes but shows no digit (empty, of one colour, or only paper and noise)."""


class SeveralMarksError(ImageError):
    """An image with more than one mark of a digit's size: one digit per image is expected."""


def to_mnist(picture: np.ndarray, name: str = "image") -> np.ndarray:
    """A picture (H, W) or (H, W, 3) in [0, 255] as MNIST's (28, 28) floats in [0, 1]: light ink on black."""
    try:
        ink = ink_map(picture)
        mask = digit_mask(ink, name)
    except (NoDigitError, SeveralMarksError):
        if max(picture.shape[:2]) <= WORK_SIDE:
            raise
        # A pen finer than the working size shows fades or breaks there: look again at twice the size.
        ink = ink_map(picture, 2 * WORK_SIDE)
        mask = digit_mask(ink, name)
    return frame(normalise_strokes(strokes(ink, mask), mask))


def load_digit(path: str | Path) -> np.ndarray:
    """Read an image file and prepare it like an MNIST digit: (28, 28) floats in [0, 1]."""
    return to_mnist(read_image(Path(path)), name=str(path))


def working_size(shape: tuple[int, ...], side: int = WORK_SIDE) -> tuple[int, int]:
    """The (height, width) a picture is analysed at: at most `side`, at least MIN_SIDE on its long side."""
    h, w = shape[:2]
    scale = min(side / max(h, w), 1.0) if max(h, w) >= MIN_SIDE else MIN_SIDE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (H, W) or (H, W, C) resampled to `size` (height, width): area-averaged when shrunk."""
    from PIL import Image

    if image.shape[:2] == size:
        return image
    channels = image[..., None] if image.ndim == 2 else image
    out = [
        np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize(size[::-1], Image.BILINEAR))
        for c in channels.transpose(2, 0, 1)
    ]
    return np.stack(out, -1) if image.ndim == 3 else out[0]


def ink_map(picture: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """How much ink each pixel holds, in [0, 1], against the paper's local shade (0 for bare paper), with
    the picture analysed at most `side` pixels long."""
    from scipy import ndimage

    rgb = picture.astype(np.float32)
    rgb = resized(rgb[..., None] if rgb.ndim == 2 else rgb, working_size(rgb.shape, side))
    size = rgb.shape[:2]
    flat = flat_paper(rgb)
    if flat is not None:  # made on a screen (the page's pad, a digit saved as PNG): the paper is one colour
        dark_ink = bool(rgb.mean(-1)[(np.abs(rgb - flat) > FLAT_NOISE).any(-1)].mean() < flat.mean())
        return against_paper(rgb, np.broadcast_to(flat, rgb.shape), dark_ink)
    # First the paper's shade roughly, on a coarse grid: enough to tell the ink's polarity and how wide
    # its strokes are.
    gray = rgb.mean(-1, keepdims=True)
    coarse = resized(gray[..., 0], tuple(max(4, round(s * PAPER_GRID / max(size))) for s in size))
    rough = {dark_ink: rough_ink(gray, coarse, dark_ink) for dark_ink in (True, False)}
    dark_ink = ground_score(rough[True]) >= ground_score(rough[False])
    if not dark_ink and np.median(gray) >= DARK_GROUND:
        # Light ink on a ground as light as paper: a shadow and the table along most of the border pass
        # for the ground in the percentile estimate. A closing keeps the shadow's edge as paper: dark ink
        # unless that estimate too finds light ink standing out.
        closed = {k: ground_score(rough_ink(gray, coarse, k, closing=True)) for k in (True, False)}
        dark_ink = closed[True] >= closed[False]
    # Then the paper's shade exactly: a grey closing (opening for light ink) wider than the strokes
    # fills them with the paper around them, yet keeps a shadow's sharp edge where it is. It must be
    # so wide that it spans the strokes' widest part too (a fat marker's joints, a blot), or the paper
    # estimated there would be ink and only the strokes' outline would remain.
    mark = largest_mark(ink_mask(rough[dark_ink]))
    mark |= ink_coloured_holes(mark, gray[..., 0])
    width = mean_width(mark)
    # A joint is at most about twice a stroke's width: what is wider is a shadow the rough estimate took
    # for ink, which a closing that wide would fill with paper, and then count its edge as ink.
    widest = min(2 * ndimage.distance_transform_edt(mark).max(), 2 * width)
    side = int(np.clip(round(max(2.5 * width, 1.5 * widest)) + 3, 5, max(size)))
    close = ndimage.grey_closing if dark_ink else ndimage.grey_opening
    paper = close(ndimage.uniform_filter(rgb, (3, 3, 1)), size=(side, side, 1), mode="nearest")
    ink = against_paper(rgb, paper, dark_ink)
    return np.clip(ink - ruled_lines(ink), 0.0, 1.0)


def ruled_lines(ink: np.ndarray) -> np.ndarray:
    """The ink of the lines that run across the whole picture, row by row and column by column: a ruled or
    squared sheet's lines, however faint or broken by noise, but not a digit's bar, which is wider."""
    from scipy import ndimage

    lines = np.zeros_like(ink)
    for axis in (0, 1):
        # A line covers most of its row; a digit's bar rarely three quarters of it.
        profile = np.percentile(ink, 25, axis=1 - axis)
        thick = max(3, round(0.02 * ink.shape[axis]))
        lines = np.maximum(lines, np.expand_dims(profile - ndimage.grey_opening(profile, size=thick), 1 - axis))
    return lines


def rough_ink(gray: np.ndarray, coarse: np.ndarray, dark_ink: bool, closing: bool = False) -> np.ndarray:
    """Ink over a rough estimate of the paper's shade made on `coarse` (`gray` shrunk to the paper's grid):
    a bright (for light ink, dark) percentile of windows a third of the picture wide, which spans a fat
    marker's strokes, or with `closing`, a grey closing (opening) a sixth wide, which keeps a shadow's edge."""
    from scipy import ndimage

    window = max(3, PAPER_GRID // 3)
    if closing:
        paper = (ndimage.grey_closing if dark_ink else ndimage.grey_opening)(coarse, size=window // 2, mode="nearest")
    else:
        paper = ndimage.percentile_filter(coarse, 80 if dark_ink else 20, size=window, mode="nearest")
        paper = ndimage.uniform_filter(paper, window // 2, mode="nearest")
    return against_paper(gray, resized(paper, gray.shape[:2])[..., None], dark_ink)


def ground_score(ink: np.ndarray) -> float:
    """How well `ink` fits ink on a ground: it stands out strongly in few places, where the ground is
    everywhere (a grey sheet in shadow is darker than mid-grey) and along most of the border (a fat digit
    may cover more of the picture than the paper does)."""
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    return float(np.percentile(ink, 99.95) - 4 * ink.mean() - 4 * max(0.0, np.median(border) - MIN_INK))


def flat_paper(rgb: np.ndarray) -> np.ndarray | None:
    """The paper's one colour, (C,), when the whole border and most of the picture are exactly it, else None."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    if np.ptp(border, axis=0).max() > FLAT_NOISE:
        return None
    colour = np.median(border, axis=0)
    bare = (np.abs(rgb - colour) <= FLAT_NOISE).all(-1)
    return colour if 0.5 <= bare.mean() < 1.0 else None


def ink_coloured_holes(mark: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """The holes in `mark` whose shade is nearer the mark's own than the paper's around it: the inside of
    a stroke too wide for the rough estimate, which found only its outline, not the loop of a 0 or 8."""
    from scipy import ndimage

    holes, count = ndimage.label(~mark)
    # What of the paper does not reach the picture's edge is a hole.
    holes[np.isin(holes, np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))] = 0
    if not holes.any():
        return np.zeros_like(mark)
    around = ndimage.binary_dilation(mark, iterations=3) & ~mark & (holes == 0)
    if not around.any():  # the mark fills the picture up to its edge: no paper to compare with
        return np.zeros_like(mark)
    ink, paper = np.median(gray[mark]), np.median(gray[around])
    shades = np.asarray(ndimage.median(gray, holes, np.arange(1, count + 1)))
    return np.isin(holes, np.flatnonzero(np.abs(shades - ink) < np.abs(shades - paper)) + 1)


def against_paper(rgb: np.ndarray, paper: np.ndarray, dark_ink: bool) -> np.ndarray:
    """Ink in [0, 1] of each pixel of `rgb` over the paper's shade `paper`, in whichever channel shows it most."""
    if dark_ink:  # as a share of the paper's brightness: a stroke in shadow counts as much as one in light
        ink = 1 - rgb / np.maximum(paper, 1.0)
    else:
        ink = (rgb - paper) / np.maximum(255.0 - paper, 1.0)
    return np.clip(ink.max(-1), 0.0, 1.0)


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """The pixels that stand out from the paper's noise, with their faint connected parts (hysteresis)."""
    from skimage import filters

    otsu = filters.threshold_otsu(ink)
    # The paper's noise, measured on the paper alone: ink, with its soft edges, may cover half the picture or
    # more (a fat marker, a digit cropped to its own box) and would pass for noise.
    paper = ink[ink <= otsu]
    level = np.median(paper)
    noise = 1.4826 * np.median(np.abs(paper - level)) + 1e-3
    high = max(otsu, level + 5 * noise, MIN_INK / 2)
    return filters.apply_hysteresis_threshold(ink, max(0.75 * high, level + 3 * noise), high)


def mean_width(mask: np.ndarray) -> float:
    """The strokes' mean width in pixels: their area over their centre lines' length."""
    from skimage import morphology

    return mask.sum() / max(morphology.skeletonize(mask).sum(), 1)


def largest_mark(mask: np.ndarray) -> np.ndarray:
    """The largest connected mark of `mask` clear of the picture's edge (a shadow or the table beyond the
    sheet touches it), or the largest of all when every mark touches it."""
    from skimage import measure, segmentation

    labels = measure.label(mask, connectivity=2)
    inside = segmentation.clear_border(labels)
    labels = inside if inside.any() else labels
    if labels.max() == 0:
        return mask
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def digit_mask(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """The pixels of the digit's strokes: ink above the paper's noise, without lines, specks or other marks."""
    from skimage import measure, morphology

    # The ink of a small digit's strokes, not one hot pixel: a thin 1 a tenth of a photo's height
    # covers fewer than one pixel in a thousand.
    peak = np.partition(ink, -PEAK_PIXELS, axis=None)[-PEAK_PIXELS] if ink.size > PEAK_PIXELS else ink.max()
    if peak < MIN_INK:
        raise NoDigitError(f"{name}: no digit found (the image is empty, of one colour, or only paper)")
    mask = ink_mask(ink)
    mask &= ~straight_lines(mask)
    # Fragments of one broken stroke are one mark: grouped across gaps of about 1% of the picture.
    grown = morphology.dilation(mask, morphology.disk(max(1, round(0.01 * max(ink.shape)))))
    labels = measure.label(grown, connectivity=2) * mask
    marks = measure.regionprops(labels, intensity_image=ink)
    h, w = ink.shape
    big_enough = [m for m in marks if max(m.bbox[2] - m.bbox[0], m.bbox[3] - m.bbox[1]) >= 0.04 * max(h, w)]
    inside = [m for m in big_enough if m.bbox[0] > 0 and m.bbox[1] > 0 and m.bbox[2] < h and m.bbox[3] < w]
    pool = inside or big_enough  # what touches the picture's edge is the sheet's edge, unless nothing else is
    if not pool or max(m.intensity_mean for m in pool) < MIN_INK:
        raise NoDigitError(f"{name}: no digit found (only specks or faint marks on the paper)")

    def mass(mark) -> float:
        return float(mark.area * mark.intensity_mean)

    digit = max(pool, key=mass)
    top, left, bottom, right = digit.bbox
    # A digit's loose parts lie above or below it (a 5's bar, a broken stroke); a second digit beside it.
    reach = 0.3 * max(bottom - top, right - left)
    reach_up = 0.6 * max(bottom - top, right - left)
    edge = [m for m in big_enough if m not in pool and mass(m) < mass(digit)]
    cut = cut_strokes(labels, digit.label, edge) if edge else []
    near = [
        m
        for m in pool + cut
        if mass(m) >= 0.03 * mass(digit)
        and m.bbox[0] < bottom + reach_up
        and m.bbox[2] > top - reach_up
        and m.bbox[1] < right + reach
        and m.bbox[3] > left - reach
    ]
    rivals = [m for m in pool if m not in near and mass(m) >= RIVAL_MASS * mass(digit)]
    if rivals:
        raise SeveralMarksError(
            f"{name}: {len(rivals) + 1} separate marks of a digit's size; one digit per image is expected: "
            "crop the picture to one digit"
        )
    return np.isin(labels, [m.label for m in near])


def cut_strokes(labels: np.ndarray, digit: int, marks: list) -> list:
    """Those of `marks` (regions of `labels` at the picture's edge) that are strokes of the digit the crop cut."""
    from scipy import ndimage

    # A stroke the crop cut meets the picture's edge across its width only; the sheet's edge, a shadow or
    # the table runs along it. Such a stroke within a stroke's width of the digit is one of its loose parts
    # (a 5's bar); farther off, it is a neighbour's.
    width = mean_width(labels == digit)
    rim = np.ones(labels.shape, bool)
    rim[1:-1, 1:-1] = False
    contact = np.bincount(labels[rim], minlength=labels.max() + 1)
    gap = ndimage.distance_transform_edt(labels != digit)
    return [m for m in marks if contact[m.label] <= CUT * width and gap[labels == m.label].min() <= width]


def straight_lines(mask: np.ndarray) -> np.ndarray:
    """Thin straight runs of ink across most of the picture (ruled lines, a sheet's straight edge)."""
    from scipy import ndimage

    lines = np.zeros_like(mask)
    for axis in (0, 1):
        length = mask.shape[axis]
        span = max(3, round(LINE_SPAN * length))
        # A faint line seen sharply breaks up in the noise: gaps of up to 1% of its length are closed.
        joined = ndimage.binary_closing(
            mask, np.ones((max(2, round(0.01 * length)), 1) if axis == 0 else (1, max(2, round(0.01 * length))))
        )
        runs = ndimage.uniform_filter1d(joined.astype(np.float32), span, axis=axis) > 1 - 0.5 / span
        runs = ndimage.maximum_filter1d(runs, span, axis=axis) & joined
        # Only where the ink itself is thin across the run: a digit's bar across the picture (a digit cropped
        # to its own box) is thicker than a ruled line, and so is a stroke where a line crosses it.
        thick = max(3, round(0.02 * mask.shape[1 - axis]))
        across = (thick, 1) if axis == 1 else (1, thick)
        thin = runs & ~ndimage.binary_opening(joined, np.ones(across))
        # With the ink along its edges, which would otherwise join the digit to what is left of the line.
        lines |= ndimage.binary_dilation(thin, np.ones((3, 1) if axis == 1 else (1, 3))) & mask
    return lines


def longest_side(mask: np.ndarray) -> int:
    """The longer side, in pixels, of the box around the mask's pixels."""
    rows, cols = np.nonzero(mask)
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)


def stroke_ratio(mask: np.ndarray) -> float:
    """The strokes' mean width over the digit's longest side."""
    return mean_width(mask) / longest_side(mask)


def strokes(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The digit's own ink, with its soft edges, scaled so that its strokes' cores read 1; nothing else."""
    from skimage import morphology

    support = morphology.dilation(mask, morphology.disk(max(1, round(0.005 * max(mask.shape)))))
    core = np.percentile(ink[mask], 90)
    return np.where(support, np.clip(ink / max(core, 1e-3), 0.0, 1.0), 0.0).astype(np.float32)


def normalise_strokes(digit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The digit's ink with strokes about as wide, relative to its size, as MNIST's when they lie beyond
    MNIST's own range: a fine pen's thickened, a fat marker's thinned (measured on `mask`, its pixels)."""
    from skimage import morphology

    ratio = stroke_ratio(mask)
    side = longest_side(digit > 0.5)  # the ink's own extent, its soft edges included
    width, target = ratio * side, MNIST_STROKE_RATIO * side
    if ratio < THIN * MNIST_STROKE_RATIO:
        grow = max(1, round((target - width) / 2))
        # A disk as a sequence of small footprints: nearly the same shape, many times faster when wide.
        digit = morphology.dilation(np.pad(digit, grow), morphology.disk(grow, decomposition="sequence"))
    elif ratio > FAT * MNIST_STROKE_RATIO and soft_share(digit) < SHARP:
        # Only a sharp-edged stroke is a fat pen: a blurred scan's is wide from its blur, which the model
        # reads as it is (Blur in training), and eroding it would close its loops.
        shrink = max(1, round((width - target) / 2))
        thinned = morphology.erosion(digit, morphology.disk(shrink, decomposition="sequence"))
        if (thinned > 0.5).sum() >= 0.5 * (digit > 0.5).sum() * target / width:  # not a blot wiped away
            digit = thinned
    return digit


def soft_share(digit: np.ndarray) -> float:
    """The share of the digit's ink in mid-tones (0.2-0.8): small for a sharp pen, large for a blurred scan."""
    inked = digit > 0.2
    return float((inked & (digit < 0.8)).sum() / max(inked.sum(), 1))


def frame(digit: np.ndarray) -> np.ndarray:
    """MNIST's framing: the digit (ink in [0, 1]) fitted into 20x20 keeping its aspect ratio, its edges
    area-averaged, then placed in 28x28 with its centre of mass at the centre."""
    from PIL import Image
    from scipy import ndimage

    rows, cols = np.nonzero(digit > 0.1)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(np.round(crop * 255).astype(np.uint8))
    digit = np.asarray(image.resize(size, Image.BOX if scale < 1 else Image.BILINEAR), dtype=np.float32)

    centre_y, centre_x = ndimage.center_of_mass(digit)
    top = int(np.clip(round(14 - centre_y), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14 - centre_x), 0, 28 - digit.shape[1]))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.clip(canvas / 255.0, 0.0, 1.0)
