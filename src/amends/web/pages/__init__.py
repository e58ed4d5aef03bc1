"""Public pages: what a customer opens from a message, without a login. They share the security headers (a
content security policy that allows nothing but the page's own style, no framing, no referrer, no caching)
and one autoescaping template environment."""

from __future__ import annotations

import base64
import hashlib

import jinja2

__all__ = ["public_headers", "templates"]

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
