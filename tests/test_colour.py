"""Colour descriptors: dominant garment colours, named, compared with swatches and each other."""
from __future__ import annotations

import numpy as np
import pytest

from fashion_search.colour import (ColourError, colour_descriptor, colour_names, descriptor_distance,
                                          srgb_to_lab, swatch_distance, swatch_lab)


def garment(rgb, background=(255, 255, 255), size=60) -> np.ndarray:
    """A product photo: a coloured block on a plain page."""
    pixels = np.full((size, size, 3), background, np.uint8)
    pixels[10:50, 15:45] = rgb
    return pixels


def test_lab_of_white_and_black():
    assert np.allclose(srgb_to_lab(np.array([255, 255, 255])), [100, 0, 0], atol=0.05)
    assert np.allclose(srgb_to_lab(np.array([0, 0, 0])), [0, 0, 0], atol=0.05)


def test_the_background_is_left_out_and_the_garment_named():
    red = colour_descriptor(garment((200, 30, 30)))
    assert colour_names(red) == ["red"]
    assert colour_names(colour_descriptor(garment((40, 90, 190), background=(240, 240, 240)))) == ["blue"]
    # a white shirt with a dark outline on a white page: its inside is garment, not page
    shirt = garment((250, 250, 250))
    shirt[10, 15:45] = shirt[49, 15:45] = shirt[10:50, 15] = shirt[10:50, 44] = (40, 40, 40)
    assert colour_names(colour_descriptor(shirt))[0] == "white"


def test_swatch_and_descriptor_distances_order_by_colour():
    descriptors = np.stack([colour_descriptor(garment(c)) for c in [(200, 30, 30), (30, 50, 180), (220, 60, 50)]])
    near_red = swatch_distance(descriptors, swatch_lab("red"))
    assert near_red[0] < near_red[2] < near_red[1]
    from_red = descriptor_distance(descriptors[0], descriptors)
    assert from_red[0] == pytest.approx(0.0, abs=1e-6) and from_red[2] < from_red[1]
    assert np.allclose(swatch_lab("#c0282d"), swatch_lab("red"))
    with pytest.raises(ColourError, match="not a colour"):
        swatch_lab("reddish")


def test_colour_histograms_are_unit_vectors_that_match_like_colours():
    from fashion_search.colour_grid import HISTOGRAM_DIM, colour_histogram

    red, dark_red, blue = (colour_histogram(garment(c)) for c in [(200, 30, 30), (180, 25, 35), (30, 50, 180)])
    assert red.shape == (HISTOGRAM_DIM,) and np.linalg.norm(red) == pytest.approx(1.0, abs=1e-5)
    assert red @ dark_red > 0.5 > red @ blue  # Bhattacharyya coefficients of their colour shares


def test_the_colour_grid_places_each_colour_where_it_is_worn():
    from fashion_search.colour_grid import HISTOGRAM_DIM, HISTOGRAM_GRID, colour_grid, colour_grids

    outfit = np.full((70, 70, 3), 255, np.uint8)
    outfit[5:35, 10:60] = (200, 30, 30)    # a red top
    outfit[35:65, 10:60] = (30, 50, 180)   # blue trousers below it
    grid = colour_grid(outfit, 2)
    assert grid.shape == (2, 2, HISTOGRAM_DIM) and grid.dtype == np.float32 and grid.sum() == pytest.approx(1.0, abs=1e-5)
    nearest = ((HISTOGRAM_GRID - srgb_to_lab(np.array([200, 30, 30]))) ** 2).sum(axis=1).argmin()
    top, bottom = grid[0].sum(axis=0), grid[1].sum(axis=0)
    assert top[nearest] > 0.1 > bottom[nearest]  # the red sits in the upper cells only
    assert top.sum() == pytest.approx(0.5, abs=0.05)  # each garment is half of what is worn; no page counted
    assert colour_grids([], 3).shape == (0, 3, 3, HISTOGRAM_DIM)


def test_skin_is_left_out_of_the_histogram_unless_it_is_most_of_the_garment():
    from fashion_search.colour_grid import colour_histogram, skin_like

    skin = (224, 172, 140)
    assert skin_like(srgb_to_lab(np.array([skin], np.float64))).all()
    assert not skin_like(srgb_to_lab(np.array([(200, 30, 30), (30, 50, 180), (250, 250, 250)], np.float64))).any()
    worn = garment((30, 50, 180))
    worn[10:22, 15:45] = skin  # an arm across the top of a blue garment
    blue = colour_histogram(garment((30, 50, 180)))
    assert colour_histogram(worn) @ blue > 0.95  # only the blended edge of the arm remains
    beige_coat = colour_histogram(garment(skin))  # all "skin": kept, it is the garment's colour
    assert beige_coat @ colour_histogram(garment((30, 50, 180))) < 0.1


def _odd_batch() -> list[np.ndarray]:
    """Photos that differ in size, garment size and background, for batch tests: a white shirt with
    an outline (its inside is garment only while no other photo's page joins it), a plain page, a
    photo that is all garment, and a small red block on a grey page."""
    shirt = garment((250, 250, 250))
    shirt[10, 15:45] = shirt[49, 15:45] = shirt[10:50, 15] = shirt[10:50, 44] = (40, 40, 40)
    rng = np.random.default_rng(3)
    return [shirt, np.full((60, 60, 3), 255, np.uint8), rng.integers(0, 256, (90, 40, 3), dtype=np.uint8),
            garment((200, 30, 30), background=(128, 128, 128), size=120), garment((30, 50, 180))]


def test_a_batch_describes_each_photo_as_it_is_described_alone():
    from fashion_search.colour import colour_descriptors
    from fashion_search.colour_grid import colour_grid, colour_grids

    photos = _odd_batch()
    together = colour_descriptors(photos)
    assert together.shape == (len(photos), 12) and together.dtype == np.float32
    for photo, row in zip(photos, together):
        assert np.array_equal(row, colour_descriptor(photo))
    assert colour_names(together[0])[0] == "white"  # the plain page beside it did not swallow the shirt
    grids = colour_grids(photos, 4)
    for photo, grid in zip(photos, grids):
        assert np.allclose(grid, colour_grid(photo, 4), atol=1e-7)
        assert grid.sum() == pytest.approx(1.0, abs=1e-5)
    assert colour_descriptors([]).shape == (0, 12)


def test_histogram_shares_are_the_gaussian_of_each_pixels_distance_to_the_grid():
    from fashion_search.colour_grid import _HISTOGRAM_SIGMA, HISTOGRAM_GRID, _soft_shares

    points = np.array([[50.0, 10.0, -20.0], [95.0, -70.0, 75.0], [5.0, 0.0, 0.0], [63.2, 41.7, 12.9]])
    gaps = ((points[:, None] - HISTOGRAM_GRID[None]) ** 2).sum(axis=2)
    expected = np.exp(-(gaps - gaps.min(axis=1, keepdims=True)) / (2 * _HISTOGRAM_SIGMA ** 2))
    assert np.allclose(_soft_shares(points), expected / expected.sum(axis=1, keepdims=True), atol=1e-6)


def test_lab_of_bytes_equals_lab_of_the_same_values_as_floats():
    pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(srgb_to_lab(pixels), srgb_to_lab(pixels.astype(np.float64)))
