"""``fashion-search serve``: the search engine over HTTP (FastAPI), and its web page.

Read endpoints are open; writes (``POST /items``, ``DELETE /items/{id}``) need the API key
set in ``FASHION_SEARCH_API_KEY`` (sent as ``X-API-Key``); without one the service is
read-only. The model loads once at start. Requests that touch the engine are serialised by
one lock, so concurrent queries and writes never see half a change; writes are persisted by
the index's atomic generations and survive a restart. Uploads are size-limited, their format
is sniffed from the content, and their pixel count checked before decoding.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image

from fashion_search.data.catalog import Catalog
from fashion_search.images import PHOTO_SUFFIXES, UnusableImageError, decode_photo
from fashion_search.io import atomic_path
from fashion_search.search.colour import ColourError
from fashion_search.search.engine import DEFAULT_COLOUR_WEIGHT, SearchEngine
from fashion_search.search.filters import FilterError
from fashion_search.search.store import ProductIndexError

API_KEY_ENV = "FASHION_SEARCH_API_KEY"
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_K = 100
UPLOADS_DIR = "uploads"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # no slashes, no leading dot: never a path
PAGE = Path(__file__).with_name("web") / "index.html"


def _records(results: pd.DataFrame) -> list[dict]:
    """Result rows as JSON-ready dicts (no NaN), without the server's file paths."""
    table = results.drop(columns=["path"], errors="ignore").astype(object)
    return table.where(pd.notna(table), None).to_dict(orient="records")


class Service:
    """The engine behind a lock, plus request counters for ``/stats``."""

    def __init__(self, engine: SearchEngine, api_key: str | None, max_upload_bytes: int):
        self.engine, self.api_key, self.max_upload_bytes = engine, api_key, max_upload_bytes
        self.lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def read_upload(self, upload: UploadFile) -> tuple[bytes, np.ndarray]:
        """The upload's bytes and pixels; 413 when too large, 415 when not a readable image."""
        data = upload.file.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {self.max_upload_bytes:,} bytes")
        try:
            return data, decode_photo(data, self.engine.settings.max_image_pixels)
        except UnusableImageError as err:
            raise HTTPException(415, f"not a usable photo: {err}") from None

    def row_of(self, item_id: str) -> int:
        """The live row of a product id; 400 for a malformed id, 404 for an unknown one."""
        if not ID_PATTERN.match(item_id):
            raise HTTPException(400, "malformed id: letters, digits, '.', '_' and '-' only")
        rows = np.flatnonzero((self.engine.index.products["id"].to_numpy(str) == item_id) & self.engine.index.live)
        if len(rows) == 0:
            raise HTTPException(404, f"no product '{item_id}'")
        return int(rows[0])


def create_app(engine: SearchEngine, api_key: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The HTTP service over an opened engine (its model already loaded)."""
    service = Service(engine, api_key, max_upload_bytes)
    app = FastAPI(title="fashion-search", version="1",
                  description="Search a fashion catalogue by photo, product or filters; keep it up to date.")
    app.state.service = service

    @app.exception_handler(FilterError)
    @app.exception_handler(ColourError)
    def bad_request(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    def writer(x_api_key: str | None = Header(default=None)) -> None:
        """Allow a write only with the configured API key."""
        if service.api_key is None:
            raise HTTPException(403, f"read-only service: set {API_KEY_ENV} to allow writes")
        if x_api_key is None or not secrets.compare_digest(x_api_key, service.api_key):
            raise HTTPException(401, "missing or wrong X-API-Key")

    def checked_k(k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must lie in 1..{MAX_K}")
        return k

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.get("/health", summary="Liveness, and how many products are searchable")
    def health() -> dict:
        return {"status": "ok", "products": int(service.engine.index.live.sum())}

    @app.get("/stats", summary="The index (kind, model, counts) and the requests served")
    def stats() -> dict:
        info = service.engine.index.info()
        info.pop("folder", None)
        return {"index": info, "requests": dict(service.counts), "uptime_s": round(time.time() - service.started, 1)}

    @app.post("/search", summary="Products most similar to an uploaded photo")
    def search(photo: UploadFile = File(..., description="the query photo (JPEG, PNG, WebP...)"),
               k: int = Form(10), filter: list[str] = Form(default=[], description="key=value, e.g. category=shoes"),
               colour: str | None = Form(default=None, description="a colour name or #rrggbb to prefer"),
               colour_weight: float | None = Form(
                   default=None, ge=0.0, le=1.0,
                   description=f"0..1; default {DEFAULT_COLOUR_WEIGHT} with a colour, else 0")) -> dict:
        _, pixels = service.read_upload(photo)
        with service.lock:
            service.count("search")
            query = service.engine.pixels_query(pixels, f"upload {photo.filename or ''}".strip())
            results = service.engine.search(query, checked_k(k), filter, colour_weight, colour)
        return {"results": _records(results)}

    @app.get("/items/{item_id}", summary="A product's metadata")
    def item(item_id: str) -> dict:
        with service.lock:
            row = service.row_of(item_id)
            record = _records(service.engine.index.products.iloc[[row]].drop(columns=["deleted"]))[0]
        return record

    @app.get("/items/{item_id}/similar", summary="More like this product (the product itself excluded)")
    def similar(item_id: str, k: int = 10, filter: list[str] = Query(default=[])) -> dict:
        with service.lock:
            service.row_of(item_id)
            service.count("similar")
            results = service.engine.search(service.engine.product_query(item_id), checked_k(k), filter)
        return {"results": _records(results)}

    @app.get("/items/{item_id}/image", summary="A product's photo", response_class=FileResponse)
    def image(item_id: str) -> FileResponse:
        with service.lock:
            path = Path(str(service.engine.index.products["path"].iloc[service.row_of(item_id)]))
        if path.suffix.lower() not in PHOTO_SUFFIXES or not path.is_file():
            raise HTTPException(404, f"the photo of '{item_id}' is not available")
        return FileResponse(path)

    @app.post("/items", status_code=201, dependencies=[Depends(writer)],
              summary="Add a product (or replace one with the same id); needs X-API-Key")
    def add(id: str = Form(...), photo: UploadFile = File(...),
            metadata: str = Form(default="{}", description="a JSON object of metadata columns")) -> dict:
        if not ID_PATTERN.match(id):
            raise HTTPException(400, "malformed id: letters, digits, '.', '_' and '-' only")
        try:
            fields = json.loads(metadata)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            raise HTTPException(400, "metadata must be a JSON object")
        _, pixels = service.read_upload(photo)
        with service.lock:
            path = service.engine.index.folder / UPLOADS_DIR / f"{id}.png"  # re-encoded: only our own bytes are served
            with atomic_path(path) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
            items = pd.DataFrame([{**{k: v for k, v in fields.items() if k not in ("id", "path")},
                                   "id": id, "path": str(path)}])
            skipped = service.engine.add(Catalog(items, items["path"].to_numpy(str)))
            service.count("add")
        if len(skipped):
            raise HTTPException(415, f"not a usable photo: {skipped['reason'].iloc[0]}")
        return {"id": id, "products": int(service.engine.index.live.sum())}

    @app.delete("/items/{item_id}", dependencies=[Depends(writer)], summary="Remove a product; needs X-API-Key")
    def delete(item_id: str) -> dict:
        with service.lock:
            service.row_of(item_id)
            try:
                service.engine.remove([item_id])
            except ProductIndexError as err:
                raise HTTPException(409, str(err)) from None
            service.count("delete")
        return {"id": item_id, "products": int(service.engine.index.live.sum())}

    return app
