"""Turn a user's digit image into an MNIST-style 28x28 array, the way MNIST itself was made."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_lab.errors import UserError

# The file names predict takes for images when it reads a folder or a pattern (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")


class ImageError(UserError):
    """An image file that cannot be read, decoded, or holds no digit."""


class NotAnImageError(ImageError):
    """Bytes that no allowed image decoder recognises."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed: refused before its pixels are decoded."""


class NoDigitError(ImageError):
    """An image that decodes but shows no digit (empty, or of one colour)."""


def decode_grayscale(
    data: bytes, name: str = "image", formats: Sequence[str] | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """An encoded image as float grayscale in [0, 255]; transparent pixels count as white paper.
    `formats` limits the decoders tried (PIL names, e.g. "PNG"); `max_pixels` is checked on the
    header, before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:  # reads the header only
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: {width}x{height} is more than the {max_pixels:,} pixels allowed; send a smaller image"
                )
            image.load()
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image)
            return np.asarray(image.convert("L"), dtype=np.float32)
    except UnidentifiedImageError as err:
        kinds = ", ".join(formats) if formats else "PNG, JPEG, BMP, ..."
        raise NotAnImageError(f"{name}: not an image that can be decoded ({kinds})") from err
    except Image.DecompressionBombError as err:  # PIL's own limit, met before the size can be checked
        limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageTooLargeError(f"{name}: more than the {limit:,} pixels allowed; send a smaller image") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name}: cannot be read ({err})") from err


def read_grayscale(path: Path) -> np.ndarray:
    """The image file as float grayscale in [0, 255]; transparent pixels count as white paper."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except OSError as err:
        raise ImageError(f"{path}: cannot be read ({err})") from err
    return decode_grayscale(data, str(path))


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """MNIST's recipe: light ink on black, cropped to the digit, fitted into 20x20 keeping the aspect
    ratio, then placed in 28x28 with its centre of mass at the centre. Returns floats in [0, 1]."""
    ink = 255.0 - gray if np.median(_border(gray)) > 127 else gray  # dark digit on light paper
    ink = np.clip(ink - np.median(_border(ink)), 0, None)  # the paper's own shade is not ink
    if ink.max() < 32:  # less contrast than a faint pencil line
        raise NoDigitError(f"{name}: no digit found (the image is empty or of one colour)")
    rows, cols = np.nonzero(ink > 0.2 * ink.max())
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    crop = crop / crop.max() * 255.0

    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float32)

    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    centre_y, centre_x = (ys * digit).sum() / mass, (xs * digit).sum() / mass
    top = int(np.clip(round(14 - centre_y), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14 - centre_x), 0, 28 - digit.shape[1]))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.clip(canvas / 255.0, 0.0, 1.0)


def load_digit(path: str | Path) -> np.ndarray:
    """Read an image file and prepare it like an MNIST digit: (28, 28) floats in [0, 1]."""
    return to_mnist(read_grayscale(Path(path)), name=str(path))
