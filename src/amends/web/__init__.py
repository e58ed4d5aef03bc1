"""The web layer: the HTTP API (and, later, the staff console and public pages).

Routes parse, call one service function and render; errors become responses in web/errors.py only.
"""

from amends.web.app import create_app

__all__ = ["create_app"]
