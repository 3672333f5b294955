"""Shopper-like training views of a catalogue photo, so a model learns to put a product's shopper
photo near its catalogue photo.

A view is what the search engine would embed for a shopper's photo of the product after the
garment localiser: the product possibly smaller and sharper or blurrier than the catalogue's
(down-and-up-sampled), tilted, cut from a real background with a rim of that background left
around it (the localiser's mask is never exact), under a warm or cool light, through a camera
(noise, blur, JPEG). Each of these happens with its own probability, so some views stay close
to the catalogue photo. The label of the view is the photo's: a cast changes no ``baseColour``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from fashion_search.data.backgrounds import background_crop
from fashion_search.data.cutouts import box_of, cut_out
from fashion_search.data.shopper_photos import Conditions, camera, cast, compose

LOW_SIDE = (40, 110)      # longer side, in pixels, a photo is brought down to before being framed again
P_LOW = 0.5               # share of views at a lower resolution
P_BACKGROUND = 0.5        # share of views cut from a real background (where the photo has a cut-out)
P_TILT = 0.3              # share of the other views scaled and tilted on white
P_CAST = 0.4
P_CAMERA = 0.5
RIM = (0, 6)              # pixels of background left around the product's mask, drawn uniformly
SCENE = 320               # side of the made scene a product is pasted on


def lower_resolution(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """The photo shrunk so its longer side is drawn from :data:`LOW_SIDE` (never enlarged)."""
    height, width = pixels.shape[:2]
    side = int(rng.integers(*LOW_SIDE))
    if max(height, width) <= side:
        return pixels
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def cut_from_scene(rng: np.random.Generator, pixels: np.ndarray, backgrounds: list[np.ndarray],
                   light: Conditions) -> np.ndarray | None:
    """The product pasted on a crop of a background photo under ``light``'s cast and camera, then cut
    out again as the localiser cuts it: its box with a margin, and outside its mask, widened by a few
    pixels, whitened. None when the photo has no clean cut-out."""
    cutout = cut_out(pixels, 0)
    if cutout is None or not backgrounds:
        return None
    scene = background_crop(rng, backgrounds[int(rng.integers(len(backgrounds)))], SCENE)
    photo = compose(rng, [cutout], scene, SCENE, light)
    mask = photo.masks[0]
    if not mask.any():
        return None
    rim = int(rng.integers(RIM[0], RIM[1] + 1))
    kept = ndimage.binary_dilation(mask, iterations=rim) if rim else mask
    x0, y0, x1, y1 = box_of(kept)
    margin = int(0.06 * max(x1 - x0, y1 - y0))
    x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
    x1, y1 = min(SCENE, x1 + margin), min(SCENE, y1 + margin)
    crop = photo.pixels[y0:y1, x0:x1].copy()
    crop[~kept[y0:y1, x0:x1]] = 255
    return crop


def tilted_on_white(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """The photo turned by up to 20 degrees on white, its corners filled white."""
    angle = float(rng.uniform(-20, 20))
    return np.asarray(Image.fromarray(pixels).rotate(angle, Image.Resampling.BILINEAR, expand=True,
                                                     fillcolor=(255, 255, 255)))


def shopper_view(rng: np.random.Generator, pixels: np.ndarray, backgrounds: list[np.ndarray]) -> np.ndarray:
    """One shopper-like view ``(h, w, 3)`` uint8 of a catalogue photo (see the module)."""
    light = Conditions(cast=bool(rng.random() < P_CAST), camera=bool(rng.random() < P_CAMERA))
    scene = cut_from_scene(rng, pixels, backgrounds, light) if rng.random() < P_BACKGROUND else None
    if scene is not None:   # the light fell on the scene; the localiser whitened around the product
        return np.ascontiguousarray(scene[:, ::-1] if rng.random() < 0.5 else scene)
    view = tilted_on_white(rng, pixels) if rng.random() < P_TILT else pixels
    if rng.random() < P_LOW:
        view = lower_resolution(rng, view)
    if light.cast:
        view = cast(rng, view)
    if light.camera and min(view.shape[:2]) >= 8:
        view = camera(rng, view)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(view)
