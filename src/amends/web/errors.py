"""The one place where amends' errors become HTTP responses: `{"error", "field", "reason"}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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

__all__ = ["RECOVERY_ERRORS", "UnsupportedMediaType", "install_error_handlers", "status_of"]


class UnsupportedMediaType(InvalidInput):
    """A request body in a format the endpoint does not take."""


# The answers every recovery endpoint may give besides its success, for the OpenAPI schema.
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
    if (page := _page_for(request)) is not None:
        return await page(request, exc, status)
    body: dict[str, object] = {
        "error": type(exc).__name__,
        "field": getattr(exc, "field", None),
        "reason": getattr(exc, "reason", str(exc)),
    }
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
    field = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
    if (page := _page_for(request)) is not None:
        return await page(request, InvalidInput(field, error["msg"]), 422)
    body = {"error": "InvalidInput", "field": field, "reason": error["msg"]}
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if (page := _page_for(request)) is not None:
        missing = NotFound("no such page") if exc.status_code == 404 else AmendsError(str(exc.detail))
        return await page(request, missing, exc.status_code)
    return await http_exception_handler(request, exc)


def install_error_handlers(
    app: FastAPI, pages: dict[str, Callable[[Request, Exception, int], Awaitable[Response]]] | None = None
) -> None:
    """Register the translation of every AmendsError (and FastAPI's own parameter errors): JSON, except under
    a path prefix of `pages`, whose own HTML error page answers."""
    app.state.error_pages = dict(pages or {})
    app.add_exception_handler(AmendsError, _amends_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
