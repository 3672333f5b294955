"""Embedding on Ray (``index --ray``): a local Ray with two workers gives the one-process path's
vectors, colours and skipped list, resumes from saved chunks, and writes into faiss and Milvus
Lite; without ``--ray`` Ray is never imported."""
from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.io import chunk_path
from fashion_search.params import ConfigError, IndexParams
from fashion_search.params_index import parse_index
from fashion_search.search.embedding import ray_embedding
from fashion_search.search.embedding.embedder import load_embedder
from fashion_search.search.embedding.embedding_jobs import embed_into_items
from fashion_search.search.engine import SearchEngine, build_index

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]
LOCAL = IndexParams(model="efficientnet_lite0", weights="none", image_size=32, chunk_size=8, batch_size=4)
ON_RAY = dataclasses.replace(LOCAL, executor="ray", ray_min_photos=0)


# how this module's fixture starts its Ray; also run alone beside a running cluster (below)
OWN_RAY = dict(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of this module's own, with two workers, for its in-process tests: never one found
    running on the machine ("local", not "auto")."""
    ray = pytest.importorskip("ray")  # pinned in requirements.txt: present wherever make test runs
    ray.init(**OWN_RAY)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_embedder():
    return load_embedder(LOCAL)


@pytest.fixture
def damaged_folder(photo_folder, tmp_path, damage_photos):
    """The photo folder with an empty, a truncated and a text 'photo'."""
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    images = folder / "images"
    damage_photos(images)
    Image.new("RGB", (300, 400), "red").save(images / "104.jpg")  # above max_image_pixels below
    return folder


def test_ray_gives_the_one_process_vectors_colours_and_skipped_list(local_ray, tiny_embedder, damaged_folder,
                                                                    tmp_path):
    catalog = list_photo_folder(damaged_folder)
    local = embed_into_items(tiny_embedder, catalog, tmp_path / "a", dataclasses.replace(LOCAL, max_image_pixels=50_000),
                             "local")
    on_ray = embed_into_items(tiny_embedder, catalog, tmp_path / "b",
                              dataclasses.replace(ON_RAY, max_image_pixels=50_000), "ray")
    assert len(on_ray.items) == len(local.items) == 25 - 4
    np.testing.assert_allclose(on_ray.vectors, local.vectors, atol=1e-5)
    np.testing.assert_allclose(on_ray.colours, local.colours, atol=1e-5)
    assert on_ray.items["id"].tolist() == local.items["id"].tolist()
    assert on_ray.skipped.to_dict("records") == local.skipped.to_dict("records")
    assert set(on_ray.skipped["id"]) == {"100", "101", "103", "104", "1000"}


def test_ray_reuses_the_chunks_a_killed_job_saved(local_ray, tiny_embedder, photo_folder, tmp_path):
    catalog = list_photo_folder(photo_folder)
    local = embed_into_items(tiny_embedder, catalog, tmp_path / "a", LOCAL, "local")
    first = chunk_path(local.chunks, 0, 8)
    marked = dict(np.load(first))
    marked["vectors"] = marked["vectors"] * 0 + 7.0  # what only a reused chunk can hold
    resumed_dir = tmp_path / "b" / local.chunks.name
    resumed_dir.mkdir(parents=True)
    np.savez(chunk_path(resumed_dir, 0, 8), **marked)
    on_ray = embed_into_items(tiny_embedder, catalog, tmp_path / "b", ON_RAY, "ray")
    assert on_ray.chunks == resumed_dir and np.all(on_ray.vectors[:8] == 7.0)
    np.testing.assert_allclose(on_ray.vectors[8:], local.vectors[8:], atol=1e-5)
    assert sorted(p.name for p in resumed_dir.iterdir()) == sorted(p.name for p in local.chunks.iterdir())


def test_ray_indexes_into_milvus_lite_and_the_index_answers(local_ray, tiny_embedder, photo_folder, tmp_path):
    settings = dataclasses.replace(ON_RAY, backend="milvus")
    build_index(list_photo_folder(photo_folder), tmp_path / "index", settings, embedder=tiny_embedder)
    engine = SearchEngine.open(tmp_path / "index", dataclasses.replace(settings, executor="local"))
    results = engine.search(engine.photo_query(photo_folder / "images" / "108.jpg"), k=3)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["backend"] == "milvus" and (tmp_path / "index" / "milvus.db").exists()
    assert results["id"].iloc[0] == "108" and len(results) == 3


def test_without_ray_nothing_imports_it(photo_folder, tmp_path):
    script = ("import sys\nfrom fashion_search.cli import main\n"
              f"code = main(['index', {str(photo_folder)!r}, '--index', {str(tmp_path / 'index')!r}, "
              f"*{TINY!r}])\nassert code == 0, code\nassert 'ray' not in sys.modules, 'ray was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def ray_params(tmp_path: Path, min_photos: int = 0) -> list[str]:
    """``--params`` of a file whose index block lets a job of any size run on Ray."""
    (tmp_path / "ray.yaml").write_text(f"index:\n  ray_min_photos: {min_photos}\n")
    return ["--params", str(tmp_path / "ray.yaml")]


def index_in_own_process(photo_folder: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photo_folder), "--index",
                           str(folder), *TINY, *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_index_with_ray_in_its_own_process_matches_the_local_index(photo_folder, tmp_path, cli_built):
    local = cli_built("faiss")   # the same command without --ray, in a process of its own
    on_ray = index_in_own_process(photo_folder, tmp_path / "ray", "--ray", *ray_params(tmp_path))
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert "Traceback" not in on_ray.stderr and "indexed 25 products" in on_ray.stdout
    said = [line for line in on_ray.stderr.splitlines()
            if "photo/s" not in line and "s/photo" not in line and line.strip()]   # progress, fast or slow
    assert said == ["embedding on a Ray started on this machine for this job (2 CPUs)"], said  # no Ray noise
    vectors = [np.fromfile(folder / "vectors.f32", np.float32) for folder in (local, tmp_path / "ray")]
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-5)
    query = subprocess.run([sys.executable, "-m", "fashion_search.cli", "query",
                            str(photo_folder / "images" / "108.jpg"), "--index", str(tmp_path / "ray"), "--top-k", "1"],
                           capture_output=True, text=True, timeout=300)
    assert query.returncode == 0 and "108" in query.stdout


def test_a_small_job_runs_in_this_process_and_says_so(photo_folder, tmp_path):
    script = ("import sys\nfrom fashion_search.cli import main\ncode = main(sys.argv[1:])\n"
              "assert 'ray' not in sys.modules, 'ray was imported'\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "index", str(photo_folder), "--index", str(tmp_path / "i"),
                           *TINY, "--ray"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "indexed 25 products" in done.stdout, done.stderr[-2000:]
    assert ("25 photos: embedded in this process, not on Ray (a job pays for Ray's start from "
            "index.ray_min_photos = 2,000 photos)") in done.stderr


OWN_RAY_ALONE = """import ast, json, sys
import ray
ray.init(**ast.literal_eval(sys.argv[1]))
own = {"cpus": ray.cluster_resources().get("CPU"), "gcs": ray.get_runtime_context().gcs_address}
assert ray.get(ray.remote(lambda: 1).remote()) == 1   # its workers answer
ray.shutdown()
print(json.dumps(own))
"""


@pytest.mark.slow
def test_a_ray_cluster_running_on_the_machine_is_never_joined_unasked(photo_folder, tmp_path):
    """``ray start --head`` on the machine (a cluster of one CPU, in a temp folder of its own):
    ``--ray`` without an address still starts a Ray of its own and says so; this module's fixture
    does the same (the suite used to fail at once beside such a cluster)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             f"--temp-dir={temp}", "--num-cpus=1", "--include-dashboard=false",
                             "--disable-usage-stats"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not start"
                time.sleep(0.5)
        done = index_in_own_process(photo_folder, tmp_path / "index", "--ray", *ray_params(tmp_path))
        assert done.returncode == 0, done.stderr[-2000:]
        assert "embedding on a Ray started on this machine for this job (2 CPUs)" in done.stderr
        # the fixture's start, alone in a process of its own (a nested pytest cost half a minute):
        # a Ray of its own with its two CPUs, not the head's one, at another address than the head's
        fixture = subprocess.run([sys.executable, "-c", OWN_RAY_ALONE, repr(OWN_RAY)], capture_output=True, text=True,
                                 timeout=300, cwd=Path(__file__).parent)
        assert fixture.returncode == 0, fixture.stderr[-2000:]
        own = json.loads(fixture.stdout.strip().splitlines()[-1])
        assert own["cpus"] == 2 and not own["gcs"].endswith(f":{port}"), (own, port)
    finally:
        # SIGKILL, not SIGTERM: the head's graceful stop took half a minute; every process it
        # started is in its session and goes with it (any left is killed by pid)
        import psutil

        started = {p.pid: p.create_time() for p in psutil.Process(head.pid).children(recursive=True)
                   if p.is_running()} if head.poll() is None else {}
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        for pid, created in started.items():
            try:
                if psutil.Process(pid).create_time() == created:
                    psutil.Process(pid).kill()
            except psutil.Error:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def test_an_address_nothing_answers_at_is_one_line_and_exit_2(photo_folder, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photo_folder), "--index",
                           str(tmp_path / "index"), *TINY, "--ray", "127.0.0.1:9"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no Ray cluster answers at 127.0.0.1:9" in done.stderr and not (tmp_path / "index").exists()


def test_ray_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ray_embedding.RayUnavailableError, match=r"pip install 'ray\[data\]=="):
        ray_embedding.connect(None)


@pytest.mark.parametrize("block, message", [({"executor": "spark"}, "index.executor"),
                                            ({"ray_address": "http://head:8265"}, "ray://"),
                                            ({"ray_address": "head host:6379"}, "index.ray_address"),
                                            ({"ray_address": "head-host"}, "index.ray_address"),
                                            ({"ray_address": "head:port"}, "index.ray_address"),
                                            ({"ray_address": "head:70000"}, "index.ray_address"),
                                            ({"ray_address": "::1:6379"}, "index.ray_address"),
                                            ({"ray_address": "[head]:6379"}, "index.ray_address"),
                                            ({"ray_actors": -1}, "index.ray_actors")])
def test_bad_ray_settings_are_refused(block, message):
    with pytest.raises(ConfigError, match=message):
        parse_index(block)


def test_ray_settings_are_read():
    settings = parse_index({"executor": "ray", "ray_address": "ray://head:10001", "ray_actors": 4})
    assert (settings.executor, settings.ray_address, settings.ray_actors) == ("ray", "ray://head:10001", 4)
    for address in ("[::1]:6379", "ray://[::1]:10001", "auto", "127.0.0.1:6379"):
        assert parse_index({"ray_address": address}).ray_address == address


REFUSED = ("import sys\nfrom fashion_search.cli import main\ncode = main(sys.argv[1:])\n"
           "print('imported:', *[name for name in ('ray', 'tensorflow') if name in sys.modules])\nsys.exit(code)\n")


@pytest.fixture
def answering(request):
    """An address on this machine where ``request.param`` answers: http (an HTTP server, IPv4 or
    IPv6), silent (a port that accepts and says nothing) or nothing (a closed port)."""
    kind, family = request.param
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    if kind == "http":
        server_class = type("Server", (http.server.ThreadingHTTPServer,), {"address_family": family})
        server = server_class((host, 0), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, close = server.server_address[1], server.shutdown
    else:
        listener = socket.socket(family)
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        if kind == "silent":
            listener.listen()   # the kernel accepts; nobody answers
        else:
            listener.close()    # nothing listens at this port any more
        close = listener.close
    yield f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}", kind
    close()


@pytest.mark.parametrize("answering", [("http", socket.AF_INET), ("http", socket.AF_INET6), ("silent", socket.AF_INET),
                                       ("nothing", socket.AF_INET), ("nothing", socket.AF_INET6)], indirect=True,
                         ids=["http", "http-ipv6", "silent", "nothing", "nothing-ipv6"])
def test_an_address_where_no_ray_cluster_answers_is_refused_before_the_model_loads(answering, photo_folder, tmp_path):
    """In its own process: one line, exit 2, within seconds, before the model or Ray is imported."""
    address, kind = answering
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", REFUSED, "index", str(photo_folder), "--index",
                           str(tmp_path / "index"), *TINY, "--ray", address], capture_output=True, text=True, timeout=90)
    seconds = time.perf_counter() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    expected = {"http": f"something answers at {address}, but not as a Ray cluster",
                "silent": f"something at {address} accepted the connection but did not answer as a Ray cluster",
                "nothing": f"no Ray cluster answers at {address} (Connection refused)"}[kind]
    assert expected in lines[0] and done.stdout.strip() == "imported:", (lines[0], done.stdout)
    assert seconds < 45 and not (tmp_path / "index").exists()


def _ray_processes(cli, seen: dict) -> None:
    """Note every process under ``cli`` (pid: creation time, command line)."""
    import psutil

    for child in cli.children(recursive=True):
        try:
            seen[child.pid] = (child.create_time(), " ".join(child.cmdline()))
        except psutil.Error:
            pass


def _alive(seen: dict) -> list[str]:
    import psutil

    alive = []
    for pid, (created, command) in seen.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(command[:60])
        except psutil.Error:
            pass
    return alive


@pytest.mark.slow
def test_a_killed_index_leaves_no_ray_process_behind(photo_folder, tmp_path):
    """In its own process: SIGKILL `index --ray` once Ray's agents and workers run; every process
    of the Ray it started is gone within seconds (the agents used to live a minute more)."""
    psutil = pytest.importorskip("psutil")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(1000):   # enough to still be embedding when killed
        shutil.copy(photo_folder / "images" / f"{100 + i % 24}.jpg", photos / f"{i}.jpg")
    with open(tmp_path / "stderr.txt", "w") as stderr:
        cli = subprocess.Popen([sys.executable, "-m", "fashion_search.cli", "index", str(photos), "--index",
                                str(tmp_path / "index"), *TINY, "--ray", *ray_params(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=stderr)
    seen: dict = {}
    try:
        deadline = time.monotonic() + 240
        while not all(any(title in command for _, command in seen.values())
                      for title in ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::IDLE")):
            assert cli.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()[-2000:]
            _ray_processes(psutil.Process(cli.pid), seen)
            time.sleep(0.2)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        deadline = time.monotonic() + 10
        while _alive(seen) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not _alive(seen), f"alive 10 s after the kill: {_alive(seen)}"
    finally:
        cli.kill()
        for pid, (created, _) in seen.items():   # only the processes this test started
            try:
                if psutil.Process(pid).create_time() == created:
                    psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_the_reaper_kills_the_programs_of_its_owners_ray_session_only(tmp_path):
    """A Python process holding a log of owner 4242's session open is reaped; a ``tail -f`` of
    that log, and a Python process in another owner's session, are spared."""
    from fashion_search.search.embedding.ray_reaper import reap, session_processes

    logs = [tmp_path / f"session_2026-12-06_21-00-00_123456_{owner}" / "logs" / "worker.out" for owner in (4242, 14242)]
    hold = "import sys, time\nhandle = open(sys.argv[1])\nprint('ready', flush=True)\ntime.sleep(120)\n"
    started = []
    try:
        for log in logs:
            log.parent.mkdir(parents=True)
            log.write_text("")
            started.append(subprocess.Popen([sys.executable, "-c", hold, str(log)], stdout=subprocess.PIPE, text=True))
            assert started[-1].stdout.readline() == "ready\n"
        started.append(subprocess.Popen(["tail", "-f", str(logs[0])], stdout=subprocess.DEVNULL))
        time.sleep(0.3)   # tail has opened the log
        assert session_processes(4242) == [started[0].pid]
        assert reap(4242) == 1 and started[0].wait(timeout=5) == -signal.SIGKILL
        assert started[1].poll() is None and started[2].poll() is None and session_processes(4242) == []
    finally:
        for process in started:
            process.kill()
            process.wait()
