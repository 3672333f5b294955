"""Colour of a product: its dominant foreground colours in CIELAB, named, compared, matched.

A descriptor holds the ``K`` dominant colours of the garment (background removed) as rows
``(L, a, b, share)``, largest share first. CIELAB is used because Euclidean distance there
(ΔE) follows perceived colour difference, unlike RGB. The same descriptor serves as a filter
("red"), as a query by swatch, and as a re-ranking term beside visual similarity.

A second form, the *colour histogram*, is a vector made for similarity search: the garment's
pixels (background and skin left out) softly assigned to a grid of CIELAB colours, square-rooted
so that the inner product of two histograms is their Bhattacharyya coefficient (1: the same
colours in the same shares). Fused models put it beside the image embedding (see
:mod:`fashion_search.models.fused`).
"""
from __future__ import annotations

import numpy as np

from fashion_search.images import fit_to_square

COLOURS = 3            # dominant colours kept per product
DESCRIPTOR_DIM = COLOURS * 4
NAME_MIN_SHARE = 0.25  # a colour covering at least this share of the garment names it
_ANALYSIS_SIZE = 64
_BACKGROUND_DELTA_E = 12.0
_SAMPLE = 1500

# Named colours a shopper types, as sRGB. Chosen to sit apart in CIELAB.
PALETTE_HEX = {
    "black": "#161616", "grey": "#8c8c8c", "white": "#f4f4f4", "beige": "#d8c3a0", "brown": "#6b4a32",
    "red": "#c0282d", "maroon": "#6a1f2b", "pink": "#ef8fb0", "orange": "#ee7f2d", "yellow": "#f0d03c",
    "olive": "#6f6b31", "green": "#2f8a43", "teal": "#1c7f80", "blue": "#2d62b8", "navy": "#1f2b4a",
    "purple": "#6c3f98",
}
# Further shades that also carry a name (a saturated royal blue is blue, not purple).
EXTRA_SHADES = {"blue": ("#2a3fc8",)}


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0..255 (any shape ``(..., 3)``) → CIELAB (D65 white)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


class ColourError(ValueError):
    """A colour request that cannot be served: text that names no colour, or a colour factor out of range."""


def hex_to_rgb(text: str) -> np.ndarray:
    """``#rrggbb`` → its three 0..255 values."""
    digits = text.lstrip("#")
    if len(digits) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
        raise ColourError(f"'{text}' is not a colour: use a name ({', '.join(PALETTE_HEX)}) or #rrggbb")
    return np.array([int(digits[i:i + 2], 16) for i in (0, 2, 4)], np.float64)


PALETTE_LAB = {name: srgb_to_lab(hex_to_rgb(code)) for name, code in PALETTE_HEX.items()}
_NAMES = [*PALETTE_LAB, *(name for name, codes in EXTRA_SHADES.items() for _ in codes)]
_PALETTE = np.stack([*PALETTE_LAB.values(),
                     *(srgb_to_lab(hex_to_rgb(code)) for codes in EXTRA_SHADES.values() for code in codes)])


def swatch_lab(text: str) -> np.ndarray:
    """A colour name from :data:`PALETTE_HEX` or ``#rrggbb`` → its CIELAB value."""
    key = text.strip().lower()
    if key in PALETTE_LAB:
        return PALETTE_LAB[key]
    return srgb_to_lab(hex_to_rgb(key))


def _background(lab: np.ndarray) -> np.ndarray:
    """Which pixels of a square CIELAB image are background: the region of pixels near the median
    border colour that touches the photo's edge, so a white shirt on a white page keeps its inside.
    None when too little would remain (the whole photo is then the garment)."""
    from scipy import ndimage

    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    near = np.linalg.norm(lab - np.median(border, axis=0), axis=2) <= _BACKGROUND_DELTA_E
    regions, _ = ndimage.label(near)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    background = np.isin(regions, edge[edge > 0])
    return background if (~background).sum() >= 0.03 * near.size else np.zeros_like(near)


def foreground_lab(pixels: np.ndarray) -> np.ndarray:
    """CIELAB values of the garment's pixels: all but the background (:func:`_background`)."""
    lab = srgb_to_lab(fit_to_square(pixels, _ANALYSIS_SIZE)).reshape(_ANALYSIS_SIZE, _ANALYSIS_SIZE, 3)
    return lab[~_background(lab)]


_GRID_STEP = 20.0
# CIELAB grid of the histogram: L 10..90, a and b -60..60, step 20 (the bins of 245 colours).
HISTOGRAM_GRID = np.array([(lightness, a, b) for lightness in np.arange(10.0, 100.0, _GRID_STEP)
                           for a in np.arange(-60.0, 80.0, _GRID_STEP) for b in np.arange(-60.0, 80.0, _GRID_STEP)])
HISTOGRAM_DIM = len(HISTOGRAM_GRID)
_HISTOGRAM_SIGMA = 8.0   # ΔE over which a pixel's weight spreads to neighbouring bins
_SKIN_MAX_SHARE = 0.6    # skin-like pixels are dropped unless they are most of the garment (a beige coat)


def skin_like(lab: np.ndarray) -> np.ndarray:
    """Whether each CIELAB value lies in the range of human skin tones (light to dark)."""
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    return (lightness > 35) & (lightness < 85) & (a > 6) & (a < 25) & (b > 10) & (b < 32) & (b > 0.8 * a)


_GRID_32 = HISTOGRAM_GRID.astype(np.float32)


def _soft_shares(points: np.ndarray) -> np.ndarray:
    """Each CIELAB point's weights over :data:`HISTOGRAM_GRID` (rows sum to 1), spread over ΔE ≈ σ."""
    points = points.astype(np.float32)
    gaps = (points ** 2).sum(axis=1, keepdims=True) - 2 * points @ _GRID_32.T + (_GRID_32 ** 2).sum(axis=1)
    weights = np.exp((gaps - gaps.min(axis=1, keepdims=True)) * np.float32(-0.5 / _HISTOGRAM_SIGMA ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def colour_grid(pixels: np.ndarray, cells: int) -> np.ndarray:
    """The garment's colours region by region, ``(cells, cells, HISTOGRAM_DIM)`` float32: the photo
    (framed square) cut into ``cells`` × ``cells`` squares, each holding the share of the garment's
    pixels (background and skin left out) that lie in it near each colour of :data:`HISTOGRAM_GRID`.
    The shares sum to 1 over the whole grid; a fused model weighs the cells by what it sees there."""
    side = cells * max(1, -(-_ANALYSIS_SIZE // cells))
    lab = srgb_to_lab(fit_to_square(pixels, side)).reshape(side, side, 3)
    garment = ~_background(lab)
    skin = skin_like(lab.reshape(-1, 3)).reshape(side, side) & garment
    if skin.sum() < _SKIN_MAX_SHARE * garment.sum():
        garment &= ~skin
    if not garment.any():
        garment[:] = True
    rows, columns = np.nonzero(garment)
    step = side // cells
    in_cell = np.zeros((cells * cells, len(rows)), np.float32)
    in_cell[(rows // step) * cells + columns // step, np.arange(len(rows))] = 1.0
    return (in_cell @ _soft_shares(lab[rows, columns]) / len(rows)).reshape(cells, cells, -1)


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """The garment's colours as a unit vector ``(HISTOGRAM_DIM,)`` float32: the square root of the
    share of its pixels near each colour of :data:`HISTOGRAM_GRID` (:func:`colour_grid` as one cell)."""
    return np.sqrt(colour_grid(pixels, 1)[0, 0])


def colour_grids(images: list | np.ndarray, cells: int) -> np.ndarray:
    """:func:`colour_grid` of each RGB image, stacked ``(n, cells, cells, HISTOGRAM_DIM)``."""
    if not len(images):
        return np.zeros((0, cells, cells, HISTOGRAM_DIM), np.float32)
    return np.stack([colour_grid(image, cells) for image in images])


def _square_gaps(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances ``(n, k)`` of each point to each centre."""
    return ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)


def _kmeans(points: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (farthest-point start), stopped early once no point changes its
    centre (nothing would move after that); returns centres and their shares."""
    centres = [points[np.argmin(((points - points.mean(0)) ** 2).sum(axis=1))]]
    for _ in range(1, k):
        centres.append(points[np.argmax(_square_gaps(points, np.array(centres)).min(axis=1))])
    centres = np.array(centres)
    assign = _square_gaps(points, centres).argmin(axis=1)
    for _ in range(iterations):
        counts = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, points[:, d], minlength=k) for d in range(points.shape[1])], axis=1)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        previous, assign = assign, _square_gaps(points, centres).argmin(axis=1)
        if np.array_equal(previous, assign):
            break
    return centres, np.bincount(assign, minlength=k) / len(points)


def colour_descriptor(pixels: np.ndarray) -> np.ndarray:
    """The dominant foreground colours of an RGB photo, ``(COLOURS * 4,)`` float32: rows of
    ``(L, a, b, share)``, largest share first (shares sum to 1)."""
    points = foreground_lab(pixels)
    if len(points) > _SAMPLE:
        points = points[np.linspace(0, len(points) - 1, _SAMPLE).astype(int)]
    centres, shares = _kmeans(points, COLOURS)
    order = np.argsort(-shares, kind="stable")
    return np.hstack([centres[order], shares[order, None]]).astype(np.float32).ravel()


def _rows(descriptors: np.ndarray) -> np.ndarray:
    return np.asarray(descriptors, np.float64).reshape(-1, COLOURS, 4)


def colour_names(descriptor: np.ndarray, min_share: float = NAME_MIN_SHARE) -> list[str]:
    """Palette names of the colours covering at least ``min_share`` of the garment, largest first."""
    names: list[str] = []
    for lab_share in _rows(descriptor)[0]:
        if lab_share[3] >= min_share:
            name = _NAMES[int(np.argmin(np.linalg.norm(_PALETTE - lab_share[:3], axis=1)))]
            if name not in names:
                names.append(name)
    return names


def swatch_distance(descriptors: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Share-weighted mean ΔE between a swatch and each product's colours (0: all that colour)."""
    rows = _rows(descriptors)
    return (np.linalg.norm(rows[..., :3] - lab, axis=2) * rows[..., 3]).sum(axis=1)


def descriptor_distance(query: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
    """Symmetric colour distance between one descriptor and many: each colour's share times
    the ΔE to the nearest colour of the other side, averaged over both directions."""
    mine, theirs = _rows(query)[0], _rows(descriptors)
    gaps = np.linalg.norm(mine[None, :, None, :3] - theirs[:, None, :, :3], axis=3)  # (N, K, K)
    forward = (gaps.min(axis=2) * mine[None, :, 3]).sum(axis=1)
    backward = (gaps.min(axis=1) * theirs[..., 3]).sum(axis=1)
    return 0.5 * (forward + backward)
