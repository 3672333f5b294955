"""Garments in a query photo: found by the localiser, one of them cut out and framed like a catalogue photo.

A shopper's photo holds a product on a bed, a pavement or a person, often beside others. The
localiser (:mod:`fashion_search.models.localiser`) finds each product, best first, with a box
and a mask; :func:`garment_pixels` crops the photo to the chosen one's box and whitens what is
outside its mask, so the embedder and the colour descriptor see a catalogue-like photo of that
product alone. A photo that already looks like a catalogue photo (a plain light page around
the product) is searched whole, so catalogue queries are unchanged, unless the product is small
on it: then the page gives its mask, and it is cut out and framed as the catalogue frames products.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from fashion_search.backbone_specs import get_spec
from fashion_search.colour import backgrounds, srgb_to_lab
from fashion_search.data.cutouts import box_of
from fashion_search.images import fit_to_square
from fashion_search.models.localiser import BACKBONE, SHIPPED_HEAD, SIZE, Garment, box_on, garments_from
from fashion_search.models.localiser_sha256 import HEAD_SHA256
from fashion_search.models.shipped import checked_bytes
from fashion_search.search.embedding.runtime import model_call, remembered_call

PAGE_SHARE = 0.2     # a photo whose plain border region covers this share of it is a catalogue photo
PAGE_EDGE = 0.8      # and this share of its edge (a page runs round the product; a light patch of a scene does not)
PAGE_SIDES = 0.9     # or this share of each of two opposite sides (a product touching the other two)
SMALL_ON_PAGE = 0.5  # a product on a page spanning less than this share of both sides is cut out and framed
FILLS_PHOTO = 0.7    # a main garment whose box covers this share of the photo: the photo is searched whole
PAGE_LIGHTNESS = 80  # CIELAB L of that region, at least
PAGE_SIDE = 96       # the page is looked for on the photo shrunk to this longer side
MARGIN = 0.06        # of the box's size, kept around a garment when it is cut out
MASK_KEEP = 64       # of 255: pixels where the smoothed mask reaches this are kept (a little wider than the mask)


class GarmentError(ValueError):
    """A garment that cannot be searched: a number beyond those found, or a box outside the photo."""


def catalogue_page(pixels: np.ndarray, edge_share: float = PAGE_EDGE) -> np.ndarray | None:
    """The plain light page around the product, as catalogue photos have (on the photo shrunk to
    :data:`PAGE_SIDE`): the region of near-border colour that touches the edge, when it covers
    :data:`PAGE_SHARE` of the photo, :func:`runs_round` it and is light; else None."""
    height, width = pixels.shape[:2]
    shrink = min(1.0, PAGE_SIDE / max(height, width))
    small = Image.fromarray(pixels).resize((max(1, round(width * shrink)), max(1, round(height * shrink))),
                                           Image.BILINEAR)
    lab = srgb_to_lab(np.asarray(small))
    page = backgrounds(lab[None])[0]
    if page.mean() < PAGE_SHARE or not runs_round(page, edge_share):
        return None
    return page if np.median(lab[page][:, 0]) >= PAGE_LIGHTNESS else None


def runs_round(page: np.ndarray, edge_share: float = PAGE_EDGE) -> bool:
    """Whether a page runs round the product: it holds ``edge_share`` of the photo's edge, or two
    opposite sides (:data:`PAGE_SIDES` of each: a model cut at head and feet, a bag wider than the photo)."""
    top, bottom, left, right = page[0].mean(), page[-1].mean(), page[:, 0].mean(), page[:, -1].mean()
    edge = np.concatenate([page[0], page[-1], page[:, 0], page[:, -1]]).mean()
    return edge >= edge_share or max(min(left, right), min(top, bottom)) >= PAGE_SIDES


def small_on_page(page: np.ndarray, height: int, width: int, span: float = SMALL_ON_PAGE) -> Garment | None:
    """The product on a page when it spans less than ``span`` of the photo's width and of its
    height (photographed from afar, or turned): its box in the photo's pixels and its mask, to be
    cut out and framed; None for a product framed as the catalogue frames them."""
    x0, y0, x1, y1 = box_of(~page)
    if x1 == 0 or max((x1 - x0) / page.shape[1], (y1 - y0) / page.shape[0]) >= span:
        return None
    return Garment(box_on((x0, y0, x1, y1), (page.shape[1], page.shape[0]), (width, height)), "product", 1.0, ~page)


def box_share(box: tuple[int, int, int, int], pixels: np.ndarray) -> float:
    """The share of a photo a box covers."""
    return (box[2] - box[0]) * (box[3] - box[1]) / (pixels.shape[0] * pixels.shape[1])


def whole_photo(pixels: np.ndarray) -> Garment:
    """The whole photo as the one garment (a catalogue photo, or the localiser turned off)."""
    height, width = pixels.shape[:2]
    return Garment((0, 0, width, height), "whole photo", 1.0, np.ones((1, 1), bool))


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``x0,y0,x1,y1`` (pixels of the photo) → a box."""
    parts = str(text).replace(" ", "").split(",")
    if len(parts) != 4 or not all(p.lstrip("-").isdigit() and len(p) < 7 for p in parts):
        raise GarmentError(f"the box {str(text)[:40]!r} is not four whole numbers x0,y0,x1,y1 (pixels of the photo)")
    return tuple(int(p) for p in parts)


def drawn_box(size: tuple[int, int], box: tuple[int, int, int, int]) -> Garment:
    """A box a person drew ``(x0, y0, x1, y1)`` on a photo of ``size`` (width, height), clipped
    to the photo, as the garment (kept whole)."""
    width, height = size
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise GarmentError(f"the box {list(box)} is turned around: give x0,y0,x1,y1 with x0 < x1 and y0 < y1 "
                           "(left, top, right, bottom)")
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise GarmentError(f"the box {list(box)} holds no part of the {width} x {height} photo; give x0,y0,x1,y1 "
                           "in its pixels, x0 < x1 and y0 < y1")
    return Garment((x0, y0, x1, y1), "drawn box", 1.0, np.ones((1, 1), bool))


def garment_pixels(pixels: np.ndarray, garment: Garment) -> np.ndarray:
    """The photo cropped to the garment's box (a margin around it) with what lies outside its mask whitened."""
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = garment.box
    pad_x, pad_y = int((x1 - x0) * MARGIN), int((y1 - y0) * MARGIN)
    x0, y0, x1, y1 = max(0, x0 - pad_x), max(0, y0 - pad_y), min(width, x1 + pad_x), min(height, y1 + pad_y)
    if x1 <= x0 or y1 <= y0:
        raise GarmentError(f"the box {list(garment.box)} holds no pixel of the photo")
    crop = pixels[y0:y1, x0:x1].copy()
    if garment.mask.size > 1:
        mask = Image.fromarray(garment.mask.astype(np.uint8) * 255).resize((width, height), Image.BILINEAR)
        inside = np.asarray(mask.crop((x0, y0, x1, y1))) >= MASK_KEEP
        crop[~inside] = 255
    return crop


def check_choice(garment: int | None, box: tuple | None, localise: bool) -> None:
    """Refuse a garment number beside a drawn box or with the localiser off: one of them would go unused."""
    if garment is not None and (box is not None or not localise):
        raise GarmentError("a garment number picks one of the garments found; it cannot go with a box of your own "
                           "or with the localiser turned off (give one of them)")


def pick(garments: list[Garment], number: int | None) -> Garment:
    """Garment ``number`` (1 is the main one, the default)."""
    number = 1 if number is None else number
    if not 1 <= number <= len(garments):
        raise GarmentError(f"garment {number} was asked for, but the photo has {len(garments)} "
                           f"(numbered 1 to {len(garments)})")
    return garments[number - 1]


class GarmentFinder:
    """The shipped localiser, ready to find garments; the model loads on first use, on ONNX
    Runtime when an earlier process converted it (no TensorFlow then), else built and converted."""

    def __init__(self, runtime: str = "auto", head: Path = SHIPPED_HEAD, head_sha256: str = HEAD_SHA256,
                 page_edge: float = PAGE_EDGE):
        self.runtime, self.head, self.head_sha256, self.page_edge = runtime, head, head_sha256, page_edge
        self._call: Callable | None = None

    @property
    def key(self) -> str:
        """What the localiser computes, named by its heads' file's checksum (under it the conversion is remembered)."""
        return "garment-localiser-" + self.head_sha256[:24]

    def ready(self) -> Callable:
        """The localiser's model call on preprocessed squares."""
        if self._call is None:
            self._call = remembered_call(self.key) if self.runtime != "tensorflow" else None
        if self._call is None:
            from fashion_search.models import localiser

            extractor = localiser.feature_extractor()
            with np.load(io.BytesIO(checked_bytes(self.head, self.head_sha256, "make localiser"))) as arrays:
                heads = localiser.heads_from_arrays(dict(arrays), [tuple(t.shape) for t in extractor.outputs])
            probe = [get_spec(BACKBONE).preprocess(np.random.default_rng(0).integers(
                0, 256, (2, SIZE, SIZE, 3)).astype(np.float32))]
            self._call, _ = model_call(localiser.build_localiser(extractor, heads), self.runtime, probe, self.key)
        return self._call

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The localiser's cell probabilities ``(CELLS, CELLS, classes)`` for a photo framed as a query."""
        square = fit_to_square(pixels, SIZE)[None].astype(np.float32)
        return np.asarray(self.ready()(get_spec(BACKBONE).preprocess(square)))[0]

    def find(self, pixels: np.ndarray) -> list[Garment]:
        """The garments in a photo, best first. A catalogue-like photo is one garment: the product
        when it is small on its page, else the whole photo; so are a photo where nothing is found
        and one whose main garment fills it."""
        page = catalogue_page(pixels, self.page_edge)
        if page is not None:
            return [small_on_page(page, *pixels.shape[:2]) or whole_photo(pixels)]
        found = garments_from(self.probabilities(pixels), *pixels.shape[:2])
        if not found or box_share(found[0].box, pixels) >= FILLS_PHOTO:
            return [whole_photo(pixels)]
        return found
