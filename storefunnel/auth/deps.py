"""FastAPI dependencies that bind a request to exactly one workspace."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from storefunnel.auth.keys import workspace_for_key
from storefunnel.db import SessionDep
from storefunnel.errors import Unauthorized
from storefunnel.models import KeyKind


def api_workspace(request: Request, session: SessionDep) -> int:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    workspace_id = workspace_for_key(session, token.strip(), KeyKind.api)
    if workspace_id is None:
        raise Unauthorized("the API key is unknown or revoked")
    return workspace_id


CurrentWorkspace = Annotated[int, Depends(api_workspace)]
