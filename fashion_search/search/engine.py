"""The search engine: build an index of a catalogue, then query it by photo, product or colour.

    engine = SearchEngine.open("outputs/index", settings)
    engine.search(engine.photo_query("photo.jpg"), k=10, filters=["category=shoes"])

Results are a table, best first: ``rank``, ``id``, ``distance`` (smaller is closer), the
product's metadata and colour names, and its photo's ``path``. With a colour weight w, the
order blends visual distance with colour distance (each scaled to 0..1 over the candidates):
(1 − w)·visual + w·colour. A preferred colour without a weight gets :data:`DEFAULT_COLOUR_WEIGHT`.
A query photo is first looked through for garments (:meth:`SearchEngine.locate`).

Longer than 300 lines: every kind of query is made and run here, in one class.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import Catalog
from fashion_search.data.metadata import RESERVED_COLUMNS, check_new_columns
from fashion_search.images import UnusableImageError, fit_to_square, read_photo_and_size
from fashion_search.params import IndexParams
from fashion_search.search.embedding.batching import ModelBatcher
from fashion_search.colour import ColourError, colour_descriptor, descriptor_distance, swatch_distance, swatch_lab
from fashion_search.search.embedding.embedder import Embedder, check_identity, load_embedder, remembered_embedder
from fashion_search.search.embedding.embedding_jobs import Added, embed_into_items
from fashion_search.search.embedding.garments import (Garment, GarmentFinder, check_choice, drawn_box,
                                                     garment_pixels, pick, whole_photo)
from fashion_search.search.index.filters import HIDDEN_COLUMNS, filter_mask, parse_filters
from fashion_search.search.index.integrity import damaged
from fashion_search.search.index.index_folder import drop_work, release_index, work_folder
from fashion_search.search.index.product_index import ProductIndex
from fashion_search.search.index.store import (ProductIndexError, add_products, check_can_create, compact, create_index,
                                         open_index, read_manifest, record_skipped, remove_products)

PROJECT_COLUMNS = (*RESERVED_COLUMNS, "id")  # set by the project, not metadata
DEFAULT_COLOUR_WEIGHT = 0.5  # a photo with a preferred colour, when no weight is given
MAX_MATCH_COLOUR = 5.0       # fused indexes: the largest factor on the query's colour part


def colour_weight_for(weight: float | None, swatch: str | None) -> float:
    """The colour weight a search uses: the one given, else the default with a swatch, else 0."""
    if weight is None:
        return DEFAULT_COLOUR_WEIGHT if swatch is not None else 0.0
    return weight


@dataclass
class Query:
    """What to look for: a vector and/or colours, and rows never to return."""

    label: str
    vector: np.ndarray | None = None
    colours: np.ndarray | None = None   # the query photo's colour descriptor
    swatch: np.ndarray | None = None    # a CIELAB colour to match
    exclude: np.ndarray | None = None   # rows of the product itself ("more like this")
    path: str | None = None             # the query photo, for contact sheets
    garments: list[Garment] = field(default_factory=list)  # what the localiser found in the photo, best first
    garment: Garment | None = None      # the one searched


@dataclass
class Framed:
    """A photo reduced to what a query needs: the model's square input and its colour descriptor."""

    square: np.ndarray
    colours: np.ndarray | None  # None: not needed (no colour re-ranking by the photo's own colours)


def _scaled(values: np.ndarray) -> np.ndarray:
    spread = np.ptp(values) if len(values) else 0.0
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def build_index(catalog: Catalog, folder: str | Path, settings: IndexParams, overwrite: bool = False,
                embedder: Embedder | None = None, description: str = "indexing") -> ProductIndex:
    """Embed every photo of ``catalog`` and write a new index to ``folder``. An interrupted run
    resumes from the chunks already embedded."""
    folder = Path(folder)
    if settings.executor == "ray":
        from fashion_search.search.embedding.ray_embedding import check_address  # no Ray imported yet

        check_address(settings.ray_address)  # a wrong address refused in seconds, before the model loads
    check_can_create(folder, settings, replacing=overwrite)  # before hours of embedding, not after
    embedder = embedder or load_embedder(settings)
    done = embed_into_items(embedder, catalog, work_folder(folder, settings), settings, description)
    if overwrite:  # only now: the index it replaces serves until the new one is ready to write
        release_index(folder, settings)  # the index's own files; anything else in the folder stays
        check_can_create(folder, settings)
    index = create_index(folder, embedder.identity, settings, done.items, done.vectors, done.colours, done.skipped)
    drop_work(done.chunks)
    return index


class SearchEngine:
    """An opened index and, loaded on first need, the model that embeds query photos."""

    def __init__(self, index: ProductIndex, settings: IndexParams, embedder: Embedder | None = None):
        self.index, self.settings, self._embedder = index, settings, embedder
        self._garment_finder: GarmentFinder | None = None
        if embedder is not None:
            check_identity(index.identity, embedder.identity, str(index.folder))

    @classmethod
    def open(cls, folder: str | Path, settings: IndexParams, model: str | None = None) -> "SearchEngine":
        """Open the index in ``folder``; ``model`` (a backbone or model folder) must be the one it was built with."""
        index = open_index(folder, settings)
        embedder = load_embedder(replace(settings, model=model)) if model else None
        return cls(index, settings, embedder)

    @property
    def embedder(self) -> Embedder:
        """The index's own model, loaded once and checked against the index: on ONNX Runtime as an
        earlier process converted it when one did (no TensorFlow needed), else built."""
        if self._embedder is None:
            identity = self.index.identity
            self._embedder = remembered_embedder(identity, self.settings.runtime) or load_embedder(
                replace(self.settings, model=identity["model"], weights=identity["weights"],
                        image_size=identity["image_size"], normalise=identity["normalised"]))
            check_identity(identity, self._embedder.identity, str(self.index.folder))
        return self._embedder

    def snapshot(self) -> "SearchEngine":
        """This engine as it is now, unchanged by a later change or refresh of this one."""
        return copy.copy(self)

    def batch_model_calls(self, max_batch: int, max_wait_s: float) -> ModelBatcher:
        """Embed concurrent callers' photos in shared model calls, through the batcher returned."""
        embedder = copy.copy(self.embedder)  # the model as it is ready (converted, or remembered), shared
        embedder.batcher = ModelBatcher(self.embedder.predict, max_batch, max_wait_s)
        self._embedder = embedder
        return embedder.batcher

    # ------------------------------------------------------------------ queries
    def photo_query(self, path: str | Path, garment: int | None = None, box: tuple | None = None,
                    localise: bool = True) -> Query:
        """A query photo (raises UnusableImageError when it cannot be read); see :meth:`pixels_query`."""
        try:
            pixels, size = read_photo_and_size(path)
        except UnusableImageError as err:
            raise UnusableImageError(f"cannot read the query photo {path}: {err}") from None
        return self.pixels_query(pixels, f"photo {path}", str(path), garment, box, localise, size)

    @property
    def garment_finder(self) -> GarmentFinder:
        """The garment localiser, loaded on first use."""
        if self._garment_finder is None:
            self._garment_finder = GarmentFinder(self.settings.runtime)
        return self._garment_finder

    @garment_finder.setter
    def garment_finder(self, finder: GarmentFinder) -> None:
        self._garment_finder = finder   # another localiser, for a benchmark that compares them

    def locate(self, pixels: np.ndarray, garment: int | None = None, box: tuple | None = None, localise: bool = True,
               size: tuple[int, int] | None = None) -> tuple[list[Garment], Garment, np.ndarray]:
        """The garments the localiser finds in a photo (none when ``localise`` is off or a ``box``
        is given), the one to search (number ``garment``, 1 the main one; or the ``box`` a person
        drew; or the whole photo), and its pixels cut out and whitened around it. Boxes, given and
        found, are in the photo's own pixels: ``size`` (width, height), when the pixels are a reduced decode."""
        check_choice(garment, box, localise)
        decoded = (pixels.shape[1], pixels.shape[0])
        size = size or decoded
        if box is not None:
            chosen = drawn_box(size, box)
            return [], chosen, garment_pixels(pixels, chosen.on(size, decoded))
        found = self.garment_finder.find(pixels) if localise else []
        cut = pick(found, garment) if found else whole_photo(pixels)
        told = [g.on(decoded, size) for g in found]
        chosen = next((t for g, t in zip(found, told) if g is cut), None) or cut.on(decoded, size)
        return told, chosen, pixels if cut.group == "whole photo" else garment_pixels(pixels, cut)

    def pixels_query(self, pixels: np.ndarray, label: str, path: str | None = None, garment: int | None = None,
                     box: tuple | None = None, localise: bool = True, size: tuple[int, int] | None = None) -> Query:
        """A query from decoded RGB pixels: the garment :meth:`locate` chooses, framed like a catalogue photo."""
        found, chosen, searched = self.locate(pixels, garment, box, localise, size)
        return replace(self.framed_query(self.frame(searched), label, path), garments=found, garment=chosen)

    def frame(self, pixels: np.ndarray, colours: bool = True) -> Framed:
        """What a query needs of a photo, small: the model's square and, with ``colours``, the
        colour descriptor (a server does it in the request's thread, before the model)."""
        return Framed(fit_to_square(pixels, self.embedder.image_size), colour_descriptor(pixels) if colours else None)

    def framed_query(self, framed: Framed, label: str, path: str | None = None) -> Query:
        """A query from a framed photo: its vector computed now."""
        return Query(label, self.embedder.embed(framed.square[None])[0], framed.colours, path=path)

    def product_query(self, product: str) -> Query:
        """"More like this": a catalogue product's own vector and colours; the product excluded."""
        rows = self.index.rows_of(product)
        if len(rows) == 0:
            raise ProductIndexError(f"product '{product}' is not in the index")
        row = int(rows[0])
        return Query(f"product {product}", np.asarray(self.index.vectors.vectors[row]), self.index.colours[row],
                     exclude=rows, path=str(self.index.products["path"].iloc[row]))

    def colour_query(self, colour: str) -> Query:
        """Products whose colours are closest to a swatch (a colour name or #rrggbb)."""
        return Query(f"colour {colour}", swatch=swatch_lab(colour))

    # ------------------------------------------------------------------ search
    def allowed_rows(self, filters: list[str]) -> np.ndarray | None:
        """Rows the filters and removals let a search return (None: all rows); a "more like this"
        query's own rows are dropped from the results instead, so that no mask is built for it."""
        products = self.index.products
        live = self.index.live
        if not filters and live.all():
            return None
        return live & filter_mask(products, parse_filters(filters, products))

    @property
    def colour_dims(self) -> int:
        """Trailing vector dimensions that describe colour (an index of a fused model; else 0)."""
        return int(self.index.identity.get("colour_dims", 0))

    def with_colour_match(self, query: Query, match_colour: float | None) -> Query:
        """``query`` with the colour part of its vector scaled by ``match_colour`` (fused indexes:
        1 or None keeps the weight chosen on validation, 0 ignores colour, 2 doubles it)."""
        if match_colour is None or query.vector is None:
            return query
        if not 0.0 <= match_colour <= MAX_MATCH_COLOUR:
            raise ColourError(f"match_colour must lie in 0..{MAX_MATCH_COLOUR:g}, got {match_colour}")
        if not self.colour_dims:
            if match_colour == 1.0:
                return query
            raise ColourError("this index's vectors hold no colour part (its model is not a fused one); "
                             "blend colour in with --colour-weight (API: colour_weight) instead")
        vector = np.array(query.vector, np.float32)
        length = np.linalg.norm(vector)
        vector[-self.colour_dims:] *= match_colour
        # back to the query's own length: the same ranking (every fused vector [t, w·c] has the
        # length √(1 + w²)), and distances on the usual scale (1 − cosine never below 0)
        return replace(query, vector=vector * (length / max(np.linalg.norm(vector), 1e-12)))

    def search(self, query: Query, k: int = 10, filters: list[str] | None = None, colour_weight: float | None = None,
               swatch: str | None = None, match_colour: float | None = None) -> pd.DataFrame:
        """The ``k`` best products for ``query`` among those passing ``filters``; ``colour_weight``
        (0..1; None: see :func:`colour_weight_for`) blends in colour closeness to ``swatch``
        (else to the query photo's colours); ``match_colour`` scales the colour part of a fused
        index's query vector (see :meth:`with_colour_match`)."""
        colour_weight = colour_weight_for(colour_weight, swatch)
        if not 0.0 <= colour_weight <= 1.0:
            raise ValueError(f"the colour weight must lie in 0..1, got {colour_weight}")
        query = self.with_colour_match(query, match_colour)
        allowed = self.allowed_rows(filters or [])
        if swatch is not None:
            query = replace(query, swatch=swatch_lab(swatch))
        if query.vector is None:  # by swatch alone
            candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self.index.products))
            colour = swatch_distance(self.index.colours[candidates], query.swatch)
            order = np.lexsort((candidates, colour))[:k]
            return self._table(candidates[order], colour[order], None)
        pool = k if colour_weight == 0 else max(k, self.settings.colour_pool)
        rows, distances = self._nearest(query, pool, allowed, filters or [])
        if not np.isfinite(distances).all():  # never served: only damaged files give them
            raise damaged(self.index.folder, "a search found NaN or infinite distances; 'fashion-search verify' "
                                             "names the file")
        if colour_weight == 0 or len(rows) == 0:
            return self._table(rows, distances, None)
        colours = self.index.colours[rows]
        colour = (swatch_distance(colours, query.swatch) if query.swatch is not None
                  else descriptor_distance(query.colours, colours))
        score = (1 - colour_weight) * _scaled(distances) + colour_weight * _scaled(colour)
        order = np.lexsort((rows, score))[:k]
        return self._table(rows[order], distances[order], score[order], colour[order])

    def _nearest(self, query: Query, k: int, allowed: np.ndarray | None,
                 filters: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """faiss with the ``allowed`` mask, or Milvus with the filters as its own expressions."""
        if not getattr(self.index.vectors, "filters_in_store", False):
            return self.index.vectors.search(query.vector, k, allowed, exclude=query.exclude)
        parsed = parse_filters(filters, self.index.products)
        rows, distances = self.index.vectors.search(query.vector, k, exclude=query.exclude, filters=parsed)
        live = self.index.live[rows]
        return rows[live], distances[live]

    def _table(self, rows: np.ndarray, distances: np.ndarray, score: np.ndarray | None,
               colour: np.ndarray | None = None) -> pd.DataFrame:
        columns = self.index.columns
        table = {"rank": np.arange(1, len(rows) + 1), "id": columns["id"][rows],
                 "distance": np.round(distances.astype(float), 4) + 0.0}  # + 0.0: no "-0.0000"
        if score is not None:
            table["colour_distance"] = np.round(colour.astype(float), 2)
            table["score"] = np.round(score.astype(float), 4)
        shown = [c for c in columns if c not in (*HIDDEN_COLUMNS, "id")]
        for column in [*shown, "colours", "path"]:
            table[column] = columns[column][rows]
        return pd.DataFrame(table)

    # ------------------------------------------------------------------ changes
    def add(self, catalog: Catalog, new_columns: bool = False) -> Added:
        """Embed and add a catalogue's photos (an id already indexed is replaced); returns what
        this add did, and the photos skipped with reasons. The index keeps the columns it was
        built with: a column it lacks is added only with ``new_columns`` (metadata a user gave on
        purpose, within the limits of :mod:`fashion_search.data.metadata`), never from a guess
        such as a loose photo's folder."""
        if not new_columns:
            known = set(self.index.products.columns) | {"id", "path", "split"}
            catalog = Catalog(catalog.items[[c for c in catalog.items.columns if c in known]], catalog.images,
                              catalog.label_column, catalog.skipped)
        check_new_columns([c for c in self.index.products.columns if c not in PROJECT_COLUMNS],
                          [c for c in catalog.items.columns if c not in PROJECT_COLUMNS], "the new products' metadata")
        done = embed_into_items(self.embedder, catalog, work_folder(self.index.folder, self.settings), self.settings,
                                "adding")
        replaced = 0
        if len(done.items):
            self.index, replaced = add_products(self.index, done.items, done.vectors, done.colours, done.skipped)
        elif len(done.skipped):
            self.index = record_skipped(self.index, done.skipped)
        drop_work(done.chunks)  # only this job's: another process may be adding too
        return Added(len(done.items), done.items["id"].nunique() - replaced if len(done.items) else 0, replaced,
                     done.skipped)

    def refresh(self) -> None:
        """Re-open the index if another process changed it since (a server sees the CLI's adds)."""
        if read_manifest(self.index.folder).get("generation") != self.index.manifest.get("generation"):
            self.index = open_index(self.index.folder, self.settings)

    def compact(self) -> None:
        self.index = compact(self.index)

    def remove(self, ids: list[str]) -> None:
        self.index = remove_products(self.index, ids)
