"""The same command-line session against each index backend: faiss, and Milvus (Milvus Lite, in-process).

With ``FASHION_SEARCH_TEST_MILVUS_URI=http://host:19530`` the backend sessions also run against
that Milvus server (their collections are dropped afterwards).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from fashion_search.cli import main
from fashion_search.params import IndexParams
from fashion_search.search.index.store import open_index
from served_process import cli_served

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]
SERVER = os.environ.get("FASHION_SEARCH_TEST_MILVUS_URI")
BACKENDS = ["faiss", "milvus", *(["milvus server"] if SERVER else [])]


@pytest.fixture
def backend_options(request, tmp_path):
    """The ``index`` options of a backend: faiss, Milvus Lite, or the Milvus server of the environment."""
    backend = request.param
    yield ["--backend", "milvus", "--uri", SERVER] if backend == "milvus server" else ["--backend", backend]
    if backend == "milvus server":
        from fashion_search.search.index.milvus_index import collection_name, connect

        client = connect(SERVER)
        prefix = collection_name(tmp_path / "index", 0).rsplit("_", 1)[0]
        for name in client.list_collections():
            if name.startswith(prefix):
                client.drop_collection(name)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def results(capsys, *argv) -> list[dict]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)["results"]


def exact_neighbours(folder, product: str, k: int) -> list[str]:
    """The ``k`` nearest live products to a product's own vector, by brute force over the stored vectors."""
    index = open_index(folder, IndexParams())
    vectors = np.asarray(index.vectors.vectors)
    ids = index.products["id"].to_numpy(str)
    own = np.flatnonzero((ids == product) & index.live)[0]
    order = [r for r in np.argsort(-(vectors @ vectors[own]), kind="stable") if index.live[r] and ids[r] != product]
    return [ids[r] for r in order[:k]]


@pytest.mark.parametrize("backend_options", BACKENDS, indirect=True)
def test_the_same_session_on_each_backend(backend_options, photo_folder, capsys, tmp_path):
    folder, backend = str(tmp_path / "index"), backend_options[1]
    assert run(capsys, "index", str(photo_folder), "--index", folder, *TINY, *backend_options)[0] == 0
    info = json.loads(run(capsys, "info", "--index", folder, "--json")[1])
    assert info["products"] == 25 and info["backend"] == backend
    assert info["kind"] == ("flat" if backend == "faiss" else "milvus") and (info["milvus"] is None) == (backend == "faiss")

    by_photo = results(capsys, "query", str(photo_folder / "images" / "108.jpg"), "--index", folder, "--top-k", "3")
    assert by_photo[0]["id"] == "108" and len(by_photo) == 3
    jeans = results(capsys, "query", str(photo_folder / "images" / "108.jpg"), "--index", folder,
                    "--filter", "articleType=jeans", "--top-k", "20")  # exactly k, or all that match: 8
    assert len(jeans) == 8 and {r["articleType"] for r in jeans} == {"Jeans"}
    two = results(capsys, "query", "--like", "108", "--index", folder, "--filter", "baseColour=Red,Blue",
                  "--filter", "gender=men", "--top-k", "5")
    assert len(two) == 5 and "108" not in {r["id"] for r in two}
    like = results(capsys, "query", "--like", "108", "--index", folder, "--top-k", "5")
    assert [r["id"] for r in like] == exact_neighbours(folder, "108", 5)
    blue = results(capsys, "query", str(photo_folder / "images" / "100.jpg"), "--index", folder, "--colour", "blue",
                   "--colour-weight", "1", "--top-k", "4")
    assert {r["baseColour"] for r in blue} == {"Blue"}  # the red query photo, ranked by the colour asked for
    named = results(capsys, "query", str(photo_folder / "images" / "100.jpg"), "--index", folder,
                    "--filter", "colour=blue", "--top-k", "20")
    assert named and {r["baseColour"] for r in named} == {"Blue"}

    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(photo_folder / "images" / "110.jpg", new / "900.jpg")
    assert run(capsys, "add", str(new / "900.jpg"), "--index", folder)[0] == 0
    assert results(capsys, "query", "--like", "900", "--index", folder, "--top-k", "1")[0]["id"] == "110"
    assert run(capsys, "add", str(new / "900.jpg"), "--index", folder)[0] == 0  # the same id again: replaced
    assert json.loads(run(capsys, "info", "--index", folder, "--json")[1])["products"] == 26
    assert run(capsys, "remove", "900", "108", "--index", folder)[0] == 0
    after = results(capsys, "query", "--like", "110", "--index", folder, "--top-k", "30")
    assert len(after) == 23 and not {"900", "108"} & {r["id"] for r in after}
    assert run(capsys, "compact", "--index", folder)[0] == 0
    assert [r["id"] for r in results(capsys, "query", "--like", "110", "--index", folder, "--top-k", "30")] == \
        [r["id"] for r in after]


@pytest.mark.parametrize("backend_options", BACKENDS, indirect=True)
def test_number_ranges_and_products_with_several_photos_on_each_backend(backend_options, farfetch_folder, capsys,
                                                                         tmp_path):
    folder = str(tmp_path / "index")
    assert run(capsys, "index", str(farfetch_folder), "--index", folder, *TINY, *backend_options)[0] == 0
    cheap = results(capsys, "query", "--like", "1003", "--index", folder, "--filter", "price=..1000",
                    "--top-k", "10")
    assert cheap and all(r["price"] <= 1000 for r in cheap) and {r["product_id"] for r in cheap} == {"1002", "1004"}
    others = results(capsys, "query", "--like", "1001", "--index", folder, "--top-k", "10")
    assert len(others) == 4 and "1001" not in {r["product_id"] for r in others}  # neither of its own photos
    for bounds in ("-inf..inf", "nan..", "..1e999"):  # one grammar: refused alike, never sent to Milvus
        code, _, err = run(capsys, "query", "--like", "1003", "--index", folder, "--filter", f"price={bounds}")
        assert code == 2 and "is not a finite number" in err and "Milvus" not in err


def test_a_model_mismatch_is_refused_by_the_milvus_backend_too(photo_folder, capsys, cli_index):
    folder = str(cli_index("milvus"))   # built by the CLI with the tiny model
    code, _, err = run(capsys, "query", str(photo_folder / "images" / "100.jpg"), "--index", folder,
                       "--model", "efficientnet_lite0")
    assert code == 2 and "was built with efficientnet_lite0" in err


def test_a_collection_keeping_colour_names_as_a_bare_list_is_still_filtered_by_colour(photo_folder, capsys, tmp_path,
                                                                                      cli_index):
    """Collections written before colour names moved into a JSON object (Milvus 2.3 refuses a bare list)."""
    from pymilvus import DataType

    from fashion_search.search.index.milvus_index import IDENTITY_PROPERTY, connect

    folder = cli_index("milvus")   # built by the CLI with the tiny model
    blue = {r["id"] for r in results(capsys, "query", "--like", "100", "--index", str(folder), "--filter",
                                     "colour=blue", "--top-k", "30")}
    where = json.loads((folder / "manifest.json").read_text())["milvus"]
    client = connect(str(folder / where["uri"]))  # the folder's own database, named relatively
    name, described = where["collection"], client.describe_collection(where["collection"])
    rows = client.query(name, filter="row >= 0", output_fields=["row", "vector", "meta", "numbers", "colours"])
    client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=len(rows[0]["vector"]))
    for field in ("meta", "numbers", "colour_names"):
        schema.add_field(field, DataType.JSON)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index)
    client.alter_collection_properties(name, properties={IDENTITY_PROPERTY: described["properties"][IDENTITY_PROPERTY]})
    client.insert(name, [{"row": r["row"], "vector": r["vector"], "meta": r["meta"], "numbers": r["numbers"],
                          "colour_names": r["colours"]["names"]} for r in rows])
    client.flush(name)
    client.close()

    assert blue and {r["id"] for r in results(capsys, "query", "--like", "100", "--index", str(folder), "--filter",
                                              "colour=blue", "--top-k", "30")} == blue
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(photo_folder / "images" / f"{sorted(blue)[0]}.jpg", new / "900.jpg")
    assert run(capsys, "add", str(new / "900.jpg"), "--index", str(folder))[0] == 0
    again = {r["id"] for r in results(capsys, "query", "--like", "100", "--index", str(folder), "--filter",
                                      "colour=blue", "--top-k", "30")}
    assert again == blue | {"900"}


def test_the_http_service_serves_a_milvus_index(photo_folder, tmp_path):
    import httpx

    from fashion_search.search.engine import SearchEngine, build_index
    from fashion_search.search.serving.server import create_app
    from fashion_search.data.photo_folder import list_photo_folder
    from test_search_engine import pixel_embedder
    from test_server import KEY, SETTINGS, serve

    settings = dataclasses.replace(SETTINGS, backend="milvus")
    folder = tmp_path / "index"
    build_index(list_photo_folder(photo_folder), folder, settings, embedder=pixel_embedder())
    url, server = serve(create_app(SearchEngine(open_index(folder, settings), settings, pixel_embedder()),
                                   api_key="s3cret"))
    photo = (photo_folder / "images" / "120.jpg").read_bytes()
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            found = client.post("/search", files={"photo": ("q.jpg", photo)},
                                data={"k": "4", "filter": ["articleType=Shoes"]}).json()["results"]
            similar = client.get("/items/120/similar", params={"k": "3"}).json()["results"]
            added = client.post("/items", data={"id": "new1", "metadata": '{"articleType": "Shoes"}'},
                                files={"photo": ("p.jpg", photo)}, headers=KEY)
            again = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "2"}).json()["results"]
            removed = client.delete("/items/new1", headers=KEY)
            last = client.post("/search", files={"photo": ("q.jpg", photo)}, data={"k": "2"}).json()["results"]
    finally:
        server.should_exit = True
    assert found[0]["id"] == "120" and len(found) == 4 and {r["articleType"] for r in found} == {"Shoes"}
    assert len(similar) == 3 and "120" not in {r["id"] for r in similar}
    assert added.status_code == 201 and {r["id"] for r in again} == {"120", "new1"}
    assert removed.status_code == 200 and "new1" not in {r["id"] for r in last}


def test_an_unreachable_milvus_is_said_before_any_photo_is_embedded(photo_folder, capsys, tmp_path):
    code, _, err = run(capsys, "index", str(photo_folder), "--index", str(tmp_path / "index"), *TINY,
                       "--backend", "milvus", "--uri", "http://127.0.0.1:9")
    assert code == 2 and "cannot open Milvus at http://127.0.0.1:9" in err and "indexing" not in err


@pytest.fixture
def milvus_engine(photo_folder, tmp_path):
    from fashion_search.data.photo_folder import list_photo_folder
    from fashion_search.search.engine import SearchEngine, build_index
    from test_search_engine import pixel_embedder

    settings = IndexParams(chunk_size=8, batch_size=4, backend="milvus")
    index = build_index(list_photo_folder(photo_folder), tmp_path / "index", settings, embedder=pixel_embedder())
    return SearchEngine(index, settings, pixel_embedder())


@pytest.mark.parametrize("value", ['a"b', 'x" or row >= 0 or "', "\\", "\x01", "a\nb", "ünï", "Jeans,x\" or \"1"])
def test_a_hostile_filter_value_stays_a_value_in_milvus(milvus_engine, value):
    found = milvus_engine.search(milvus_engine.product_query("110"), 30, [f"articleType={value}"])
    assert set(found["articleType"]) <= {"Jeans"} and ("Jeans" in value) == (len(found) == 7)  # 8 jeans, less the query


def test_milvus_failing_a_search_is_a_retryable_error(milvus_engine):
    from fashion_search.search.index.milvus_index import MilvusUnavailableError

    milvus_engine.index.vectors.client.close()
    with pytest.raises(MilvusUnavailableError, match="Milvus did not answer the search"):
        milvus_engine.search(milvus_engine.product_query("110"), 3)


@pytest.mark.slow
def test_a_milvus_lite_index_open_in_another_process_is_said_in_words(cli_index):
    import subprocess
    import sys
    import time

    folder = cli_index("milvus")   # built by the CLI in a process of its own
    cli = [sys.executable, "-m", "fashion_search.cli"]
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom fashion_search.search.index.milvus_index "
                               f"import connect\nconnect({str(folder / 'milvus.db')!r})\nprint('open', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        started = time.time()
        info = subprocess.run([*cli, "info", "--index", str(folder)], capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
    assert info.returncode == 2 and f"another process (pid {holder.pid}) has this Milvus Lite database open" in info.stderr
    assert "Traceback" not in info.stderr and len(info.stderr.strip().splitlines()) == 1
    assert time.time() - started < 60


MILVUS_BACKENDS = ["milvus", *(["milvus server"] if SERVER else [])]


def own_process(*argv: str, timeout: float = 300) -> str:
    """``fashion-search <argv>`` in a new process, as a person types it; its stdout (exit 0 asserted)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (argv, done.stderr[-2000:])
    return done.stdout


def serve_in_own_process(folder: str, photo: bytes) -> tuple[list[str], list[str]]:
    """Start ``fashion-search serve`` on the index, search by photo and by product, stop it."""
    import httpx

    with cli_served(folder) as url:
        found = httpx.post(f"{url}/search", files={"photo": ("q.jpg", photo)}, data={"k": "3"}, timeout=60)
        similar = httpx.get(f"{url}/items/110/similar", params={"k": "3"}, timeout=60)
        assert found.status_code == 200 and similar.status_code == 200, (found.text, similar.text)
        return [r["id"] for r in found.json()["results"]], [r["id"] for r in similar.json()["results"]]


@pytest.mark.parametrize("backend_options", MILVUS_BACKENDS, indirect=True)
def test_a_milvus_index_is_searched_added_to_compacted_and_served_by_other_processes(backend_options, photo_folder,
                                                                                      tmp_path, cli_index):
    """Built in one process (Milvus Lite: the session's, copied); each later step in a process of
    its own, the server restarted."""
    folder = str(tmp_path / "index")
    if backend_options == ["--backend", "milvus"]:
        cli_index("milvus")   # built by the CLI in a process of its own
    else:
        own_process("index", str(photo_folder), "--index", folder, *TINY, *backend_options)
    photo = photo_folder / "images" / "110.jpg"
    assert json.loads(own_process("query", str(photo), "--index", folder, "--json"))["results"][0]["id"] == "110"
    like = json.loads(own_process("query", "--like", "110", "--index", folder, "--json"))["results"]
    assert like and "110" not in {r["id"] for r in like}
    (tmp_path / "new").mkdir()
    shutil.copy(photo_folder / "images" / "120.jpg", tmp_path / "new" / "N1.jpg")
    assert "(+1 products" in own_process("add", str(tmp_path / "new" / "N1.jpg"), "--index", folder)
    assert "removed 1 products" in own_process("remove", "100", "--index", folder)
    assert "1 removed rows dropped" in own_process("compact", "--index", folder)
    top = json.loads(own_process("query", str(tmp_path / "new" / "N1.jpg"), "--index", folder, "--json",
                                 "--top-k", "2"))["results"]
    assert {r["id"] for r in top} == {"N1", "120"}
    for _ in range(2):  # a server, then the same after a restart
        found, similar = serve_in_own_process(folder, photo.read_bytes())
        assert found[0] == "110" and len(similar) == 3 and "110" not in similar and "100" not in found + similar
