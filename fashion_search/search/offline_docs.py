"""The API's browsable documentation (``/docs``) without internet.

FastAPI's default page loads Swagger UI from a CDN, which a shop's server or a laptop offline
cannot reach: here its files come from the ``swagger-ui-bundle`` package and are served by the
service itself.
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles


def add_offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI served from the swagger-ui-bundle package, not from a CDN."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="fashion-search API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")
