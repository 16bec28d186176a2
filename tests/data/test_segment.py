"""A digit is found the way a person sees it: on shadowed, tinted or dirty paper, in a fine pen or a fat
marker, in a phone's photo or a small scan, and framed as MNIST frames its digits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_lab.data.images import IMAGE_SUFFIXES, ImageError
from mnist_lab.data.segment import (
    MNIST_STROKE_RATIO,
    NoDigitError,
    SeveralMarksError,
    ink_coloured_holes,
    load_digit,
    mean_width,
    stroke_ratio,
)

# Digits as pen strokes in unit coordinates: drawn at any size, with any pen, on any paper.
SEVEN = [(0.15, 0.1), (0.85, 0.1), (0.4, 0.95)]
FOUR = [(0.65, 0.95), (0.65, 0.05), (0.1, 0.65), (0.9, 0.65)]
FIVE_BODY = [(0.3, 0.25), (0.25, 0.5), (0.55, 0.45), (0.75, 0.65), (0.6, 0.92), (0.25, 0.85)]  # its bar apart


def draw(
    strokes: list[tuple[float, float]],
    size: tuple[int, int] = (400, 400),
    box: tuple[float, float, float] = (0.5, 0.5, 0.5),
    pen: float = MNIST_STROKE_RATIO,
    paper: float = 255.0,
    ink: tuple[int, int, int] = (20, 20, 20),
) -> np.ndarray:
    """RGB floats (H, W, 3): `strokes` drawn `box[2]` of the height tall around (`box[0]`, `box[1]`),
    with a pen `pen` of the digit's height wide, in `ink` on paper of shade `paper`."""
    width, height = size
    tall = box[2] * height
    points = [(box[0] * width + (x - 0.5) * tall * 0.7, box[1] * height + (y - 0.5) * tall) for x, y in strokes]
    image = Image.new("RGB", size, (int(paper),) * 3)
    ImageDraw.Draw(image).line(points, fill=ink, width=max(1, round(pen * tall)), joint="curve")
    return np.asarray(image, np.float32)


def save(pixels: np.ndarray, path: Path, **options) -> Path:
    """Write RGB floats as an image file, its format from the suffix."""
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, **options)
    return path


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 28x28 digits: 1 for the same picture."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def lit(pixels: np.ndarray, light: np.ndarray) -> np.ndarray:
    """The picture under uneven light: each pixel scaled by `light` (H, W)."""
    return pixels * light[..., None]


@pytest.fixture
def clean(tmp_path):
    """How the seven reads when drawn cleanly: black, MNIST's stroke width, white paper."""
    return load_digit(save(draw(SEVEN), tmp_path / "clean.png"))


def test_a_clean_drawing_is_framed_like_mnist(clean):
    rows, cols = np.nonzero(clean > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21
    ys, xs = np.indices(clean.shape)
    assert abs((ys * clean).sum() / clean.sum() - 14) <= 1 and abs((xs * clean).sum() / clean.sum() - 14) <= 1


def test_a_shadow_and_a_lighting_gradient_are_paper_not_ink(tmp_path, clean):
    ys, xs = np.mgrid[:400, :400] / 400
    light = (0.55 + 0.45 * xs) * np.where(ys + xs > 1.4, 0.45, 1.0)  # light from the right, a dark corner
    photo = lit(draw(SEVEN, paper=200, ink=(40, 40, 70), box=(0.45, 0.45, 0.45)), light)
    assert similarity(load_digit(save(photo, tmp_path / "shadow.jpg", quality=85)), clean) > 0.85


def test_a_shadow_and_the_table_along_most_of_the_border_leave_the_ink_dark(tmp_path, clean):
    """The dark border is the shadow and the table, not a dark ground with light ink on it."""
    rng = np.random.default_rng(0)
    ys = np.mgrid[:800, :800][0] / 800
    light = (1.1 - 0.3 * ys) * (1 - 0.55 / (1 + np.exp(-(ys - 0.75) / 0.04)))  # lit from above, shadow below
    photo = lit(draw(SEVEN, size=(800, 800), box=(0.6, 0.6, 0.3), pen=0.05, paper=150, ink=(30, 30, 90)), light)
    photo[:, 760:] = 40  # the dark table beyond the sheet's edge
    photo += rng.normal(0, 5, size=(800, 800, 1))
    assert similarity(load_digit(save(photo, tmp_path / "shadow_table.jpg", quality=85)), clean) > 0.85


def test_tinted_paper_and_coloured_ink_read_like_black_on_white(tmp_path, clean):
    photo = draw(SEVEN, ink=(200, 30, 40)) * np.array([1.0, 0.95, 0.75])  # red ink on yellowish paper
    assert similarity(load_digit(save(photo, tmp_path / "red.png")), clean) > 0.9


def test_specks_of_dirt_and_a_ruled_line_are_not_part_of_the_digit(tmp_path, clean):
    sheet = Image.fromarray(draw(SEVEN, box=(0.5, 0.55, 0.5)).astype(np.uint8))
    pencil = ImageDraw.Draw(sheet)
    for x, y in ((30, 30), (370, 60), (350, 380)):
        pencil.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(60, 60, 60))
    pencil.line([(0, 330), (400, 330)], fill=(140, 160, 220), width=2)  # a ruled line across the sheet
    digit = load_digit(save(np.asarray(sheet, np.float32), tmp_path / "dirty.png"))
    assert similarity(digit, clean) > 0.9


def test_a_pencil_digit_on_squared_paper_is_read_without_the_grid(tmp_path, clean):
    """A school notebook's squares: faint lines across the whole sheet, as dark as the pencil where the
    noise breaks them up, crossing the digit's strokes."""
    rng = np.random.default_rng(3)
    sheet = Image.new("RGB", (600, 600), (240, 240, 240))
    grid = ImageDraw.Draw(sheet)
    for at in range(11, 600, 30):  # 5 mm squares on a sheet 10 cm wide
        grid.line([(0, at), (600, at)], fill=(170, 200, 185), width=2)
        grid.line([(at, 0), (at, 600)], fill=(170, 200, 185), width=2)
    pencil = draw(SEVEN, size=(600, 600), pen=0.03, ink=(120, 120, 125)) / 255  # written over the squares
    photo = np.asarray(sheet, np.float32) * pencil + rng.normal(0, 4, size=(600, 600, 1))
    assert similarity(load_digit(save(photo, tmp_path / "squared.jpg", quality=85)), clean) > 0.85


@pytest.mark.parametrize("pen", [0.02, 0.4], ids=["fine pen", "fat marker"])
def test_strokes_are_drawn_about_as_wide_as_mnists(tmp_path, clean, pen):
    digit = load_digit(save(draw(SEVEN, pen=pen), tmp_path / "pen.png"))
    assert 0.7 < stroke_ratio(digit > 0.5) / stroke_ratio(clean > 0.5) < 1.3  # the clean one has MNIST's width
    assert similarity(digit, clean) > 0.8


def test_a_photo_taken_sideways_is_turned_upright_by_its_exif_orientation(tmp_path, clean):
    sideways = Image.fromarray(draw(SEVEN).astype(np.uint8)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; a viewer rotates 90 degrees clockwise
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=90)
    assert similarity(load_digit(tmp_path / "phone.jpg"), clean) > 0.9


@pytest.mark.parametrize("tile_size", [0, 256], ids=["one piece", "in tiles, as a phone writes it"])
def test_a_heic_photo_is_read_like_its_png(tmp_path, clean, tile_size):
    pillow_heif = pytest.importorskip("pillow_heif")
    photo = draw(SEVEN, size=(600, 450))
    heif = pillow_heif.from_bytes(mode="RGB", size=(600, 450), data=photo.astype(np.uint8).tobytes())
    heif.save(tmp_path / "phone.heic", quality=80, tile_size=tile_size)
    assert ".heic" in IMAGE_SUFFIXES
    assert similarity(load_digit(tmp_path / "phone.heic"), clean) > 0.9


def test_a_12_megapixel_photo_is_read_like_a_small_one(tmp_path, clean):
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:3000, :4000] / 4000
    photo = lit(draw(SEVEN, size=(4000, 3000), box=(0.4, 0.5, 0.3), pen=0.04, paper=210), 0.6 + 0.4 * ys)
    photo += rng.normal(0, 4, size=(3000, 4000, 1))
    path = save(photo, tmp_path / "photo.jpg", quality=90)
    assert path.stat().st_size > 1_000_000
    assert similarity(load_digit(path), clean) > 0.8


def test_a_low_resolution_scan_enlarged_reads_like_a_sharp_drawing(tmp_path):
    rng = np.random.default_rng(1)
    small = Image.fromarray(draw(SEVEN, size=(24, 24), box=(0.5, 0.5, 0.7), pen=0.3, paper=230).astype(np.uint8))
    scan = np.asarray(small.resize((192, 192), Image.BILINEAR), np.float32) + rng.normal(0, 3, (192, 192, 1))
    sharp = load_digit(save(draw(SEVEN, pen=0.3), tmp_path / "sharp.png"))  # the same pen, drawn sharply
    assert similarity(load_digit(save(scan, tmp_path / "scan.jpg", quality=80)), sharp) > 0.9


def test_a_blurred_scans_wide_strokes_are_not_thinned_into_closed_loops(tmp_path):
    """A blurred 8's strokes measure wide, but only from the blur: eroding them would close its loops."""
    from PIL import ImageFilter

    eight = [
        (0.5, 0.5),
        (0.2, 0.25),
        (0.5, 0.02),
        (0.8, 0.25),
        (0.5, 0.5),
        (0.15, 0.75),
        (0.5, 0.98),
        (0.85, 0.75),
        (0.5, 0.5),
    ]
    sharp = draw(eight, size=(40, 40), box=(0.5, 0.5, 0.8), pen=0.2, paper=235)
    scan = Image.fromarray(sharp.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5)).resize((320, 320))
    read = load_digit(save(np.asarray(scan, np.float32), tmp_path / "eight.png"))
    assert similarity(read, load_digit(save(sharp, tmp_path / "sharp.png"))) > 0.9


def test_mnists_own_digits_keep_their_stroke_width(tmp_path, test_set):
    """Thin and bold digits alike lie within MNIST's own range of stroke widths: none is redrawn."""
    images, _ = test_set
    changed = []
    for index in range(100):
        pixels = (images[index, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(255 - pixels).resize((112, 112), Image.BILINEAR).save(tmp_path / "digit.png")
        width = mean_width(load_digit(tmp_path / "digit.png") > 0.5) / mean_width(pixels > 127)
        changed += [index] if not 0.7 < width < 1.4 else []
    assert len(changed) <= 3, changed


def test_mnists_own_digits_photographed_as_jpeg_read_as_light_ink_on_a_dark_ground(tmp_path, test_set):
    """MNIST's white-on-black, with a grey ground, sensor noise and JPEG's artefacts: no flat paper to take."""
    images, _ = test_set
    rng = np.random.default_rng(1)
    for index in range(20):
        pixels = images[index, 0].numpy() * 255
        photo = Image.fromarray(pixels.astype(np.uint8)).resize((168, 168), Image.BILINEAR)
        noisy = np.asarray(photo, np.float32) * 0.8 + 40 + rng.normal(0, 4, size=(168, 168))
        read = load_digit(save(np.repeat(noisy[..., None], 3, -1), tmp_path / "digit.jpg", quality=80))
        assert similarity(read, images[index, 0].numpy()) > 0.8, index


def test_a_fat_marker_digit_that_covers_most_of_the_picture_is_dark_ink(tmp_path):
    """More of the picture is ink than paper, yet the paper is what runs along its border."""
    zero = [(0.5 + 0.5 * np.sin(a), 0.5 - 0.5 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 40)]
    marker = draw(zero, size=(300, 300), box=(0.5, 0.5, 0.7), pen=0.4, paper=225, ink=(20, 120, 40))
    assert (marker.mean(-1) < 150).mean() > 0.5
    digit = load_digit(save(marker, tmp_path / "zero.png"))
    assert digit[12:17, 12:17].mean() < 0.3 < digit[4:24, 4:24].mean()  # a dark hole in a light ring
    assert similarity(digit, load_digit(save(draw(zero), tmp_path / "thin.png"))) > 0.5


def test_a_mark_that_fills_the_picture_to_its_edge_has_no_ink_coloured_holes():
    """No paper around the mark to compare its hole with: no hole is taken for ink, and nothing warns."""
    mark = np.ones((60, 60), bool)
    mark[25:35, 25:35] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not ink_coloured_holes(mark, np.where(mark, 20.0, 240.0)).any()


def test_a_fine_pen_on_ruled_paper_in_a_large_photo_is_found(tmp_path, clean):
    """At the working size the pen fades into the paper's noise and the ruled lines break up."""
    rng = np.random.default_rng(3)
    sheet = Image.fromarray(
        draw(SEVEN, size=(1000, 1000), box=(0.5, 0.45, 0.3), pen=0.008, paper=200, ink=(60, 60, 90)).astype(np.uint8)
    )
    pencil = ImageDraw.Draw(sheet)
    for y in range(40, 1000, 90):
        pencil.line([(0, y), (1000, y)], fill=(160, 175, 205), width=2)
    photo = np.asarray(sheet, np.float32) + rng.normal(0, 6, size=(1000, 1000, 1))
    assert similarity(load_digit(save(photo, tmp_path / "ruled.jpg", quality=85)), clean) > 0.75


def test_a_small_thin_one_in_a_large_photo_is_found(tmp_path):
    """A 1 a tenth of the photo's height covers fewer than one pixel in a thousand."""
    rng = np.random.default_rng(3)
    one = draw([(0.55, 0.05), (0.45, 0.95)], size=(1600, 1200), box=(0.4, 0.45, 0.1), pen=0.05, paper=190)
    light = 0.8 + 0.3 * np.mgrid[:1200, :1600][1] / 1600
    photo = lit(one, light) + rng.normal(0, 5, (1200, 1600, 1))
    digit = load_digit(save(photo, tmp_path / "one.jpg", quality=85))
    rows, cols = np.nonzero(digit > 0.3)
    assert rows.max() - rows.min() >= 16 and cols.max() - cols.min() <= 8  # upright and tall, as a 1


def test_a_photo_of_blank_paper_says_there_is_no_digit(tmp_path):
    rng = np.random.default_rng(2)
    ys, xs = np.mgrid[:600, :800] / 800
    paper = np.full((600, 800, 3), 200.0) * (0.5 + 0.5 * xs)[..., None] + rng.normal(0, 5, (600, 800, 1))
    with pytest.raises(NoDigitError, match="blank.jpg: no digit found"):
        load_digit(save(paper, tmp_path / "blank.jpg", quality=85))


def test_two_digits_side_by_side_ask_for_one_digit_per_image(tmp_path):
    pair = np.minimum(draw(SEVEN, box=(0.25, 0.5, 0.4)), draw(FOUR, box=(0.75, 0.5, 0.4)))
    with pytest.raises(SeveralMarksError, match="one digit per image is expected"):
        load_digit(save(pair, tmp_path / "pair.png"))


def test_a_digit_with_a_loose_stroke_is_one_digit(tmp_path):
    """A four whose bar was written apart from its stems is still one digit, not two marks."""
    sheet = Image.fromarray(draw([(0.65, 0.95), (0.65, 0.05)]).astype(np.uint8))
    ImageDraw.Draw(sheet).line([(170, 245), (250, 110)], fill=(20, 20, 20), width=30)
    assert load_digit(save(np.asarray(sheet, np.float32), tmp_path / "four.png")).max() == pytest.approx(1.0)


def test_a_stroke_the_crop_cut_at_the_pictures_edge_stays_part_of_the_digit(tmp_path):
    """A five whose bar, written apart from its body, runs off the picture's right edge."""
    sheet = Image.fromarray(draw(FIVE_BODY).astype(np.uint8))
    ImageDraw.Draw(sheet).line([(175, 96), (291, 92)], fill=(20, 20, 20), width=38)
    five = np.asarray(sheet, np.float32)
    whole = load_digit(save(five, tmp_path / "whole.png"))
    assert similarity(load_digit(save(five[:, :275], tmp_path / "cropped.png")), whole) > 0.9


def test_a_neighbours_strokes_the_crop_cut_are_not_part_of_the_digit(tmp_path, clean):
    row = np.minimum(draw(SEVEN, box=(0.35, 0.5, 0.5)), draw(FOUR, box=(0.8, 0.5, 0.5)))
    assert similarity(load_digit(save(row[:, :312], tmp_path / "row.png")), clean) > 0.95


def test_a_digit_blurred_into_one_blot_is_framed_not_eroded_away(tmp_path):
    from PIL import ImageFilter

    blot = Image.fromarray(draw(SEVEN, size=(60, 60), pen=0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(4))
    digit = load_digit(save(np.asarray(blot.resize((240, 240)), np.float32), tmp_path / "blot.png"))
    assert digit.max() == pytest.approx(1.0) and (digit > 0.5).sum() >= 20


def test_a_digit_broken_into_pieces_above_each_other_is_one_digit(tmp_path):
    """MNIST's test digit 6558, a 6 whose top stroke stands apart from its loop."""
    from mnist_lab.data.datamodule import MNISTDataModule

    data = MNISTDataModule(download=False)
    data.setup("test")
    pixels = (255 - data.data_test.tensors[0][6558, 0].numpy() * 255).astype(np.uint8)
    Image.fromarray(pixels).resize((140, 140)).save(tmp_path / "six.png")
    assert load_digit(tmp_path / "six.png").max() == pytest.approx(1.0)


@pytest.mark.parametrize("dark_ink", [True, False], ids=["dark ink on paper", "light ink on a dark ground"])
def test_a_digit_cropped_to_its_own_box_at_a_low_resolution_is_read_whole(tmp_path, test_set, dark_ink):
    """As postal scans keep digits: 16x16, the digit's longest side filling it, its strokes meeting the
    picture's edges. None of its strokes is taken for the sheet's edge or a ruled line."""
    from skimage import transform

    images, _ = test_set
    misread = []
    for index in range(40):
        pixels = images[index, 0].numpy()
        rows, cols = np.nonzero(pixels > 0.1)
        crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        scale = 16 / max(crop.shape)
        shape = tuple(max(1, round(side * scale)) for side in crop.shape)
        small = np.zeros((16, 16), np.float32)
        top, left = (16 - shape[0]) // 2, (16 - shape[1]) // 2
        small[top : top + shape[0], left : left + shape[1]] = transform.resize(crop, shape, anti_aliasing=True)
        shade = 255 * (1 - small if dark_ink else small) / small.max()
        try:
            read = load_digit(save(np.repeat(shade[..., None], 3, -1), tmp_path / "postal.png"))
        except ImageError:  # refused as no digit, or as several: misread
            read = np.zeros((28, 28), np.float32)
        misread += [index] if similarity(read, pixels) < 0.7 else []
    assert len(misread) <= 1, misread
