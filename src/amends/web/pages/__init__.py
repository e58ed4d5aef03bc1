"""Public pages: what a customer opens from a message, without a login. They share the security headers (a
content security policy that allows nothing but the page's own style, no framing, no referrer, no caching; HSTS
over HTTPS), one autoescaping template environment, and the route class that adds HSTS to every answer."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

import jinja2
from fastapi import Request, Response
from fastapi.routing import APIRoute

from amends.config import Settings

__all__ = ["HSTS", "PublicPage", "public_headers", "templates"]

HSTS = "max-age=31536000; includeSubDomains"  # as the console's: a year, this host and those below it

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("amends.web.pages", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)


def public_headers(style: str) -> dict[str, str]:
    """The headers of a public page whose only resource is the inline `style`, allowed by its hash."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return {
        "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


class PublicPage(APIRoute):
    """The route of a public page. When the server is reached over HTTPS (`secure_cookies`, as for the console),
    every answer also tells the browser to come back over HTTPS only: a customer who only ever opens the links in
    their messages never sees a console page that would have said so."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def with_hsts(request: Request) -> Response:
            response = await handle(request)
            settings: Settings = request.app.state.settings
            if settings.secure_cookies:
                response.headers.setdefault("Strict-Transport-Security", HSTS)
            return response

        return with_hsts
