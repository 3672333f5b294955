"""The API's browsable documentation (``/docs``: Swagger UI, ``/redoc``: ReDoc) without internet.

FastAPI's default pages load their scripts from a CDN, which a shop's server or a laptop offline
cannot reach: here the files come from the ``fastapi-offline`` package (Swagger UI 5 and ReDoc,
which read the OpenAPI 3.1 that FastAPI writes) and are served by the service itself.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc``, their scripts served from the fastapi-offline package."""
    import fastapi_offline

    app.mount(ASSETS, StaticFiles(directory=str(Path(fastapi_offline.__file__).with_name("static"))),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="fashion-search API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title="fashion-search API",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)
