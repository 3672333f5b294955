"""The web page in a real browser: headless Chromium drives upload, filter and "more like this"."""
from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from fashion_search.product_index import open_index
from fashion_search.search import SearchEngine, build_index
from fashion_search.server import create_app
from fashion_search.sources import list_photo_folder
from test_search import pixel_embedder  # noqa: E402
from test_server import SETTINGS, serve  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "outputs" / "web-page-e2e.png"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=ChromeService("/usr/bin/chromedriver"))
    yield driver
    driver.quit()


def cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#grid .card")


def test_upload_filter_and_more_like_this(browser, photo_folder, tmp_path):
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())))
    wait = WebDriverWait(browser, 20)
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "file").send_keys(str(photo_folder / "images" / "100.jpg"))
        wait.until(lambda d: len(cards(d)) == 12)
        assert cards(browser)[0].get_attribute("data-id") == "100"
        assert "Tshirts" in cards(browser)[0].text and "distance 0.000" in cards(browser)[0].text

        browser.find_element(By.ID, "filter").send_keys("articleType=Shoes")
        browser.find_element(By.ID, "refine").click()
        wait.until(lambda d: cards(d) and all("Shoes" in c.text for c in cards(d)))
        assert len(cards(browser)) == 8  # all eight pairs of shoes, nothing else

        clicked = cards(browser)[0].get_attribute("data-id")
        cards(browser)[0].click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), f"More like {clicked}"))
        wait.until(lambda d: len(cards(d)) == 7)
        assert clicked not in {c.get_attribute("data-id") for c in cards(browser)}
        images_loaded = browser.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
        assert images_loaded
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        server.should_exit = True
