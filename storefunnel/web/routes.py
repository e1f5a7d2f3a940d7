"""The dashboard shell: ``/``, sign-in and sign-out. Every dashboard router is built by ``dashboard_router``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from storefunnel.db import SessionDep
from storefunnel.web.auth import LoginLimiter, end_session, safe_next, session_user, start_session
from storefunnel.web.csrf import csrf_protect
from storefunnel.web.render import render
from storefunnel.workspaces.service import authenticate

MAX_PASSWORD = 1024


def dashboard_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose every unsafe request is CSRF-checked: the only way dashboard routes are made."""
    deps = [Depends(csrf_protect), *kwargs.pop("dependencies", [])]
    return APIRouter(dependencies=deps, include_in_schema=False, **kwargs)


router = dashboard_router()


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/")
def home(request: Request, session: SessionDep) -> RedirectResponse:
    return see_other("/overview" if session_user(request, session) else "/login")


@router.get("/login", response_model=None)
def login_form(request: Request, session: SessionDep, next_path: Annotated[str, Query(alias="next")] = "") -> Response:
    if session_user(request, session) is not None:
        return see_other(safe_next(next_path))
    return render(request, "login.html", {"next": safe_next(next_path), "email": ""})


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Check the password; too many failures for this address and email in a minute get a 429."""
    email = email.strip()
    target = safe_next(next_path)
    limiter: LoginLimiter = request.app.state.login_limiter
    key = (request.client.host if request.client else "unknown", email.lower())
    wait = limiter.retry_after(key)
    if wait is not None:
        message = f"Too many failed sign-ins for {email}. Wait {wait} seconds, then try again."
        response = render(request, "login.html", {"next": target, "email": email, "error": message}, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    if not email or not password:
        missing = " and ".join(name for name, v in (("email", email), ("password", password)) if not v)
        message = f"Enter your {missing}."
        return render(request, "login.html", {"next": target, "email": email, "error": message}, 422)
    user = authenticate(session, email, password) if len(password) <= MAX_PASSWORD else None
    if user is None:
        limiter.failed(key)
        message = "Wrong email or password."
        return render(request, "login.html", {"next": target, "email": email, "error": message}, 401)
    limiter.succeeded(key)
    start_session(request, user)
    return see_other(target)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    end_session(request)
    return see_other("/login")
