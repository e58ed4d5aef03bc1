"""Dependencies the routes share, named once (as `Annotated` aliases) so route signatures stay short."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from amends.access import Scope, authenticate
from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import Forbidden, NotFound, TooLarge, Unauthorized
from amends.events import LedgerWatcher
from amends.feedback.service import FeedbackDesk
from amends.outreach.service import Outreach
from amends.recover.actors import Actor
from amends.recover.service import Recovery
from amends.recover.staff import get_staff
from amends.store import Database, UnitOfWork

__all__ = [
    "DB",
    "Acting",
    "AppSettings",
    "FeedbackState",
    "OutreachState",
    "RecoveryState",
    "Watcher",
    "in_transaction",
    "read_body",
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


class BasicUnauthorized(Unauthorized):
    """Unauthorized where the key may also come as an HTTP Basic password: the answer asks for either, since some
    webhook senders send the credentials of a `https://user:key@host/...` URL only when asked for them."""

    challenge = 'Basic realm="amends", charset="UTF-8", Bearer'


def require(scope: Scope | None = None, *, basic: bool = False) -> Callable[..., Coroutine[Any, Any, Actor]]:
    """A dependency that lets the request through only with an active API key (holding `scope`, if given),
    and says who is acting: an integration, or the staff member whose key it is (with their role's rights,
    read now, so a change of role or a deactivation counts at once). With `basic`, the key may also be the
    password of HTTP Basic credentials (the user name is not read), for webhook senders that can only send those."""

    async def _check(
        request: Request, db: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Actor:
        presented = credentials.credentials if credentials is not None else None
        origin = request.client.host if request.client is not None else None
        try:
            if presented is None and basic:
                presented = _basic_password(request.headers.get("authorization", ""))
            actor = await run_in_threadpool(_authenticate, db, presented, origin)
        except Unauthorized as exc:
            if basic:
                raise BasicUnauthorized(str(exc)) from None
            raise
        if scope is not None and scope not in actor.scopes:
            who = f"{actor.staff.role.value} {actor.staff.id}" if actor.staff is not None else f"key {actor.key_id}"
            raise Forbidden(f"the {who} lacks the right {scope.value!r}")
        return actor

    return _check


def _basic_password(header: str) -> str | None:
    """The password of HTTP Basic credentials (RFC 7617); None when the header is not Basic."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Basic credentials are not base64 of user:key") from None
    _user, _sep, password = decoded.partition(":")
    return password or None


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


def _feedback(request: Request) -> FeedbackDesk:
    desk: FeedbackDesk = request.app.state.feedback
    return desk


FeedbackState = Annotated[FeedbackDesk, Depends(_feedback)]
Acting = Annotated[Actor, Depends(require())]


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (TooLarge, 413) as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge("body", f"{declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge("body", f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
