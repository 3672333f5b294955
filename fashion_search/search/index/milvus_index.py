"""Milvus as the vector store of an index (``index.backend: milvus``).

The index folder keeps what it keeps for faiss (manifest, product table, colours, exact
vectors, skipped list, uploads, generations); the vectors are searched in a Milvus collection
instead of a faiss file. Each row of the collection holds the product's row number, its vector,
its metadata as filters see it (``meta``: lower-case text; ``numbers``: numeric values) and
its colour names, so metadata filters run inside Milvus as filter expressions and a filtered
search returns exactly ``k`` products when that many match.

``index.uri`` says where Milvus is: a local path runs Milvus Lite inside this process (one
process at a time: it locks its folder), ``http://host:19530`` talks to a Milvus standalone
or cluster, which several processes and machines may share. Rows are written before the
manifest names them and every search keeps to the rows the manifest holds, so an add
interrupted before its commit leaves nothing a search sees.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import IDENTITY_KEYS
from fashion_search.search.index.faiss_index import to_distance
from fashion_search.search.index.filters import Filter
from fashion_search.search.index.milvus_lite_lock import lock_holders, named_pids
from fashion_search.search.index.milvus_filters import COLOUR_NAMES, filter_expression, filter_values
from fashion_search.search.index.generations import IndexBusyError, ProductIndexError
from fashion_search.search.index.ownership import LITE_DIR as LITE_FILE

INSERT_BATCH = 2_000
CONNECT_TRIES = 4      # a Lite database this process holds, whose connection failed, is tried this often
RETRY_PAUSE_S = 1.0    # the pause before the n-th try is n times this
IDENTITY_PROPERTY = "fashion_search.model"  # the collection property naming the model of its vectors
# Colour names are kept as a JSON object, {"names": [...]}: Milvus 2.3 servers refuse a bare list in
# a JSON field. Collections written before kept the bare list in "colour_names"; they are read as they are.
COLOURS_FIELD = "colours"
_BARE_LIST_FIELD = "colour_names"


class MilvusUnavailableError(IndexBusyError):
    """Milvus failed a request (down, or overloaded): try again later (HTTP 503)."""


def default_uri(folder: Path) -> str:
    """Where an index folder's Milvus Lite database goes when ``index.uri`` is not set."""
    return str(Path(folder).resolve() / LITE_FILE)


def recorded_uri(folder: Path, uri: str) -> str:
    """What the manifest records of ``uri``: the folder's own Lite database by name (a copy uses its own)."""
    own = not is_server(uri) and Path(uri).resolve() == Path(folder).resolve() / LITE_FILE
    return LITE_FILE if own else uri if is_server(uri) else str(Path(uri).resolve())


def resolved_uri(folder: Path, recorded: str) -> str:
    """The URI a record means in ``folder`` (an older absolute ``…/milvus.db``: the folder's own, if any)."""
    own = Path(folder) / LITE_FILE
    lite = not is_server(recorded) and (recorded == LITE_FILE or (Path(recorded).name == LITE_FILE and own.is_dir()))
    return str(own.resolve()) if lite else recorded


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://"))


def collection_name(folder: Path, generation: int) -> str:
    """A collection per index folder (and per compaction, which renumbers the rows)."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return f"fashion_search_{digest}_{generation}"


def connect(uri: str, wait_s: float = 0.0):
    """A pymilvus client for ``uri``, a clear error when Milvus cannot be reached or opened; a Lite
    database another process has open is waited for up to ``wait_s`` s (two writers take turns).
    A Lite database this process holds open, whose connection failed (a busy machine: gRPC's
    "Too many pings", "Connection recovery failed"), is tried again :data:`CONNECT_TRIES` times."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own log lines (keepalive chatter); errors reach us
    from pymilvus import MilvusClient

    if not is_server(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        # Milvus Lite logs tracebacks of its own (AllocTimestamp, a held folder); the error reaches us
        for name in ("grpc._server", "milvus_lite", "pymilvus"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    deadline = time.monotonic() + wait_s
    tries = 0
    while True:
        try:
            return MilvusClient(uri)
        except Exception as err:  # pymilvus raises its own exception types, or OSError from Milvus Lite
            said = getattr(err, "message", None) or str(err)
            holders = set() if is_server(uri) else lock_holders(Path(uri))
            others = holders - {os.getpid()}
            if others:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise IndexBusyError(f"cannot open Milvus at {uri}: another process{named_pids(others)} has this Milvus Lite database "
                                     "open (Milvus Lite serves one process at a time): try again when it has finished, "
                                     "stop it (e.g. 'fashion-search serve'), or use a Milvus server (index.uri: "
                                     "http://host:19530)") from None
            tries += 1
            if not holders and not is_server(uri) and time.monotonic() < deadline and tries < CONNECT_TRIES:
                time.sleep(0.2)   # its holder let go between our try and the look: try again
                continue
            if os.getpid() in holders and tries < CONNECT_TRIES:  # our own Lite database: its connection failed
                time.sleep(RETRY_PAUSE_S * tries)
                continue
            if os.getpid() in holders:
                raise MilvusUnavailableError(f"Milvus Lite, running in this process for {uri}, stopped answering "
                                             f"({said.splitlines()[0][:200]}; tried {tries} times): the machine may "
                                             "be too busy; finished work is kept, so the same command again "
                                             "resumes") from None
            raise ProductIndexError(f"cannot open Milvus at {uri}: {said}") from None


def _metric(metric: str) -> str:
    return "L2" if metric == "l2" else "IP"


@contextmanager
def _answered(request: str) -> Iterator[None]:
    """Milvus failing ``request`` (pymilvus's own exception types) as a :class:`MilvusUnavailableError`."""
    try:
        yield
    except Exception as err:
        raise MilvusUnavailableError(f"Milvus did not answer {request}: {getattr(err, 'message', err)}") from None


class MilvusVectors:
    """The vectors of an index in a Milvus collection, searched with filters inside Milvus.

    ``vectors`` (in the folder) holds every row's exact vector, for "more like this" and
    compaction; ``rows`` is how many rows the manifest holds (rows beyond are uncommitted)."""

    filters_in_store = True

    def __init__(self, client, name: str, vectors: np.ndarray, metric: str, settings: IndexParams,
                 colour_names: str = COLOUR_NAMES):
        self.client, self.name, self.vectors, self.metric, self.settings = client, name, vectors, metric, settings
        self.colour_names = colour_names

    def __len__(self) -> int:
        return len(self.vectors)

    @classmethod
    def create(cls, uri: str, name: str, identity: dict, vectors: np.ndarray, products: pd.DataFrame, metric: str,
               kind: str, settings: IndexParams) -> "MilvusVectors":
        """A new collection (an older one of the same name is dropped) holding ``vectors``."""
        from pymilvus import DataType

        client = connect(uri, settings.lock_wait_s)
        with _answered("making the collection"):
            if client.has_collection(name):
                client.drop_collection(name)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        for field in ("meta", "numbers", COLOURS_FIELD):
            schema.add_field(field, DataType.JSON)
        index = client.prepare_index_params()
        params = {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction} if kind == "hnsw" else {}
        index.add_index(field_name="vector", index_type="HNSW" if kind == "hnsw" else "FLAT",
                        metric_type=_metric(metric), params=params)
        with _answered("making the collection"):
            client.create_collection(name, schema=schema, index_params=index)
            client.alter_collection_properties(name, properties={
                IDENTITY_PROPERTY: json.dumps({k: identity.get(k) for k in IDENTITY_KEYS})})
        store = cls(client, name, vectors, metric, settings)
        store.write(0, vectors, products)
        return store

    @classmethod
    def open(cls, uri: str, name: str, identity: dict, vectors: np.ndarray, metric: str,
             settings: IndexParams) -> "MilvusVectors":
        """The collection of an index, checked to hold vectors of the index's model, and loaded
        for searching (it is released in a process other than the one that built it)."""
        client = connect(uri, settings.lock_wait_s)
        if not client.has_collection(name):
            raise ProductIndexError(f"Milvus at {uri} has no collection {name}: was the index built against another "
                                    "Milvus? Point index.uri at it, or rebuild the index")
        described = client.describe_collection(name)
        stored = json.loads(described.get("properties", {}).get(IDENTITY_PROPERTY) or "{}")
        differ = [k for k in IDENTITY_KEYS if stored.get(k) != identity.get(k)]
        if differ:
            raise ProductIndexError(f"the Milvus collection {name} at {uri} holds vectors of another model "
                                    f"({', '.join(differ)} differ from the index's manifest); rebuild the index")
        bare_list = _BARE_LIST_FIELD in {field["name"] for field in described.get("fields", [])}
        with _answered("loading the collection"):
            client.load_collection(name)  # a collection built by another process, or before a restart, is released
        return cls(client, name, vectors, metric, settings, _BARE_LIST_FIELD if bare_list else COLOUR_NAMES)

    def write(self, first_row: int, vectors: np.ndarray, products: pd.DataFrame) -> None:
        """Write rows ``first_row``… with their vectors and the filter values of ``products``, in
        place of any rows from there on that an interrupted change left behind."""
        meta, numbers, names = filter_values(products.reset_index(drop=True))
        with _answered("the new rows"):
            self.client.delete(self.name, filter=f"row >= {first_row}")
            for start in range(0, len(vectors), INSERT_BATCH):
                stop = min(start + INSERT_BATCH, len(vectors))
                self.client.insert(self.name, [
                    {"row": first_row + i, "vector": vectors[i].tolist(), "meta": meta[i], "numbers": numbers[i],
                     **self._colour_cell(names[i])} for i in range(start, stop)])
            self.client.flush(self.name)

    def _colour_cell(self, names: list[str]) -> dict:
        """A row's colour names as this collection keeps them."""
        return {_BARE_LIST_FIELD: names} if self.colour_names == _BARE_LIST_FIELD else {COLOURS_FIELD: {"names": names}}

    def remove(self, rows: np.ndarray) -> None:
        """Take rows out of the collection (removed or replaced products)."""
        if len(rows):
            with _answered("the removal"):
                self.client.delete(self.name, filter=f"row in {[int(r) for r in rows]}")

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None,
               filters: list[Filter] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows to ``query`` that pass ``filters``, other than ``exclude``,
        nearest first, as ``(rows, distances)`` (distances as faiss gives them, see :func:`to_distance`)."""
        parts = [f"row < {len(self)}", *filter_expression(filters or [], self.colour_names)]
        if exclude is not None and len(exclude):
            parts.append(f"row not in {[int(r) for r in exclude]}")
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with _answered("the search"):
            hits = self.client.search(self.name, data=[np.asarray(query, np.float32).tolist()], limit=k,
                                      filter=" and ".join(parts), output_fields=["row"],
                                      search_params={"params": {"ef": max(self.settings.hnsw_ef_search, k)}})[0]
        rows = np.array([hit.get("row", hit.get("id")) for hit in hits], np.int64)
        raw = np.array([hit["distance"] for hit in hits], np.float32)
        return rows, to_distance(raw, self.metric).astype(np.float32)

    def drop(self) -> None:
        """Remove the collection (after a compaction moved the rows to a new one)."""
        self.client.drop_collection(self.name)


def milvus_kind(kind: str) -> str:
    """The Milvus index for the kind faiss would use: exact up to ``index.flat_max_items``, HNSW beyond."""
    return "flat" if kind == "flat" else "hnsw"


def create_collection(folder: Path, generation: int, identity: dict, vectors: np.ndarray, products: pd.DataFrame,
                      metric: str, kind: str, settings: IndexParams, uri: str | None = None) -> dict:
    """Put an index's rows into a new collection; returns what the manifest records of it."""
    uri = resolved_uri(folder, uri) if uri else settings.uri or default_uri(folder)
    name = collection_name(folder, generation)
    kind = milvus_kind(kind)
    for tries in range(1, CONNECT_TRIES + 1):
        try:
            MilvusVectors.create(uri, name, identity, vectors, products, metric, kind, settings)
            break
        except MilvusUnavailableError as err:  # a busy machine: write it again, into a collection made anew
            if tries == CONNECT_TRIES:
                raise MilvusUnavailableError(f"{err} (written {tries} times; finished work is kept, so the same "
                                             "command again resumes)") from None
            time.sleep(RETRY_PAUSE_S * tries)
    factory = f"HNSW (M {settings.hnsw_m})" if kind == "hnsw" else "FLAT"
    return {"backend": "milvus", "kind": "milvus", "factory": f"Milvus {factory}",
            "milvus": {"uri": recorded_uri(folder, uri), "collection": name}}


def open_collection(folder: Path, manifest: dict, vectors: np.ndarray, settings: IndexParams) -> MilvusVectors:
    """The collection a manifest names (at ``index.uri`` when set: a cluster that moved)."""
    where = manifest["milvus"]
    return MilvusVectors.open(settings.uri or resolved_uri(folder, where["uri"]), where["collection"],
                              manifest["model"], vectors, manifest["metric"], settings)
