"""The one photo reader and the one framing function, shared by both wings.

Every photo that reaches a model (notebook training and extraction, the engine's indexing
and queries, uploads, the JupyterLab panel) is read by :func:`read_photo` / :func:`decode_photo`
and framed by :func:`fit_to_square`, so the same photo always gives the same pixels.

Only the formats in :data:`PHOTO_FORMATS` are decoded, whatever a file is named: Pillow's other
plugins (PostScript, which would start Ghostscript, ICO, TGA...) are never tried. Before
decoding, a photo's size is checked twice: its pixel count, and the bytes its decoded form takes
in the mode Pillow decodes it to (a 16-bit or RGBA photo costs more than an RGB one of the same
size); the limit in bytes is that of ``max_pixels`` RGB pixels.

Odd but valid files are converted rather than refused: CMYK and 16-bit images are mapped to 8-bit
RGB, palette and transparent images are composited onto white (product cut-outs have a white page
behind them), a strip of rows at a time, so that a conversion holds little beyond the decoded
photo and the RGB result. Large JPEGs come out reduced by libjpeg while decoding
(:data:`DECODE_SIDE`), which costs a fraction of a full decode; the ``_and_size`` readers also give
the photo's own size, so that boxes on it are told in its pixels. Files that cannot be used raise
:class:`UnusableImageError`, whose message is the reason a catalogue report lists.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Pillow's names of the formats decoded (a camera's multi-picture JPEG is read by the JPEG plugin)
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
FORMATS_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
MAX_PIXELS = 60_000_000  # a 60-megapixel product photo is already absurd; larger is refused
RGB_BYTES = 3            # the decoded-size limit is that of max_pixels RGB pixels
# A large JPEG is decoded at the smallest of libjpeg's scales (1/2, 1/4, 1/8) that keeps at least
# this many pixels on its longer side: every use needs fewer (models take at most 299 px, the colour
# analysis 64), and decoding a 3-megapixel photo in full costs more CPU than the model embedding it.
DECODE_SIDE = 640
STRIP_ROWS = 64  # rows converted to RGB at a time
WIDE_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # single-channel modes of more than 8 bits


class UnusableImageError(ValueError):
    """A file that cannot be read as a photo; the message says why."""


def decoded_bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel takes once Pillow has decoded it in ``mode`` (RGB 3, RGBA 4, 16-bit grey 2)."""
    try:
        descriptor = ImageMode.getmode(mode)
    except KeyError:
        return 4  # a mode Pillow does not describe: counted as the widest common one
    return np.dtype(descriptor.typestr).itemsize * len(descriptor.bands)


def _grey_scale(strip: Image.Image, low: float, high: float) -> np.ndarray:
    """Wide grey scaled by the photo's own range (``low``, ``high``) to 8 bits; 16-bit through a
    table of its 65,536 values, so a strip needs no float copy."""
    if strip.mode.startswith("I;16"):
        levels = np.arange(65_536, dtype=np.float64)
        table = (levels - low) / (high - low) * 255.0 if high > low else np.zeros_like(levels)
        return table.clip(0, 255).round().astype(np.uint8)[np.asarray(strip)]
    pixels = np.asarray(strip, dtype=np.float64)
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return scaled.round().astype(np.uint8)


def _strip_to_rgb(strip: Image.Image, grey_range: tuple[float, float] | None) -> np.ndarray:
    """One strip of rows as RGB uint8; ``grey_range``: the whole photo's (low, high) for wide grey."""
    if grey_range is not None:  # 16-bit and 32-bit grey
        return np.repeat(_grey_scale(strip, *grey_range)[..., None], 3, axis=-1)
    if strip.mode == "P":
        strip = strip.convert("RGBA")
    if strip.mode in ("RGBA", "LA", "PA") or "transparency" in strip.info:
        rgba = strip.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        strip = Image.alpha_composite(page, rgba)
    return np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"), dtype=np.uint8)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any decoded PIL image → RGB uint8 ``(H, W, 3)``, converted a strip at a time; transparency
    composited onto white."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return np.asarray(image, dtype=np.uint8)  # nothing to convert: one copy, as strips would make
    width, height = image.size
    grey_range = image.getextrema() if image.mode in WIDE_GREY else None
    rgb = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, height)
        rgb[top:bottom] = _strip_to_rgb(image.crop((0, top, width, bottom)), grey_range)
    return rgb


def read_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo at ``path`` as RGB uint8 ``(H, W, 3)``, EXIF rotation applied; see :func:`read_photo_and_size`."""
    return read_photo_and_size(path, max_pixels)[0]


def read_photo_and_size(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo at ``path`` as an RGB uint8 array ``(H, W, 3)``, EXIF rotation applied, and the
    photo's own ``(width, height)`` (larger than the array's when libjpeg reduced a large JPEG).

    Raises :class:`UnusableImageError` for a missing, empty, truncated, corrupt or non-image
    file, and for one of more than ``max_pixels`` pixels (checked before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise UnusableImageError("file missing")
    try:  # opened without blocking, then checked: a file swapped for a FIFO or device meanwhile is refused
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise UnusableImageError(f"cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableImageError("not a regular file")
        if info.st_size == 0:
            raise UnusableImageError("empty file")
        return decode_photo_and_size(handle, max_pixels)


def _reason(err: Exception) -> str:
    """Why PIL could not read a file, in words a person can use: no type names of Python
    objects, no memory addresses (the message reaches CLI users and the web page)."""
    if isinstance(err, UnidentifiedImageError):
        return f"not a photo format that can be read: {FORMATS_TEXT}"
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", str(err)).strip() or type(err).__name__
    return text[:200]


def _check_size(image: Image.Image, max_pixels: int) -> None:
    """Refuse a photo over ``max_pixels`` pixels, or whose decoded form would take more bytes
    than ``max_pixels`` RGB pixels (checked from the header, before decoding)."""
    width, height = image.size
    if width * height > max_pixels:
        raise UnusableImageError(f"too large ({width}×{height} pixels; the limit is {max_pixels:,})")
    needed = width * height * decoded_bytes_per_pixel(image.mode)
    if needed > max_pixels * RGB_BYTES:
        raise UnusableImageError(f"too large ({width}×{height} pixels of {image.mode} need {needed / 2**20:,.0f} MiB "
                                 f"decoded; the limit is {max_pixels * RGB_BYTES / 2**20:,.0f} MiB)")


def decode_photo(source: BinaryIO | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Photo bytes (or an open binary file) → RGB uint8 ``(H, W, 3)``; see :func:`decode_photo_and_size`."""
    return decode_photo_and_size(source, max_pixels)[0]


def decode_photo_and_size(source: BinaryIO | bytes, max_pixels: int = MAX_PIXELS
                          ) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo bytes (or an open binary file) → RGB uint8 ``(H, W, 3)`` and the photo's own
    ``(width, height)``, EXIF rotation applied to both (the pixels are fewer when libjpeg reduced
    a large JPEG, :data:`DECODE_SIDE`); the format is sniffed from the content, never trusted
    from a name, only :data:`PHOTO_FORMATS` are decoded, and the size is checked before decoding."""
    if isinstance(source, bytes):
        if not source:
            raise UnusableImageError("empty file")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the limit is ours
            with Image.open(source, formats=PHOTO_FORMATS) as image:
                _check_size(image, max_pixels)
                width, height = image.size
                longer = max(width, height)
                image.draft(image.mode, (max(1, width * DECODE_SIDE // longer),  # JPEG only
                                         max(1, height * DECODE_SIDE // longer)))
                image.load()  # decodes everything: truncated files fail here
                decoded = image.size
                ImageOps.exif_transpose(image, in_place=True)
                turned = image.size != decoded   # a quarter turn: its own width and height swap too
                return _to_rgb(image), (height, width) if turned else (width, height)
    except UnusableImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own ceiling, far above ours, checked in open()
        raise UnusableImageError(f"too large (more than {Image.MAX_IMAGE_PIXELS * 2:,} pixels; the limit is "
                                 f"{max_pixels:,})") from None
    except Exception as err:  # PIL raises many exception types for broken files
        raise UnusableImageError(f"not a readable image ({_reason(err)})") from None


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """A stored image array (grey ``(H, W)`` or ``(H, W, 1|3)``) as RGB uint8 ``(H, W, 3)``."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return pixels.astype(np.uint8)


def fit_to_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Longer side resized to ``size`` (bilinear, antialiased when shrinking), the shorter padded
    with white, centred."""
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(pixels).resize(fitted, Image.Resampling.BILINEAR)
    page = Image.new("RGB", (size, size), (255, 255, 255))
    page.paste(resized, ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return np.asarray(page, dtype=np.uint8)
