"""Nearest-neighbour search with faiss: exact or approximate, with filters that leave no holes.

Three kinds, built through faiss ``index_factory`` strings and picked by catalogue size and
memory (or named in ``params.yaml``):

- ``flat``: exact search (``Flat``);
- ``hnsw``: a graph, fast and accurate, vectors held in memory as float32 (``HNSW32``);
- ``ivfpq``: inverted lists of product-quantised codes (``IVF4096,PQ32``), for catalogues whose
  float32 vectors do not fit in memory; its candidates are re-ranked with exact distances read
  from the vectors on disk.

Rows are numbered in the order they were added; a removed row stays in the faiss index and is
masked out of every search. A filter is a boolean mask over rows: small allowed sets are
searched exactly, larger ones inside faiss with an ID selector, and a search that returns
fewer than ``k`` rows while more are allowed is redone exactly, so a filter never leaves holes.
"""
from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from fashion_search.exact import exact_search
from fashion_search.params import IndexParams
from fashion_search.search.index.ownership import temp_name

_IVF_POINTS_PER_LIST = 39  # faiss warns below this many training points per inverted list


@dataclass(frozen=True)
class IndexChoice:
    """Which kind of index, its faiss factory string, and why it was picked."""

    kind: str
    factory: str
    reason: str


def _ivfpq_factory(n: int, dim: int, pq_bytes: int) -> str:
    lists = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 16)))
    lists = max(16, min(lists, 65_536, n // _IVF_POINTS_PER_LIST or 16))
    subquantisers = max(d for d in range(1, min(pq_bytes, dim) + 1) if dim % d == 0)
    return f"IVF{lists},PQ{subquantisers}"


def choose_index(n: int, dim: int, settings: IndexParams) -> IndexChoice:
    """The index kind for ``n`` vectors of ``dim`` dimensions: ``settings.type``, or by size
    (exact up to ``flat_max_items``; HNSW while its vectors and graph fit ``memory_budget_gb``;
    IVF-PQ beyond)."""
    hnsw = f"HNSW{settings.hnsw_m}"
    ivfpq = _ivfpq_factory(n, dim, settings.pq_bytes)
    if settings.type != "auto":
        factory = {"flat": "Flat", "hnsw": hnsw, "ivfpq": ivfpq}[settings.type]
        return IndexChoice(settings.type, factory, "named in params.yaml (index.type)")
    if n <= settings.flat_max_items:
        return IndexChoice("flat", "Flat", f"{n:,} items ≤ index.flat_max_items ({settings.flat_max_items:,})")
    needed = n * (dim * 4 + settings.hnsw_m * 2 * 4)
    budget = settings.memory_budget_gb * 2**30
    if needed <= budget:
        return IndexChoice("hnsw", hnsw, f"{n:,} items; vectors and graph need {needed / 2**30:.1f} GiB ≤ "
                                         f"index.memory_budget_gb ({settings.memory_budget_gb:g})")
    return IndexChoice("ivfpq", ivfpq, f"{n:,} items need {needed / 2**30:.1f} GiB as float32, more than "
                                       f"index.memory_budget_gb ({settings.memory_budget_gb:g})")


def faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "inner_product" else faiss.METRIC_L2


def build_faiss_index(vectors: np.ndarray, choice: IndexChoice, metric: str, settings: IndexParams,
                      training_sample: int = 100_000, seed: int = 0) -> faiss.Index:
    """A faiss index of ``choice`` over ``vectors`` (trained on a sample where it needs training)."""
    index = faiss.index_factory(vectors.shape[1], choice.factory, faiss_metric(metric))
    if choice.kind == "hnsw":
        index.hnsw.efConstruction = settings.hnsw_ef_construction
    if choice.kind == "ivfpq":
        index.do_polysemous_training = False  # unused here, and 20× the training time
    if not index.is_trained:
        rows = np.random.default_rng(seed).permutation(len(vectors))[:training_sample]
        index.train(np.ascontiguousarray(vectors[np.sort(rows)], dtype=np.float32))
    add_in_chunks(index, vectors)
    return index


def add_in_chunks(index: faiss.Index, vectors: np.ndarray, chunk: int = 65_536) -> None:
    """Append ``vectors`` (an array or a memory map) to ``index`` without copying them all at once."""
    for start in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))


def to_distance(raw: np.ndarray, metric: str) -> np.ndarray:
    """faiss's scores as distances, smaller is closer: Euclidean for ``l2`` (faiss gives its
    square), 1 − inner product for ``inner_product`` (cosine distance on unit vectors)."""
    if metric == "l2":
        return np.sqrt(np.maximum(raw, 0.0))
    return 1.0 - raw


def exact_rows(query: np.ndarray, vectors: np.ndarray, rows: np.ndarray, metric: str,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of ``rows`` to one query by exact search, as ``(rows, distances)``
    with distances as :func:`to_distance` gives them."""
    if k == 0 or len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    distance = "euclidean" if metric == "l2" else "dot"
    found, distances = exact_search(query[None], np.asarray(vectors[rows], np.float32), k, distance)
    return rows[found[0]].astype(np.int64), distances[0]


class VectorIndex:
    """A faiss index over row-numbered vectors, with removal masks, filters and exact re-ranking.

    ``vectors`` (an array or a read-only memory map) holds every row's exact vector; it serves
    filtered searches over few rows, IVF-PQ re-ranking and the "no holes" guarantee.
    """

    def __init__(self, index: faiss.Index, vectors: np.ndarray, kind: str, metric: str, settings: IndexParams):
        if index.ntotal != len(vectors):
            raise ValueError(f"the faiss index holds {index.ntotal} rows but {len(vectors)} vectors were given")
        self.index, self.vectors, self.kind, self.metric, self.settings = index, vectors, kind, metric, settings

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _search_parameters(self, allowed: np.ndarray | None, k: int) -> tuple[faiss.SearchParameters, object]:
        """faiss search parameters for this kind, with an ID selector over ``allowed`` rows; the
        fewer rows a filter allows, the wider the search (up to 16 times)."""
        widen = 1.0 if allowed is None else min(16.0, len(allowed) / max(int(allowed.sum()), 1))
        if self.kind == "hnsw":
            parameters = faiss.SearchParametersHNSW()
            parameters.efSearch = int(max(self.settings.hnsw_ef_search, k) * widen)
        elif self.kind == "ivfpq":
            parameters = faiss.SearchParametersIVF()
            parameters.nprobe = int(self.settings.ivf_nprobe * widen)
        else:
            parameters = faiss.SearchParameters()
        keep_alive = None
        if allowed is not None:
            bits = np.packbits(allowed.astype(np.uint8), bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
            parameters.sel = selector
            keep_alive = (bits, selector)  # faiss keeps raw pointers to both
        return parameters, keep_alive

    def _exact(self, query: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_rows(query, self.vectors, rows, self.metric, k)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows to one ``query`` vector among ``allowed`` rows (a boolean mask;
        None: all) other than the rows in ``exclude``, nearest first, as ``(rows, distances)``.
        Returns ``min(k, such rows)`` rows. Excluded rows (a product's own photos, few) are not
        masked out: ``k`` + their number are searched and they are dropped from the answer."""
        if exclude is None or len(exclude) == 0:
            return self._search(query, k, allowed)
        rows, distances = self._search(query, k + len(exclude), allowed)
        kept = ~np.isin(rows, exclude)
        return rows[kept][:k], distances[kept][:k]

    def _search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(query, np.float32).reshape(-1)
        available = len(self) if allowed is None else int(allowed.sum())
        k = min(k, available)
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if allowed is not None and (self.kind == "flat" or available <= self.settings.exact_filter_rows):
            return self._exact(query, np.flatnonzero(allowed), k)
        wanted = k * self.settings.rerank if self.kind == "ivfpq" else k
        parameters, _keep_alive = self._search_parameters(allowed, wanted)
        raw, rows = self.index.search(query[None], min(wanted, available), params=parameters)
        rows = rows[0][rows[0] >= 0]
        if len(rows) < k:  # the approximate search came back short: no holes, search exactly
            return self._exact(query, np.flatnonzero(allowed) if allowed is not None else np.arange(len(self)), k)
        if self.kind == "ivfpq":  # PQ distances are approximate: re-rank the candidates exactly
            return self._exact(query, np.sort(rows), k)
        return rows[:k].astype(np.int64), to_distance(raw[0][: len(rows)], self.metric)[:k].astype(np.float32)

    def add(self, vectors: np.ndarray, all_vectors: np.ndarray) -> None:
        """Add rows to the faiss index; ``all_vectors`` is the exact store including them."""
        add_in_chunks(self.index, vectors)
        self.vectors = all_vectors
        if self.index.ntotal != len(all_vectors):
            raise ValueError(f"the faiss index holds {self.index.ntotal} rows but the store {len(all_vectors)}")


def save_faiss_index(index: faiss.Index, path: str | Path) -> None:
    """Write a faiss index atomically, through its sibling ``.<name>.tmp`` (a symbolic link there
    is replaced, not followed); a failed write (faiss raises RuntimeError) is an OSError."""
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    try:
        if tmp.is_symlink():
            tmp.unlink()
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    except RuntimeError as err:
        code = errno.ENOSPC if "No space" in str(err) else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (faiss could not write the index)", str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def load_faiss_index(path: str | Path) -> faiss.Index:
    return faiss.read_index(str(path))
