"""The notebook's search panel and its static grid."""
from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.widget import panel_search, search_grid, search_widget
from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.data.catalog import with_labels
from test_search_engine import SETTINGS, pixel_embedder  # noqa: E402


def test_the_panel_searches_an_item_or_an_upload_and_draws_the_grid(photo_folder, tmp_path):
    catalog = with_labels(list_photo_folder(photo_folder), "articleType")
    index = build_index(catalog, tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    engines = {"pixels": SearchEngine(index, SETTINGS, pixel_embedder())}
    results, figure = search_grid(engines["pixels"], catalog, engines["pixels"].product_query("104"),
                                  catalog.images[4], 5, ["gender=Men"])
    assert len(results) == 5 and "104" not in set(results["id"]) and len(figure.axes) == 6
    upload = ({"name": "q.jpg", "content": memoryview((photo_folder / "images" / "110.jpg").read_bytes())},)
    assert isinstance(panel_search(engines, catalog, "pixels", upload, "100", 4, ""), Figure)
    assert isinstance(panel_search(engines, catalog, "pixels", (), "108", 4, "baseColour=Red"), Figure)
    assert "unknown filter key 'size'" in panel_search(engines, catalog, "pixels", (), "108", 4, "size=M")
    broken = ({"name": "q.jpg", "content": memoryview(b"not a photo")},)
    assert panel_search(engines, catalog, "pixels", broken, "108", 4, "").startswith("error: not a readable image")
    assert len(search_widget(engines, catalog).children) == 6  # upload and item, model and k, filters, garment, button, output


def test_example_grids_draw_and_save_one_figure_per_model(photo_folder, tmp_path):
    from fashion_search.pipeline.search_stage import example_grids

    catalog = with_labels(list_photo_folder(photo_folder), "articleType")
    index = build_index(catalog, tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    engines = {"pixels": SearchEngine(index, SETTINGS, pixel_embedder())}
    grids = example_grids(engines, catalog, "104", 4, tmp_path / "figures")
    assert list(grids) == ["pixels"] and (tmp_path / "figures" / "search_pixels.png").stat().st_size > 1000


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def test_every_search_of_the_panel_shows_a_drawn_grid_or_says_why(photo_folder, tmp_path):
    """Five searches in a row through the panel's own button: each replaces the output with a
    grid that has content (never a blank image), or with the reason in words."""
    catalog = with_labels(list_photo_folder(photo_folder), "articleType")
    index = build_index(catalog, tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    panel = search_widget({"pixels": SearchEngine(index, SETTINGS, pixel_embedder())}, catalog)
    item, filters, _, button, output = panel.children[0].children[1], *panel.children[2:]
    shown = []
    for chosen, terms in (("100", ""), ("104", "gender=Men"), ("108", ""), ("112", "articleType=Shoes"),
                          ("116", "")):
        item.value, filters.value = chosen, terms
        button.click()
        assert len(output.outputs) == 1
        pixels = png_pixels(base64.b64decode(output.outputs[0]["data"]["image/png"]))
        assert pixels.std() > 20 and (pixels < 128).mean() > 0.02, chosen  # drawn, not a white page
        shown.append(pixels.tobytes())
    assert len(set(shown)) == 5
    for terms, says in (("articleType=Sandals", "no product has articleType=Sandals; articleType values, closest "
                                                "first: "), ("Shoes", "'Shoes' is not a filter: write key=value")):
        filters.value = terms
        button.click()
        assert output.outputs[0]["output_type"] == "stream" and says in output.outputs[0]["text"]
