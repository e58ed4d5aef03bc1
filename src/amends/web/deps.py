"""Dependencies the routes share, named once (as `Annotated` aliases) so route signatures stay short."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from amends.access import Scope, authenticate
from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import Forbidden, NotFound, Unauthorized
from amends.events import LedgerWatcher
from amends.outreach.service import Outreach
from amends.recover.actors import Actor
from amends.recover.service import Recovery
from amends.recover.staff import get_staff
from amends.store import Database, UnitOfWork

__all__ = [
    "DB",
    "Acting",
    "AppSettings",
    "OutreachState",
    "RecoveryState",
    "Watcher",
    "in_transaction",
    "reading",
    "require",
]

T = TypeVar("T")


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


def require(scope: Scope | None = None) -> Callable[..., Coroutine[Any, Any, Actor]]:
    """A dependency that lets the request through only with an active API key (holding `scope`, if given),
    and says who is acting: an integration, or the staff member whose key it is (with their role's rights,
    read now, so a change of role or a deactivation counts at once)."""

    async def _check(
        request: Request, db: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Actor:
        presented = credentials.credentials if credentials is not None else None
        origin = request.client.host if request.client is not None else None
        actor = await run_in_threadpool(_authenticate, db, presented, origin)
        if scope is not None and scope not in actor.scopes:
            who = f"{actor.staff.role.value} {actor.staff.id}" if actor.staff is not None else f"key {actor.key_id}"
            raise Forbidden(f"the {who} lacks the right {scope.value!r}")
        return actor

    return _check


def _authenticate(db: Database, presented: str | None, origin: str | None) -> Actor:
    with db.unit_of_work() as uow:
        key = authenticate(uow, presented)
        if key.staff_id is None:
            return Actor(key.id, None, key.scopes, origin)
        try:
            member = get_staff(uow, key.staff_id)
        except NotFound:
            raise Unauthorized("the API key's staff member no longer exists") from None
        if not member.active:
            raise Unauthorized(f"staff member {member.id} is deactivated")
        return Actor(key.id, member, member.scopes, origin)


def _recovery(request: Request) -> Recovery:
    recovery: Recovery = request.app.state.recovery
    return recovery


RecoveryState = Annotated[Recovery, Depends(_recovery)]


def _outreach(request: Request) -> Outreach:
    outreach: Outreach = request.app.state.outreach
    return outreach


OutreachState = Annotated[Outreach, Depends(_outreach)]
Acting = Annotated[Actor, Depends(require())]


async def in_transaction(db: Database, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in one unit of work on a worker thread and commit it; nothing is kept if it raises."""

    def run() -> T:
        with db.unit_of_work(writes=True) as uow:
            result = work(uow)
            uow.commit()
            return result

    return await run_in_threadpool(run)


async def reading(db: Database, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in a read-only unit of work on a worker thread."""

    def run() -> T:
        with db.unit_of_work() as uow:
            return work(uow)

    return await run_in_threadpool(run)
