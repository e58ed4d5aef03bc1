"""Dependencies the routes share, named once (as `Annotated` aliases) so route signatures stay short."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from amends.access import ApiKey, Scope, authenticate
from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import Forbidden
from amends.events import LedgerWatcher
from amends.store import Database

__all__ = ["DB", "AppSettings", "Watcher", "require"]


def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _watcher(request: Request) -> LedgerWatcher | None:
    detection: Detection | None = request.app.state.detection
    return None if detection is None else detection.detector


DB = Annotated[Database, Depends(_database)]
Watcher = Annotated[LedgerWatcher | None, Depends(_watcher)]
AppSettings = Annotated[Settings, Depends(_settings)]
_bearer = HTTPBearer(auto_error=False, description="An API key from `amends keys create NAME`.")


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, ApiKey]]:
    """A dependency that lets the request through only with an active API key holding `scope`."""

    async def _check(db: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
        presented = credentials.credentials if credentials is not None else None
        key = await run_in_threadpool(_authenticate, db, presented)
        if scope not in key.scopes:
            raise Forbidden(f"the key {key.name!r} lacks the scope {scope.value!r}")
        return key

    return _check


def _authenticate(db: Database, presented: str | None) -> ApiKey:
    with db.unit_of_work() as uow:
        return authenticate(uow, presented)
