"""Liveness and readiness: /healthz says the process runs, /readyz that it can do its work."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from amends.config import Settings
from amends.errors import Unavailable
from amends.events.broker import EventBroker
from amends.store import Database, pending_revisions
from amends.web.deps import DB

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers and its schema is current (and the broker answers)")
async def readyz(request: Request, db: DB) -> JSONResponse:
    broker: EventBroker | None = request.app.state.broker
    try:
        pending = await run_in_threadpool(_check, db, request.app.state.settings)
        if broker is not None:
            await broker.ensure_connected()
            if not broker.connected:
                raise Unavailable(f"broker at {broker.shown_url} disconnected; reconnecting")
    except Unavailable as exc:  # anyone may ask: the driver's words (hosts, users) go to the log only
        log.warning("not ready: %s", exc)
        return JSONResponse({"status": "unavailable", "reason": exc.shown}, status_code=503)
    if pending:
        reason = f"the database schema is behind by {len(pending)} migration(s); run `amends init`"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


def _check(db: Database, settings: Settings) -> list[str]:
    db.ping()
    if db.is_sqlite and settings.sqlite_min_free_mib and db.url.database not in (None, "", ":memory:"):
        folder = Path(str(db.url.database)).resolve().parent
        free = shutil.disk_usage(folder).free
        if free < settings.sqlite_min_free_mib * 2**20:
            raise Unavailable(
                f"the disk holding the database has {free / 2**20:.1f} MiB free, less than sqlite_min_free_mib "
                f"({settings.sqlite_min_free_mib} MiB): make room before writes fail"
            )
    return pending_revisions(db)
