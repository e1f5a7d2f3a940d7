"""FastAPI dependencies that bind a request to exactly one workspace."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from storefunnel.auth.keys import cached_workspace_for_key, workspace_for_key
from storefunnel.db import SessionScope, session_scope_of
from storefunnel.errors import Unauthorized
from storefunnel.models import KeyKind


def _look_up(scope: SessionScope, token: str) -> int | None:
    with contextmanager(scope)() as session:
        return workspace_for_key(session, token, KeyKind.api)


async def api_workspace(request: Request) -> int:
    """The key's workspace. A key seen live moments ago costs no query and no thread; otherwise one short look-up
    in a worker thread, in a session of its own (the route's session is not opened for it)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    workspace_id = cached_workspace_for_key(token, KeyKind.api)
    if workspace_id is None:
        workspace_id = await run_in_threadpool(_look_up, session_scope_of(request), token)
    if workspace_id is None:
        raise Unauthorized("the API key is unknown or revoked")
    return workspace_id


CurrentWorkspace = Annotated[int, Depends(api_workspace)]
