"""Signed tracking links, the open pixel and unsubscribe (page and RFC 8058 one-click), under /t and /u.

Every token is ``payload.signature`` with an HMAC-SHA256 of the payload under a key derived from the secret key;
a token that does not verify answers 404 and never redirects, so these routes are no open redirect. Opens and
clicks are written as touches on the Email channel (kind ``track``, events ``Email Opened`` / ``Email Link
Clicked``, the campaign or flow in the properties) so attribution, the funnel and the cycle rules see them.
Unsubscribing needs a POST (the page's button, or a mail client's one-click POST): link scanners fetch GETs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from storefunnel.config import get_settings
from storefunnel.db import SessionDep
from storefunnel.errors import NotFound

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
TOKEN_MAX = 4096
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
}


@lru_cache
def _key(secret: str) -> bytes:
    return hashlib.sha256(b"storefunnel-email-links\x00" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: str) -> str:
    raw = payload.encode()
    mac = hmac.new(_key(get_settings().secret_key), raw, hashlib.sha256).digest()[:18]
    return f"{_b64(raw)}.{_b64(mac)}"


def verify(token: str) -> str | None:
    """The payload of a genuine token, or None."""
    if len(token) > TOKEN_MAX or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        raw, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(_key(get_settings().secret_key), raw, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(expected, given):
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def base_url() -> str:
    return get_settings().public_url.rstrip("/")


def click_url(send_id: int, url: str) -> str:
    return f"{base_url()}/t/c/{sign(f'c:{send_id}:{url}')}"


def open_url(send_id: int) -> str:
    return f"{base_url()}/t/o/{sign(f'o:{send_id}')}.gif"


def unsubscribe_token(workspace_id: int, contact_id: int, send_id: int = 0) -> str:
    return sign(f"u:{workspace_id}:{contact_id}:{send_id}")


def unsubscribe_url(workspace_id: int, contact_id: int, send_id: int = 0) -> str:
    return f"{base_url()}/u/{unsubscribe_token(workspace_id, contact_id, send_id)}"


def track_html(body: str, send_id: int, skip: tuple[str, ...] = ()) -> str:
    """Wrap every http(s) link (but ``skip``, e.g. the unsubscribe URL) and add the open pixel."""

    def _wrap(m: re.Match[str]) -> str:
        target = html.unescape(m.group(3))
        if target in skip or target.startswith(base_url() + "/u/"):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html.escape(click_url(send_id, target))}{m.group(2)}"

    tracked = _HREF.sub(_wrap, body)
    pixel = f'<img src="{open_url(send_id)}" width="1" height="1" alt="" style="display:block;border:0">'
    idx = tracked.lower().rfind("</body>")
    return tracked[:idx] + pixel + tracked[idx:] if idx >= 0 else tracked + pixel


@dataclass(frozen=True)
class Click:
    send_id: int
    url: str


def parse_click(token: str) -> Click | None:
    payload = verify(token)
    if payload is None or not payload.startswith("c:"):
        return None
    send_part, _, url = payload[2:].partition(":")
    if not send_part.isdigit() or not url.lower().startswith(("http://", "https://")):
        return None
    return Click(int(send_part), url)


def parse_open(token: str) -> int | None:
    payload = verify(token.removesuffix(".gif"))
    if payload is None or not payload.startswith("o:") or not payload[2:].isdigit():
        return None
    return int(payload[2:])


def parse_unsubscribe(token: str) -> tuple[int, int, int] | None:
    payload = verify(token)
    if payload is None or not payload.startswith("u:"):
        return None
    parts = payload[2:].split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


Token = Annotated[str, Path(max_length=TOKEN_MAX)]


def _gone() -> NotFound:
    return NotFound("this link is not valid")


@router.get("/t/c/{token}", response_model=None)
def follow_click(token: Token, session: SessionDep) -> Response:
    """Record the click, then send the reader on to where the email's link pointed."""
    from storefunnel.messaging import tracking

    click = parse_click(token)
    if click is None:
        raise _gone()
    tracking.record_click(session, click.send_id, click.url)
    return RedirectResponse(click.url, status_code=302, headers=NO_STORE)


@router.get("/t/o/{token}", response_model=None)
def open_pixel(token: Token, session: SessionDep) -> Response:
    from storefunnel.messaging import tracking

    send_id = parse_open(token)
    if send_id is None:
        raise _gone()
    tracking.record_open(session, send_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
        "button{font:inherit;padding:.5rem 1rem}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


@router.get("/u/{token}", response_model=None)
def unsubscribe_page(token: Token, session: SessionDep) -> Response:
    """A page with one button; the unsubscribe itself is the POST, so a scanner following links changes nothing."""
    from storefunnel.messaging import tracking

    parsed = parse_unsubscribe(token)
    if parsed is None:
        return _page("This link is not valid", "<p>The unsubscribe link is damaged or incomplete.</p>", 404)
    store, email, already = tracking.unsubscribe_target(session, *parsed[:2])
    if already:
        return _page(
            "You are unsubscribed",
            f"<p>{html.escape(email)} gets no more marketing email from {html.escape(store)}.</p>",
        )
    form = (
        f"<p>Stop marketing email from {html.escape(store)} to {html.escape(email)}?</p>"
        f'<form method="post" action="/u/{html.escape(token)}"><button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@router.post("/u/{token}", response_model=None)
def unsubscribe(token: Token, session: SessionDep) -> Response:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click`` body) and the page's button: effective on commit."""
    from storefunnel.messaging import tracking

    parsed = parse_unsubscribe(token)
    if parsed is None:
        return _page("This link is not valid", "<p>The unsubscribe link is damaged or incomplete.</p>", 404)
    store, email = tracking.unsubscribe(session, *parsed)
    return _page(
        "You are unsubscribed", f"<p>{html.escape(email)} gets no more marketing email from {html.escape(store)}.</p>"
    )
