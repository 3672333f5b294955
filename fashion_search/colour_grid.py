"""Colour as a vector for similarity search: the garment's colour shares, whole or region by region.

The *colour histogram* softly assigns the garment's pixels (background and skin left out) to a
grid of CIELAB colours and is square-rooted, so that the inner product of two histograms is their
Bhattacharyya coefficient (1: the same colours in the same shares). The *colour grid* keeps those
shares per region of the photo. Fused models take the grid beside the image (see
:mod:`fashion_search.models.fused`).

A pixel's weight over the grid is a Gaussian of its ΔE to each grid colour. The grid is a product
of three axes (L, a, b), so that weight is a product of three one-axis Gaussians: each pixel needs
19 exponentials instead of 245.
"""
from __future__ import annotations

import numpy as np

from fashion_search.colour import ANALYSIS_SIZE, analysis_lab, backgrounds

# CIELAB grid of the histogram: L 10..90, a and b -60..60, step 20 (the bins of 245 colours).
_GRID_L = np.arange(10.0, 100.0, 20.0)
_GRID_AB = np.arange(-60.0, 80.0, 20.0)
HISTOGRAM_GRID = np.array([(lightness, a, b) for lightness in _GRID_L for a in _GRID_AB for b in _GRID_AB])
HISTOGRAM_DIM = len(HISTOGRAM_GRID)
_HISTOGRAM_SIGMA = 8.0   # ΔE over which a pixel's weight spreads to neighbouring bins
_SKIN_MAX_SHARE = 0.6    # skin-like pixels are dropped unless they are most of the garment (a beige coat)


def skin_like(lab: np.ndarray) -> np.ndarray:
    """Whether each CIELAB value ``(..., 3)`` lies in the range of human skin tones (light to dark)."""
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    return (lightness > 35) & (lightness < 85) & (a > 6) & (a < 25) & (b > 10) & (b < 32) & (b > 0.8 * a)


def _axis_shares(values: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Gaussian weights ``(n, len(axis))`` of values on one grid axis, rows summing to 1."""
    gaps = (values[:, None] - axis.astype(np.float32)) ** 2
    weights = np.exp((gaps - gaps.min(axis=1, keepdims=True)) * np.float32(-0.5 / _HISTOGRAM_SIGMA ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def _soft_shares(points: np.ndarray) -> np.ndarray:
    """Each CIELAB point's weights over :data:`HISTOGRAM_GRID` ``(n, HISTOGRAM_DIM)``, rows summing
    to 1, spread over ΔE ≈ σ: the product of its weights on the L, a and b axes."""
    points = points.astype(np.float32)
    lightness, a, b = (_axis_shares(points[:, d], axis) for d, axis in enumerate((_GRID_L, _GRID_AB, _GRID_AB)))
    return (lightness[:, :, None, None] * a[:, None, :, None] * b[:, None, None, :]).reshape(len(points), -1)


def _garments(lab: np.ndarray) -> np.ndarray:
    """Which pixels ``(B, S, S)`` are garment: not background, and not skin unless skin is most of it."""
    garment = ~backgrounds(lab)
    skin = skin_like(lab) & garment
    keep_skin = skin.sum(axis=(1, 2)) >= _SKIN_MAX_SHARE * garment.sum(axis=(1, 2))
    garment &= ~(skin & ~keep_skin[:, None, None])
    return garment | ~garment.any(axis=(1, 2))[:, None, None]  # nothing left: the whole photo


def _by_cell(image: np.ndarray, cells: int) -> np.ndarray:
    """A square image ``(S, S, ...)`` as its ``cells`` × ``cells`` squares in reading order,
    ``(cells², (S / cells)², ...)``."""
    step = len(image) // cells
    blocks = image.reshape(cells, step, cells, step, *image.shape[2:]).swapaxes(1, 2)
    return blocks.reshape(cells * cells, step * step, *image.shape[2:])


def _grid(lab: np.ndarray, garment: np.ndarray, cells: int) -> np.ndarray:
    """One photo's colour grid from its CIELAB pixels and garment mask."""
    lab_cells, garment_cells = _by_cell(lab, cells), _by_cell(garment, cells)
    counts = garment_cells.sum(axis=1)
    shares = _soft_shares(lab_cells[garment_cells])  # the garment's pixels, cell after cell
    grid = np.zeros((cells * cells, HISTOGRAM_DIM), np.float32)
    worn = counts > 0
    grid[worn] = np.add.reduceat(shares, np.concatenate([[0], np.cumsum(counts[worn])[:-1]]), axis=0)
    return (grid / np.float32(counts.sum())).reshape(cells, cells, HISTOGRAM_DIM)


def colour_grids(images: list | np.ndarray, cells: int) -> np.ndarray:
    """The garment's colours region by region, ``(n, cells, cells, HISTOGRAM_DIM)`` float32: each
    RGB photo (framed square) cut into ``cells`` × ``cells`` squares, each holding the share of the
    garment's pixels (background and skin left out) that lie in it near each colour of
    :data:`HISTOGRAM_GRID`. A photo's shares sum to 1 over its grid; a fused model weighs the
    cells by what it sees there."""
    if not len(images):
        return np.zeros((0, cells, cells, HISTOGRAM_DIM), np.float32)
    lab = analysis_lab(images, cells * max(1, -(-ANALYSIS_SIZE // cells)))
    return np.stack([_grid(photo_lab, garment, cells) for photo_lab, garment in zip(lab, _garments(lab))])


def colour_grid(pixels: np.ndarray, cells: int) -> np.ndarray:
    """:func:`colour_grids` of one photo, ``(cells, cells, HISTOGRAM_DIM)``."""
    return colour_grids([pixels], cells)[0]


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """The garment's colours as a unit vector ``(HISTOGRAM_DIM,)`` float32: the square root of the
    share of its pixels near each colour of :data:`HISTOGRAM_GRID` (:func:`colour_grid` as one cell)."""
    return np.sqrt(colour_grid(pixels, 1)[0, 0])
