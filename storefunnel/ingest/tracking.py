"""/v1: the Segment HTTP Tracking API (identify, track, page, screen, group, alias, batch).

Write keys are public by design (they sit in every page's JavaScript), so any origin may call these
endpoints: every answer, errors included, carries CORS headers, and preflights are answered here.
analytics.js posts to one-letter paths (``/v1/t``, ``/v1/p``, ``/v1/i``, ``/v1/s``, ``/v1/g``, ``/v1/a``,
``/v1/b``) with ``Content-Type: text/plain`` and the write key in the body; each is the same handler as its
long path. The body is read as JSON whatever its declared type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from storefunnel.auth.keys import workspace_for_key
from storefunnel.db import SessionScope, get_engine, session_scope_of, utcnow
from storefunnel.errors import AppError, Unauthorized, problem
from storefunnel.ingest import store
from storefunnel.ingest.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    SURROGATE_REASON,
    BadRequest,
    Body,
    Message,
    MessageError,
    parse_json,
    parse_message,
    read_body,
    unstorable_text,
    write_key_from,
)
from storefunnel.models import KeyKind

T = TypeVar("T")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Max-Age": "86400",
}
DEFAULT_ALLOWED_HEADERS = "Authorization, Content-Type, Content-Encoding"
SUCCESS = orjson.dumps({"success": True})


class TrackingRoute(APIRoute):
    """Renders domain errors itself so that they, too, carry the CORS headers a browser needs to read them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except AppError as exc:
                response = problem(exc.status, exc.title, exc.detail, exc.code, request.url.path, errors=exc.errors)
            response.headers.update(CORS_HEADERS)
            if response.status_code == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="storefunnel tracking"'
            return response

        return handle


router = APIRouter(prefix="/v1", tags=["tracking"], route_class=TrackingRoute)


async def _json_body(request: Request, limit: int) -> Body:
    raw = await read_body(
        request.stream(),
        request.headers.get("content-encoding", "").strip().lower(),
        request.headers.get("content-length"),
        limit,
    )
    return parse_json(raw)


def _write_key(request: Request, body: dict[str, Any]) -> str:
    key = write_key_from(request.headers.get("authorization"), body)
    if key is None:
        raise Unauthorized("missing write key: send it as the HTTP Basic username or as 'writeKey' in the body")
    if unstorable_text(key):  # no key holds such characters, and an unpaired surrogate cannot even be hashed
        raise Unauthorized("the write key is unknown or revoked")
    return key


def authenticate(session: Session, key: str) -> int:
    workspace_id = workspace_for_key(session, key, KeyKind.write)
    if workspace_id is None:
        raise Unauthorized("the write key is unknown or revoked")
    return workspace_id


# SQLite has one writer at a time. Queueing this process's writers here, on a lock that wakes the next one as soon
# as it is free, keeps them out of SQLite's busy handler, which sleeps in steps of up to 100 ms.
_SQLITE_WRITER = threading.Lock()


def in_one_transaction(scope: SessionScope, work: Callable[[Session], T]) -> T:
    """Open, write, commit and close in the calling thread, so no write transaction waits on another hop.

    ``scope`` is still the one place that commits or rolls back; it has committed when this returns.
    """
    writer = _SQLITE_WRITER if get_engine().dialect.name == "sqlite" else nullcontext()
    with writer, contextmanager(scope)() as session:
        return work(session)


def _json(content: dict[str, Any] | bytes, status: int = 200) -> Response:
    data = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(data, status_code=status, media_type="application/json")


def _single(kind: str, scope: SessionScope, key: str, body: Body) -> None:
    """Validate (outside the transaction), then authenticate and store in one."""
    try:
        msg: Message | MessageError = parse_message(body.data, kind, utcnow(), hostile=body.hostile)
    except MessageError as exc:
        msg = exc

    def work(session: Session) -> None:
        workspace_id = authenticate(session, key)
        if isinstance(msg, MessageError):
            raise BadRequest(msg.reason, errors=[{"field": msg.field, "message": msg.reason}])
        store.ingest(session, workspace_id, [msg])

    in_one_transaction(scope, work)


async def _single_endpoint(kind: str, request: Request) -> Response:
    body = await _json_body(request, MAX_MESSAGE_BYTES)
    await run_in_threadpool(_single, kind, session_scope_of(request), _write_key(request, body.data), body)
    return _json(SUCCESS)


def _short(path: str, name: str) -> dict[str, Any]:
    """Options of an analytics.js one-letter path: the same operation, listed once more in the API description."""
    return {"path": path, "summary": f"{name} (analytics.js path)", "operation_id": f"tracking_{name}_short"}


@router.post("/identify")
@router.post(**_short("/i", "identify"))
async def identify(request: Request) -> Response:
    return await _single_endpoint("identify", request)


@router.post("/track")
@router.post(**_short("/t", "track"))
async def track(request: Request) -> Response:
    return await _single_endpoint("track", request)


@router.post("/page")
@router.post(**_short("/p", "page"))
async def page(request: Request) -> Response:
    return await _single_endpoint("page", request)


@router.post("/screen")
@router.post(**_short("/s", "screen"))
async def screen(request: Request) -> Response:
    return await _single_endpoint("screen", request)


@router.post("/group")
@router.post(**_short("/g", "group"))
async def group(request: Request) -> Response:
    return await _single_endpoint("group", request)


@router.post("/alias")
@router.post(**_short("/a", "alias"))
async def alias(request: Request) -> Response:
    return await _single_endpoint("alias", request)


def _reported_id(item: Any) -> str | None:
    """The rejected message's own id, if it can be echoed back (an unpaired surrogate cannot be encoded)."""
    message_id = item.get("messageId") if isinstance(item, dict) else None
    return message_id if isinstance(message_id, str) and unstorable_text(message_id) != SURROGATE_REASON else None


def validate_batch(body: dict[str, Any], hostile: bool = False) -> tuple[list[Message], list[dict[str, Any]]]:
    """The batch's valid messages, and a report of each rejected one naming its index and field."""
    items = body.get("batch")
    if not isinstance(items, list):
        raise BadRequest("batch: must be an array of messages", errors=[{"field": "batch", "message": "not an array"}])
    received_at = utcnow()
    sent_at = body.get("sentAt")
    accepted: list[Message] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            accepted.append(parse_message(item, None, received_at, sent_at, check_size=True, hostile=hostile))
        except MessageError as exc:
            rejected.append(
                {
                    "index": index,
                    "messageId": _reported_id(item),
                    "field": f"batch[{index}].{exc.field}" if exc.field else f"batch[{index}]",
                    "reason": exc.reason,
                }
            )
    return accepted, rejected


def _batch(scope: SessionScope, key: str, body: Body) -> bytes:
    try:
        accepted, rejected = validate_batch(body.data, body.hostile)
        invalid: BadRequest | None = None
    except BadRequest as exc:
        accepted, rejected, invalid = [], [], exc
    if invalid is None and rejected and not accepted:
        invalid = BadRequest(
            f"batch: all {len(rejected)} messages were rejected; first: {rejected[0]['reason']}",
            errors=rejected,
        )

    def work(session: Session) -> None:
        workspace_id = authenticate(session, key)  # an unknown key is a 401 whatever the body holds
        if invalid is not None:
            raise invalid
        store.ingest(session, workspace_id, accepted)

    in_one_transaction(scope, work)
    if not rejected:
        return SUCCESS
    return orjson.dumps({"success": True, "accepted": len(accepted), "rejected": rejected})


@router.post("/batch")
@router.post("/import")
@router.post(**_short("/b", "batch"))
async def batch(request: Request) -> Response:
    """Stores every valid message and reports each rejected one; only an all-bad batch is a 400."""
    body = await _json_body(request, MAX_BATCH_BYTES)
    key = _write_key(request, body.data)
    return _json(await run_in_threadpool(_batch, session_scope_of(request), key, body))


@router.options("/{endpoint}", include_in_schema=False)
def preflight(endpoint: str, request: Request) -> Response:
    allowed = request.headers.get("access-control-request-headers") or DEFAULT_ALLOWED_HEADERS
    return Response(status_code=204, headers={"Access-Control-Allow-Headers": allowed})
