"""The application factory: one FastAPI app over one Database, built from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

import amends
from amends.background import Background
from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import Unavailable
from amends.events.broker import EventBroker
from amends.feedback.asking import Asking
from amends.feedback.service import FeedbackDesk
from amends.outreach.delivery import Delivery
from amends.outreach.service import Outreach
from amends.privacy.retention import Retention
from amends.recover.service import Recovery
from amends.store import Database
from amends.web import console
from amends.web.api import (
    approvals,
    cards,
    cases,
    complaints,
    customers,
    events,
    feedback,
    feedback_requests,
    inbound,
    incidents,
    ledger,
    messages,
    metrics,
    risk,
    staff,
)
from amends.web.errors import declare_errors, install_error_handlers
from amends.web.health import router as health_router
from amends.web.pages import feedback as feedback_page
from amends.web.pages import unsubscribe
from amends.web.request_ids import RequestIds

__all__ = ["create_app"]

log = logging.getLogger(__name__)


_API_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>amends API</title>
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<link rel="icon" href="/static/swagger-ui/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/amends/api-docs.js"></script></body></html>
"""
# Swagger UI sets styles from its script (hence 'unsafe-inline' for styles only); scripts only from this server.
_API_DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the app. A database passed in stays the caller's to dispose of. Raises RuleSetError,
    PlaybookSetError or PolicyError when the rules, playbooks or remedy policy the settings name have problems,
    ModelError or TaxonomyError for the feedback triage, and TemplateSetError for the message templates (the
    server does not start on a half-loaded set)."""
    owned = db is None
    database = db if db is not None else Database.from_settings(settings)
    detection = Detection.from_settings(database, settings) if settings.detect_enabled else None
    recovery = Recovery.from_settings(database, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    asking = Asking.from_settings(database, settings, outreach)
    desk = FeedbackDesk.from_settings(settings, intake=recovery.intake, outreach=outreach)
    broker = None
    if settings.broker_url is not None:  # broker mode: events are published, and workers store them
        broker = EventBroker(
            settings.broker_url,
            partitions=settings.broker_partitions,
            stream=settings.broker_stream,
            retention=settings.broker_retention,
            reconnect=True,
        )
    background = Background(
        detection,
        recovery if settings.recover_enabled else None,
        seconds=settings.detect_sweep_seconds,
        delivery=Delivery.from_settings(database, settings) if settings.outbox_deliver else None,
        asking=asking if asking.enabled else None,
        feedback=(desk, database) if desk.alerts else None,
        retention=Retention.from_settings(database, settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.detect_sweep_in_serve:
            background.start()
        if broker is not None:
            try:
                await broker.ensure_connected()
            except Unavailable as exc:  # the server starts all the same: /readyz says so, and a publish tries again
                log.warning("%s; events are refused (503) until it answers", exc)
        yield
        background.stop()
        if broker is not None:
            await broker.close()
        if owned:
            database.dispose()

    app = FastAPI(
        title="amends",
        version=amends.__version__,
        summary="Proactive service recovery: notice when a customer was let down, and make amends.",
        lifespan=lifespan,
        docs_url=None,  # served below from the packaged Swagger UI, not from a CDN
        redoc_url=None,
    )
    app.state.db = database
    app.state.settings = settings
    app.state.detection = detection
    app.state.broker = broker
    app.state.recovery = recovery
    app.state.outreach = outreach
    app.state.feedback = desk
    app.state.feedback_limits = feedback_page.PageLimits.from_settings(settings)
    app.state.console_login_limits = console.LoginLimits.from_settings(settings)
    install_error_handlers(app, pages={"/console": console.error_page})
    app.include_router(health_router)
    api = [
        *(module.router for module in (events, customers, incidents, cases, complaints, approvals, ledger, staff,
                                       messages, cards, inbound, feedback, feedback_requests, metrics, risk)),
        feedback.suggestions_router,
        staff.audit_router,
    ]  # fmt: skip
    for router in api:
        app.include_router(router)
    declare_errors(app, api)
    app.include_router(unsubscribe.router)
    app.include_router(feedback_page.router)
    app.include_router(console.router)
    app.mount("/console/static", console.static_files(), name="console-static")
    console.add_security_headers(app, secure=settings.secure_cookies)
    app.add_middleware(RequestIds)  # outermost: every response, errors too, carries the id

    # Swagger UI's script and styles come from the swagger-ui-py package, so the docs work offline.
    swagger_ui = Path(str(resources.files("swagger_ui") / "static"))
    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui), name="swagger-ui")

    app.mount("/static/amends", StaticFiles(directory=Path(str(resources.files("amends.web") / "static"))))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI, its script and styles from the swagger-ui-py package (offline), started by a file of ours:
        no inline script, so the page's CSP allows none, and it may not be framed."""
        return HTMLResponse(_API_DOCS, headers=_API_DOCS_HEADERS)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console")

    return app
