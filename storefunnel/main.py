"""create_app(): the API under /api/v1, Segment-style tracking under /v1, and the dashboard."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from storefunnel import __version__
from storefunnel.api import router as api_router
from storefunnel.errors import install_error_handlers
from storefunnel.ingest.tracking import router as tracking_router
from storefunnel.ingest.webhooks import router as webhooks_router
from storefunnel.messaging.links import router as email_links_router
from storefunnel.web import install_dashboard


def create_app() -> FastAPI:
    app = FastAPI(
        title="storefunnel",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(tracking_router)
    app.include_router(webhooks_router)
    app.include_router(email_links_router)
    install_dashboard(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_served_app() -> FastAPI:
    """The app as ``storefunnel serve`` runs it: built, then everything alive at that point (modules, routes,
    the ORM's mappers: some 300,000 objects) moved out of the collector's reach. A full collection otherwise
    rescans all of them, a pause of 100 ms and more in the middle of requests; after the freeze it scans
    only what requests made."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app
