"""The dashboard: server-rendered pages organised by the two hats, Marketing and Sales, and Together."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from storefunnel.config import get_settings
from storefunnel.errors import problem

SESSION_COOKIE = "storefunnel_session"
SESSION_DAYS = 14


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's routes, static files and session middleware on ``app``."""
    from storefunnel.web import overview, routes
    from storefunnel.web.auth import LoginLimiter, LoginRequired, login_url
    from storefunnel.web.csrf import CsrfRejected
    from storefunnel.web.render import HERE, render

    settings = get_settings()
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_DAYS * 24 * 3600,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )
    app.state.login_limiter = LoginLimiter(settings.login_attempts_per_minute)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    async def _login_required(request: Request, exc: Exception) -> Response:
        target = login_url(exc.next_path if isinstance(exc, LoginRequired) else "/")
        if request.headers.get("hx-request") == "true":
            # An HTMX swap would follow a 303 and paste the login form into the page: send the browser instead.
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def _csrf_rejected(request: Request, exc: Exception) -> Response:
        detail = str(exc)
        if "text/html" in request.headers.get("accept", "") and request.headers.get("hx-request") != "true":
            return render(request, "error.html", {"title": "Security check failed", "message": detail}, 403)
        response: JSONResponse = problem(403, "CSRF check failed", detail, "csrf", request.url.path)
        return response

    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.include_router(routes.router)
    app.include_router(overview.router)

    from storefunnel.web import events as events_page
    from storefunnel.web import leads as leads_page
    from storefunnel.web import settings as settings_page

    app.include_router(leads_page.router)
    app.include_router(events_page.router)
    app.include_router(settings_page.router)
    from storefunnel.web import model_pages

    app.include_router(model_pages.router)
    from storefunnel.web import sales_pages

    app.include_router(sales_pages.router)
    from storefunnel.web import segment_pages

    app.include_router(segment_pages.router)
    from storefunnel.web import advice_pages, insight_pages

    app.include_router(advice_pages.router)
    app.include_router(insight_pages.router)
    from storefunnel.web import messaging_pages

    app.include_router(messaging_pages.router)
    from storefunnel.web import report_pages

    app.include_router(report_pages.router)
