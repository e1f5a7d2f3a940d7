"""Dashboard sign-in: a signed session cookie bound to one user and their workspace, and a login rate limit.

Sessions are signed cookies (no server-side table). Each carries a fingerprint of the user's password hash,
so changing the password ends every other session.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from storefunnel.config import get_settings
from storefunnel.db import SessionDep
from storefunnel.errors import Unauthorized
from storefunnel.models import User, Workspace
from storefunnel.web.csrf import rotate_csrf_token

DEFAULT_NEXT = "/overview"
USER_KEY, WORKSPACE_KEY, FINGERPRINT_KEY = "uid", "wid", "pwf"


class LoginRequired(Exception):
    """Raised by page dependencies; the dashboard turns it into a 303 to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class DashboardUser:
    id: int
    email: str
    role: str
    workspace: Workspace


def safe_next(value: str | None) -> str:
    """A local path to go to after login: anything that could leave this site becomes the Overview."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if any(ord(c) < 32 or c == "\\" for c in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def _fingerprint(password_hash: str) -> str:
    key = get_settings().secret_key.encode()
    return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def start_session(request: Request, user: User) -> None:
    """Forget whatever the anonymous session held (no fixation), then bind it to the user and workspace."""
    request.session.clear()
    request.session[USER_KEY] = user.id
    request.session[WORKSPACE_KEY] = user.workspace_id
    request.session[FINGERPRINT_KEY] = _fingerprint(user.password_hash)
    rotate_csrf_token(request)


def end_session(request: Request) -> None:
    request.session.clear()


def session_user(request: Request, session: Session) -> DashboardUser | None:
    """The signed-in user, or None if the session is anonymous, stale, or its user was removed or changed."""
    uid, wid = request.session.get(USER_KEY), request.session.get(WORKSPACE_KEY)
    if not isinstance(uid, int) or not isinstance(wid, int):
        return None
    user = session.get(User, uid)
    fingerprint = request.session.get(FINGERPRINT_KEY)
    if (
        user is None
        or user.workspace_id != wid
        or not isinstance(fingerprint, str)
        or not hmac.compare_digest(fingerprint, _fingerprint(user.password_hash))
    ):
        request.session.pop(USER_KEY, None)
        request.session.pop(WORKSPACE_KEY, None)
        return None
    workspace = session.get(Workspace, wid)
    if workspace is None:
        return None
    return DashboardUser(user.id, user.email, user.role, workspace)


def _requested_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def page_user(request: Request, session: SessionDep) -> DashboardUser:
    """Dependency for pages: anonymous visitors are sent to the login form, coming back here after."""
    user = session_user(request, session)
    if user is None:
        raise LoginRequired(_requested_path(request))
    return user


def data_user(request: Request, session: SessionDep) -> DashboardUser:
    """Dependency for the dashboard's JSON/CSV: anonymous gets a 401 problem, not an HTML redirect."""
    user = session_user(request, session)
    if user is None:
        raise Unauthorized("sign in to the dashboard first: this data is read with the dashboard session")
    return user


PageUser = Annotated[DashboardUser, Depends(page_user)]
DataUser = Annotated[DashboardUser, Depends(data_user)]


class LoginLimiter:
    """At most ``per_minute`` failed logins per (client IP, email) in any sliding 60 s window, in process.

    A success clears the key. Per IP *and* email so one office behind a NAT does not lock out its colleagues,
    and one attacker cannot lock out an owner from elsewhere.
    """

    def __init__(self, per_minute: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = max(1, per_minute)
        self.window = window
        self.clock = clock
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        fails = self._fails.get(key)
        if fails is None:
            return deque()
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        if not fails:
            del self._fails[key]
        return fails

    def retry_after(self, key: tuple[str, str]) -> int | None:
        """Seconds to wait if this key is locked out now, else None."""
        with self._lock:
            now = self.clock()
            fails = self._recent(key, now)
            if len(fails) < self.per_minute:
                return None
            return max(1, int(fails[0] + self.window - now + 0.999))

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            now = self.clock()
            if len(self._fails) > 10_000:
                for k in list(self._fails):
                    self._recent(k, now)
            self._fails.setdefault(key, deque()).append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._fails.pop(key, None)
