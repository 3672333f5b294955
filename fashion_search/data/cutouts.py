"""A catalogue photo as a cut-out: the product's pixels and its mask, and the garment group it is.

A catalogue photo shows one product on a plain light page; the page is the region of
near-border colour that touches the photo's edge (:func:`fashion_search.colour.backgrounds`),
and everything else is the product. The localiser learns from such cut-outs pasted on other
photos, and a benchmark knows each pasted product's true mask the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashion_search.colour import backgrounds, srgb_to_lab
from fashion_search.images import read_photo
from fashion_search.progress import progress

# What the localiser tells apart, so that a top and the trousers under it are two garments.
GROUPS = ("top", "bottom", "full body", "footwear", "bag", "accessory")
_GROUP_OF_SUBCATEGORY = {
    "Topwear": "top", "Innerwear": "top", "Loungewear and Nightwear": "top",
    "Bottomwear": "bottom",
    "Dress": "full body", "Saree": "full body", "Apparel Set": "full body",
    "Shoes": "footwear", "Sandal": "footwear", "Flip Flops": "footwear", "Socks": "footwear",
    "Bags": "bag", "Wallets": "bag",
}
MIN_PRODUCT_SHARE = 0.03  # a cut-out whose product covers less of its photo is unusable
MIN_LARGEST_PART = 0.9    # nor one in pieces (a white shirt on the white page): its largest part holds less


@dataclass(frozen=True)
class Cutout:
    """A product's pixels ``(H, W, 3)`` uint8, cropped to its mask's box, the mask ``(H, W)``, its group."""

    pixels: np.ndarray
    mask: np.ndarray
    group: int


def garment_group(sub_category: str) -> int:
    """The index in :data:`GROUPS` of a catalogue ``subCategory`` (anything else is an accessory)."""
    return GROUPS.index(_GROUP_OF_SUBCATEGORY.get(str(sub_category), "accessory"))


def product_mask(pixels: np.ndarray) -> np.ndarray:
    """Which pixels of a catalogue photo ``(H, W, 3)`` are the product, ``(H, W)`` bool, holes filled."""
    from scipy import ndimage

    lab = srgb_to_lab(np.asarray(pixels, np.uint8)[None])
    return ndimage.binary_fill_holes(~backgrounds(lab)[0])


def in_one_piece(mask: np.ndarray) -> bool:
    """Whether the largest connected part of a mask holds nearly all of it."""
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    return count > 0 and np.bincount(parts.ravel())[1:].max() >= MIN_LARGEST_PART * mask.sum()


def cut_out(pixels: np.ndarray, group: int) -> Cutout | None:
    """The product of a catalogue photo, cropped to its box; None when no page is found around it
    (or too little of it is product), or the product is in pieces: its mask is then unreliable."""
    mask = product_mask(pixels)
    if mask.all() or mask.mean() < MIN_PRODUCT_SHARE or not in_one_piece(mask):
        return None
    x0, y0, x1, y1 = box_of(mask)
    return Cutout(np.ascontiguousarray(pixels[y0:y1, x0:x1]), np.ascontiguousarray(mask[y0:y1, x0:x1]), group)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` (end exclusive) around a mask's pixels; zeros for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def read_cutouts(ids: list[str], paths: list, sub_categories: list[str], title: str) -> dict[str, Cutout]:
    """The usable cut-outs of catalogue photos, by product id (photos without one are left out)."""
    found = {}
    for item_id, path, sub in progress(list(zip(ids, paths, sub_categories)), title, "photo"):
        cutout = cut_out(read_photo(path), garment_group(sub))
        if cutout is not None:
            found[str(item_id)] = cutout
    return found
