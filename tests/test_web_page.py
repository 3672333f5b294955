"""The web page in a real browser: headless Chromium drives upload, filter and "more like this"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from fashion_search.search.index.store import open_index
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.serving.server import create_app
from fashion_search.data.photo_folder import list_photo_folder
from test_search_engine import PixelModel, pixel_embedder  # noqa: E402
from test_server import SETTINGS, serve  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "outputs" / "web-page-e2e.png"


def make_browser() -> webdriver.Chrome:
    """Headless Chromium, its network requests logged."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the requests a page makes
    return webdriver.Chrome(options=options, service=ChromeService("/usr/bin/chromedriver"))


@pytest.fixture
def browser():
    driver = make_browser()
    yield driver
    driver.quit()


def cards(driver) -> list[tuple[str, str]]:
    """(id, text) of each result card, read in one script so a re-render cannot interleave."""
    return [tuple(card) for card in driver.execute_script(
        "return [...document.querySelectorAll('#grid .card')].map(c => [c.dataset.id, c.innerText])")]


def test_upload_filter_and_more_like_this(browser, photo_folder, tmp_path):
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())))
    wait = WebDriverWait(browser, 20)
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(lambda d: len(cards(d)) == 12)
        first_id, first_text = cards(browser)[0]
        assert first_id == "100" and "Tshirts" in first_text and "distance 0.000" in first_text
        assert not browser.find_element(By.ID, "match-colour").is_displayed()  # no colour part in this index

        browser.find_element(By.ID, "filter").send_keys("articleType=Shoes")
        browser.find_element(By.ID, "refine").click()
        wait.until(lambda d: (found := cards(d)) and all("Shoes" in text for _, text in found))
        assert len(cards(browser)) == 8  # all eight pairs of shoes, nothing else

        clicked = cards(browser)[0][0]
        browser.find_element(By.CSS_SELECTOR, f'#grid .card[data-id="{clicked}"]').click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), f"More like {clicked}"))
        wait.until(lambda d: len(cards(d)) == 7)
        assert clicked not in {card_id for card_id, _ in cards(browser)}
        assert browser.find_element(By.ID, "file").get_attribute("value") == ""  # the photo is no longer the query
        images_loaded = browser.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
        assert images_loaded
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        server.should_exit = True


def test_errors_read_as_words_and_leave_no_old_results(browser, photo_folder, tmp_path):
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())))
    wait = WebDriverWait(browser, 20)
    not_a_photo = tmp_path / "holiday.jpg"
    not_a_photo.write_text("these are words, not pixels")
    try:
        browser.get(url + "/")
        wait.until(ready.text_to_be_present_in_element((By.ID, "keys"), "articleType"))
        offered = browser.execute_script(
            "return [...document.querySelectorAll('#filter-values option')].map(o => o.value)")
        assert "articleType=Shoes" in offered and "colour=red" in offered

        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(lambda d: len(cards(d)) == 12)
        browser.find_element(By.ID, "file").send_keys(str(not_a_photo))
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
        message = browser.find_element(By.ID, "status").text
        assert message.startswith("Not a photo we can read: holiday.jpg is not a readable image")
        assert not any(mark in message for mark in ("{", "<", "object at", "Traceback", '"detail"'))
        assert cards(browser) == [] and browser.find_elements(By.CSS_SELECTOR, "#query img") == []
        browser.save_screenshot(str(SCREENSHOT.with_name("web-page-bad-upload.png")))

        browser.find_element(By.ID, "colour").send_keys("red")
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(lambda d: len(cards(d)) == 12)
        clicked = cards(browser)[1][0]
        browser.find_element(By.CSS_SELECTOR, f'#grid .card[data-id="{clicked}"]').click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), f"More like {clicked}"))
        wait.until(lambda d: len(cards(d)) == 12)
        labels = [text.splitlines()[-1] for _, text in cards(browser)]
        assert all(label.startswith("score ") for label in labels)  # the colour still counts, and says so
        scores = [float(label.split()[1]) for label in labels]
        assert scores == sorted(scores)
    finally:
        server.should_exit = True


def test_an_index_with_colour_in_its_vectors_offers_to_turn_it_off(browser, photo_folder, tmp_path):
    class PixelsAndColour(PixelModel):
        """Two inputs like a fused model: 32 pixel values, then 16 of the colour grid."""

        def predict_on_batch(self, inputs):
            squares, grids = inputs
            colour = grids.reshape(len(grids), -1)[:, :16]
            return np.hstack([super().predict_on_batch(squares)[:, :32], colour]).astype(np.float32)

    coloured = pixel_embedder()
    coloured.model = PixelsAndColour()
    coloured.identity["colour_dims"] = 16
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=coloured)
    engine = SearchEngine(open_index(folder, SETTINGS), SETTINGS, coloured)
    asked: list[float | None] = []
    search = engine.search
    engine.search = lambda *args, **kwargs: asked.append(args[5] if len(args) > 5 else kwargs.get("match_colour")) \
        or search(*args, **kwargs)
    url, server = serve(create_app(engine))
    wait = WebDriverWait(browser, 20)
    try:
        browser.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "match-colour").is_displayed())
        Select(browser.find_element(By.ID, "match-colour")).select_by_value("0")
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(lambda d: len(cards(d)) == 12)
        assert asked == [0.0]
    finally:
        server.should_exit = True


def test_a_postscript_upload_and_a_damaged_index_read_as_words(browser, photo_folder, tmp_path):
    import io
    import json

    from PIL import Image

    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())))
    wait = WebDriverWait(browser, 20)
    postscript = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(postscript, format="EPS")
    (tmp_path / "dress.jpg").write_bytes(postscript.getvalue())
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "filter").send_keys("articleType=Sandals")
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "No product matches"))
        assert browser.find_element(By.ID, "status").text.startswith(
            "No product matches: no product has articleType=Sandals; articleType values, closest first: ")
        browser.find_element(By.ID, "filter").clear()
        browser.find_element(By.ID, "file").send_keys(str(tmp_path / "dress.jpg"))
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
        assert browser.find_element(By.ID, "status").text == (
            "Not a photo we can read: dress.jpg is not a readable image (not a photo format that can be read: "
            "JPEG, PNG, WebP, BMP, GIF or TIFF).")

        manifest = json.loads((folder / "manifest.json").read_text())
        manifest.update(generation=manifest["generation"] + 1, rows=10**9)  # a damaged change, as bad luck would
        (folder / "manifest.json").write_text(json.dumps(manifest))
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "damaged"))
        message = browser.find_element(By.ID, "status").text
        assert message.startswith("The catalogue cannot be searched now: the index is damaged (")
        assert str(folder) not in message and "try again" not in message and cards(browser) == []
        browser.save_screenshot(str(SCREENSHOT.with_name("web-page-damaged-index.png")))
    finally:
        server.should_exit = True


def requested(driver) -> list[str]:
    """The addresses the pages loaded so far fetched (Chromium's performance log, read once); a
    request the page's Content-Security-Policy blocked never left, and is not counted."""
    import json

    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    blocked = {e["params"]["requestId"] for e in events
               if e["method"] == "Network.loadingFailed" and e["params"].get("blockedReason") == "csp"}
    return [e["params"]["request"]["url"] for e in events
            if e["method"] == "Network.requestWillBeSent" and e["params"]["requestId"] not in blocked]


def test_the_api_documentation_renders_offline_with_every_operation(browser, photo_folder, tmp_path):
    """/docs (Swagger UI) and /redoc (ReDoc) drawn by Chromium from the service's own files: the
    operations are listed, no "Unable to render this definition"."""
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())))
    wait = WebDriverWait(browser, 30)
    operations = {"/search", "/filters", "/items", "/items/{item_id}", "/items/{item_id}/similar", "/stats"}
    try:
        browser.get(url + "/docs")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        shown = {e.get_attribute("data-path") or e.text for e in
                 browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert operations <= {s.replace("\u200b", "") for s in shown}
        assert "Unable to render" not in browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(SCREENSHOT.with_name("api-docs.png")))

        browser.get(url + "/redoc")
        wait.until(lambda d: "Products most similar to an uploaded photo" in d.find_element(By.TAG_NAME, "body").text)
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "Add a product" in text and "Remove a product" in text
        assert "fashion-search API (" in text and "fashion-search (1)" not in text
        browser.find_element(By.XPATH, "//*[contains(text(), 'Products most similar to an uploaded photo')]").click()
        wait.until(lambda d: "the garments found in the photo" in d.find_element(By.TAG_NAME, "body").text)
        text = browser.find_element(By.TAG_NAME, "body").text
        assert '"garments"' in text and '"searched"' in text and '"results"' in text  # the answer's schema
        browser.save_screenshot(str(SCREENSHOT.with_name("api-redoc.png")))
        elsewhere = [u for u in requested(browser) if not u.startswith((url, "data:", "blob:"))]
        assert elsewhere == [], elsewhere  # ReDoc's footer logo from a CDN included
    finally:
        server.should_exit = True
