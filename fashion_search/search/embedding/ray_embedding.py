"""Embedding a catalogue on a Ray cluster (``index --ray``, ``index.executor: ray``).

The photos still to embed become a Ray Dataset of rows. Ray tasks decode, frame and
colour-describe them in parallel (:func:`~fashion_search.search.embedding.embedder.frame_photos`, as the
one-process path does); a pool of actors, each holding the model on ONNX Runtime, embeds the
framed photos; this process gathers the rows and saves them in the same resumable chunks as
:func:`~fashion_search.search.embedding.embedder.embed_catalog`. So both paths give the same vectors and
the same skipped list, and a killed job resumes under either. Ray is imported here only.

A cluster address is tried before the model loads (:func:`check_address`: something must answer,
and speak gRPC); a Ray started here ends with this process, even a killed one
(:mod:`~fashion_search.search.embedding.ray_reaper`).
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np

from fashion_search.io import chunk_bounds, chunk_path, load_chunks, save_chunk
from fashion_search.params import IndexParams
from fashion_search.params_index import ray_host_port
from fashion_search.progress import progress_bar
from fashion_search.quiet_tensorflow import native_stderr_silenced
from fashion_search.colour import DESCRIPTOR_DIM
from fashion_search.search.embedding.embedder import (REMEMBERED_KEYS, Embedded, Embedder, chunk_arrays, frame_photos, joined,
                                            load_embedder, onnx_embedder)
from fashion_search.search.embedding.ray_reaper import start_reaper, stop_reaper
from fashion_search.search.embedding.runtime import RuntimeUnavailableError, identity_key, onnx_model_call, remembered_model

RAY_REQUIREMENT = "ray[data]==2.60.0"
MAX_BLOCKS = 20_000   # blocks the photo list is cut into, at most
CONNECT_TIMEOUT_S = 5.0
# what a gRPC client (Ray's) says first: HTTP/2's preface and an empty SETTINGS frame
GRPC_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS_FRAME = 4   # a gRPC server's first frame


class RayUnavailableError(RuntimeUnavailableError):
    """Ray is not installed, or its cluster cannot be reached."""


def embed_catalog_on_ray(embedder: Embedder, images: np.ndarray, work_dir: Path, settings: IndexParams,
                         description: str = "embedding") -> Embedded:
    """Embed a catalogue (photo paths or pixel arrays) on Ray into chunks of ``settings.chunk_size``
    saved in ``work_dir``; chunks already there are reused, the others computed on the cluster."""
    ray, end = connect(settings.ray_address)
    try:
        pending = [(start, stop) for start, stop in chunk_bounds(len(images), settings.chunk_size)
                   if not chunk_path(work_dir, start, stop).is_file()]
        with progress_bar(len(images), description, unit="photo") as bar:
            bar.update(len(images) - sum(stop - start for start, stop in pending))
            if pending:
                gatherer = ChunkGatherer(work_dir, pending, embedder.identity["dim"])
                for batch in embedded_rows(ray, embedder, images, pending, settings):
                    gatherer.add(batch)
                    bar.update(len(batch["row"]))
                gatherer.check_done()
    finally:
        if end:
            end()
    return joined(load_chunks(work_dir, len(images), settings.chunk_size), embedder.identity["dim"])


def connect(address: str | None) -> tuple[ModuleType, Callable[[], None] | None]:
    """Ray, connected to the cluster at ``address`` (None: a Ray started here, for this job), and
    what ends this connection (None: Ray was connected already): a Ray started here is shut down,
    and a reaper kills what it leaves, even if this process is killed."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"Ray is not installed; pip install '{RAY_REQUIREMENT}' "
                                  "(the version requirements.txt pins)") from None
    if ray.is_initialized():
        return ray, None
    check_address(address)
    # Ray Data's actors always trip a C++ notice about restarts (ray-project/ray#53727): keep it off the terminal
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    reaper = start_reaper() if address is None else None
    try:
        with native_stderr_silenced():  # Ray's C++ start-up lines
            # "local": a Ray of its own, never one found running here (that is "auto")
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as err:
        if reaper:
            stop_reaper(reaper)
        where = f"at {address}" if address else "on this machine"
        raise RayUnavailableError(f"cannot start or reach a Ray cluster {where} ({str(err).splitlines()[0]})") from None
    print(cluster_phrase(ray, address), file=sys.stderr, flush=True)
    return ray, partial(ended, ray, reaper)


def cluster_phrase(ray: ModuleType, address: str | None) -> str:
    """Which Ray a job runs on, for its user: one started here for it, or a cluster's address."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = int(sum(node.get("Resources", {}).get("CPU", 0) for node in nodes))
    if address is None:
        return f"embedding on a Ray started on this machine for this job ({cpus} CPUs)"
    gcs = ray.get_runtime_context().gcs_address
    return f"embedding on the Ray cluster at {gcs} ({len(nodes)} node{'s' * (len(nodes) != 1)}, {cpus} CPUs)"


def ended(ray: ModuleType, reaper: subprocess.Popen | None) -> None:
    """Shut Ray down, then let the reaper (if Ray was started here) kill what it left."""
    try:
        ray.shutdown()
    finally:
        if reaper:
            stop_reaper(reaper)


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse in seconds a cluster address (host:port, [v6]:port or ray://host:port) where nothing
    answers, or something that does not speak gRPC as Ray does (Ray itself retries for minutes, or
    hangs); no address or "auto" is left to Ray. Imports no Ray."""
    if not address or address == "auto":
        return
    host, port = ray_host_port(address)
    try:
        connection = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as err:
        raise RayUnavailableError(f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
                                  "`ray start --head`, or leave the address out to start Ray on this machine") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        connection.close()
        return   # gRPC over TLS says nothing in the clear
    with connection:
        answer = b""
        try:
            connection.sendall(GRPC_HELLO)
            while len(answer) < 9 and (more := connection.recv(9 - len(answer))):
                answer += more
        except TimeoutError:
            raise RayUnavailableError(f"something at {address} accepted the connection but did not answer as a Ray "
                                      f"cluster does (gRPC) within {timeout_s:g} s; check the address and "
                                      "port") from None
        except OSError:
            pass   # reset: judged by what it said, if anything
    if len(answer) < 9 or answer[3] != SETTINGS_FRAME:
        said = answer.decode("ascii", "replace").split("\r")[0].strip() or "nothing"
        raise RayUnavailableError(f"something answers at {address}, but not as a Ray cluster (it said {said!r}, not "
                                  "gRPC); give the head node's address, head-host:6379, or ray://head-host:10001")


def embedded_rows(ray, embedder: Embedder, images: np.ndarray, pending: list[tuple[int, int]], settings: IndexParams):
    """The rows of the ``pending`` chunks embedded on the cluster, in batches of numpy columns
    ``row``, ``reason`` ("" when usable), ``colour`` and ``vector``, in whatever order they finish."""
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # this process shows one bar of its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\.data")  # its advice is for Ray's users, not ours
    rows = [row for start, stop in pending for row in range(start, stop)]
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cores = min(int(node.get("Resources", {}).get("CPU", 1)) for node in nodes) if nodes else 1
    # default: an actor per core, each running the model on one thread (on 2 cores, 2 such actors
    # embedded 7-10% faster than one actor on two threads)
    actors = settings.ray_actors or max(1, cores) * max(len(nodes), 1)
    per_node = math.ceil(actors / max(len(nodes), 1))
    # a block per chunk (a decoding task's work), and at least one per actor: on 2 cores Ray kept
    # 85-88% of one process's speed with blocks of 512 photos, 71-73% with blocks of 32 (embedding the
    # 2,946 dev photos, 2026-12-05); one block leaves every actor but one idle
    blocks = max(1, min(max(len(pending), actors), len(rows), MAX_BLOCKS))
    pixels = isinstance(images[0], np.ndarray)
    items = [{"row": row, "pixels": images[row]} if pixels else {"row": row, "path": str(images[row])} for row in rows]
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # a model actor reserves a core (half of a one-core node's), a decoding task half as much: unlike
    # reservations keep them in separate processes (Ray fuses alike ones), so decoding runs beside the model
    actor_cpus = min(1.0, math.floor(100 * cores / (per_node + 1)) / 100)  # room left for decoding on every node
    framed = dataset.map_batches(frame_batch, batch_size=settings.batch_size, num_cpus=math.floor(50 * actor_cpus) / 100,
                                 fn_kwargs={"image_size": embedder.image_size, "max_pixels": settings.max_image_pixels})
    embedded = framed.map_batches(
        ModelActor, batch_size=settings.batch_size, compute=ActorPoolStrategy(size=actors), num_cpus=actor_cpus,
        fn_constructor_kwargs={"identity": embedder.identity, "settings": settings, "model": shared_model(ray, embedder),
                               "threads": max(1, cores // per_node)})
    yield from embedded.iter_batches(batch_size=None, batch_format="numpy")


def shared_model(ray, embedder: Embedder) -> list:
    """The model as ONNX bytes for the actors (converted here once), put in Ray's object store
    and passed inside a list (each actor fetches it); an empty list: each actor loads the model
    itself (``index.runtime: tensorflow``, or a model ONNX Runtime cannot run)."""
    if embedder.runtime == "tensorflow" or embedder.ready() != "onnx":
        return []
    model = remembered_model(identity_key(embedder.identity, REMEMBERED_KEYS))
    return [ray.put(model)] if model is not None else []


def frame_batch(batch: dict[str, np.ndarray], image_size: int, max_pixels: int) -> dict[str, np.ndarray]:
    """A Ray task: decode, frame and colour-describe a batch of photo rows; unusable photos get
    their reason and a blank square."""
    images = list(batch["pixels"]) if "pixels" in batch else [str(path) for path in batch["path"]]
    squares, colours, reasons = frame_photos(images, image_size, max_pixels)
    usable = np.array([reason is None for reason in reasons], bool)
    all_squares = np.zeros((len(images), image_size, image_size, 3), np.uint8)
    all_colours = np.zeros((len(images), DESCRIPTOR_DIM), np.float32)
    all_squares[usable], all_colours[usable] = squares, colours
    return {"row": batch["row"], "reason": np.array([reason or "" for reason in reasons], dtype=str),
            "colour": all_colours, "square": all_squares}


class ModelActor:
    """A Ray actor holding the model: framed photos in, vectors out."""

    def __init__(self, identity: dict, settings: IndexParams, model: list, threads: int | None):
        if model:
            import ray

            self.embedder = onnx_embedder(identity, onnx_model_call(ray.get(model[0]), threads))
        else:
            self.embedder = load_embedder(settings)
        self.dim = int(identity["dim"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        usable = batch["reason"] == ""
        vectors = np.zeros((len(usable), self.dim), np.float32)
        if usable.any():
            vectors[usable] = self.embedder.embed(batch["square"][usable])
        return {"row": batch["row"], "reason": batch["reason"], "colour": batch["colour"], "vector": vectors}


class ChunkGatherer:
    """Rows arriving in any order, saved chunk by chunk (as the one-process path saves them) as
    soon as each chunk is complete."""

    def __init__(self, work_dir: Path, pending: list[tuple[int, int]], dim: int):
        self.work_dir, self.pending, self.dim = work_dir, pending, dim
        self.starts = [start for start, _ in pending]
        self.open: dict[int, dict] = {}

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take a batch of embedded rows; save every chunk it completes."""
        for row, reason, colour, vector in zip(batch["row"], batch["reason"], batch["colour"], batch["vector"]):
            start, stop = self.pending[bisect.bisect_right(self.starts, int(row)) - 1]
            chunk = self.open.setdefault(start, {"vectors": np.zeros((stop - start, self.dim), np.float32),
                                                 "colours": np.zeros((stop - start, DESCRIPTOR_DIM), np.float32),
                                                 "reasons": [""] * (stop - start), "left": stop - start})
            offset = int(row) - start
            chunk["vectors"][offset], chunk["colours"][offset], chunk["reasons"][offset] = vector, colour, str(reason)
            chunk["left"] -= 1
            if chunk["left"] == 0:
                self._save(start, stop, self.open.pop(start))

    def _save(self, start: int, stop: int, chunk: dict) -> None:
        usable = np.array([reason == "" for reason in chunk["reasons"]], bool)
        done = Embedded(chunk["vectors"][usable], chunk["colours"][usable], usable,
                        [reason or None for reason in chunk["reasons"]])
        save_chunk(chunk_path(self.work_dir, start, stop), chunk_arrays(done))

    def check_done(self) -> None:
        """Fail loudly if the cluster returned fewer rows than it was given."""
        if self.open or not all(chunk_path(self.work_dir, start, stop).is_file() for start, stop in self.pending):
            raise RuntimeError(f"the Ray job returned {sum(c['left'] for c in self.open.values())} photos short; "
                               "run the same command again to finish it")
