"""Read a user's digit image, from a file or bytes, upright and at a size that is quick to analyse."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_lab.errors import UserError

# The file names predict takes for images when it reads a folder or a pattern (lower case); HEIC/HEIF
# is a phone camera's default format.
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pnm",
    ".heic",
    ".heif",
)


class ImageError(UserError):
    """An image file that cannot be read, decoded, or holds no digit."""


class NotAnImageError(ImageError):
    """Bytes that no allowed image decoder recognises."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed: refused before its pixels are decoded."""


HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
# Pictures are decoded at no more than this side: a 12-megapixel JPEG is decoded at 1/4 or 1/8 of its
# size straight from its DCT blocks, in a fraction of the time of a full decode (to_mnist reads 320 px).
DECODE_SIDE = 640


def is_heif(data: bytes) -> bool:
    """Whether `data` starts like a HEIF file (ISO base media `ftyp` box with a HEIF brand)."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def decode_heif(data: bytes, name: str, max_pixels: int | None) -> Image.Image:
    """A HEIC/HEIF image through pillow-heif, its size checked before its pixels are decoded."""
    try:
        import pillow_heif
    except ImportError as err:
        raise NotAnImageError(f"{name}: a HEIC/HEIF image; install pillow-heif to read it") from err
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        check_size(heif.size, name, max_pixels)
        return heif.to_pillow()  # libheif applies the file's rotation and mirroring itself
    except ImageTooLargeError:
        raise
    except (ValueError, RuntimeError, OSError) as err:
        raise ImageError(f"{name}: cannot be read as HEIC/HEIF ({err})") from err


def check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    """Refuse an image with more than `max_pixels` pixels, from its header's size."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is more than the {max_pixels:,} pixels allowed; send a smaller image"
        )


def upright_rgb(image: Image.Image) -> np.ndarray:
    """The decoded image turned as its EXIF orientation says, as floats (H, W, 3) in [0, 255];
    transparent pixels count as white paper."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    if max(image.size) > DECODE_SIDE:
        image.thumbnail((DECODE_SIDE, DECODE_SIDE), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def decode_image(
    data: bytes, name: str = "image", formats: Sequence[str] | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """An encoded image (PNG, JPEG, ..., HEIC) as upright RGB floats in [0, 255], at most DECODE_SIDE a side.
    `formats` limits PIL's decoders (PIL names, e.g. "PNG"; "HEIF" admits HEIC/HEIF); `max_pixels` is
    checked on the header, before any pixel is decoded."""
    if is_heif(data) and (formats is None or "HEIF" in formats):
        return upright_rgb(decode_heif(data, name, max_pixels))
    pil_formats = None if formats is None else [f for f in formats if f != "HEIF"]
    try:
        with Image.open(io.BytesIO(data), formats=pil_formats) as image:  # reads the header only
            check_size(image.size, name, max_pixels)
            if image.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when the picture is large
                image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            image.load()
            return upright_rgb(image)
    except UnidentifiedImageError as err:
        kinds = ", ".join(formats) if formats else "PNG, JPEG, BMP, HEIC, ..."
        raise NotAnImageError(f"{name}: not an image that can be decoded ({kinds})") from err
    except Image.DecompressionBombError as err:  # PIL's own limit, met before the size can be checked
        limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageTooLargeError(f"{name}: more than the {limit:,} pixels allowed; send a smaller image") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name}: cannot be read ({err})") from err


def read_image(path: Path) -> np.ndarray:
    """The image file as upright RGB floats in [0, 255], as decode_image reads it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except OSError as err:
        raise ImageError(f"{path}: cannot be read ({err})") from err
    return decode_image(data, str(path))
