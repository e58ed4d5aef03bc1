"""Liveness and readiness: /healthz says the process runs, /readyz that it can do its work."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from amends.errors import Unavailable
from amends.store import Database, pending_revisions
from amends.web.deps import DB

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers and its schema is current")
async def readyz(db: DB) -> JSONResponse:
    try:
        pending = await run_in_threadpool(_check, db)
    except Unavailable as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    if pending:
        reason = f"the database schema is behind by {len(pending)} migration(s); run `amends init`"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


def _check(db: Database) -> list[str]:
    db.ping()
    return pending_revisions(db)
