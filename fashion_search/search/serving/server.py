"""``fashion-search serve``: the search engine over HTTP (FastAPI), and its web page.

Read endpoints are open; writes (``POST /items``, ``DELETE /items/{id}``) need the API key
set in ``FASHION_SEARCH_API_KEY`` (sent as ``X-API-Key``); without one the service is
read-only. The key, the declared size and the body's size and pace are checked before the
body is read (:mod:`.request_limits`). The model loads once at start.

Requests run side by side: uploads are decoded and colour-described two at a time (within a
pixel budget well below the indexing cap, their format sniffed from the content), the model
embeds the photos of concurrent searches and adds in one call (:mod:`fashion_search.search.embedding.batching`), and each
search runs on a snapshot of the index taken when it starts, after picking up any generation
another process wrote. Writes are serialised, persisted by the index's atomic generations and
survive a restart; several server processes may serve one index folder. A busy index answers
503 with ``Retry-After``, a damaged one 503 saying so, a full or read-only disk 507.
"""
from __future__ import annotations

import io
import math
import re
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pandas as pd
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image

from fashion_search.data.catalog import SAFE_ID_RULE, Catalog, CatalogueError, is_safe_id
from fashion_search.data.metadata import metadata_from_json
from fashion_search.images import PHOTO_SUFFIXES
from fashion_search.colour import ColourError
from fashion_search.search.embedding.garments import GarmentError, parse_box
from fashion_search.search.engine import DEFAULT_COLOUR_WEIGHT, MAX_MATCH_COLOUR, SearchEngine, colour_weight_for
from fashion_search.search.index.filters import FilterError, filter_options, no_match_hints
from fashion_search.search.serving.offline_docs import add_offline_docs, package_version
from fashion_search.search.index.generations import IndexBusyError, is_disk_error
from fashion_search.search.serving.request_limits import RequestLimits
from fashion_search.search.serving.schemas import (Answer, Changed, FilterOption, Health, PhotoAnswer, Product, Stats,
                                                   documented)
from fashion_search.search.serving.service import Service
from fashion_search.search.index.index_folder import save_upload
from fashion_search.search.index.store import DamagedIndexError, ProductIndexError

API_KEY_ENV = "FASHION_SEARCH_API_KEY"
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPLOAD_PIXELS = 16_000_000   # a query or new product photo; indexing allows more (index.max_image_pixels)
FORM_OVERHEAD_BYTES = 64 * 2**10  # multipart boundaries and the other fields of an upload
MAX_BATCH = 16      # photos the model embeds in one call, gathered from concurrent requests
MAX_WAIT_MS = 2.0   # how long a request waits for others to share its model call
MAX_K = 100
MATCH_COLOUR_HELP = ("indexes of a fused model: how much the photo's own colour counts; 1 = the weight chosen on "
                     "validation (default), 0 = not at all, 2 = twice")
RETRY_AFTER_S = 5
PAGE = Path(__file__).with_name("web") / "index.html"


def encode_png(pixels: np.ndarray) -> bytes:
    """A photo re-encoded as PNG: only bytes we wrote are stored and served."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _json_ready(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def _answer(results: pd.DataFrame, engine: SearchEngine, filters: list[str]) -> dict:
    """A search's JSON: its results and, when filters left none, what each filter could say
    instead (``hints``: the values its key holds, closest first), as the CLI says it."""
    answer = {"results": _records(results)}
    if results.empty and filters:
        answer["hints"] = no_match_hints(filters, engine.index.products, engine.index.live)
    return answer


def _records(results: pd.DataFrame) -> list[dict]:
    """Result rows as JSON-ready dicts (no NaN), without the server's file paths."""
    names = [c for c in results.columns if c != "path"]
    values = zip(*(results[name].tolist() for name in names))
    return [{name: _json_ready(value) for name, value in zip(names, row)} for row in values]


def write_refusal(api_key: str | None, method: str, path: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """Why a request may not write (403 read-only service, 401 missing or wrong key), or None.
    The key is compared as bytes, so any header value gets an answer, never an error."""
    writes = (method == "POST" and path.rstrip("/") == "/items") or (method == "DELETE" and path.startswith("/items/"))
    if not writes:
        return None
    if api_key is None:
        return 403, f"read-only service: set {API_KEY_ENV} to allow writes"
    given = headers.get(b"x-api-key")
    if given is None or not secrets.compare_digest(given, api_key.encode()):
        return 401, "missing or wrong X-API-Key"
    return None


def _problem_in_words(message: str) -> str:
    """A validation message without Python's words: no type names, no ``Value error,`` prefix."""
    if "UploadFile" in message:
        return "expected a file upload (a form part with a file name), got a text field"
    message = re.sub(r"^Value error, ", "", message)
    return re.sub(r",? *received: <class '[^']*'>", "", message)


def validation_message(err: RequestValidationError) -> str:
    """FastAPI's validation errors in words: ``k: Input should be a valid integer``, without
    the rejected input (which may be an upload's Python repr) or Python type names."""
    problems = []
    for error in err.errors():
        where = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "form")]
        problems.append(f"{'.'.join(where) or 'request'}: {_problem_in_words(str(error.get('msg', 'invalid')))}")
    return "; ".join(problems)


def create_app(engine: SearchEngine, api_key: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_upload_pixels: int = MAX_UPLOAD_PIXELS, read_timeout_s: float = 30.0,
               max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS) -> FastAPI:
    """The HTTP service over an opened engine (its model already loaded); the model embeds up to
    ``max_batch`` photos of concurrent requests at once, waiting at most ``max_wait_ms`` for more."""
    service = Service(engine, api_key, max_upload_bytes, max_upload_pixels, max_batch, max_wait_ms / 1e3)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.batcher.close()

    app = FastAPI(title="fashion-search API", version=package_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Search a fashion catalogue by photo, product or filters; keep it up to date.")
    add_offline_docs(app)
    app.state.service = service
    app.add_middleware(RequestLimits, max_body=max_upload_bytes + FORM_OVERHEAD_BYTES,
                       refuse=lambda method, path, headers: write_refusal(service.api_key, method, path, headers),
                       read_timeout_s=read_timeout_s)

    @app.exception_handler(FilterError)
    @app.exception_handler(ColourError)
    @app.exception_handler(CatalogueError)
    def bad_request(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(err)}, status_code=422)

    @app.exception_handler(IndexBusyError)
    def busy(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(DamagedIndexError)
    def damaged_index(request: Request, err: DamagedIndexError) -> JSONResponse:
        return JSONResponse({"detail": f"the index is damaged ({err.what}); it must be rebuilt "
                                       "('fashion-search verify' on the server names the file)"}, status_code=503)

    @app.exception_handler(ProductIndexError)
    def conflict(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(OSError)
    def storage(request: Request, err: OSError) -> JSONResponse:
        if not is_disk_error(err):
            raise err
        return JSONResponse({"detail": f"the index could not be written ({err.strerror}); nothing was changed"},
                            status_code=507)

    def checked_k(k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must lie in 1..{MAX_K}")
        return k

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.get("/health", summary="Liveness, and how many products are searchable", response_model=None,
             responses=documented(Health, "the service answers"))
    def health() -> dict:
        return {"status": "ok", "products": int(service.engine.index.live.sum())}

    @app.get("/stats", summary="The index (kind, model, counts) and the requests served", response_model=None,
             responses=documented(Stats, "the index and the requests served"))
    def stats() -> dict:
        engine = service.current()
        info = engine.index.info()
        info.pop("folder", None)
        info.pop("milvus", None)  # where the index lives is the operator's business, and so is
        info["model"] = {**info["model"], "model": Path(str(info["model"].get("model"))).name}  # the model's folder
        return {"index": info, "requests": dict(service.counts), "model_calls": service.batcher.calls,
                "model_runtime": service.runtime,
                "uptime_s": round(time.time() - service.started, 1)}

    @app.post("/search", summary="Products most similar to an uploaded photo", response_model=None,
              responses=documented(PhotoAnswer, "the results, and the garments found in the photo"))
    def search(request: Request, photo: UploadFile = File(..., description="the query photo (JPEG, PNG, WebP...)"),
               k: int = Form(10), filter: list[str] = Form(default=[], description="key=value, e.g. category=shoes"),
               colour: str | None = Form(default=None, description="a colour name or #rrggbb to prefer"),
               colour_weight: float | None = Form(
                   default=None, ge=0.0, le=1.0,
                   description=f"0..1; default {DEFAULT_COLOUR_WEIGHT} with a colour, else 0"),
               match_colour: float | None = Form(default=None, ge=0.0, le=MAX_MATCH_COLOUR,
                                                 description=MATCH_COLOUR_HELP),
               garment: int | None = Form(default=None, ge=1, description="which garment found in the photo to "
                                          "search: 1 (the main one, the default), 2, ..."),
               box: str | None = Form(default=None, description="x0,y0,x1,y1: search this box of the photo instead"),
               localise: bool = Form(default=True, description="false: search the whole photo")) -> dict:
        if request.query_params:  # a form's fields are in its body; the address's would go unread
            raise HTTPException(400, f"send {', '.join(sorted(request.query_params))} as form fields with the photo, "
                                     "not in the address")
        by_own_colours = colour is None and colour_weight_for(colour_weight, colour) > 0
        try:
            drawn = parse_box(box) if box else None
        except GarmentError as err:
            raise HTTPException(400, str(err)) from None

        def located(pixels: np.ndarray, size: tuple[int, int]) -> tuple:
            try:
                found, chosen, searched = service.engine.locate(pixels, garment, drawn, localise, size)
            except GarmentError as err:
                raise HTTPException(400, str(err)) from None
            return found, chosen, size, service.engine.frame(searched, colours=by_own_colours)

        found, chosen, (width, height), framed = service.read_upload(photo, located)
        service.count("search")
        engine = service.current()
        query = engine.framed_query(framed, f"upload {photo.filename or ''}".strip())
        results = engine.search(query, checked_k(k), filter, colour_weight, colour, match_colour)
        number = next((i for i, g in enumerate(found, 1) if g is chosen), None)
        return {**_answer(results, engine, filter), "photo": {"width": width, "height": height},
                "garments": [g.describe() for g in found], "garment": number, "searched": chosen.describe()}

    @app.get("/filters", summary="The filter keys of this index, with their common values or number ranges",
             response_model=None, responses=documented(dict[str, FilterOption], "per filter key, what it may say"))
    def filters() -> dict:
        engine = service.current()
        return filter_options(engine.index.products, engine.index.live)

    @app.get("/items/{item_id}", summary="A product's metadata", response_model=None,
             responses=documented(Product, "the product"))
    def item(item_id: str) -> dict:
        engine = service.current()
        row = service.row_of(engine, item_id)
        return _records(engine.index.products.iloc[[row]].drop(columns=["deleted"]))[0]

    @app.get("/items/{item_id}/similar", summary="More like this product (the product itself excluded)",
             response_model=None, responses=documented(Answer, "the results"))
    def similar(item_id: str, k: int = 10, filter: list[str] = Query(default=[]),
                colour: str | None = Query(default=None, description="a colour name or #rrggbb to prefer"),
                colour_weight: float | None = Query(default=None, ge=0.0, le=1.0),
                match_colour: float | None = Query(default=None, ge=0.0, le=MAX_MATCH_COLOUR,
                                                   description=MATCH_COLOUR_HELP)) -> dict:
        engine = service.current()
        service.row_of(engine, item_id)
        service.count("similar")
        results = engine.search(engine.product_query(item_id), checked_k(k), filter, colour_weight, colour,
                                match_colour)
        return _answer(results, engine, filter)

    @app.get("/items/{item_id}/image", summary="A product's photo", response_class=FileResponse)
    def image(item_id: str) -> FileResponse:
        engine = service.current()
        path = Path(str(engine.index.products["path"].iloc[service.row_of(engine, item_id)]))
        if path.suffix.lower() not in PHOTO_SUFFIXES or not path.is_file():
            raise HTTPException(404, f"the photo of '{item_id}' is not available")
        return FileResponse(path)

    @app.post("/items", status_code=201, summary="Add a product (or replace one with the same id); needs X-API-Key",
              response_model=None, responses={201: {"model": Changed, "description": "added"}})
    def add(id: str = Form(...), photo: UploadFile = File(...),
            metadata: str = Form(default="{}", description="a JSON object of metadata columns")) -> dict:
        if not is_safe_id(id):
            raise HTTPException(400, f"malformed id: {SAFE_ID_RULE} characters")
        fields = metadata_from_json(metadata)
        png = service.read_upload(photo, lambda pixels, _size: encode_png(pixels))
        with service.writing() as engine:
            # Re-encoded, so only our own bytes are served; a fresh name per add, so a failed add
            # never changes the photo an indexed product shows (debris clean-up removes it later).
            path = save_upload(engine.index.folder, f"{id}.{secrets.token_hex(4)}.png", png, engine.settings)
            items = pd.DataFrame([{**{k: v for k, v in fields.items() if k != "id"}, "id": id, "path": str(path)}])
            skipped = engine.add(Catalog(items, items["path"].to_numpy(str)), new_columns=True).skipped
            service.count("add")
        if len(skipped):
            raise HTTPException(415, f"{service.upload_name(photo)} is not a usable photo: {skipped['reason'].iloc[0]}")
        return {"id": id, "products": int(service.engine.index.live.sum())}

    @app.delete("/items/{item_id}", summary="Remove a product; needs X-API-Key", response_model=None,
                responses=documented(Changed, "removed"))
    def delete(item_id: str) -> dict:
        with service.writing() as engine:
            service.row_of(engine, item_id)
            engine.remove([item_id])
            service.count("delete")
        return {"id": item_id, "products": int(service.engine.index.live.sum())}

    return app
