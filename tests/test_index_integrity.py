"""A damaged index is said, never served: checksums written with every file, ``fashion-search
verify`` run in its own process, the cheap checks of every open, and no NaN distance ever."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from fashion_search.data.photo_folder import list_photo_folder, list_photos
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.index.integrity import extend_segments, sealed
from fashion_search.search.serving.server import create_app
from fashion_search.search.index.store import DamagedIndexError, open_index, verify_index
from test_search_engine import SETTINGS, pixel_embedder  # noqa: E402
from test_server import serve  # noqa: E402


@pytest.fixture(scope="module")
def pristine(photo_folder, tmp_path_factory) -> Path:
    """An index of the photo folder, changed once (an add, then a removal), as indexes in use are."""
    folder = tmp_path_factory.mktemp("integrity") / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    engine = SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())
    engine.add(list_photos([photo_folder / "images" / "999.jpg"]))
    engine.remove(["101"])
    return folder


@pytest.fixture
def index(pristine, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(pristine, copy)
    return copy


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=120)


def manifest_of(index: Path) -> dict:
    return json.loads((index / "manifest.json").read_text())


def current(index: Path, role: str) -> Path:
    return index / manifest_of(index)["files"][role]


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def nan_in_vectors(index: Path) -> None:
    overwrite(current(index, "vectors"), 3 * manifest_of(index)["dim"] * 4 + 8, np.float32(np.nan).tobytes())


def nan_in_colours(index: Path) -> None:
    overwrite(current(index, "colours"), 16, np.float32(np.inf).tobytes())


def flip(role: str, where: float = 0.6):
    def damage(index: Path) -> None:
        path = current(index, role)
        offset = int(path.stat().st_size * where)
        overwrite(path, offset, bytes(b ^ 0x5A for b in path.read_bytes()[offset:offset + 4]))
    return damage


def truncate(role: str):
    def damage(index: Path) -> None:
        path = current(index, role)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damage


def in_manifest(**changes):
    def damage(index: Path) -> None:
        (index / "manifest.json").write_text(json.dumps({**manifest_of(index), **changes}))
    return damage


def manifest_text(text: str):
    def damage(index: Path) -> None:
        (index / "manifest.json").write_text(text)
    return damage


def resealed(change):
    """Damage a sealed manifest's fields and seal it again (as a careless tool would), so that the
    checks behind the seal are the ones that must find it."""
    def damage(index: Path) -> None:
        manifest = manifest_of(index)
        change(manifest)
        (index / "manifest.json").write_text(json.dumps(sealed(manifest)))
    return damage


def narrowed_runs(manifest: dict) -> None:
    """The vectors' row runs cut to rows 0–15 (rows after them no longer checked)."""
    manifest["checksums"]["vectors"] = [[0, 15, manifest["checksums"]["vectors"][0][2]]]


def repeated_rows_key(index: Path) -> None:
    text = (index / "manifest.json").read_text()
    (index / "manifest.json").write_text(text.replace("{", '{\n  "rows": 3,', 1))


def cut_manifest(index: Path) -> None:
    (index / "manifest.json").write_text((index / "manifest.json").read_text()[:150])


DAMAGE = {
    "NaN in vectors": (nan_in_vectors, "rows hold NaN"),
    "inf in colours": (nan_in_colours, "rows hold NaN"),
    "flipped faiss bytes": (flip("faiss"), "checksum differs"),
    "flipped products bytes": (flip("products", 0.5), "checksum differs"),
    "truncated vectors": (truncate("vectors"), "rows need"),
    "truncated faiss": (truncate("faiss"), "damaged"),
    "rows 10^9": (in_manifest(rows=10**9), "rows need"),
    "dim 7": (in_manifest(dim=7), "dim 7"),
    "rows a string": (in_manifest(rows="25"), "rows"),
    "a file outside the folder": (in_manifest(files={"vectors": "../vectors.f32", "colours": "colours.f32",
                                                     "products": "x.csv", "faiss": "y.faiss"}), "not a file name"),
    "truncated manifest": (cut_manifest, "not valid JSON"),
    "empty manifest": (manifest_text(""), "not valid JSON"),
    "manifest a list": (manifest_text("[1, 2]"), "not a JSON object"),
    "100,000 nested arrays": (manifest_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    "a repeated rows key": (repeated_rows_key, "names 'rows' twice"),
    "metric changed": (in_manifest(metric="l2"), "seal differs"),
    "checksums removed": (lambda index: (index / "manifest.json").write_text(json.dumps(
        {k: v for k, v in manifest_of(index).items() if k != "checksums"})), "seal differs"),
    "checksums removed, resealed": (resealed(lambda m: m.pop("checksums")), "records no checksum for"),
    "row runs narrowed, resealed": (resealed(narrowed_runs), "does not cover every row"),
    "checksums a list, resealed": (resealed(lambda m: m.update(checksums=[1, 2])), "checksums is not an object"),
    "checksums a number, resealed": (resealed(lambda m: m.update(checksums=7)), "checksums is not an object"),
    "a checksum of another role, resealed": (resealed(lambda m: m["checksums"].update(x="0" * 64)), "malformed"),
    "a checksum nested deep, resealed": (resealed(lambda m: m["checksums"].update(vectors=[[[[[]]]]])), "malformed"),
}


def one_damaged_line(done: subprocess.CompletedProcess, index: Path, says: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"the index in {index} is damaged (" in lines[0] and lines[0].endswith("rebuild it") and says in lines[0]


def test_an_older_manifest_put_back_after_a_change_is_found(index):
    """The add (here a removal) would be silently gone: the ledger remembers the generation committed."""
    before = (index / "manifest.json").read_text()
    assert cli("remove", "100", "--index", str(index)).returncode == 0
    (index / "manifest.json").write_text(before)
    for argv in (("verify",), ("info",), ("query", "--like", "102")):
        one_damaged_line(cli(*argv, "--index", str(index)), index, "an older manifest was put back")


def test_an_intact_index_verifies_in_its_own_process(index):
    done = cli("verify", "--index", str(index))
    assert done.returncode == 0 and "intact: 4 files" in done.stdout and "rows of finite vectors" in done.stdout
    info = cli("info", "--index", str(index))
    assert "checksums  recorded for colours, faiss, products, vectors" in info.stdout


@pytest.mark.parametrize("name", DAMAGE)
def test_verify_and_every_open_say_damaged_in_one_line(index, name):
    damage, says = DAMAGE[name]
    damage(index)
    one_damaged_line(cli("verify", "--index", str(index)), index, says)
    one_damaged_line(cli("query", "--like", "100", "--index", str(index)), index, "")
    one_damaged_line(cli("info", "--index", str(index)), index, "")


@pytest.mark.parametrize("role", ["vectors", "colours"])
def test_finite_damage_to_rows_is_found_by_every_open_not_only_verify(index, role):
    flip(role, 0.5)(index)  # finite values still: only the checksum of the rows tells
    for argv in (("info",), ("query", "--like", "100")):
        one_damaged_line(cli(*argv, "--index", str(index)), index, f"{role}.f32: rows 0–25 differ")
    one_damaged_line(cli("verify", "--index", str(index)), index, f"{role}.f32: its checksum differs")


def test_a_vector_replaced_by_another_products_is_never_served(index):
    """The probe's case: row 10049's vector replaced by another's, every value finite."""
    manifest, engine = manifest_of(index), SearchEngine(open_index(index, SETTINGS), SETTINGS, pixel_embedder())
    width = manifest["dim"] * 4
    rows = engine.index.products["id"].tolist()
    data = current(index, "vectors").read_bytes()
    other = data[rows.index("110") * width:(rows.index("110") + 1) * width]
    overwrite(current(index, "vectors"), rows.index("100") * width, other)
    done = cli("query", "--like", "100", "--index", str(index))
    one_damaged_line(done, index, "vectors.f32: rows")
    assert "110" not in done.stdout


def test_memory_mapped_vectors_are_left_to_verify(index):
    flip("vectors", 0.5)(index)
    assert len(open_index(index, SETTINGS, in_memory=False).products) == manifest_of(index)["rows"]  # not read at open
    one_damaged_line(cli("verify", "--index", str(index)), index, "vectors.f32: its checksum differs")


def test_nan_read_from_disk_at_search_time_is_never_served(index):
    engine = SearchEngine(open_index(index, SETTINGS, in_memory=False), SETTINGS, pixel_embedder())
    query = engine.product_query("100")
    assert engine.search(query, k=3, filters=["articleType=Jeans"])["distance"].notna().all()
    rows = np.flatnonzero(engine.index.products["articleType"].eq("Jeans").to_numpy() & engine.index.live)
    overwrite(current(index, "vectors"), int(rows[0]) * manifest_of(index)["dim"] * 4, np.float32(np.nan).tobytes())
    with pytest.raises(DamagedIndexError, match="NaN or infinite distances"):
        engine.search(query, k=20, filters=["articleType=Jeans"])  # every Jeans row, the NaN one too


def test_a_server_answers_503_with_the_reason_once_the_index_it_serves_is_damaged(index):
    engine = SearchEngine(open_index(index, SETTINGS), SETTINGS, pixel_embedder())
    url, server = serve(create_app(engine))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/items/100/similar").status_code == 200
            in_manifest(generation=manifest_of(index)["generation"] + 1, rows=10**9)(index)  # a damaged "change"
            for _ in range(2):
                answer = client.get("/items/100/similar")
                detail = answer.json()["detail"]
                assert answer.status_code == 503 and detail.startswith("the index is damaged (colours.f32 holds")
                assert "Retry-After" not in answer.headers and str(index) not in detail  # no server path
    finally:
        server.should_exit = True


def test_appends_hash_only_their_rows_and_segments_stay_few(tmp_path):
    path = tmp_path / "rows.f32"
    path.write_bytes(np.arange(4000, dtype=np.float32).tobytes())
    segments: list = []
    for end in range(1, 1001):  # a thousand adds of one row
        segments = extend_segments(segments, path, 16, end - 1, end)
    assert len(segments) <= 11 and segments[0][0] == 0 and segments[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    whole = extend_segments([], path, 16, 0, 1000)
    assert whole[0][2] == extend_segments([[0, 500, segments[0][2]]], path, 16, 0, 1000)[0][2]


def test_an_index_written_before_checksums_opens_and_gets_them_at_its_next_change(index, photo_folder):
    manifest = manifest_of(index)
    for key in ("checksums", "seal"):
        manifest.pop(key)
    (index / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))  # as written before format 2
    (index / "owned-files.json").unlink()
    assert "none recorded" in cli("info", "--index", str(index)).stdout
    engine = SearchEngine(open_index(index, SETTINGS), SETTINGS, pixel_embedder())
    engine.remove(["102"])
    assert verify_index(index)["files"] == sorted(manifest_of(index)["files"].values())
