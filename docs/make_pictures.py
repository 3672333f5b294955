"""Regenerate the README's pictures from a finished run and a search index.

    python docs/make_pictures.py [--run outputs/default] [--index outputs/dev-index]
                                 [--photo ../shared/data/fashion-products-dev/images/10007.jpg]

Copies the run's headline figures into docs/images/, and screenshots, in headless Chromium
(Debian's chromium + chromium-driver), the 04 report's table at 1,280 px and the web page of
``fashion-search serve`` over the index after a photo search.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fashion_search.params import IndexParams
from fashion_search.search.engine import SearchEngine
from fashion_search.search.serving.server import create_app

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("map_per_model_0.png", "queries_efficientnet_lite0-cosface.png", "learning_curves.png")


def browser(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=ChromeService("/usr/bin/chromedriver"))


def report_table(report: Path, target: Path) -> None:
    """The 04 report scrolled to its first table, as a reader at 1,280 px sees it."""
    driver = browser()
    try:
        driver.get(report.resolve().as_uri())
        driver.execute_script("""
            const heading = [...document.querySelectorAll('h2')].find(h => h.textContent.includes('compared'));
            heading.scrollIntoView();""")
        time.sleep(0.5)
        driver.save_screenshot(str(target))
    finally:
        driver.quit()


def web_page(index: Path, photo: Path, target: Path) -> None:
    """The page after searching ``photo`` with a colour preference left empty."""
    app = create_app(SearchEngine.open(index, IndexParams()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    driver = browser(1280, 1000)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "file").send_keys(str(photo.resolve()))
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .card img")) >= 12)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(str(target))
    finally:
        driver.quit()
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "outputs" / "default"))
    parser.add_argument("--index", default=str(ROOT / "outputs" / "dev-index"))
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "data" / "fashion-products-dev" / "images"
                                               / "10007.jpg"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        shutil.copyfile(Path(args.run) / "figures" / name, out / name)
    report_table(Path(args.run) / "reports" / "04_evaluate.html", out / "report_04_table.png")
    web_page(Path(args.index), Path(args.photo), out / "web_page.png")
    print(f"pictures written to {out}")


if __name__ == "__main__":
    main()
