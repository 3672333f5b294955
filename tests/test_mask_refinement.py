"""A localiser's coarse mask refined by the garment's colours (GrabCut)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from fashion_search.models.localiser import Garment
from fashion_search.search.embedding.garments import garment_pixels
from fashion_search.search.embedding.mask_refinement import refined_mask


def photo_with_a_product() -> tuple[np.ndarray, np.ndarray]:
    """A red garment with a pale patch on a mottled green background, and its true mask."""
    rng = np.random.default_rng(0)
    pixels = np.clip(rng.normal((60, 140, 70), 12, (200, 200, 3)), 0, 255).astype(np.uint8)
    true = np.zeros((200, 200), bool)
    true[50:150, 60:140] = True
    pixels[true] = np.clip(rng.normal((200, 30, 40), 10, (true.sum(), 3)), 0, 255).astype(np.uint8)
    pixels[85:115, 85:115] = (235, 225, 220)   # a pale print the localiser misses
    return pixels, true


def coarse_answer(true: np.ndarray) -> np.ndarray:
    """A localiser-like product probability: sure inside, a hole over the print, a fringe of background."""
    foreground = np.where(true, 0.95, 0.02).astype(np.float32)
    foreground[85:115, 85:115] = 0.3     # the hole
    foreground[40:50, 60:140] = 0.7      # background taken for product above the garment
    return foreground


def at_side(mask: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask).resize((side, side), Image.NEAREST))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_colours_fill_the_hole_and_drop_the_fringe():
    pixels, true = photo_with_a_product()
    foreground = coarse_answer(true)
    garment = Garment((60, 40, 140, 150), "top", 1.0, foreground > 0.5, foreground)
    refined = refined_mask(pixels, garment)
    assert refined.shape == (160, 160)   # refined at its own side
    assert iou(foreground > 0.5, true) < 0.85
    assert iou(at_side(refined, 200), true) > 0.95
    cut = garment_pixels(pixels, garment)   # the crop searched: the print kept, the fringe whitened
    assert cut[35:45, 20:60].min() < 255 and (cut[2:6, 10:70] == 255).all()


def test_a_garment_without_the_localiser_answer_keeps_its_mask():
    pixels, true = photo_with_a_product()
    drawn = Garment((60, 50, 140, 150), "drawn box", 1.0, np.ones((1, 1), bool))
    assert refined_mask(pixels, drawn) is drawn.mask
    flat = np.full((200, 200, 3), 128, np.uint8)   # no colours to learn: the localiser's own mask
    foreground = np.where(true, 0.95, 0.02).astype(np.float32)
    garment = Garment((60, 50, 140, 150), "top", 1.0, foreground > 0.5, foreground)
    assert refined_mask(flat, garment).shape in {(200, 200), (160, 160)}
