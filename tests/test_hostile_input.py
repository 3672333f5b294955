"""Hostile and unlucky input at the doors: formats nobody documented, metadata of any shape,
filters no backend can read, slow and many connections, and words of Python in answers."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import EpsImagePlugin, Image

from fashion_search.data.metadata import MAX_COLUMNS, MAX_NAME_CHARS, MAX_NEW_COLUMNS, MAX_VALUE_CHARS
from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.serving.server import create_app
from fashion_search.search.index.store import open_index
from test_search_engine import pixel_embedder  # noqa: E402
from test_server import KEY, SETTINGS, serve  # noqa: E402


@pytest.fixture
def served(photo_folder, tmp_path):
    """A service with a write key over a fresh index, started with a 1-second header deadline and
    a ceiling of 8 connections."""
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    engine = SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())
    url, server = serve(create_app(engine, api_key="s3cret"), header_timeout_s=1.0, max_connections=8)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, folder, url
    server.should_exit = True


def picture(format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format=format)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- formats (1, 10)
def test_no_upload_starts_an_external_decoder(served, tmp_path, monkeypatch, photo_folder):
    client, _, _ = served
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gs").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'gs-calls.log'}\nexit 1\n")
    (tmp_path / "bin" / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # looked up again on PATH, as in a fresh server
    for format in ("EPS", "ICO", "TGA", "PCX", "SGI"):
        for path, fields in (("/search", {}), ("/items", {"id": f"new-{format}"})):
            answer = client.post(path, files={"photo": ("photo.jpg", picture(format))}, data=fields, headers=KEY)
            detail = answer.json()["detail"]
            assert answer.status_code == 415, (format, path, detail)
            assert "not a photo format that can be read: JPEG, PNG, WebP, BMP, GIF or TIFF" in detail
            assert not any(word in detail for word in ("Ghostscript", "gs ", "/tmp", "-dSAFER"))
    assert not (tmp_path / "gs-calls.log").exists()
    assert client.post("/search", files={"photo": ("photo.jpg", picture("WEBP"))}).status_code == 200


def test_a_text_field_sent_as_the_photo_is_explained_without_python_types(served):
    client, _, _ = served
    answer = client.post("/search", data={"photo": "not a file", "k": "3"})
    detail = answer.json()["detail"]
    assert answer.status_code == 422 and detail.startswith("photo: ")
    assert "<class" not in detail and "UploadFile" not in detail and "str" not in detail.split()


# ----------------------------------------------------------------------------- metadata (4, 8, 9)
def add(client, metadata: str | dict, item_id: str = "new-1"):
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return client.post("/items", files={"photo": ("p.png", picture("PNG"))},
                       data={"id": item_id, "metadata": text}, headers=KEY)


@pytest.mark.parametrize("metadata, says", [
    ({f"k{i}": "x" for i in range(MAX_NEW_COLUMNS + 1)}, f"at most {MAX_NEW_COLUMNS} at once"),
    ({"x" * (MAX_NAME_CHARS + 1): "v"}, f"longer than {MAX_NAME_CHARS} characters"),
    ({"brand": "v" * (MAX_VALUE_CHARS + 1)}, f"longer than {MAX_VALUE_CHARS:,} characters"),
    ({"PATH": "/etc/passwd"}, "a name fashion-search sets itself"),
    ({" path": "x"}, "spaces around it"),
    ({"Deleted": "true"}, "a name fashion-search sets itself"),
    ({"": "x"}, "has no name"),
    ({"a=b": "x"}, "holds '='"),
    ({"line\nbreak": "x"}, "line break"),
    ({"nested": {"a": 1}}, "a JSON object"),
    ({"listed": [1, 2]}, "a JSON array"),
    ('{"price": NaN}', "holds NaN"),
    ('{"price": Infinity}', "holds Infinity"),
    ('{"price": 1e999}', "not a finite number"),
    ({"ArticleType": "Shoes"}, "differs from the index's 'articleType' only in case"),
    ('[1, 2]', "must be a JSON object"),
    ('{"a": ', "must be a JSON object"),
])
def test_metadata_of_a_shape_the_index_cannot_hold_is_refused_and_nothing_changes(served, metadata, says):
    client, folder, _ = served
    before = (folder / "manifest.json").read_text()
    answer = add(client, metadata)
    assert answer.status_code == 400 and says in answer.json()["detail"], answer.json()
    assert (folder / "manifest.json").read_text() == before
    assert len(client.get("/filters").json()) == 4  # articleType, baseColour, gender, colour


def test_metadata_within_the_limits_lands_as_given(served):
    client, _, _ = served
    fields = {"brand": "Acme", "price": 12.5, "sale": True, "note": None, "material": "wool " * 20}
    assert add(client, fields).status_code == 201
    item = client.get("/items/new-1").json()
    assert item["brand"] == "Acme" and item["price"] == 12.5 and item["material"] == "wool " * 20


def test_an_index_holds_at_most_so_many_columns(served):
    client, _, _ = served
    for batch in range(MAX_COLUMNS // MAX_NEW_COLUMNS + 1):
        fields = {f"c{batch}_{i}": "v" for i in range(MAX_NEW_COLUMNS)}
        answer = add(client, fields, f"p{batch}")
        if answer.status_code != 201:
            assert answer.status_code == 400 and f"at most {MAX_COLUMNS}" in answer.json()["detail"]
            break
    else:
        pytest.fail("no limit on the columns of an index")


@pytest.mark.parametrize("header, says", [
    ("id,articleType,", "has no name"),
    ("id,articleType,PATH", "a name fashion-search sets itself"),
    ("id,articleType,size=m", "holds '='"),
])
def test_a_metadata_csv_of_the_same_shapes_is_refused_in_its_own_process(photo_folder, tmp_path, header, says):
    csv = tmp_path / "meta.csv"
    csv.write_text(f"{header}\n100,Tshirts,x\n")
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photo_folder), "--metadata",
                           str(csv), "--index", str(tmp_path / "i")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- connections (7)
def connect(url: str) -> socket.socket:
    address = urlparse(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(served):
    client, _, url = served
    slow, silent = connect(url), connect(url)
    started = time.monotonic()
    try:
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:  # 0.1 s a byte: 13 s in all
            slow.sendall(bytes([byte]))
            time.sleep(0.1)
        cut = False
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    assert (cut or closed_within(slow, 1)) and time.monotonic() - started < 3  # the deadline is 1 s
    assert closed_within(silent, 1)
    assert client.get("/health").status_code == 200  # and the service goes on


def test_over_the_ceiling_the_longest_waiting_connection_makes_room(served):
    client, _, url = served
    held = []
    for _ in range(8):  # the ceiling: eight silent connections
        held.append(connect(url))
        time.sleep(0.02)
    extra = connect(url)
    assert closed_within(held[0], 0.5) and not closed_within(extra, 0.2)  # the oldest went, the new one stays
    with httpx.Client(base_url=url, timeout=5) as fresh:  # a well-behaved client is answered meanwhile
        assert [fresh.get("/health").status_code for _ in range(3)] == [200, 200, 200]
    for sock in [*held, extra]:
        sock.close()


# ----------------------------------------------------------------------------- a full disk, old uploads
def test_a_full_disk_answers_507_and_the_next_add_lands(served, monkeypatch):
    import errno

    from fashion_search.search.index import store

    client, folder, _ = served
    before = (folder / "manifest.json").read_text()
    real = store.save_faiss_index

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "faiss.tmp"))

    monkeypatch.setattr(store, "save_faiss_index", full)
    answer = add(client, {}, "disk-1")
    assert answer.status_code == 507 and "nothing was changed" in answer.json()["detail"]
    assert (folder / "manifest.json").read_text() == before
    monkeypatch.setattr(store, "save_faiss_index", real)
    assert add(client, {}, "disk-1").status_code == 201 and client.get("/items/disk-1").status_code == 200


def test_uploads_no_product_shows_go_once_their_grace_period_is_over(served, monkeypatch):
    from fashion_search.search.index import generations

    client, folder, _ = served
    for _ in range(3):  # the same id three times: two uploads no product shows any more
        assert add(client, {}, "again").status_code == 201
    uploads = folder / "uploads"
    assert len(list(uploads.iterdir())) == 3  # younger than the grace period: an add elsewhere may need them
    monkeypatch.setattr(generations, "UPLOAD_GRACE_S", 0)
    assert client.delete("/items/100", headers=KEY).status_code == 200  # the next change cleans up
    shown = client.get("/items/again").json()
    assert len(list(uploads.iterdir())) == 1 and client.get("/items/again/image").status_code == 200 and shown


def test_a_postscript_query_photo_is_one_line_from_the_command_line_and_starts_nothing(served, tmp_path):
    _, folder, _ = served
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gs").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'gs-calls.log'}\nexit 1\n")
    (tmp_path / "bin" / "gs").chmod(0o755)
    (tmp_path / "dress.jpg").write_bytes(picture("EPS"))
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "query", str(tmp_path / "dress.jpg"),
                           "--index", str(folder)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"fashion-search: error: cannot read the query photo {tmp_path / 'dress.jpg'}: not a readable image (not a "
        "photo format that can be read: JPEG, PNG, WebP, BMP, GIF or TIFF)"]
    assert not (tmp_path / "gs-calls.log").exists()


def test_search_fields_in_the_address_of_a_post_are_refused_not_ignored(served, photo_folder):
    client, _, _ = served
    photo = (photo_folder / "images" / "100.jpg").read_bytes()
    answer = client.post("/search?k=2&filter=articleType=Shoes", files={"photo": ("q.jpg", photo)})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("send filter, k as form fields")


def test_a_filter_that_matches_nothing_says_which_values_exist(served, photo_folder):
    client, _, _ = served
    photo = (photo_folder / "images" / "100.jpg").read_bytes()
    found = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"filter": ["articleType=Sandals"]}).json()
    similar = client.get("/items/100/similar", params={"filter": "articleType=Tshirt"}).json()
    assert found["results"] == [] and found["hints"][0].startswith(
        "no product has articleType=Sandals; articleType values, closest first: ")
    assert similar["results"] == [] and "closest first: Tshirts" in similar["hints"][0]
