"""The one photo reader and the one framing function, shared by both wings.

Every photo that reaches a model (notebook training and extraction, the engine's indexing
and queries, uploads) is read by :func:`read_photo` / :func:`decode_photo` and framed by
:func:`fit_to_square`, so the same photo always gives the same pixels.

Reading is robust: any common format in, an RGB uint8 array out, or a reason. Odd but valid
files are converted rather than refused: CMYK and 16-bit images are mapped to 8-bit RGB,
palette and transparent images are composited onto white (product cut-outs have a white page
behind them). Large JPEGs come out reduced by libjpeg while decoding (:data:`DECODE_SIDE`),
which costs a fraction of a full decode. Files that cannot be used raise :class:`UnusableImageError`, whose
message is the reason a catalogue report lists.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 60_000_000  # a 60-megapixel product photo is already absurd; larger is refused
# A large JPEG is decoded at the smallest of libjpeg's scales (1/2, 1/4, 1/8) that keeps at least
# this many pixels on its longer side: every use needs fewer (models take at most 299 px, the colour
# analysis 64), and decoding a 3-megapixel photo in full costs more CPU than the model embedding it.
DECODE_SIDE = 640


class UnusableImageError(ValueError):
    """A file that cannot be read as a photo; the message says why."""


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit single-channel images scaled by their own range to 8-bit grey."""
    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return Image.fromarray(scaled.round().astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparency composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = _to_eight_bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert("RGB")
    return image.convert("RGB")


def read_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo at ``path`` as an RGB uint8 array ``(H, W, 3)``, EXIF rotation applied.

    Raises :class:`UnusableImageError` for a missing, empty, truncated, corrupt or non-image
    file, and for one of more than ``max_pixels`` pixels (checked before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise UnusableImageError("file missing")
    if path.stat().st_size == 0:
        raise UnusableImageError("empty file")
    with open(path, "rb") as handle:
        return decode_photo(handle, max_pixels)


def _reason(err: Exception) -> str:
    """Why PIL could not read a file, in words a person can use: no type names of Python
    objects, no memory addresses (the message reaches CLI users and the web page)."""
    if isinstance(err, UnidentifiedImageError):
        return "not a photo format that can be read: JPEG, PNG, WebP, BMP, GIF or TIFF"
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", str(err)).strip() or type(err).__name__
    return text[:200]


def decode_photo(source: BinaryIO | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Photo bytes (or an open binary file) → RGB uint8 ``(H, W, 3)``; the format is sniffed
    from the content, never trusted from a name, and the size checked before decoding."""
    if isinstance(source, bytes):
        if not source:
            raise UnusableImageError("empty file")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the limit is ours
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnusableImageError(f"too large ({width}×{height} pixels; the limit is {max_pixels:,})")
                longer = max(width, height)
                image.draft(image.mode, (max(1, width * DECODE_SIDE // longer),  # JPEG only
                                         max(1, height * DECODE_SIDE // longer)))
                image.load()  # decodes everything: truncated files fail here
                rgb = _to_rgb(ImageOps.exif_transpose(image))
    except UnusableImageError:
        raise
    except Exception as err:  # PIL raises many exception types for broken files
        raise UnusableImageError(f"not a readable image ({_reason(err)})") from None
    return np.asarray(rgb, dtype=np.uint8)


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
