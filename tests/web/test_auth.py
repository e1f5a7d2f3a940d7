"""Sign-in, sign-out, CSRF, the login rate limit and redirects, through the real app."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.passwords import hash_password
from storefunnel.config import get_settings
from storefunnel.models import User
from storefunnel.web.auth import LoginLimiter, safe_next
from tests.web.helpers import csrf_from, login


def test_anonymous_page_redirects_to_login_with_next(client: TestClient) -> None:
    r = client.get("/overview?preset=7", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/overview%3Fpreset%3D7"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_login_success_returns_to_next_and_binds_the_session(client: TestClient, user: User) -> None:
    status, location = login(client, user.email.upper(), next_path="/overview?preset=7")
    assert (status, location) == (303, "/overview?preset=7")
    page = client.get("/overview")
    assert page.status_code == 200
    assert user.email in page.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/overview"
    # Already signed in: the login form sends you on.
    assert client.get("/login?next=/overview", follow_redirects=False).headers["location"] == "/overview"


def test_session_cookie_is_httponly_and_lax(client: TestClient, user: User) -> None:
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": user.email, "password": "correct horse battery staple", "csrf_token": token},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"].lower()
    assert "storefunnel_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


@pytest.mark.parametrize(("email_case", "password"), [("same", "wrong password"), ("unknown", "whatever")])
def test_login_failure_is_401_and_signs_nobody_in(
    client: TestClient, user: User, email_case: str, password: str
) -> None:
    email = user.email if email_case == "same" else "nobody@example.com"
    status, body = login(client, email, password)
    assert status == 401
    assert "Wrong email or password." in body
    assert client.get("/overview", follow_redirects=False).status_code == 303


def test_login_with_empty_fields_names_them(client: TestClient) -> None:
    status, body = login(client, "", "")
    assert status == 422
    assert "Enter your email and password." in body


def test_logout_is_a_post_and_ends_the_session(client: TestClient, user: User) -> None:
    login(client, user.email)
    page = client.get("/overview")
    assert client.get("/logout").status_code == 405
    r = client.post("/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    after = client.get("/overview", follow_redirects=False)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login")


def test_post_without_or_with_wrong_csrf_token_is_403(client: TestClient, user: User) -> None:
    client.get("/login")
    form = {"email": user.email, "password": "correct horse battery staple"}
    missing = client.post("/login", data=form, follow_redirects=False)
    assert missing.status_code == 403
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "csrf_token" in missing.json()["detail"]
    wrong = client.post("/login", data={**form, "csrf_token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403
    assert "does not match" in wrong.json()["detail"]
    # A browser form gets a readable page, still 403.
    html = client.post("/login", data=form, headers={"accept": "text/html"}, follow_redirects=False)
    assert html.status_code == 403
    assert "Security check failed" in html.text
    # Nobody got signed in by those.
    assert client.get("/overview", follow_redirects=False).status_code == 303


def test_logout_needs_the_token_too_and_htmx_header_works(client: TestClient, user: User) -> None:
    login(client, user.email)
    page = client.get("/overview")
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/overview").status_code == 200  # still signed in
    ok = client.post("/logout", headers={"X-CSRF-Token": csrf_from(page.text)}, follow_redirects=False)
    assert ok.status_code == 303


def test_token_from_another_session_is_rejected(app: FastAPI, client: TestClient, user: User) -> None:
    with TestClient(app) as other:
        foreign = csrf_from(other.get("/login").text)
    client.get("/login")
    r = client.post(
        "/login",
        data={"email": user.email, "password": "correct horse battery staple", "csrf_token": foreign},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_login_rotates_the_csrf_token(client: TestClient, user: User) -> None:
    before = csrf_from(client.get("/login").text)
    login(client, user.email)
    after = csrf_from(client.get("/overview").text)
    assert before != after


# Keys, body signatures or per-link signed tokens (email links, RFC 8058 one-click unsubscribe), no cookies:
# CSRF does not apply.
MACHINE_PREFIXES = ("/api/", "/v1/", "/webhooks/", "/t/", "/u/")


def test_every_unsafe_dashboard_route_checks_csrf(app: FastAPI, client: TestClient, user: User) -> None:
    """Any route a browser session can reach with POST/PUT/PATCH/DELETE, now or added later, needs the token."""
    login(client, user.email)
    unsafe = {
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        if route.methods and route.path and not str(route.path).startswith(MACHINE_PREFIXES)
        for method in route.methods - {"GET", "HEAD", "OPTIONS"}
    }
    assert ("POST", "/logout") in unsafe
    for method, path in sorted(unsafe):
        url = re.sub(r"\{[^}]+\}", "1", path)
        r = client.request(method, url, data={"x": "1"}, follow_redirects=False)
        assert r.status_code == 403, (method, path, r.status_code)
    assert client.get("/overview").status_code == 200  # and the session survived all of it


def test_rate_limit_is_429_after_n_failures_per_ip_and_email(client: TestClient, user: User) -> None:
    n = get_settings().login_attempts_per_minute
    for _ in range(n):
        assert login(client, user.email, "wrong")[0] == 401
    status, body = login(client, user.email, "wrong")
    assert status == 429
    assert "Too many failed sign-ins" in body
    # Locked out even with the right password, until the minute has passed.
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": user.email, "password": "correct horse battery staple", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # Another email from the same address is not locked out.
    assert login(client, "someone-else@example.com", "wrong")[0] == 401


def test_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = LoginLimiter(3, clock=lambda: now[0])
    key = ("10.0.0.1", "a@example.com")
    for _ in range(3):
        assert limiter.retry_after(key) is None
        limiter.failed(key)
        now[0] += 10
    assert limiter.retry_after(key) == 30  # the first failure (t=1000) leaves the window at t=1060
    now[0] = 1060.0
    assert limiter.retry_after(key) is None
    limiter.failed(key)
    assert limiter.retry_after(key) is not None
    limiter.succeeded(key)
    assert limiter.retry_after(key) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/overview?preset=7", "/overview?preset=7"),
        ("/", "/"),
        ("", "/overview"),
        ("//evil.example.com", "/overview"),
        ("/\\evil.example.com", "/overview"),
        ("https://evil.example.com/overview", "/overview"),
        ("javascript:alert(1)", "/overview"),
        ("overview", "/overview"),
        ("/\tevil", "/overview"),
        ("/%2F%2Fevil.example.com", "/%2F%2Fevil.example.com"),
    ],
)
def test_safe_next(value: str, expected: str) -> None:
    assert safe_next(value) == expected


@pytest.mark.parametrize("target", ["//evil.example.com/x", "https://evil.example.com", "/\\evil.example.com"])
def test_no_open_redirect_after_login(client: TestClient, user: User, target: str) -> None:
    status, location = login(client, user.email, next_path=target)
    assert (status, location) == (303, "/overview")


def test_login_page_never_echoes_a_foreign_next(client: TestClient) -> None:
    page = client.get("/login?next=//evil.example.com").text
    assert "evil.example.com" not in page


def test_data_endpoints_need_a_session(client: TestClient) -> None:
    for path in ("/dashboard-data/overview.json", "/dashboard-data/overview.csv"):
        r = client.get(path)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")


def test_htmx_request_without_session_gets_hx_redirect(client: TestClient) -> None:
    r = client.get("/overview?preset=7", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401
    assert r.headers["hx-redirect"].startswith("/login?next=/overview")


def test_changing_the_password_ends_other_sessions(client: TestClient, session: Session, user: User) -> None:
    login(client, user.email)
    assert client.get("/overview").status_code == 200
    user.password_hash = hash_password(f"new-{uuid.uuid4().hex}")
    session.flush()
    assert client.get("/overview", follow_redirects=False).status_code == 303


def test_deleted_user_is_signed_out(client: TestClient, session: Session, user: User) -> None:
    login(client, user.email)
    session.delete(user)
    session.flush()
    assert client.get("/overview", follow_redirects=False).status_code == 303


def test_pages_carry_security_headers(client: TestClient) -> None:
    r = client.get("/login")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
