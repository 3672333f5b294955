"""Colour of a product: its dominant foreground colours in CIELAB, named, compared, matched.

A descriptor holds the ``K`` dominant colours of the garment (background removed) as rows
``(L, a, b, share)``, largest share first. CIELAB is used because Euclidean distance there
(ΔE) follows perceived colour difference, unlike RGB. The same descriptor serves as a filter
("red"), as a query by swatch, and as a re-ranking term beside visual similarity.

Descriptors are computed a batch of photos at a time (:func:`colour_descriptors`): indexing
describes every photo, and per-photo numpy calls would cost more than the arithmetic. The
colour grids a fused model takes are in :mod:`fashion_search.colour_grid`.
"""
from __future__ import annotations

import numpy as np

from fashion_search.images import fit_to_square

COLOURS = 3            # dominant colours kept per product
DESCRIPTOR_DIM = COLOURS * 4
NAME_MIN_SHARE = 0.25  # a colour covering at least this share of the garment names it
ANALYSIS_SIZE = 64  # side of the square photos are analysed at
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


_RGB_MATRIX = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def _linear(c: np.ndarray) -> np.ndarray:
    """The sRGB curve undone: values in 0..1 → linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR_OF_BYTE = _linear(np.arange(256) / 255.0)  # the same values, looked up for uint8 pixels


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0..255 (any shape ``(..., 3)``) → CIELAB (D65 white)."""
    rgb = np.asarray(rgb)
    linear = _LINEAR_OF_BYTE[rgb] if rgb.dtype == np.uint8 else _linear(np.asarray(rgb, np.float64) / 255.0)
    xyz = linear @ _RGB_MATRIX.T / _WHITE
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


def backgrounds(lab: np.ndarray) -> np.ndarray:
    """Which pixels of square CIELAB images ``(B, S, S, 3)`` are background, ``(B, S, S)``: in each,
    the region of pixels near the median border colour that touches the photo's edge, so a white
    shirt on a white page keeps its inside. None of a photo where too little would remain (the
    whole photo is then the garment)."""
    from scipy import ndimage

    border = np.concatenate([lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]], axis=1)
    gaps = lab - np.median(border, axis=1)[:, None, None]
    near = np.einsum("bijc,bijc->bij", gaps, gaps) <= _BACKGROUND_DELTA_E ** 2
    in_one_photo = np.zeros((3, 3, 3), bool)
    in_one_photo[1] = ndimage.generate_binary_structure(2, 1)  # regions never join two photos
    regions, _ = ndimage.label(near, in_one_photo)
    edge = np.unique(np.concatenate([regions[:, 0], regions[:, -1], regions[:, :, 0], regions[:, :, -1]], axis=1))
    background = np.isin(regions, edge[edge > 0])
    enough_left = (~background).sum(axis=(1, 2)) >= 0.03 * near[0].size
    return background & enough_left[:, None, None]


def analysis_lab(images: list | np.ndarray, side: int) -> np.ndarray:
    """RGB images framed as ``side``-pixel squares, in CIELAB ``(B, side, side, 3)``."""
    return srgb_to_lab(np.stack([fit_to_square(image, side) for image in images]))


def _square_gaps(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances ``(B, k, n)`` of each photo's points, as planes ``(B, 3, n)``, to its
    centres ``(B, k, 3)``."""
    gaps = (points[:, None, 0] - centres[:, :, 0, None]) ** 2
    for axis in (1, 2):
        gaps += (points[:, None, axis] - centres[:, :, axis, None]) ** 2
    return gaps


def _samples(lab: np.ndarray, garment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to :data:`_SAMPLE` garment pixels of each photo, evenly spread in reading order, padded
    to one length: points as planes ``(B, 3, n)`` and which of them are real ``(B, n)``."""
    chosen = []
    for photo_lab, photo_garment in zip(lab, garment):
        points = photo_lab[photo_garment]
        chosen.append(points[np.linspace(0, len(points) - 1, _SAMPLE).astype(int)] if len(points) > _SAMPLE else points)
    length = max(len(points) for points in chosen)
    planes, real = np.zeros((len(chosen), 3, length)), np.zeros((len(chosen), length), bool)
    for row, points in enumerate(chosen):
        planes[row, :, :len(points)], real[row, :len(points)] = points.T, True
    return planes, real


def _members(assign: np.ndarray, real: np.ndarray, k: int) -> np.ndarray:
    """Which real point ``(B, n)`` belongs to which of ``k`` centres, as weights ``(B, k, n)``."""
    return ((assign[:, None] == np.arange(k)[:, None]) & real[:, None]).astype(np.float64)


def _kmeans(points: np.ndarray, real: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (farthest-point start) of each photo's real points (planes
    ``(B, 3, n)``), all photos at once; a photo leaves the rounds once none of its points changes
    centre (further rounds would not change it), so the batch gives what each photo gives alone.
    Returns centres ``(B, k, 3)`` and their shares ``(B, k)``."""
    photos, count = np.arange(len(points)), real.sum(axis=1, keepdims=True)
    mean = (points * real[:, None]).sum(axis=2) / count
    first = np.where(real, ((points - mean[..., None]) ** 2).sum(axis=1), np.inf).argmin(axis=1)
    centres = points[photos, :, first][:, None]
    for _ in range(1, k):
        farthest = np.where(real, _square_gaps(points, centres).min(axis=1), -np.inf).argmax(axis=1)
        centres = np.concatenate([centres, points[photos, :, farthest][:, None]], axis=1)
    assign = _square_gaps(points, centres).argmin(axis=1)
    moving = photos  # photos whose points may still change centre
    for _ in range(iterations):
        members = _members(assign[moving], real[moving], k)
        counts = members.sum(axis=2)
        sums = np.einsum("bkn,bdn->bkd", members, points[moving])  # not matmul: BLAS threads would spin beside the model
        centres[moving] = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], centres[moving])
        previous, assign[moving] = assign[moving], _square_gaps(points[moving], centres[moving]).argmin(axis=1)
        moving = moving[((previous != assign[moving]) & real[moving]).any(axis=1)]
        if not len(moving):
            break
    return centres, _members(assign, real, k).sum(axis=2) / count


def colour_descriptors(images: list | np.ndarray) -> np.ndarray:
    """The dominant foreground colours of each RGB photo, ``(n, COLOURS * 4)`` float32: rows of
    ``(L, a, b, share)``, largest share first (shares sum to 1)."""
    if not len(images):
        return np.zeros((0, DESCRIPTOR_DIM), np.float32)
    lab = analysis_lab(images, ANALYSIS_SIZE)
    centres, shares = _kmeans(*_samples(lab, ~backgrounds(lab)), COLOURS)
    order = np.argsort(-shares, axis=1, kind="stable")
    rows = np.take_along_axis(np.concatenate([centres, shares[..., None]], axis=2), order[..., None], axis=1)
    return rows.astype(np.float32).reshape(len(images), DESCRIPTOR_DIM)


def colour_descriptor(pixels: np.ndarray) -> np.ndarray:
    """:func:`colour_descriptors` of one photo, ``(COLOURS * 4,)``."""
    return colour_descriptors([pixels])[0]


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
