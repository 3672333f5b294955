"""An opened product index: its manifest, product table, colours and vector index, and what it
says about itself (:meth:`ProductIndex.info`). :mod:`.store` opens and changes indexes."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.metadata import MISSING_TEXT
from fashion_search.search.index.faiss_index import VectorIndex
from fashion_search.search.index.filters import filter_keys
from fashion_search.search.index.index_folder import in_use, index_ledger
from fashion_search.search.index.ownership import debris


@dataclass
class ProductIndex:
    """An opened product index: its manifest, product table, colours and vector index."""

    folder: Path
    manifest: dict
    products: pd.DataFrame
    colours: np.ndarray
    vectors: VectorIndex
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "path", "reason"]))

    @property
    def identity(self) -> dict:
        return self.manifest["model"]

    @functools.cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Each product column as a numpy array, made once: a search's result rows are taken from
        these (a pandas row selection costs milliseconds a query)."""
        return {name: self.products[name].to_numpy(object) for name in self.products.columns}

    @property
    def live(self) -> np.ndarray:
        """Rows not removed."""
        return ~self.products["deleted"].to_numpy(bool)

    def rows_of(self, product: str) -> np.ndarray:
        """Live rows of a product: those whose ``id`` or ``product_id`` is ``product``, and the
        other photos of the same ``product_id`` (a Farfetch product's cut-out and model photos). A
        missing ``product_id`` (or "unknown") links a photo to no other."""
        match = self.products["id"].to_numpy(str) == product
        if "product_id" in self.products.columns:
            given = self.products["product_id"]
            product_ids = given.astype(str).where(given.notna() & (given.astype(str) != MISSING_TEXT), "").to_numpy()
            linked = [p for p in {product, *product_ids[match]} if p]
            match |= np.isin(product_ids, linked)
        return np.flatnonzero(match & self.live)

    def info(self) -> dict:
        """What a user wants to know about the index, as plain data."""
        live = int(self.live.sum())
        m = self.manifest
        leftovers = [self.folder / name for name in
                     debris(self.folder, index_ledger(self.folder, m, self.products), in_use(m, self.products))]
        return {"folder": str(self.folder), "products": live, "removed_rows": len(self.products) - live,
                "skipped_photos": len(self.skipped), "kind": m["kind"], "factory": m["factory"],
                "chosen_because": m["choice_reason"], "metric": m["metric"], "dimension": m["dim"],
                "model": self.identity, "created": m["created"], "updated": m["updated"],
                "generation": m["generation"], "backend": m.get("backend", "faiss"), "milvus": m.get("milvus"),
                "debris_files": len(leftovers),
                "debris_bytes": sum(p.lstat().st_size for p in leftovers if p.exists()),
                "checksummed": sorted(m.get("checksums", {})),
                "columns": [c for c in self.products.columns if c not in ("deleted",)],
                "filters": filter_keys(self.products)}
