"""Shopper-like photos made from catalogue cut-outs (copy-paste synthesis), with their true masks.

A shopper's photo differs from a catalogue photo in four ways, each a :class:`Conditions` flag:
the product is smaller, off-centre and tilted (``placed``); it lies on a real scene
(``background``); the light is not white (``cast``); the camera adds noise, blur and JPEG
(``camera``). :func:`compose` pastes one or more cut-outs on a background under the chosen
conditions and returns the photo with each product's visible mask and box, so the localiser
can learn from it and a benchmark can score against it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from fashion_search.data.cutouts import Cutout, box_of


@dataclass(frozen=True)
class Conditions:
    """Which ways the photo differs from a catalogue photo."""

    placed: bool = True
    background: bool = True
    cast: bool = True
    camera: bool = True


CONDITIONS = {
    "scaled and rotated, on white": Conditions(background=False, cast=False, camera=False),
    "on a real-photo background": Conditions(cast=False, camera=False),
    "colour cast": Conditions(placed=False, background=False, camera=False),
    "noise, blur, JPEG": Conditions(placed=False, background=False, cast=False),
    "all together": Conditions(),
}


@dataclass
class ShopperPhoto:
    """A made photo ``(S, S, 3)`` uint8, each pasted product's visible mask ``(S, S)`` and box
    ``(x0, y0, x1, y1)`` in pixels, and its group, in the order they were pasted."""

    pixels: np.ndarray
    masks: list[np.ndarray]
    boxes: list[tuple[int, int, int, int]]
    groups: list[int]

    def group_map(self) -> np.ndarray:
        """``(S, S)`` int: 0 where no product shows, else 1 + the group of the product on top."""
        labels = np.zeros(self.pixels.shape[:2], np.int64)
        for mask, group in zip(self.masks, self.groups):
            labels[mask] = group + 1
        return labels


def _placed(rng: np.random.Generator, cutout: Cutout, side: float, angle: float) -> tuple[Image.Image, Image.Image]:
    """The cut-out scaled so its longer side is ``side`` pixels and turned by ``angle`` degrees: RGB and mask."""
    height, width = cutout.mask.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = Image.fromarray(cutout.pixels).resize(size, Image.BILINEAR)
    mask = Image.fromarray(cutout.mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)
    if rng.random() < 0.5:
        rgb, mask = rgb.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
    return (rgb.rotate(angle, Image.BILINEAR, expand=True, fillcolor=(255, 255, 255)),
            mask.rotate(angle, Image.BILINEAR, expand=True))


def _layout(rng: np.random.Generator, count: int, size: int, placed: bool) -> list[tuple[float, float]]:
    """Each product's longer side and angle: a catalogue's framing when not ``placed``."""
    if not placed:
        return [(size * 0.9, 0.0)] * count
    largest = 0.85 if count == 1 else 0.6
    return [(size * rng.uniform(0.3, largest), rng.uniform(-30, 30)) for _ in range(count)]


def compose(rng: np.random.Generator, cutouts: list[Cutout], background: np.ndarray | None, size: int,
            conditions: Conditions = Conditions()) -> ShopperPhoto:
    """Paste ``cutouts`` (later ones on top) on ``background`` (``(size, size, 3)``; None: white),
    under ``conditions``."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    if conditions.background and background is not None:
        canvas = background.copy()
    page = Image.fromarray(canvas)
    masks, groups = [], []
    for cutout, (side, angle) in zip(cutouts, _layout(rng, len(cutouts), size, conditions.placed)):
        rgb, mask = _placed(rng, cutout, side, angle)
        if conditions.placed:
            left = int(rng.integers(-rgb.width // 6, max(size - rgb.width * 5 // 6, -rgb.width // 6) + 1))
            top = int(rng.integers(-rgb.height // 6, max(size - rgb.height * 5 // 6, -rgb.height // 6) + 1))
        else:
            left, top = (size - rgb.width) // 2, (size - rgb.height) // 2
        page.paste(rgb, (left, top), mask)
        layer = Image.new("L", (size, size))
        layer.paste(mask, (left, top))
        shown = np.asarray(layer) >= 128
        masks = [m & ~shown for m in masks] + [shown]
        groups.append(cutout.group)
    pixels = np.asarray(page)
    if conditions.cast:
        pixels = cast(rng, pixels)
    if conditions.camera:
        pixels = camera(rng, pixels)
    return ShopperPhoto(pixels, masks, [box_of(m) for m in masks], groups)


def cast(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Warm or cool light and a brighter or dimmer exposure."""
    strength = rng.uniform(0.08, 0.25) * (1 if rng.random() < 0.5 else -1)
    gains = np.array([1 + strength, 1 + strength / 3, 1 - strength]) * rng.uniform(0.65, 1.15)
    return np.clip(pixels * gains, 0, 255).astype(np.uint8)


def camera(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Sensor noise, a little blur and JPEG compression."""
    noisy = np.clip(pixels + rng.normal(0, rng.uniform(3, 10), pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(noisy).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(30, 80)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
