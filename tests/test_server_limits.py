"""The service under hostile and unlucky input: bodies refused before they are read, slow and
lying clients, pixel budgets, filter caps, odd keys and ids, reserved metadata, a busy index."""
from __future__ import annotations

import dataclasses
import io
import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image

from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.index.filters import MAX_FILTERS, MAX_VALUES
from fashion_search.search.index.generations import locked
from fashion_search.search.serving.server import create_app
from fashion_search.search.index.store import open_index
from test_search_engine import pixel_embedder  # noqa: E402
from test_server import KEY, SETTINGS, serve  # noqa: E402

LIMITS = dataclasses.replace(SETTINGS, max_image_pixels=60_000_000, lock_wait_s=0.3)


@pytest.fixture
def limited(photo_folder, tmp_path):
    """A service with a 50 kB upload cap, a 1-second body deadline and the default pixel budget."""
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, LIMITS, embedder=pixel_embedder())
    engine = SearchEngine(open_index(folder, LIMITS), LIMITS, pixel_embedder())
    url, server = serve(create_app(engine, api_key="s3cret", max_upload_bytes=50_000, read_timeout_s=1.0))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, folder, url
    server.should_exit = True


def raw_request(url: str, head: str, body: bytes = b"", wait_s: float = 10.0) -> tuple[str, float]:
    """Send a hand-written request; return the status line and the seconds until it came."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=wait_s) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        reply = sock.recv(4096).decode(errors="replace")
        return reply.split("\r\n", 1)[0], time.monotonic() - started


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, format="PNG")  # one bit a pixel: a tiny file
    return buffer.getvalue()


def test_a_declared_size_over_the_cap_is_refused_before_the_body(limited):
    _, _, url = limited
    status, seconds = raw_request(url, "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                       "boundary=b\r\nContent-Length: 5000000000", b"--b\r\n" * 20)
    assert " 413 " in status and seconds < 5


def test_a_write_without_the_key_is_refused_before_the_body(limited):
    _, _, url = limited
    status, seconds = raw_request(url, "POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                       "boundary=b\r\nContent-Length: 200000000")
    assert " 401 " in status and seconds < 5


def test_a_client_that_sends_too_slowly_is_cut_off(limited):
    _, _, url = limited
    status, seconds = raw_request(url, "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                       "boundary=b\r\nContent-Length: 1000", b"--b\r\n")
    assert " 408 " in status and seconds < 5


def test_a_body_over_the_cap_without_a_length_is_stopped(limited):
    client, _, _ = limited

    def chunks():
        for _ in range(100):
            yield b"x" * 10_000

    response = client.post("/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413


def test_a_photo_over_the_service_pixel_budget_is_refused(limited):
    client, _, _ = limited
    huge = png(4100, 4100)  # 16.8 megapixels in a few kB: under the indexing cap, over the service's
    assert len(huge) < 50_000
    response = client.post("/search", files={"photo": ("huge.png", huge)})
    assert response.status_code == 415 and "too large" in response.json()["detail"]


def test_filters_are_capped(limited, photo_folder):
    client, _, _ = limited
    photo = (photo_folder / "images" / "100.jpg").read_bytes()
    many = client.post("/search", files={"photo": ("q.jpg", photo)},
                       data={"filter": ["gender=Men"] * (MAX_FILTERS + 1)})
    wide = client.get("/items/100/similar", params={"filter": "gender=" + ",".join(["x"] * (MAX_VALUES + 1))})
    assert many.status_code == 400 and wide.status_code == 400


@pytest.mark.parametrize("metadata", [{"rank": 7}, {"distance": 0}, {"deleted": True}, {"path": "/etc/passwd"}])
def test_metadata_may_not_name_a_column_the_project_sets(limited, photo_folder, metadata):
    client, folder, _ = limited
    before = (folder / "manifest.json").read_text()
    added = client.post("/items", headers=KEY, data={"id": "m1", "metadata": json.dumps(metadata)},
                        files={"photo": ("n.jpg", (photo_folder / "images" / "110.jpg").read_bytes())})
    assert added.status_code == 400 and "sets itself" in added.json()["detail"]
    assert (folder / "manifest.json").read_text() == before


def test_one_odd_value_does_not_break_a_range_filter(limited, photo_folder):
    client, _, _ = limited
    photo = (photo_folder / "images" / "110.jpg").read_bytes()
    for item_id, year in (("y1", 2011), ("y2", "new")):
        assert client.post("/items", headers=KEY, data={"id": item_id, "metadata": json.dumps({"year": year})},
                           files={"photo": ("n.jpg", photo)}).status_code == 201
    found = client.get("/items/110/similar", params={"filter": "year=2010..2012", "k": 5})
    assert found.status_code == 200 and [r["id"] for r in found.json()["results"]] == ["y1"]


@pytest.mark.parametrize("key", [b"caf\xe9", b"\xff\xfe", "s3cret\u00a0".encode("latin-1")])
def test_an_odd_key_is_refused_not_a_crash(limited, key):
    client, _, _ = limited
    assert client.delete("/items/100", headers={"X-API-Key": key}).status_code == 401


@pytest.mark.parametrize("item_id", ["nl1\n", "a b", "héllo", ".hidden", "a/b", "x" * 129])
def test_an_id_outside_the_rule_is_refused(limited, photo_folder, item_id):
    client, _, _ = limited
    added = client.post("/items", headers=KEY, data={"id": item_id},
                        files={"photo": ("n.jpg", (photo_folder / "images" / "110.jpg").read_bytes())})
    assert added.status_code == 400


def test_a_busy_index_answers_503_then_the_retry_indexes_the_new_photo(limited, photo_folder):
    client, folder, _ = limited
    first, second = (photo_folder / "images" / "100.jpg").read_bytes(), (photo_folder / "images" / "113.jpg").read_bytes()
    with locked(folder):  # as a CLI add in progress would
        busy = client.post("/items", headers=KEY, data={"id": "X"}, files={"photo": ("a.jpg", first)})
        assert busy.status_code == 503 and busy.headers["Retry-After"] and "another process" in busy.json()["detail"]
        assert client.delete("/items/100", headers=KEY).status_code == 503
    assert client.post("/items", headers=KEY, data={"id": "X"}, files={"photo": ("b.jpg", second)}).status_code == 201
    by_second = client.post("/search", files={"photo": ("q.jpg", second)}, data={"k": "2"}).json()["results"]
    by_first = client.post("/search", files={"photo": ("q.jpg", first)}, data={"k": "1"}).json()["results"]
    assert "X" in {r["id"] for r in by_second} and min(r["distance"] for r in by_second) < 1e-3
    assert by_first[0]["id"] == "100"


def test_the_service_sees_another_process_changes(limited):
    client, folder, _ = limited
    assert client.get("/items/105").status_code == 200
    from fashion_search.search.index.store import remove_products

    remove_products(open_index(folder, LIMITS), ["105"])  # as `fashion-search remove` would
    assert client.get("/items/105").status_code == 404
    assert client.get("/stats").json()["index"]["products"] == 24
