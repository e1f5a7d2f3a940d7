"""/v1: the Segment HTTP Tracking API (identify, track, page, screen, group, alias, batch).

Write keys are public by design (they sit in every page's JavaScript), so any origin may call these
endpoints: every answer, errors included, carries CORS headers, and preflights are answered here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from storefunnel.auth.keys import workspace_for_key
from storefunnel.db import SessionDep, utcnow
from storefunnel.errors import AppError, Unauthorized, problem
from storefunnel.ingest import store
from storefunnel.ingest.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    BadRequest,
    Message,
    MessageError,
    parse_json,
    parse_message,
    read_body,
    write_key_from,
)
from storefunnel.models import KeyKind

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


async def _body(request: Request, limit: int) -> dict[str, Any]:
    raw = await read_body(
        request.stream(),
        request.headers.get("content-encoding", "").strip().lower(),
        request.headers.get("content-length"),
        limit,
    )
    return parse_json(raw)


async def single_body(request: Request) -> dict[str, Any]:
    return await _body(request, MAX_MESSAGE_BYTES)


async def batch_body(request: Request) -> dict[str, Any]:
    return await _body(request, MAX_BATCH_BYTES)


def authenticate(request: Request, session: Any, body: dict[str, Any]) -> int:
    key = write_key_from(request.headers.get("authorization"), body)
    if key is None:
        raise Unauthorized("missing write key: send it as the HTTP Basic username or as 'writeKey' in the body")
    workspace_id = workspace_for_key(session, key, KeyKind.write)
    if workspace_id is None:
        raise Unauthorized("the write key is unknown or revoked")
    return workspace_id


def _json(content: dict[str, Any] | bytes, status: int = 200) -> Response:
    data = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(data, status_code=status, media_type="application/json")


def _single(kind: str, request: Request, session: SessionDep, body: dict[str, Any]) -> Response:
    workspace_id = authenticate(request, session, body)
    try:
        msg = parse_message(body, kind, utcnow())
    except MessageError as exc:
        raise BadRequest(exc.reason, errors=[{"field": exc.field, "message": exc.reason}]) from None
    store.ingest(session, workspace_id, [msg])
    return _json(SUCCESS)


SingleBody = Annotated[dict[str, Any], Depends(single_body)]


@router.post("/identify")
def identify(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("identify", request, session, body)


@router.post("/track")
def track(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("track", request, session, body)


@router.post("/page")
def page(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("page", request, session, body)


@router.post("/screen")
def screen(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("screen", request, session, body)


@router.post("/group")
def group(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("group", request, session, body)


@router.post("/alias")
def alias(request: Request, session: SessionDep, body: SingleBody) -> Response:
    return _single("alias", request, session, body)


@router.post("/batch")
@router.post("/import")
def batch(request: Request, session: SessionDep, body: Annotated[dict[str, Any], Depends(batch_body)]) -> Response:
    """Stores every valid message and reports each rejected one; only an all-bad batch is a 400."""
    workspace_id = authenticate(request, session, body)
    items = body.get("batch")
    if not isinstance(items, list):
        raise BadRequest("batch: must be an array of messages", errors=[{"field": "batch", "message": "not an array"}])
    received_at = utcnow()
    sent_at = body.get("sentAt")
    accepted: list[Message] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            accepted.append(parse_message(item, None, received_at, sent_at, check_size=True))
        except MessageError as exc:
            message_id = item.get("messageId") if isinstance(item, dict) else None
            rejected.append(
                {
                    "index": index,
                    "messageId": message_id if isinstance(message_id, str) else None,
                    "field": f"batch[{index}].{exc.field}" if exc.field else f"batch[{index}]",
                    "reason": exc.reason,
                }
            )
    if rejected and not accepted:
        raise BadRequest(
            f"batch: all {len(rejected)} messages were rejected; first: {rejected[0]['reason']}",
            errors=rejected,
        )
    store.ingest(session, workspace_id, accepted)
    if not rejected:
        return _json(SUCCESS)
    return _json({"success": True, "accepted": len(accepted), "rejected": rejected})


@router.options("/{endpoint}", include_in_schema=False)
def preflight(endpoint: str, request: Request) -> Response:
    allowed = request.headers.get("access-control-request-headers") or DEFAULT_ALLOWED_HEADERS
    return Response(status_code=204, headers={"Access-Control-Allow-Headers": allowed})
