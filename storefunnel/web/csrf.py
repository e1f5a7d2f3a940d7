"""CSRF protection for the dashboard: a per-session token every unsafe request must send back.

The session cookie is ``SameSite=Lax``, which already stops most cross-site POSTs; the token also covers
older browsers and same-site attackers (another app on a sibling subdomain). Forms send it in a hidden
``csrf_token`` field, HTMX in the ``X-CSRF-Token`` header (set once on ``<body hx-headers>``).
"""

from __future__ import annotations

import secrets

from fastapi import Request

from storefunnel.errors import Forbidden

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class CsrfRejected(Forbidden):
    code, title = "csrf", "CSRF check failed"


def csrf_token(request: Request) -> str:
    """This session's token, created on first use (the login form creates it for anonymous visitors)."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return token


def rotate_csrf_token(request: Request) -> str:
    """A fresh token, issued when the session changes hands (login), so a planted token is useless."""
    request.session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(request.session[SESSION_KEY])


async def csrf_protect(request: Request) -> None:
    """Dependency for every dashboard router: unsafe methods need the session's token, else 403."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(SESSION_KEY)
    sent: str | None = request.headers.get(HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(FORM_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent:
        raise CsrfRejected(
            f"the form's security token is missing ({FORM_FIELD} field or X-CSRF-Token header): "
            "reload the page and try again"
        )
    if not isinstance(expected, str) or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected(
            f"the form's security token ({FORM_FIELD}) does not match this session, it may have expired: "
            "reload the page and try again"
        )
