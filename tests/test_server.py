"""The HTTP service, started for real on a loopback port over a tiny index."""
from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from fashion_search.params import IndexParams
from fashion_search.search.index.store import open_index
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.serving.connections import server_config
from fashion_search.search.serving.server import create_app
from fashion_search.data.photo_folder import list_photo_folder
from test_search_engine import PixelModel, pixel_embedder  # noqa: E402

SETTINGS = IndexParams(chunk_size=8, batch_size=4, max_image_pixels=200_000)
KEY = {"X-API-Key": "s3cret"}


def serve(app, **limits) -> tuple[str, uvicorn.Server]:
    """Run ``app`` as ``fashion-search serve`` does (``limits``: header deadline, connection
    ceiling) on a free loopback port, in a thread; return its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, **limits))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


@pytest.fixture
def service(photo_folder, tmp_path):
    """A running service with an API key, over a fresh index of the photo folder."""
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    engine = SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())
    url, server = serve(create_app(engine, api_key="s3cret", max_upload_bytes=50_000))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, folder
    server.should_exit = True


def photo_bytes(path) -> bytes:
    return path.read_bytes()


def test_search_by_photo_with_filters(service, photo_folder):
    client, _ = service
    photo = photo_bytes(photo_folder / "images" / "100.jpg")
    found = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "5"}).json()["results"]
    assert found[0]["id"] == "100" and len(found) == 5 and "path" not in found[0]
    shoes = client.post("/search", files={"photo": ("q.jpg", photo)},
                        data={"k": "3", "filter": ["articleType=Shoes", "gender=Men"]}).json()["results"]
    assert [r["articleType"] for r in shoes] == ["Shoes"] * 3
    assert client.post("/search", files={"photo": ("q.jpg", photo)}, data={"filter": "size=M"}).status_code == 400
    assert client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "0"}).status_code == 400


def test_items_metadata_image_and_similar(service, photo_folder):
    client, _ = service
    assert client.get("/items/104").json()["articleType"] == "Tshirts"
    image = client.get("/items/104/image")
    assert image.status_code == 200 and image.content == photo_bytes(photo_folder / "images" / "104.jpg")
    similar = client.get("/items/104/similar", params={"k": 4}).json()["results"]
    assert len(similar) == 4 and "104" not in {r["id"] for r in similar}
    assert client.get("/health").json() == {"status": "ok", "products": 25}
    assert client.get("/stats").json()["requests"]["similar"] == 1


@pytest.mark.parametrize("path, status", [
    ("/items/nope", 404), ("/items/nope/image", 404), ("/items/nope/similar", 404),
    ("/items/..%2F..%2Fetc%2Fpasswd/image", 404), ("/items/%2Fetc%2Fpasswd/image", 404),
    ("/items/.hidden/image", 400), ("/items/..%2F..%2Fetc%2Fpasswd", 404), ("/items/%2E%2E/image", 400),
])
def test_unknown_and_malicious_ids_are_refused(service, path, status):
    client, _ = service
    response = client.get(path)
    assert response.status_code == status and b"root:" not in response.content


def test_bad_uploads_are_refused_and_change_nothing(service, tmp_path):
    client, folder = service
    before = (folder / "manifest.json").read_text()
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(big, format="PNG")
    bomb = io.BytesIO()
    Image.new("RGB", (1000, 1000), "white").save(bomb, format="PNG")  # small file, 1M pixels > the 200k limit
    assert client.post("/search", files={"photo": ("big.png", big.getvalue())}).status_code == 413
    assert client.post("/search", files={"photo": ("a.jpg", b"GIF89a not really")}).status_code == 415
    assert client.post("/search", files={"photo": ("bomb.png", bomb.getvalue())}).status_code == 415
    assert client.post("/items", headers=KEY, data={"id": "x1"},
                       files={"photo": ("a.jpg", b"plain text")}).status_code == 415
    assert client.post("/items", headers=KEY, data={"id": "../x"},
                       files={"photo": ("a.png", bomb.getvalue())}).status_code == 400
    assert (folder / "manifest.json").read_text() == before


def test_writes_need_the_key_and_survive_a_restart(service, photo_folder):
    client, folder = service
    before = (folder / "manifest.json").read_text()
    photo = photo_bytes(photo_folder / "images" / "110.jpg")
    assert client.post("/items", data={"id": "new1"}, files={"photo": ("n.jpg", photo)}).status_code == 401
    assert client.post("/items", headers={"X-API-Key": "wrong"}, data={"id": "new1"},
                       files={"photo": ("n.jpg", photo)}).status_code == 401
    assert client.delete("/items/100").status_code == 401
    assert (folder / "manifest.json").read_text() == before

    added = client.post("/items", headers=KEY, data={"id": "new1", "metadata": '{"articleType": "Shoes"}'},
                        files={"photo": ("n.jpg", photo)})
    assert added.status_code == 201 and added.json()["products"] == 26
    assert client.get("/items/new1").json()["articleType"] == "Shoes"
    assert client.get("/items/new1/image").status_code == 200
    assert client.delete("/items/100", headers=KEY).json()["products"] == 25
    assert client.get("/items/100").status_code == 404

    restarted = SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())
    url, server = serve(create_app(restarted))  # no key: read-only
    with httpx.Client(base_url=url) as again:
        assert again.get("/items/new1").status_code == 200 and again.get("/items/100").status_code == 404
        assert again.post("/items", headers=KEY, data={"id": "new2"},
                          files={"photo": ("n.jpg", photo)}).status_code == 403
    server.should_exit = True


def test_the_openapi_description_matches_the_routes(service):
    client, _ = service
    paths = client.get("/openapi.json").json()["paths"]
    assert {p: sorted(m) for p, m in paths.items()} == {
        "/health": ["get"], "/stats": ["get"], "/search": ["post"], "/items": ["post"],
        "/items/{item_id}": ["delete", "get"], "/items/{item_id}/similar": ["get"],
        "/items/{item_id}/image": ["get"], "/filters": ["get"]}
    assert "<title>fashion-search</title>" in client.get("/").text


def test_the_api_docs_work_offline(service):
    client, _ = service
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200


def test_the_filter_keys_and_their_values_are_offered(service):
    client, _ = service
    options = client.get("/filters").json()
    assert "Shoes" in options["articleType"]["values"] and "red" in options["colour"]["values"]
    assert "id" not in options and "path" not in options


def test_invalid_settings_are_said_in_words_without_python_internals(service, photo_folder):
    client, _ = service
    photo = photo_bytes(photo_folder / "images" / "100.jpg")
    wrong_k = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "many"})
    assert wrong_k.status_code == 422 and wrong_k.json()["detail"].startswith("k: ")
    no_photo = client.post("/search", data={"k": "3"})
    assert no_photo.status_code == 422 and no_photo.json()["detail"] == "photo: Field required"
    text_as_photo = client.post("/search", data={"photo": "not a file"})
    assert text_as_photo.status_code == 422
    assert not any(mark in text_as_photo.text for mark in ("object at", "<_io", "input"))


def test_more_like_this_keeps_a_preferred_colour(service):
    client, _ = service
    plain = client.get("/items/104/similar", params={"k": 4}).json()["results"]
    coloured = client.get("/items/104/similar", params={"k": 4, "colour": "red"}).json()["results"]
    assert "score" not in plain[0] and all("score" in r for r in coloured)
    assert client.get("/items/104/similar", params={"colour": "reddish"}).status_code == 400
    refused = client.get("/items/104/similar", params={"match_colour": 2})  # a plain index: no colour part
    assert refused.status_code == 400 and "no colour part" in refused.json()["detail"]
    assert client.get("/items/104/similar", params={"match_colour": 9}).status_code == 422
    assert client.get("/items/104/similar", params={"match_colour": 1}).status_code == 200


class SlowPixelModel(PixelModel):
    """The pixel model taking 50 ms a call, so that concurrent requests find it busy."""

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super().predict_on_batch(batch)


def test_concurrent_searches_and_adds_share_model_calls(photo_folder, tmp_path):
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    slow = pixel_embedder()
    slow.model = SlowPixelModel()
    url, server = serve(create_app(SearchEngine(open_index(folder, SETTINGS), SETTINGS, slow), api_key="s3cret"))
    photo = photo_bytes(photo_folder / "images" / "112.jpg")

    def ask(i: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as own:
            if i % 4 == 3:  # every fourth request adds a product
                return own.post("/items", data={"id": f"new{i}", "metadata": "{}"},
                                files={"photo": ("p.jpg", photo)}, headers=KEY)
            return own.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "3"})

    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(24)))
        with httpx.Client(base_url=url, timeout=30) as client:
            stats = client.get("/stats").json()
            found = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "20"}).json()["results"]
    finally:
        server.should_exit = True
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers if a.status_code >= 300]
    searches = [a.json()["results"] for a in answers if a.status_code == 200]
    assert len(searches) == 18 and all(r[0]["distance"] == searches[0][0]["distance"] for r in searches)
    assert {f"new{i}" for i in range(3, 24, 4)} <= {r["id"] for r in found}  # every add is searchable
    assert stats["requests"] == {"search": 18, "add": 6} and stats["model_calls"] < 24
    assert stats["model_runtime"] == "predict_on_batch"  # not a Keras model: nothing to convert


def test_a_search_blends_in_the_photos_own_colours_only_when_asked(service, photo_folder):
    client, _ = service
    photo = photo_bytes(photo_folder / "images" / "100.jpg")  # a red T-shirt
    plain = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "6"}).json()["results"]
    by_colour = client.post("/search", files={"photo": ("q.jpg", photo)},
                            data={"k": "6", "colour_weight": "1"}).json()["results"]
    assert "score" not in plain[0] and {r["baseColour"] for r in by_colour} == {"Red"}
    assert [r["score"] for r in by_colour] == sorted(r["score"] for r in by_colour)
