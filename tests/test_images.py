"""Reading photos: odd but valid files are converted, broken ones refused with a reason."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fashion_search.images import (UnusableImageError, decode_photo, decode_photo_and_size, fit_to_square,
                                   read_photo, read_photo_and_size)


def test_cmyk_sixteen_bit_palette_and_alpha_images_become_rgb(tmp_path):
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")       # red in CMYK
    ramp = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")                                # 16-bit grey
    palette = Image.fromarray(np.zeros((10, 20), np.uint8), "P")
    palette.putpalette([0, 0, 200] + [0] * 765)
    palette.save(tmp_path / "palette.png")
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, :10] = (0, 160, 0, 255)                                                  # left half green, right transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")

    cmyk = read_photo(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (10, 20, 3) and cmyk.dtype == np.uint8 and cmyk[..., 0].mean() > 200 > cmyk[..., 1].mean() + 100
    deep = read_photo(tmp_path / "deep.png")
    assert deep.shape == (10, 20, 3) and deep.min() == 0 and deep.max() == 255
    assert tuple(read_photo(tmp_path / "palette.png")[5, 5]) == (0, 0, 200)
    alpha = read_photo(tmp_path / "alpha.png")
    assert tuple(alpha[5, 2]) == (0, 160, 0) and tuple(alpha[5, 15]) == (255, 255, 255)  # transparency → white


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"id,name\n1,a csv\n", "not a readable image"),
    (None, "file missing"),
])
def test_unusable_files_are_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnusableImageError, match=reason):
        read_photo(path)


def test_truncated_and_oversized_photos_are_refused(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    with pytest.raises(UnusableImageError, match="not a readable image"):
        read_photo(tmp_path / "cut.jpg")
    with pytest.raises(UnusableImageError, match="too large"):
        read_photo(tmp_path / "full.jpg", max_pixels=64 * 63)
    assert read_photo(tmp_path / "full.jpg", max_pixels=64 * 64).shape == (64, 64, 3)


def test_fit_to_square_keeps_proportions_on_white():
    tall = np.zeros((40, 20, 3), np.uint8)
    square = fit_to_square(tall, 20)
    assert square.shape == (20, 20, 3)
    assert (square[:, :4] == 255).all() and (square[:, -4:] == 255).all() and square[:, 8:12].max() < 30


@pytest.mark.parametrize("data", [b"id,name\n1,a csv\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_an_unreadable_upload_is_explained_without_python_internals(data):
    with pytest.raises(UnusableImageError) as caught:
        decode_photo(data)
    message = str(caught.value)
    assert message.startswith("not a readable image (") and " at 0x" not in message and "<_io" not in message


def _product_photo(width: int, height: int) -> Image.Image:
    """A large, detailed photo: a patterned garment on a white page."""
    rng = np.random.default_rng(1)
    pixels = np.full((height, width, 3), 255, np.uint8)
    stripes = (np.arange(width)[None, :] // 7 + np.arange(height)[:, None] // 11) % 2
    garment = np.where(stripes[..., None] == 1, [180, 30, 40], [30, 60, 150]).astype(np.uint8)
    pixels[height // 8:-height // 8, width // 5:-width // 5] = garment[height // 8:-height // 8, width // 5:-width // 5]
    noisy = pixels.astype(int) + rng.integers(-12, 13, pixels.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def test_a_large_jpeg_is_decoded_reduced_and_frames_as_in_full(tmp_path):
    from fashion_search.images import DECODE_SIDE

    photo = _product_photo(1500, 2000)
    photo.save(tmp_path / "big.jpg", quality=92)
    photo.save(tmp_path / "big.png")
    reduced = read_photo(tmp_path / "big.jpg")
    assert reduced.shape == (1000, 750, 3) and max(reduced.shape) >= DECODE_SIDE  # libjpeg's 1/2 scale
    assert read_photo(tmp_path / "big.png").shape == (2000, 1500, 3)  # other formats: in full
    with Image.open(tmp_path / "big.jpg") as image:
        full = np.asarray(image.convert("RGB"))
    for size in (224, 299, 64):
        gap = np.abs(fit_to_square(reduced, size).astype(int) - fit_to_square(full, size))
        assert gap.mean() < 0.75 and np.percentile(gap, 99) <= 4, size  # what a model or the colours see
    small = _product_photo(600, 800)  # no scale keeps DECODE_SIDE pixels: decoded in full
    small.save(tmp_path / "small.jpg")
    assert read_photo(tmp_path / "small.jpg").shape == (800, 600, 3)
    Image.new("RGB", (3000, 2), (200, 30, 30)).save(tmp_path / "thin.jpg")  # a side rounds to 0 pixels requested
    assert read_photo(tmp_path / "thin.jpg").shape[0] >= 1


def test_a_large_jpeg_keeps_its_exif_rotation_and_a_cut_one_is_still_refused(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90° to view
    _product_photo(2000, 1500).save(tmp_path / "turned.jpg", exif=exif)
    assert read_photo(tmp_path / "turned.jpg").shape == (1000, 750, 3)
    pixels, size = read_photo_and_size(tmp_path / "turned.jpg")
    assert pixels.shape == (1000, 750, 3) and size == (1500, 2000)   # its own size, as viewed
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "turned.jpg").read_bytes()[:20_000])
    with pytest.raises(UnusableImageError, match="not a readable image"):
        read_photo(tmp_path / "cut.jpg")


FAKE_GS = """#!/bin/sh
echo "$@" >> "{log}"
exit 1
"""
DECODE_EVERY_FORMAT = """
import io, sys
from PIL import EpsImagePlugin, Image
from fashion_search.images import UnusableImageError, decode_photo
EpsImagePlugin.gs_binary = None  # look Ghostscript up on PATH again, as a fresh process does
for name in sys.argv[1:]:
    buffer = io.BytesIO()
    Image.new("L" if name == "XBM" else "RGB", (40, 30), 128).convert("1" if name == "XBM" else "RGB").save(
        buffer, format=name)
    try:
        decode_photo(buffer.getvalue())
        print(name, "DECODED")
    except UnusableImageError as err:
        print(name, err)
"""


def test_only_the_documented_formats_are_decoded_and_no_external_decoder_starts(tmp_path):
    """PostScript would start Ghostscript on the file (a fake ``gs`` on PATH records any call);
    it, and every other format Pillow knows beyond the documented six, is refused by the one reader."""
    import os
    import subprocess
    import sys

    (tmp_path / "bin").mkdir()
    fake_gs = tmp_path / "bin" / "gs"
    fake_gs.write_text(FAKE_GS.format(log=tmp_path / "gs-calls.log"))
    fake_gs.chmod(0o755)
    others = ["EPS", "ICO", "TGA", "PCX", "PPM", "SGI", "XBM", "IM", "DDS"]
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-c", DECODE_EVERY_FORMAT, *others, "PNG", "WEBP", "GIF", "TIFF", "BMP"],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert done.returncode == 0 and len(lines) == len(others) + 5, done.stderr
    for name in others:
        assert lines[name] == "not a readable image (not a photo format that can be read: JPEG, PNG, WebP, BMP, GIF " \
                              "or TIFF)", name
    assert all(lines[name] == "DECODED" for name in ("PNG", "WEBP", "GIF", "TIFF", "BMP"))
    assert not (tmp_path / "gs-calls.log").exists()


@pytest.mark.parametrize("mode, fill, side, refused", [
    ("RGB", (10, 20, 30), 100, False),       # 30,000 bytes decoded: the limit of 10,000 RGB pixels
    ("RGBA", (10, 20, 30, 40), 100, True),   # 40,000 bytes: over it, with as many pixels
    ("RGBA", (10, 20, 30, 40), 86, False),
    ("I;16", 4000, 100, False),              # 20,000 bytes
    ("CMYK", (0, 0, 0, 0), 100, True),
])
def test_the_decode_budget_counts_bytes_of_the_decoded_mode(mode, fill, side, refused):
    buffer = io.BytesIO()
    Image.new(mode, (side, side), fill).save(buffer, format="TIFF")
    if refused:
        with pytest.raises(UnusableImageError, match=rf"too large \({side}×{side} pixels of {mode} need"):
            decode_photo(buffer.getvalue(), max_pixels=10_000)
    else:
        assert decode_photo(buffer.getvalue(), max_pixels=10_000).shape == (side, side, 3)


def test_a_photo_beyond_pillows_own_ceiling_is_too_large_in_our_words(monkeypatch):
    buffer = io.BytesIO()
    Image.new("1", (300, 300)).save(buffer, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow refuses over twice this, inside open()
    with pytest.raises(UnusableImageError) as caught:
        decode_photo(buffer.getvalue(), max_pixels=1_000_000)
    assert str(caught.value).startswith("too large (") and "bomb" not in str(caught.value)


def test_wide_grey_and_transparent_photos_convert_a_strip_at_a_time_as_in_one_piece(monkeypatch):
    from fashion_search import images

    rng = np.random.default_rng(3)
    deep = Image.fromarray((rng.integers(200, 60_000, (70, 33))).astype(np.uint16))
    rgba = Image.fromarray(rng.integers(0, 256, (70, 33, 4)).astype(np.uint8), "RGBA")
    whole = {}
    for name, photo in (("deep", deep), ("rgba", rgba)):
        buffer = io.BytesIO()
        photo.save(buffer, format="PNG")
        whole[name] = decode_photo(buffer.getvalue())
        monkeypatch.setattr(images, "STRIP_ROWS", 8)
        assert np.array_equal(decode_photo(buffer.getvalue()), whole[name]), name
        monkeypatch.undo()
    assert whole["deep"].min() == 0 and whole["deep"].max() == 255
    page = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    assert np.array_equal(whole["rgba"], np.asarray(page))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_reduced_decode_tells_the_photos_own_size_as_viewed(orientation):
    """Every EXIF orientation, on a size no libjpeg scale divides exactly (each side rounds up on its own)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    _product_photo(2001, 1499).save(buffer, "JPEG", exif=exif)
    pixels, size = decode_photo_and_size(buffer.getvalue())
    assert size == ((2001, 1499) if orientation <= 4 else (1499, 2001))
    assert pixels.shape[0] < size[1] and pixels.shape[1] < size[0]   # decoded reduced, the same way round
    assert abs(pixels.shape[1] / pixels.shape[0] - size[0] / size[1]) < 0.01
