"""The index under faults: kills at every write step, readers during writes, two writers, a full
or read-only disk, debris, compaction. Each asserts that no acknowledged write is lost, no stale
vector is served, the index opens and answers, and a mistake is one clear line."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion_search.cli import main
from fashion_search.data.photo_folder import list_photo_folder, list_photos
from fashion_search.search.index import store
from fashion_search.search.embedding.embedding_jobs import embed_into_items
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.index.generations import UPLOAD_GRACE_S, locked
from fashion_search.search.index.ownership import claim
from fashion_search.search.index.store import open_index
from test_search_engine import SETTINGS, pixel_embedder  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def index_folder(photo_folder, tmp_path) -> Path:
    build_index(list_photo_folder(photo_folder), tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    return tmp_path / "index"


def engine_over(folder: Path) -> SearchEngine:
    return SearchEngine(open_index(folder, SETTINGS), SETTINGS, pixel_embedder())


def solid_photo(path: Path, rgb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 30, 3), rgb, np.uint8)).save(path)
    return path


def nearest(engine: SearchEngine, photo: Path) -> tuple[str, float]:
    top = engine.search(engine.photo_query(photo), k=1)
    return str(top["id"].iloc[0]), float(top["distance"].iloc[0])


# ----------------------------------------------------------------------------- stale vectors (defect 1)
def test_a_failed_add_never_leaves_its_vector_for_the_next_photo_of_that_id(index_folder, tmp_path, monkeypatch):
    engine = engine_over(index_folder)
    first, second = solid_photo(tmp_path / "a" / "x.png", (10, 200, 10)), solid_photo(tmp_path / "b" / "x.png",
                                                                                        (250, 120, 0))
    upload = tmp_path / "upload" / "X.png"  # the same path, as a re-uploaded photo would be

    def clash(*args, **kwargs):
        raise store.IndexBusyError("another process is changing the index")

    shutil.copy(first, upload.parent.mkdir(parents=True) or upload)
    monkeypatch.setattr("fashion_search.search.engine.add_products", clash)
    with pytest.raises(store.IndexBusyError):
        engine.add(list_photos([upload]))
    monkeypatch.undo()
    shutil.copy(second, upload)
    os.utime(upload, ns=(time.time_ns(), time.time_ns() + 10**9))
    engine.add(list_photos([upload]))
    assert nearest(engine, second) == ("X", pytest.approx(0.0, abs=1e-4))
    found, distance = nearest(engine, first)
    assert not (found == "X" and distance < 1e-3)


# ----------------------------------------------------------------------------- kills (the fault suite)
KILLER = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from fashion_search.data.photo_folder import list_photos
    from fashion_search.search.index import store
    from fashion_search.search.engine import SearchEngine
    from test_search_engine import SETTINGS, pixel_embedder

    step = {step!r}
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    real = getattr(store, step)
    calls = []
    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == {nth}:
            die()
        return real(*args, **kwargs)
    setattr(store, step, counting)
    engine = SearchEngine(store.open_index({folder!r}, SETTINGS), SETTINGS, pixel_embedder())
    engine.add(list_photos([{photo!r}]))
''')
WRITE_STEPS = [("append_rows", 1), ("append_rows", 2), ("write_owned", 1), ("save_faiss_index", 1),
               ("write_owned", 2), ("write_manifest", 1), ("remove_debris", 1)]


@pytest.mark.parametrize("step, nth", WRITE_STEPS, ids=[f"{s}#{n}" for s, n in WRITE_STEPS])
def test_a_kill_at_any_write_step_leaves_a_whole_index(index_folder, tmp_path, step, nth):
    before = json.loads((index_folder / "manifest.json").read_text())
    photo = solid_photo(tmp_path / "new" / "K1.png", (10, 200, 10))
    script = KILLER.format(tests=str(TESTS), step=step, nth=nth, folder=str(index_folder), photo=str(photo))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-2000:]
    engine = engine_over(index_folder)  # opens, whichever generation is current
    generation = engine.index.manifest["generation"]
    assert generation in (before["generation"], before["generation"] + 1)
    assert len(engine.index.products) == before["rows"] + (generation - before["generation"])
    replacement = solid_photo(tmp_path / "again" / "K1.png", (250, 120, 0))
    engine.add(list_photos([replacement]))  # the next change writes over whatever the kill left
    assert nearest(engine, replacement) == ("K1", pytest.approx(0.0, abs=1e-4))
    assert int(((engine.index.products["id"] == "K1").to_numpy() & engine.index.live).sum()) == 1


APPROXIMATE_STEPS = [(kind, step, nth) for kind in ("hnsw", "ivfpq")
                     for step, nth in (("append_rows", 1), ("save_faiss_index", 1), ("write_manifest", 1))]


@pytest.fixture
def approximate_index(request, photo_folder, tmp_path) -> Path:
    """An index of the photo folder's photos plus 300 random products, as an HNSW or IVF-PQ index
    (IVF-PQ needs 256 vectors to train its codes)."""
    from fashion_search.search.index.store import create_index

    settings = dataclasses.replace(SETTINGS, type=request.param)
    folder = tmp_path / "index"
    embedder = pixel_embedder()
    catalog = list_photo_folder(photo_folder)
    done = embed_into_items(embedder, catalog, tmp_path / "work", settings, "embedding")
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(300, done.vectors.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    items = pd.concat([done.items, pd.DataFrame({"id": [f"r{i}" for i in range(300)], "path": ""})],
                      ignore_index=True)
    create_index(folder, embedder.identity, settings, items, np.vstack([done.vectors, noise]),
                 np.vstack([done.colours, np.zeros((300, done.colours.shape[1]), np.float32)]), done.skipped)
    return folder


@pytest.mark.parametrize("approximate_index, step, nth", APPROXIMATE_STEPS, indirect=["approximate_index"],
                         ids=[f"{k}-{s}#{n}" for k, s, n in APPROXIMATE_STEPS])
def test_a_kill_at_a_write_step_of_an_approximate_index_leaves_a_whole_index(approximate_index, tmp_path, step, nth):
    test_a_kill_at_any_write_step_leaves_a_whole_index(approximate_index, tmp_path, step, nth)
    assert store.verify_index(approximate_index)["rows"] == len(open_index(approximate_index, SETTINGS).products)


MILVUS_BUILDER = textwrap.dedent('''
    import dataclasses, sys
    sys.path.insert(0, {tests!r})
    from fashion_search.data.photo_folder import list_photo_folder
    from fashion_search.search.engine import build_index
    from test_search_engine import SETTINGS, pixel_embedder
    build_index(list_photo_folder({photos!r}), {folder!r}, dataclasses.replace(SETTINGS, backend="milvus"),
                embedder=pixel_embedder())
''')
MILVUS_KILLER = KILLER.replace("real = getattr(store, step)", "owner = store.MilvusVectors if '.' in step else store\n"
                               "step = step.split('.')[-1]\nreal = getattr(owner, step)").replace(
    "setattr(store, step, counting)", "setattr(owner, step, counting)")
MILVUS_CHECKER = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {tests!r})
    from fashion_search.data.photo_folder import list_photos
    from fashion_search.search.engine import SearchEngine
    from fashion_search.search.index.store import open_index
    from test_search_engine import SETTINGS, pixel_embedder
    engine = SearchEngine(open_index({folder!r}, SETTINGS), SETTINGS, pixel_embedder())
    generation, rows = engine.index.manifest["generation"], len(engine.index.products)
    engine.add(list_photos([{replacement!r}]))
    top = engine.search(engine.photo_query({replacement!r}), k=3)
    live = engine.index.products["id"][engine.index.live].tolist()
    print(json.dumps({{"generation": generation, "rows": rows, "top": top["id"].tolist(),
                      "distance": float(top["distance"].iloc[0]), "copies": live.count("100")}}))
''')
MILVUS_STEPS = [("append_rows", 1), ("MilvusVectors.write", 1), ("write_owned", 1), ("write_manifest", 1),
                ("MilvusVectors.remove", 1)]


@pytest.fixture(scope="module")
def milvus_index(photo_folder, tmp_path_factory) -> Path:
    """A Milvus Lite index of the photo folder, built in its own process (Milvus Lite serves one at a time)."""
    folder = tmp_path_factory.mktemp("milvus-kills") / "index"
    built = subprocess.run([sys.executable, "-c", MILVUS_BUILDER.format(tests=str(TESTS), photos=str(photo_folder),
                                                                        folder=str(folder))],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    return folder


@pytest.mark.parametrize("step, nth", MILVUS_STEPS, ids=[f"{s}#{n}" for s, n in MILVUS_STEPS])
def test_a_kill_at_a_write_step_of_the_milvus_lite_backend_leaves_a_whole_index(milvus_index, tmp_path, step, nth):
    """The add replaces product 100 (so the replaced row leaves the collection after the commit);
    a kill at any step leaves the old or the new generation, which opens, takes the next add and
    never shows two copies of 100."""
    folder = tmp_path / "index"
    shutil.copytree(milvus_index, folder)  # the copy uses its own database (the manifest names it relatively)
    manifest = json.loads((folder / "manifest.json").read_text())
    photo = solid_photo(tmp_path / "new" / "100.png", (10, 200, 10))
    killed = subprocess.run([sys.executable, "-c", MILVUS_KILLER.format(
        tests=str(TESTS), step=step, nth=nth, folder=str(folder), photo=str(photo))],
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    replacement = solid_photo(tmp_path / "again" / "K1.png", (250, 120, 0))
    checked = subprocess.run([sys.executable, "-c", MILVUS_CHECKER.format(tests=str(TESTS), folder=str(folder),
                                                                          replacement=str(replacement))],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-2000:]
    seen = json.loads(checked.stdout.strip().splitlines()[-1])
    assert seen["generation"] in (manifest["generation"], manifest["generation"] + 1)
    assert seen["rows"] == manifest["rows"] + (seen["generation"] - manifest["generation"])
    assert seen["top"][0] == "K1" and seen["distance"] == pytest.approx(0.0, abs=1e-4) and seen["copies"] == 1


# ----------------------------------------------------------------------------- readers and writers (defects 2, 3)
CHANGER = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from fashion_search.search.index import store
    from test_search_engine import SETTINGS
    for round in range({rounds}):
        index = store.open_index({folder!r}, SETTINGS)
        live = index.products["id"][index.live].tolist()
        store.remove_products(index, [live[0]])
    print("done")
''')


def test_readers_always_open_a_whole_generation_while_another_process_writes(index_folder):
    changer = subprocess.Popen([sys.executable, "-c", CHANGER.format(tests=str(TESTS), rounds=20,
                                                                   folder=str(index_folder))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    opened, failures = 0, []
    while changer.poll() is None:
        try:
            index = open_index(index_folder, SETTINGS)
            assert len(index.products) == index.manifest["rows"]
            opened += 1
        except Exception as err:  # noqa: BLE001 - every failure counts
            failures.append(repr(err))
    out, err = changer.communicate()
    assert "done" in out, err[-2000:]
    assert opened > 5 and not failures


def test_a_reader_that_read_the_manifest_just_before_a_change_still_opens_it(index_folder):
    """The race above, made certain: the generation a reader has just read the manifest of
    survives the next change, and after two changes opening moves on to the current one."""
    seen = store.read_manifest(index_folder)
    store.remove_products(open_index(index_folder, SETTINGS), ["100"])
    stale = store._open_once(index_folder, seen, SETTINGS, None)  # what a reader mid-open gets
    assert "100" in set(stale.products["id"][stale.live])
    store.remove_products(open_index(index_folder, SETTINGS), ["101"])
    assert not (index_folder / seen["files"]["products"]).exists()  # two changes on: cleaned
    current = open_index(index_folder, SETTINGS)
    assert not {"100", "101"} & set(current.products["id"][current.live])


def test_two_writers_both_land(index_folder, tmp_path):
    adder = textwrap.dedent('''
        import sys
        sys.path.insert(0, {tests!r})
        from fashion_search.data.photo_folder import list_photos
        from fashion_search.params import IndexParams
        from fashion_search.search.engine import SearchEngine
        from fashion_search.search.index.store import open_index
        from test_search_engine import pixel_embedder
        settings = IndexParams(chunk_size=8, batch_size=4, lock_wait_s=60)
        engine = SearchEngine(open_index({folder!r}, settings), settings, pixel_embedder())
        engine.add(list_photos([{photo!r}]))
    ''')
    photos = [solid_photo(tmp_path / f"w{i}" / f"W{i}.png", (40 * i, 90, 200 - 40 * i)) for i in range(2)]
    writers = [subprocess.Popen([sys.executable, "-c", adder.format(tests=str(TESTS), folder=str(index_folder),
                                                                    photo=str(p))], stderr=subprocess.PIPE, text=True)
               for p in photos]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()[-2000:]
    engine = engine_over(index_folder)
    assert {"W0", "W1"} <= set(engine.index.products["id"][engine.index.live])
    assert [nearest(engine, p)[0] for p in photos] == ["W0", "W1"]


def test_a_change_waits_for_another_then_says_busy(index_folder):
    engine = engine_over(index_folder)
    with locked(index_folder):
        started = time.monotonic()
        with pytest.raises(store.IndexBusyError, match="another process is changing the index"):
            engine.remove(["100"])
        assert time.monotonic() - started >= SETTINGS.lock_wait_s
    engine.remove(["100"])


def test_a_long_running_engine_picks_up_another_process_changes(index_folder):
    engine = engine_over(index_folder)
    store.remove_products(open_index(index_folder, SETTINGS), ["101"])  # as another process would
    assert "101" in set(engine.index.products["id"][engine.index.live])
    engine.refresh()
    assert "101" not in set(engine.index.products["id"][engine.index.live])


# ----------------------------------------------------------------------------- full and read-only disks (defect 12)
@pytest.mark.parametrize("command, step, code", [
    ("remove", "write_owned", errno.ENOSPC), ("compact", "append_rows", errno.EROFS),
    ("compact", "save_faiss_index", errno.ENOSPC)])
def test_a_full_or_read_only_disk_is_one_line_and_changes_nothing(index_folder, photo_folder, monkeypatch, capsys,
                                                                  command, step, code):
    before = (index_folder / "manifest.json").read_text()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(index_folder / "file"))

    monkeypatch.setattr(store, step, refuse)
    argv = [command, *(["100"] if command == "remove" else []), "--index", str(index_folder)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fashion-search: error: cannot write") and os.strerror(code) in err[0]
    monkeypatch.undo()
    assert (index_folder / "manifest.json").read_text() == before
    assert nearest(engine_over(index_folder), photo_folder / "images" / "105.jpg")[0] == "105"


def test_a_full_disk_during_an_add_keeps_the_previous_generation(index_folder, tmp_path, monkeypatch):
    before = (index_folder / "manifest.json").read_text()
    engine = engine_over(index_folder)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "save_faiss_index", full)
    with pytest.raises(OSError):
        engine.add(list_photos([solid_photo(tmp_path / "new" / "D1.png", (10, 200, 10))]))
    monkeypatch.undo()
    assert (index_folder / "manifest.json").read_text() == before
    assert "D1" not in set(engine_over(index_folder).index.products["id"])


def test_a_metadata_column_the_project_sets_is_one_line(tmp_path, photo_folder, capsys):
    folder = tmp_path / "catalogue"
    shutil.copytree(photo_folder, folder)
    labels = (folder / "labels.csv").read_text().splitlines()
    (folder / "labels.csv").write_text("\n".join([labels[0] + ",path"] + [row + ",x" for row in labels[1:]]) + "\n")
    code = main(["index", str(folder), "--index", str(tmp_path / "index"), "--model", "efficientnet_lite0",
                 "--weights", "none", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "column 'path'" in err


# ----------------------------------------------------------------------------- unsafe ids (defect 11)
def test_ids_the_service_cannot_serve_are_skipped_with_the_reason(tmp_path, photo_folder):
    folder = tmp_path / "loose"
    for name in ("red dress", "héllo-😀", "plain-1"):
        shutil.copy(photo_folder / "images" / "100.jpg", (folder.mkdir(exist_ok=True) or folder) / f"{name}.jpg")
    index = build_index(list_photo_folder(folder), tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    assert index.products["id"].tolist() == ["plain-1"]
    reasons = dict(zip(index.skipped["id"], index.skipped["reason"]))
    assert set(reasons) == {"red dress", "héllo-😀"} and all("cannot be served" in r for r in reasons.values())


# ----------------------------------------------------------------------------- debris and compaction (defect 13)
def test_debris_is_reported_then_removed_by_the_next_change(index_folder, capsys):
    """What a killed change leaves (files it recorded as its own before writing them) goes at the
    next change; files the engine did not write stay, whatever their names."""
    leftovers = ["products-000099.csv", "faiss-000099.faiss", ".products-000099.csv.tmp", "uploads/gone.1234abcd.png"]
    with locked(index_folder):
        ledger = claim(index_folder, ["uploads", *leftovers[:2], "uploads/gone.1234abcd.png",
                                      "uploads/in-progress.5678abcd.png"])
    (index_folder / "uploads").mkdir()
    for name in leftovers:
        (index_folder / name).write_bytes(b"x" * 1000)
    old = time.time() - UPLOAD_GRACE_S - 60
    os.utime(index_folder / leftovers[-1], (old, old))
    fresh = index_folder / "uploads" / "in-progress.5678abcd.png"  # another process's add may still need it
    fresh.write_bytes(b"y" * 10)
    users = [index_folder / name for name in ("products-000098.csv", "faiss-x.faiss", "vectors-backup.f32", ".env",
                                              ".gitignore", "uploads/mine.png")]
    for path in users:
        path.write_text("the user's own")
    assert main(["info", "--index", str(index_folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["debris_files"] == 4 and info["debris_bytes"] == 4000
    engine_over(index_folder).remove(["100"])
    assert not any((index_folder / name).exists() for name in leftovers) and fresh.exists()
    assert all(path.read_text() == "the user's own" for path in users)
    assert set(leftovers) - {".products-000099.csv.tmp"} <= ledger.names


def test_compact_drops_removed_rows_keeps_answers_and_frees_the_old_files(index_folder, photo_folder, capsys):
    engine = engine_over(index_folder)
    engine.remove(["100", "101", "102"])
    query = photo_folder / "images" / "110.jpg"
    before = engine.search(engine.photo_query(query), k=5)[["id", "distance"]]
    assert main(["compact", "--index", str(index_folder)]) == 0
    assert "3 removed rows dropped" in capsys.readouterr().out
    engine = engine_over(index_folder)
    assert len(engine.index.products) == 22 and engine.index.live.all()
    after = engine.search(engine.photo_query(query), k=5)[["id", "distance"]]
    assert after["id"].tolist() == before["id"].tolist()
    np.testing.assert_allclose(after["distance"], before["distance"], atol=1e-4)
    engine.remove(["103"])  # a later change: the pre-compaction vector files are no generation's any more
    assert not (index_folder / "vectors.f32").exists()


ADD_COMMAND = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from fashion_search.cli import main
    from fashion_search.search import commands
    from fashion_search.search.engine import SearchEngine
    from fashion_search.search.index.store import open_index
    from test_search_engine import pixel_embedder
    commands.SearchEngine.open = lambda folder, settings, model=None: SearchEngine(
        open_index(folder, settings), settings, pixel_embedder())
    sys.exit(main(["add", *{photos!r}, "--index", {folder!r}, "--params", {params!r}]))
''')


def test_two_concurrent_adds_each_report_their_own_count(index_folder, tmp_path):
    """Both open the index, both wait for the lock; each must count its own five, not the other's."""
    (tmp_path / "params.yaml").write_text("index:\n  lock_wait_s: 60\n  chunk_size: 8\n  batch_size: 4\n")
    batches = [[str(solid_photo(tmp_path / f"w{w}" / f"W{w}-{i}.png", (40 * i, 90 + 30 * w, 10))) for i in range(5)]
               for w in range(2)]
    with locked(index_folder):
        adders = [subprocess.Popen([sys.executable, "-c", ADD_COMMAND.format(
            tests=str(TESTS), photos=photos, folder=str(index_folder), params=str(tmp_path / "params.yaml"))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for photos in batches]
        deadline = time.monotonic() + 60
        while len(list((index_folder / "work").glob("*/chunk_*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both embedded their photos: they wait for the lock now
        time.sleep(1.0)
    outputs = [adder.communicate(timeout=120) for adder in adders]
    for adder, (out, err) in zip(adders, outputs):
        assert adder.returncode == 0, err[-2000:]
        assert "added 5 photos" in out and "(+5 products, 0 replaced; " in out, out
