"""Domain errors carry their HTTP status; one handler renders them as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(AppError):
    status, code, title = 404, "not-found", "Not found"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Invalid(AppError):
    status, code, title = 422, "invalid", "Unprocessable content"


class TooLarge(AppError):
    status, code, title = 413, "too-large", "Content too large"


class TooManyRequests(AppError):
    status, code, title = 429, "too-many-requests", "Too many requests"


def problem(status: int, title: str, detail: str, code: str, instance: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://storefunnel.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer realm="storefunnel"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """Turn pydantic errors into one sentence naming the fields, plus a machine-readable list."""
    items = [
        {"field": _field_path(e.get("loc", ())), "message": e.get("msg", "invalid"), "type": e.get("type")}
        for e in errors
    ]
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5]) or "invalid request"
    return detail, items


def database_busy(exc: BaseException) -> bool:
    """SQLite's one writer was taken: the transaction rolled back whole, and the same request can simply be sent
    again (a transaction that read before writing fails at once when another writer committed in between)."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> JSONResponse:
        if not database_busy(exc):
            raise exc
        response = problem(
            503,
            "Service unavailable",
            "database: busy with another writer (SQLite takes one at a time); nothing was saved, send it again",
            "database-busy",
            request.url.path,
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.code, request.url.path, errors=exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, items = describe_validation_errors(list(exc.errors()))
        return problem(422, "Unprocessable content", detail, "invalid", request.url.path, errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 413: "Content too large"}
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail),
            {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error"),
            request.url.path,
        )
