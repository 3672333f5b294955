"""Garments of a query photo through every door: the CLI (its own processes, the real localiser),
the HTTP API, the web page at a phone's width and the JupyterLab panel."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.models.localiser import Garment
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.index.store import open_index
from fashion_search.search.serving.server import create_app
from fashion_search.search.widget import panel_search
from conftest import copy_index
from test_search_engine import pixel_embedder  # noqa: E402
from test_server import SETTINGS, serve  # noqa: E402

PHONE_SCREENSHOT = Path(__file__).resolve().parents[1] / "outputs" / "web-page-phone.png"
TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]


def scene(path: Path) -> Path:
    """A shopper-like photo: a red top over blue trousers on a mottled floor, 400 × 300."""
    rng = np.random.default_rng(3)
    floor = (np.array([120, 100, 80]) + rng.normal(0, 25, (300, 400, 3))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(floor)
    draw = ImageDraw.Draw(image)
    draw.polygon([(150, 30), (250, 30), (290, 70), (265, 95), (245, 80), (245, 150), (155, 150), (155, 80),
                  (135, 95), (110, 70)], fill=(200, 30, 40))
    draw.polygon([(160, 155), (240, 155), (250, 290), (210, 290), (200, 200), (190, 290), (150, 290)],
                 fill=(30, 40, 160))
    image.save(path)
    return path


class TwoGarments:
    """A localiser that always finds the same two garments (the top and the trousers of :func:`scene`);
    ``relative``: where they are on a photo of any size showing the scene."""

    def __init__(self, relative: bool = False):
        self.relative = relative

    def ready(self) -> None:
        return None

    def find(self, pixels: np.ndarray) -> list[Garment]:
        height, width = pixels.shape[:2]
        top, trousers = np.zeros((300, 400), bool), np.zeros((300, 400), bool)
        top[30:150, 110:290], trousers[155:290, 150:250] = True, True
        boxes = [(110, 30, 290, 150), (150, 155, 250, 290)]
        if self.relative:
            boxes = [tuple(round(v * width / 400) for v in box) for box in boxes]
        return [Garment(boxes[0], "top", 0.9, top), Garment(boxes[1], "bottom", 0.8, trousers)]


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def cli_index(cli_built, tmp_path_factory) -> Path:
    return copy_index(cli_built("faiss"), tmp_path_factory.mktemp("garments") / "index")   # built by the CLI


def test_the_cli_lists_the_garments_and_searches_the_one_picked(cli_index, tmp_path):
    photo = scene(tmp_path / "scene.png")
    first = cli("query", str(photo), "--index", str(cli_index), "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    garments, searched = answer["garments"], answer["searched"]
    assert garments and answer["garment"] == 1 and searched == garments[0]
    for garment in garments:
        x0, y0, x1, y1 = garment["box"]
        assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    again = json.loads(cli("query", str(photo), "--index", str(cli_index), "--json", "--garment", "1").stdout)
    assert again["results"] == answer["results"]  # the main garment is the default
    whole = json.loads(cli("query", str(photo), "--index", str(cli_index), "--json", "--whole-photo").stdout)
    assert whole["garments"] == [] and whole["searched"]["group"] == "whole photo"
    beyond = cli("query", str(photo), "--index", str(cli_index), "--garment", str(len(garments) + 1))
    assert beyond.returncode == 2 and beyond.stderr.count("\n") == 1
    assert f"the photo has {len(garments)}" in beyond.stderr
    boxed = json.loads(cli("query", str(photo), "--index", str(cli_index), "--json", "--box", "150,155,250,290").stdout)
    assert boxed["searched"] == {"box": [150, 155, 250, 290], "group": "drawn box", "score": 1.0}
    plain = cli("query", str(photo), "--index", str(cli_index))
    assert plain.returncode == 0 and ("found" in plain.stdout or "whole photo" not in plain.stdout)


def large_jpeg(path: Path, small: Path, factor: int = 6) -> Path:
    """``small`` enlarged ``factor`` times as a JPEG, large enough to be decoded at a reduced scale."""
    with Image.open(small) as image:
        image.resize((image.width * factor, image.height * factor), Image.BILINEAR).save(path, quality=92)
    return path


def test_boxes_of_a_large_jpeg_are_in_its_own_pixels_from_the_cli(cli_index, tmp_path):
    small = scene(tmp_path / "scene.png")
    large = large_jpeg(tmp_path / "scene.jpg", small)   # 2400 x 1800, decoded at half size
    on_small = json.loads(cli("query", str(small), "--index", str(cli_index), "--json").stdout)
    on_large = json.loads(cli("query", str(large), "--index", str(cli_index), "--json").stdout)
    assert len(on_large["garments"]) == len(on_small["garments"])
    for big, little in zip(on_large["garments"], on_small["garments"]):
        assert np.allclose(big["box"], np.multiply(little["box"], 6), atol=120), (big, little)  # 5% of its width
    beyond_half = "1300,1000,2000,1700"   # inside the photo, outside the half-size decode
    boxed = json.loads(cli("query", str(large), "--index", str(cli_index), "--json", "--box", beyond_half).stdout)
    assert boxed["searched"]["box"] == [1300, 1000, 2000, 1700]


@pytest.mark.parametrize("argv, message", [
    (["--like", "100", "--garment", "2"], "give a photo"),
    (["{photo}", "--box", "1,2,3"], "not four whole numbers"),
    (["{photo}", "--box", "500,500,600,600"], "holds no part of the 30 x 40 photo"),
    (["{photo}", "--box", "20,20,5,5"], "is turned around"),
    (["{photo}", "--garment", "2", "--whole-photo"], "cannot go with a box of your own or with the localiser"),
    (["{photo}", "--garment", "2", "--box", "0,0,20,20"], "cannot go with a box of your own"),
])
def test_garment_mistakes_give_one_line_and_exit_2(cli_index, photo_folder, argv, message):
    argv = [a.format(photo=photo_folder / "images" / "100.jpg") for a in argv]
    done = cli("query", *argv, "--index", str(cli_index))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def serve_two_garments(photo_folder: Path, folder: Path, settings=SETTINGS, relative: bool = False):
    """A server whose localiser finds the two garments of :func:`scene`: its address, the server and its engine."""
    build_index(list_photo_folder(photo_folder), folder, settings, embedder=pixel_embedder())
    engine = SearchEngine(open_index(folder, settings), settings, pixel_embedder())
    engine.garment_finder = TwoGarments(relative)
    return (*serve(create_app(engine)), engine)


@pytest.fixture
def two_garment_service(photo_folder, tmp_path):
    url, server, engine = serve_two_garments(photo_folder, tmp_path / "index")
    yield url, engine
    server.should_exit = True


def test_the_api_answers_with_the_garments_and_searches_the_one_asked(two_garment_service, tmp_path):
    import httpx

    url, _ = two_garment_service
    photo = scene(tmp_path / "scene.png").read_bytes()
    with httpx.Client(base_url=url, timeout=30) as client:
        def search(**data):
            return client.post("/search", files={"photo": ("scene.png", photo)}, data=data)

        main = search().json()
        assert main["photo"] == {"width": 400, "height": 300} and main["garment"] == 1
        assert [g["group"] for g in main["garments"]] == ["top", "bottom"]
        second = search(garment="2").json()
        assert second["garment"] == 2 and second["searched"]["box"] == [150, 155, 250, 290]
        assert [r["id"] for r in second["results"]] != [r["id"] for r in main["results"]]  # another garment's look-alikes
        drawn = search(box="0,0,100,100").json()
        assert drawn["searched"]["group"] == "drawn box" and drawn["garment"] is None
        assert search(localise="false").json()["garments"] == []
        assert search(garment="3").status_code == 400 and "the photo has 2" in search(garment="3").json()["detail"]
        assert search(box="a,b,c,d").status_code == 400
        assert search(box="0,0,100,100", garment="2").status_code == 400  # one would go unused: said, not ignored
        assert search(garment="2", localise="false").status_code == 400
        assert search(garment="0").status_code == 422


class BottomStrip:
    """A localiser that finds one garment: the bottom 50 rows of whatever pixels it is given."""

    def find(self, pixels: np.ndarray) -> list[Garment]:
        height, width = pixels.shape[:2]
        mask = np.zeros((height, width), bool)
        mask[height - 50:] = True
        return [Garment((0, height - 50, width, height), "bottom", 0.9, mask)]


def test_boxes_move_between_the_decode_and_the_photo_by_each_sides_own_ratio(two_garment_service):
    """A 1125 x 5000 photo decodes to 282 x 1250: the sides shrink by 3.99 and 4 (each rounds up on its own)."""
    _, engine = two_garment_service
    engine.garment_finder = BottomStrip()
    pixels = np.zeros((1250, 282, 3), np.uint8)
    found, chosen, searched = engine.locate(pixels, size=(1125, 5000))
    assert found[0] is chosen and chosen.box == (0, 4800, 1125, 5000) and searched.size
    whole = engine.locate(pixels, localise=False, size=(1125, 5000))[1]
    assert whole.box == (0, 0, 1125, 5000)
    _, drawn, cut = engine.locate(pixels, box=(0, 4992, 1125, 5000), size=(1125, 5000))   # its last 8 rows
    assert drawn.box == (0, 4992, 1125, 5000) and cut.shape[0] >= 2 and cut.shape[1] == 282


def test_the_api_tells_the_boxes_of_a_large_jpeg_in_its_own_pixels(photo_folder, tmp_path):
    import httpx

    url, server, _ = serve_two_garments(photo_folder, tmp_path / "index",
                                        replace(SETTINGS, max_image_pixels=5_000_000), relative=True)
    photo = large_jpeg(tmp_path / "scene.jpg", scene(tmp_path / "scene.png")).read_bytes()
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/search", files={"photo": ("scene.jpg", photo)})
        assert answer.status_code == 200, answer.text
        main = answer.json()
        assert main["photo"] == {"width": 2400, "height": 1800}
        assert main["garments"][1]["box"] == [900, 930, 1500, 1740]   # the trousers, 6 times their box in scene()
        drawn = client.post("/search", files={"photo": ("scene.jpg", photo)}, data={"box": "1300,1000,2000,1700"})
        assert drawn.status_code == 200 and drawn.json()["searched"]["box"] == [1300, 1000, 2000, 1700]
    server.should_exit = True


def test_the_page_draws_the_garments_and_searches_a_click_or_a_drawn_box_on_a_phone(two_garment_service, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = two_garment_service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844,
                                                                          "pixelRatio": 3.0, "touch": True}})
    driver = webdriver.Chrome(options=options, service=ChromeService("/usr/bin/chromedriver"))
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(url + "/")
        camera = driver.find_element(By.ID, "camera")
        assert camera.get_attribute("capture") == "environment" and camera.get_attribute("accept") == "image/*"
        driver.find_element(By.ID, "file").send_keys(str(scene(tmp_path / "scene.png")))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#query .garment")) == 2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .card"))
        assert "Found 2 garments; searching 1 (top)" in driver.find_element(By.ID, "garments").text
        page_width = driver.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= 390  # nothing wider than the phone's screen
        cards = driver.execute_script("return [...document.querySelectorAll('#grid .card')].map(c => "
                                      "c.getBoundingClientRect().right)")
        assert max(cards) <= 390
        driver.find_elements(By.CSS_SELECTOR, "#query .garment")[1].click()
        wait.until(lambda d: "searching 2 (bottom)" in d.find_element(By.ID, "garments").text)
        image = driver.find_element(By.CSS_SELECTOR, "#query img")
        size = image.size
        ActionChains(driver).move_to_element_with_offset(image, -size["width"] // 2 + 5, -size["height"] // 2 + 5) \
            .click_and_hold().move_by_offset(size["width"] // 3, size["height"] // 3).release().perform()
        wait.until(lambda d: "the box you drew" in d.find_element(By.ID, "garments").text)
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#query .garment span")]
        assert labels == ["1 top", "2 bottom", "your box"]  # the garments found stay to click
        PHONE_SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(PHONE_SCREENSHOT))
    finally:
        driver.quit()


def test_the_jupyterlab_panel_draws_the_garments_and_takes_a_number_or_a_box(two_garment_service, tmp_path,
                                                                              photo_folder):
    _, engine = two_garment_service
    catalog = list_photo_folder(photo_folder)
    buffer = io.BytesIO()
    Image.open(scene(tmp_path / "scene.png")).save(buffer, format="PNG")
    upload = ({"name": "scene.png", "content": buffer.getvalue()},)
    answer = panel_search({"m": engine}, catalog, "m", upload, "", 4, "", garment=2)
    texts = [t.get_text() for t in answer.figure.axes[0].texts]
    assert texts == ["1 top", "2 bottom"]
    assert answer.text.startswith("the photo is ") and "2 garments found: 1 top at " in answer.text
    assert "Searching 2 (bottom)" in answer.text
    query_tile, result_tile = answer.figure.axes[0].get_position(), answer.figure.axes[1].get_position()
    assert query_tile.width > 1.5 * result_tile.width   # a photo with garments is drawn large
    assert panel_search({"m": engine}, catalog, "m", upload, "", 4, "", garment=3).text.startswith("error: garment 3")
    assert panel_search({"m": engine}, catalog, "m", upload, "", 4, "", box_text="1,2").text.startswith("error: the box")
    boxed = panel_search({"m": engine}, catalog, "m", upload, "", 4, "", box_text="0,0,100,100")
    assert [t.get_text() for t in boxed.figure.axes[0].texts] == ["your box"]  # a drawn box: nothing to look for
    assert "Searching your box 0,0,100,100" in boxed.text
    whole = panel_search({"m": engine}, catalog, "m", upload, "", 4, "", garment=2, localise=False)
    assert whole.figure is not None and "finding garments is turned off" in whole.text   # the number left aside
