"""The application factory: one FastAPI app over one Database, built from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

import amends
from amends.config import Settings
from amends.store import Database
from amends.web.api import customers, events
from amends.web.errors import install_error_handlers
from amends.web.health import router as health_router

__all__ = ["create_app"]


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the app. A database passed in stays the caller's to dispose of."""
    owned = db is None
    database = db if db is not None else Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            database.dispose()

    app = FastAPI(
        title="amends",
        version=amends.__version__,
        summary="Proactive service recovery: notice when a customer was let down, and make amends.",
        lifespan=lifespan,
    )
    app.state.db = database
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(events.router)
    app.include_router(customers.router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app
