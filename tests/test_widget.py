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
    photo = panel_search(engines, catalog, "pixels", upload, "100", 4, "")
    assert isinstance(photo.figure, Figure) and photo.text.startswith("the photo is ")
    item = panel_search(engines, catalog, "pixels", (), "108", 4, "baseColour=Red")
    assert isinstance(item.figure, Figure) and item.text == ""
    unknown = panel_search(engines, catalog, "pixels", (), "108", 4, "size=M")
    assert "unknown filter key 'size'" in unknown.text and unknown.figure is None
    broken = ({"name": "q.jpg", "content": memoryview(b"not a photo")},)
    assert panel_search(engines, catalog, "pixels", broken, "108", 4, "").text.startswith("error: not a readable image")
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
    item, filters, button, output = panel.children[0].children[1], panel.children[2].children[0], *panel.children[4:]
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


PANEL_OVER_AN_INDEX = """
import base64, io, json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from fashion_search.search.widget import index_panel
panel = index_panel(sys.argv[1])
upload, item, searched = panel.children[0].children
filters, colour = panel.children[2].children
garment, box, _ = panel.children[3].children
button, output = panel.children[4:]
def shown():
    button.click()
    text = "".join(out["text"] for out in output.outputs if out["output_type"] == "stream")
    grids = [out for out in output.outputs if out["output_type"] != "stream"]
    if not grids:
        return {"text": text}
    png = base64.b64decode(grids[0]["data"]["image/png"])
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    green = ((grey[..., 1] > 100) & (grey[..., 0] < 80) & (grey[..., 2] < 80)).mean()
    red = ((grey[..., 0] > 150) & (grey[..., 1] < 60) & (grey[..., 2] < 60)).mean()
    return {"png": True, "green": float(green), "red": float(red), "said": searched.value, "text": text}
said = {"options": len(item.options)}
item.value = "104"
said["item"] = shown()
import datetime
upload.value = ({"name": "up.jpg", "type": "image/jpeg", "size": 1,
                 "last_modified": datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc),
                 "content": memoryview(Path(sys.argv[2]).read_bytes())},)
said["upload"] = shown()
garment.value = 9   # a garment of the photo shown: searched without the button
said["garment_9"] = "".join(o.get("text", "") for o in output.outputs)
garment.value, box.value = 0, "0,0,20,30"
said["box"] = "".join(o.get("text", "") for o in output.outputs)
box.value = ""
item.value = "112"  # picked after the upload: the item is searched, not the upload
said["picked_after_upload"] = shown()
before = list(output.outputs)
garment.value = 3   # a garment number with an item searched: nothing to search again
said["garment_with_item_unchanged"] = output.outputs == tuple(before) or list(output.outputs) == before
colour.value = "purple-ish"
said["bad_colour"] = shown()
colour.value, filters.value = "blue", "colour=green"
said["colour_hint"] = shown()
item.value = "nope"
colour.value, filters.value = "", ""
said["unknown_item"] = shown()
print(json.dumps(said))
"""


def test_the_panel_opens_any_index_by_its_path_in_its_own_process(photo_folder, cli_index):
    """An index built by the CLI, opened in the panel by path in a fresh interpreter: every product
    listed, an item's results framed green and red by its label, an upload searched, an item picked
    after an upload searched (not the upload), colour and filter mistakes said in words."""
    import json
    import subprocess
    import sys

    index = cli_index("faiss")   # built by the CLI with the tiny model, in a process of its own
    run = subprocess.run([sys.executable, "-c", PANEL_OVER_AN_INDEX, str(index), str(photo_folder / "images" / "110.jpg")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    said = json.loads(run.stdout.strip().splitlines()[-1])
    assert said["options"] == 25  # every product, not the first few hundred
    assert said["item"]["png"] and said["item"]["green"] > 0.002 and said["item"]["said"] == "searching item 104"
    assert said["upload"]["png"] and said["upload"]["said"] == "searching the uploaded photo up.jpg"
    assert said["upload"]["text"].startswith("the photo is ")   # its size and garments, above the grid
    assert said["garment_9"].startswith("error: garment 9")   # searched on choosing it, no button pressed
    assert said["garment_with_item_unchanged"]
    assert "Searching your box 0,0,20,30" in said["box"]
    assert said["item"]["text"] == ""
    assert said["picked_after_upload"]["said"] == "searching item 112" and said["picked_after_upload"]["green"] > 0.002
    assert said["bad_colour"]["text"].startswith("error: ") and "purple-ish" in said["bad_colour"]["text"]
    assert said["colour_hint"]["text"].startswith("no product is read as green")
    assert said["unknown_item"]["text"] == "error: product 'nope' is not in the index\n"
