"""The API's browsable documentation (``/docs``: Swagger UI, ``/redoc``: ReDoc) without internet.

FastAPI's default pages load their scripts from a CDN, which a shop's server or a laptop offline
cannot reach: here the files come from the ``fastapi-offline`` package (Swagger UI 5 and ReDoc,
which read the OpenAPI 3.1 that FastAPI writes) and are served by the service itself.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
# The pages' scripts may fetch only from the service itself: ReDoc's footer asks a CDN for a logo
# (it hides the logo when the fetch fails), and a shop's server may have no internet.
OWN_FILES_ONLY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                  "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:")


def package_version() -> str:
    """fashion-search's version, as its API documentation names it."""
    try:
        return version("fashion-search")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unreleased"


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc``, their scripts served from the fastapi-offline package."""
    import fastapi_offline

    app.mount(ASSETS, StaticFiles(directory=str(Path(fastapi_offline.__file__).with_name("static"))),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=app.openapi_url, title="fashion-search API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")
        page.headers["Content-Security-Policy"] = OWN_FILES_ONLY
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url, title="fashion-search API",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)
        page.headers["Content-Security-Policy"] = OWN_FILES_ONLY
        return page
