"""Every HTTP request gets an id: the caller's `X-Request-ID` when it is a sane one, a new one otherwise. It is
sent back in the response's `X-Request-ID`, named in every log record made while the request is served, and
logged once with the request's method, path, status and time (the access line; query strings are never logged,
a path under a signed link's prefix is logged without its token, and control characters in a path are escaped, so
that no request can write a line of its own into the log)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amends.logs import REQUEST_ID

__all__ = ["RequestIds"]

log = logging.getLogger("amends.access")
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The public pages whose path holds a signed token (web/pages): whoever reads the log must not be able to open them.
_TOKEN_PREFIXES = ("/f/", "/u/")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LONGEST = 300


class RequestIds:
    """ASGI middleware: the request id and the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 1)
            path = _shown_path(scope)
            log.info("%s %s %d %.1f ms", scope["method"], path, status, ms,
                     extra={"method": scope["method"], "path": path, "status": status, "ms": ms})  # fmt: skip
            REQUEST_ID.reset(token)


def _shown_path(scope: Scope) -> str:
    """The path as it may be logged: a signed link's token replaced by `{token}` whatever follows it and whether
    or not a route matched; control characters as escapes; at most 300 characters."""
    path = str(scope["path"])
    for prefix in _TOKEN_PREFIXES:
        if path.startswith(prefix):
            path = prefix + "{token}" + ("/…" if "/" in path[len(prefix) :] else "")
            break
    path = _UNPRINTABLE.sub(lambda found: found[0].encode("unicode_escape").decode("ascii"), path)
    return path if len(path) <= _LONGEST else path[:_LONGEST] + "…"
