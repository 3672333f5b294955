"""A garment's mask refined by its own colours: GrabCut (OpenCV) seeded by the localiser's answer.

The localiser answers on a 4-pixel grid from features that know *what* a product is better than
*where* its edge runs: it leaves holes where a product is pale or plain (a watch's face), and a
fringe of background where the background looks like cloth. GrabCut learns the colours of the
garment and of its background from the localiser's answer, and relabels the pixels it is unsure
of by colour and by their neighbours, at :data:`SIDE` pixels. A hole the product surrounds starts
as likely product.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from fashion_search.models.localiser import Garment, box_on

SIDE = 160      # the photo's longer side while refining
ROUNDS = 2      # GrabCut's iterations
SURE = 0.9      # a pixel this likely product (or background) is taken as such, and not relabelled
WINDOW = 0.25   # of the box's size, around it, where pixels may still turn out to be product
MIN_PIXELS = 20  # fewer pixels of either side give no colours to learn


def refined_mask(pixels: np.ndarray, garment: Garment) -> np.ndarray:
    """The garment's mask (over the photo, at :data:`SIDE`), refined from its ``foreground``
    (the localiser's product probability over the photo); its own mask where there is no
    foreground, or nothing sure enough to learn colours from."""
    import cv2

    if garment.foreground is None:
        return garment.mask
    height, width = pixels.shape[:2]
    scale = min(1.0, SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    photo = np.ascontiguousarray(np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))[..., ::-1])
    product = np.asarray(Image.fromarray(garment.foreground.astype(np.float32)).resize(size, Image.BILINEAR))
    x0, y0, x1, y1 = box_on(garment.box, (width, height), size)
    reach_x, reach_y = int((x1 - x0) * WINDOW) + 1, int((y1 - y0) * WINDOW) + 1
    window = np.zeros(product.shape, bool)
    window[max(0, y0 - reach_y):y1 + reach_y, max(0, x0 - reach_x):x1 + reach_x] = True
    labels = np.full(product.shape, cv2.GC_BGD, np.uint8)
    labels[window & (product >= 1 - SURE)] = cv2.GC_PR_BGD
    held = ndimage.binary_fill_holes(product >= 0.5)   # a hole the product surrounds is likelier product
    labels[window & held] = cv2.GC_PR_FGD
    labels[window & (product >= SURE)] = cv2.GC_FGD
    product_like = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if product_like.sum() < MIN_PIXELS or (~product_like).sum() < MIN_PIXELS:
        return garment.mask   # too little of the garment, or of its background, to learn colours from
    try:
        cv2.grabCut(photo, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), ROUNDS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:   # colours too uniform for its mixtures to be fitted
        return garment.mask
    kept = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return kept if kept.any() else garment.mask
