"""Metadata with missing values through every door, each in its own process: an index built with
``gender`` and ``articleType``, then photos added whose CSV has neither but a ``price`` and a
``brand`` the index lacked (so every row misses some column). Filters, hints, ``/filters``, the
products CSV, ``info``, the page's API and the panel must all answer, never with a traceback."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from served_process import cli_served
from test_backends import own_process
from conftest import copy_index
from test_search_commands import TINY

BACKENDS = ["faiss", "milvus"]
OLD = {*(str(n) for n in range(100, 124)), "999"}  # the photo folder's products


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module", params=BACKENDS)
def index_with_gaps(request, photo_folder, tmp_path_factory, cli_built) -> Path:
    root = tmp_path_factory.mktemp(f"gaps-{request.param}")
    folder = copy_index(cli_built(request.param), root / "index")   # built by the CLI in a process of its own
    new = root / "new"
    new.mkdir()
    for number in ("101", "105", "109"):
        shutil.copy(photo_folder / "images" / f"{number}.jpg", new / f"N{number}.jpg")
    (new / "metadata.csv").write_text("id,price,brand\nN101,12,Acme\nN105,,Acme\nN109,30.5,\n")
    assert "(+3 products" in own_process("add", str(new), "--index", str(folder))
    return folder


def test_a_filter_on_a_column_some_rows_lack_answers_with_hints(index_with_gaps):
    done = cli("query", "--like", "N101", "--index", str(index_with_gaps), "--filter", "gender=Mne")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "no product matches" in done.stdout
    assert "gender values, closest first: Men, Women, unknown" in done.stderr


def test_a_colour_no_product_is_read_as_names_the_colours_they_are_read_as(index_with_gaps):
    done = cli("query", "--like", "N101", "--index", str(index_with_gaps), "--filter", "gender=Men",
               "--filter", "colour=green", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["results"] == [], done.stderr[-2000:]
    hint = done.stderr.strip().splitlines()[-1]
    assert hint.startswith("no product is read as green; the products with gender=Men are read as, closest first: ")
    table = json.loads(cli("query", "--like", "N101", "--index", str(index_with_gaps), "--filter", "gender=Men",
                           "--top-k", "50", "--json").stdout)["results"]
    named = hint.rpartition(": ")[2].split(", ")
    assert set(named) <= {n for r in table for n in r["colours"].split()} and "green" not in named


@pytest.mark.parametrize(("expression", "expected"), [
    ("gender=unknown", {"N101", "N105", "N109"}),  # the added rows lack gender
    ("brand=acme", {"N101", "N105"}),
    ("price=12", {"N101"}),  # a number matches as a number, not as "12.0"
    ("price=10..40", {"N101", "N109"}),  # a missing price is in no range
    ("price=30.5", {"N109"}),
    ("price=unknown", {*OLD, "N105"}),  # a missing number is "unknown" too
    ("brand=unknown", {*OLD, "N109"}),  # rows indexed before the column came
])
def test_missing_values_filter_as_unknown_text_or_no_number(index_with_gaps, expression, expected):
    done = cli("query", "--like", "100", "--index", str(index_with_gaps), "--filter", expression, "--top-k", "50",
               "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    found = {r["id"] for r in json.loads(done.stdout)["results"]}
    assert found == expected - {"100"}


def test_the_result_table_and_info_show_no_nan(index_with_gaps):
    done = cli("query", "--like", "N101", "--index", str(index_with_gaps), "--top-k", "20")
    assert done.returncode == 0 and "NaN" not in done.stdout and "nan" not in done.stdout, done.stdout
    info = cli("info", "--index", str(index_with_gaps), "--json")
    assert info.returncode == 0 and {"price", "brand", "gender"} <= set(json.loads(info.stdout)["filters"])


def test_the_products_csv_holds_unknown_text_and_blank_numbers(index_with_gaps):
    manifest = json.loads((index_with_gaps / "manifest.json").read_text())
    table = pd.read_csv(index_with_gaps / manifest["files"]["products"], dtype=str, keep_default_na=False)
    added = table[table["id"].str.startswith("N")].set_index("id")
    assert set(added["gender"]) == {"unknown"} and added.loc["N109", "brand"] == "unknown"
    assert added.loc["N105", "price"] == "" and set(table.loc[~table["id"].str.startswith("N"), "brand"]) == {"unknown"}


def test_the_http_service_filters_hints_and_lists_columns_with_gaps(index_with_gaps, photo_folder):
    import httpx

    with cli_served(index_with_gaps) as url:
        for _ in range(2):  # a second request after the first
            found = httpx.post(f"{url}/search", files={"photo": ("q.jpg", (photo_folder / "images" / "101.jpg")
                                                                 .read_bytes())},
                               data={"k": "5", "filter": "gender=Mne"}, timeout=60)
            similar = httpx.get(f"{url}/items/N101/similar", params={"filter": ["gender=Mne"]}, timeout=60)
            for answer in (found, similar):
                assert answer.status_code == 200, answer.text
                assert answer.json()["results"] == [] and "Men, Women, unknown" in answer.json()["hints"][0]
        priced = httpx.get(f"{url}/items/N101/similar", params={"filter": ["price=..100"], "k": "10"}, timeout=60)
        assert priced.status_code == 200 and {r["id"] for r in priced.json()["results"]} == {"N109"}
        colour = httpx.post(f"{url}/search", files={"photo": ("q.jpg", (photo_folder / "images" / "101.jpg")
                                                                .read_bytes())}, data={"filter": "colour=green"})
        assert colour.status_code == 200 and colour.json()["hints"][0].startswith("no product is read as green")
        options = httpx.get(f"{url}/filters", timeout=60).json()
        assert options["price"] == {"range": [12.0, 30.5]} and "unknown" in options["gender"]["values"]
        item = httpx.get(f"{url}/items/N105", timeout=60).json()
        assert item["price"] is None and item["gender"] == "unknown"
        assert httpx.get(f"{url}/", timeout=60).status_code == 200


PANEL = """
import sys
from fashion_search.data.catalog import Catalog
from fashion_search.params import IndexParams
from fashion_search.search.engine import SearchEngine
from fashion_search.search.widget import panel_search
engine = SearchEngine.open(sys.argv[1], IndexParams())
items = engine.index.products[engine.index.live].reset_index(drop=True)
catalog = Catalog(items, items["path"].to_numpy(str), "gender")
print(panel_search({"m": engine}, catalog, "m", (), "N101", 5, "gender=Mne").text)
print(type(panel_search({"m": engine}, catalog, "m", (), "N101", 5, "price=..100").figure).__name__)
"""


def test_the_panel_searches_and_hints_over_columns_with_gaps(index_with_gaps):
    done = subprocess.run([sys.executable, "-c", PANEL, str(index_with_gaps)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    hint, figure = done.stdout.strip().splitlines()[-2:]
    assert "gender values, closest first: Men, Women, unknown" in hint and figure == "Figure"


def test_a_range_no_product_falls_in_says_where_the_numbers_lie(index_with_gaps):
    done = cli("query", "--like", "N101", "--index", str(index_with_gaps), "--filter", "price=100..")
    assert done.returncode == 0 and "no product matches" in done.stdout, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"no product has price=100..; price values lie between 12 and 30.5 ({len(OLD) + 1} products have none)")


def test_the_page_names_a_product_without_a_name_by_what_it_has(index_with_gaps, photo_folder):
    """Chromium on ``fashion-search serve``: a product whose name and type are unknown is titled by
    its brand (or id), never "unknown"; a range no product falls in says where the numbers lie."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_web_page import cards, make_browser

    browser = make_browser()
    try:
        with cli_served(index_with_gaps) as url:
            browser.get(url + "/")
            browser.find_element(By.ID, "filter").send_keys("brand=acme")
            browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "101.jpg"))
            WebDriverWait(browser, 60).until(lambda d: len(cards(d)) == 2)
            titles = [text.splitlines()[0] for _, text in cards(browser)]
            assert titles == ["Acme", "Acme"]
            browser.find_element(By.ID, "filter").clear()
            browser.find_element(By.ID, "filter").send_keys("price=100..")
            browser.find_element(By.ID, "refine").click()
            WebDriverWait(browser, 60).until(lambda d: "price values lie between 12 and 30.5"
                                             in d.find_element(By.ID, "status").text)
    finally:
        browser.quit()


def test_a_missing_product_id_links_a_photo_to_no_other(photo_folder, tmp_path):
    """Photos without a product_id are each their own product ("more like this" of one of them
    excludes only itself); photos sharing one are one product."""
    from fashion_search.data.metadata import MISSING_TEXT
    from fashion_search.data.photo_folder import list_photo_folder
    from fashion_search.search.engine import SearchEngine, build_index
    from fashion_search.search.index.store import open_index
    from test_search_engine import SETTINGS, pixel_embedder

    catalog = list_photo_folder(photo_folder)
    ids = catalog.items["id"].astype(str)
    # the others lack one: "unknown", as a blank cell of a metadata CSV reads at index time
    catalog.items["product_id"] = ids.map({"100": "P1", "101": "P1"}).fillna(MISSING_TEXT)
    engine = SearchEngine(build_index(catalog, tmp_path / "index", SETTINGS, embedder=pixel_embedder()), SETTINGS,
                          pixel_embedder())
    for index in (engine.index, open_index(tmp_path / "index", SETTINGS)):  # as built, and read back
        held = index.products["id"].astype(str).to_numpy()
        assert sorted(held[index.rows_of("100")]) == ["100", "101"]
        assert list(held[index.rows_of("102")]) == ["102"]  # not every photo without a product_id
    found = set(engine.search(engine.product_query("102"), 30)["id"])
    assert "102" not in found and {"103", "104"} <= found
