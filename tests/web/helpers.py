"""Signing in to the dashboard the way a browser does: read the form's CSRF token, post it back."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD, next_path: str = "") -> tuple[int, str]:
    """Post the login form; returns (status, Location or body)."""
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": email, "password": password, "next": next_path, "csrf_token": token},
        follow_redirects=False,
    )
    return r.status_code, r.headers.get("location", r.text)
