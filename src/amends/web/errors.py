"""The one place where amends' errors become HTTP responses: `{"error", "field", "reason"}`, and where the OpenAPI
schema learns that every API operation may answer with them."""

from __future__ import annotations

import http
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from amends.errors import (
    AmendsError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from amends.events import MalformedJSON

__all__ = [
    "RECOVERY_ERRORS",
    "ErrorOut",
    "UnsupportedMediaType",
    "declare_errors",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger(__name__)


class UnsupportedMediaType(InvalidInput):
    """A request body in a format the endpoint does not take."""


class ErrorOut(BaseModel):
    """The body of every error answer. Some kinds say more: `position` (`line`, `column`, `offset`) where a body
    that is not JSON stopped parsing; `kind`, `limit`, `granted_today` and `approval` for AboveLimit."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="The kind of error: InvalidInput, NotFound, Conflict, Forbidden, AboveLimit, ...")
    field: str | None = Field(description="The field, parameter or header at fault, when there is one.")
    reason: str = Field(description="Why, in words a user can act on.")


# The answers every recovery endpoint may give besides its success, for the OpenAPI schema (declare_errors adds
# the body, and the errors every operation may give).
RECOVERY_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The caller may not do this (role, ownership, or above their authority)."},
    404: {"description": "No such case, or not one the caller may see."},
    409: {"description": "The case is not in a state that allows it."},
    422: {"description": "A field is not valid; the body names it."},
}

_STATUS: dict[type[AmendsError], int] = {
    MalformedJSON: 400,
    UnsupportedMediaType: 415,
    TooLarge: 413,
    InvalidInput: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}


def status_of(exc: AmendsError) -> int:
    """The HTTP status an error is answered with."""
    return next((_STATUS[k] for k in type(exc).__mro__ if k in _STATUS), 500)


def _page_for(request: Request) -> Callable[[Request, Exception, int], Awaitable[Response]] | None:
    """The HTML error page of the part of the site the request is in (the console), if it has one."""
    pages = getattr(request.app.state, "error_pages", {})
    return next((page for prefix, page in pages.items() if request.url.path.startswith(prefix)), None)


async def _amends_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AmendsError)
    status = status_of(exc)
    reason = getattr(exc, "reason", str(exc))
    if exc.shown != str(exc):
        # The driver's words (hosts, users, constraints) go to the log, not to the caller; the access line with the
        # same request id has the path.
        log.warning("answered %d: %s", status, exc)
        reason = exc.shown
    if (page := _page_for(request)) is not None:
        return await page(request, exc, status)
    body: dict[str, object] = {"error": type(exc).__name__, "field": getattr(exc, "field", None), "reason": reason}
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        body.update({key: value for key, value in details.items() if key not in body})
    if isinstance(exc, MalformedJSON):
        body["position"] = {"line": exc.line, "column": exc.column, "offset": exc.position}
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = getattr(exc, "challenge", "Bearer")
    elif status == 503:
        headers["Retry-After"] = "5"
    return JSONResponse(body, status_code=status, headers=headers)


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    if error["type"] == "json_invalid" and isinstance(exc.body, str):  # FastAPI could not parse a JSON body
        return await _amends_error(request, _malformed(exc.body, int(error["loc"][-1]), error["ctx"]["error"]))
    field = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
    if (page := _page_for(request)) is not None:
        return await page(request, InvalidInput(field, error["msg"]), 422)
    body = {"error": "InvalidInput", "field": field, "reason": error["msg"]}
    return JSONResponse(body, status_code=422)


def _malformed(document: str, position: int, reason: str) -> MalformedJSON:
    line = document.count("\n", 0, position) + 1
    return MalformedJSON(reason, line=line, column=position - document.rfind("\n", 0, position), position=position)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own refusals (no such route, a method not allowed, a body that cannot be read) in
    the body every other error has."""
    assert isinstance(exc, StarletteHTTPException)
    if (page := _page_for(request)) is not None:
        missing = NotFound("no such page") if exc.status_code == 404 else AmendsError(str(exc.detail))
        return await page(request, missing, exc.status_code)
    kind = "MalformedJSON" if exc.status_code == 400 else http.HTTPStatus(exc.status_code).phrase.replace(" ", "")
    field = "body" if exc.status_code == 400 else None
    body = {"error": kind, "field": field, "reason": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(
    app: FastAPI, pages: dict[str, Callable[[Request, Exception, int], Awaitable[Response]]] | None = None
) -> None:
    """Register the translation of every AmendsError (and FastAPI's own parameter errors): JSON, except under
    a path prefix of `pages`, whose own HTML error page answers."""
    app.state.error_pages = dict(pages or {})
    app.add_exception_handler(AmendsError, _amends_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


# What every API operation may answer besides what it declares itself, and the headers that come with some.
_EVERY_OPERATION: dict[int, str] = {
    401: "No API key, an unknown or revoked one, or the key of a deactivated staff member.",
    403: "The key lacks the right, or the role, ownership or authority does not allow it.",
    422: "A parameter or a field of the body is not valid; `field` names it.",
    503: "The database is unreachable; nothing was written. Try again after `Retry-After` seconds.",
}
_UNREADABLE_BODY = "The body is not JSON (or not UTF-8); `position` says where parsing stopped, when it is known."
_HEADERS: dict[str, dict[str, dict[str, Any]]] = {
    "401": {
        "WWW-Authenticate": {"description": "Bearer (Basic too on /v1/inbound/email/…)", "schema": {"type": "string"}}
    },
    "503": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def declare_errors(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Make the app's OpenAPI schema say how each operation of the API `routers` may fail: 401, 403, 422 and 503
    everywhere, 400 where FastAPI reads a JSON body, each with the error body (ErrorOut), which also replaces
    FastAPI's default body for 422 (amends never sends it). What an operation says of an answer itself is kept."""
    build = app.openapi
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema]
    operations = {(r.path, method.lower()): r.body_field is not None for r in routes for method in r.methods or ()}

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's, made once and kept: what follows changes it in place, the same every time
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for (path, method), reads_json_body in operations.items():
            responses = schema["paths"][path][method].setdefault("responses", {})
            statuses = {**_EVERY_OPERATION, 400: _UNREADABLE_BODY} if reads_json_body else _EVERY_OPERATION
            for status, description in statuses.items():
                responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                declared = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status[0] in "45" and (not response.get("content") or declared.get("$ref") == _FASTAPI_VALIDATION):
                    response["content"] = error
                if status in _HEADERS:
                    response.setdefault("headers", _HEADERS[status])
        if _FASTAPI_VALIDATION not in str(schema["paths"]):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
