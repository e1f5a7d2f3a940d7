"""The one helper that scopes every query to a workspace: no row is read without its workspace id."""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.errors import NotFound

M = TypeVar("M")


def scoped(model: type[M], workspace_id: int) -> sa.Select[M]:
    """``SELECT model WHERE workspace_id = :ws``: the starting point of every tenant query."""
    stmt: sa.Select[M] = sa.select(model).where(model.workspace_id == workspace_id)  # type: ignore[attr-defined]
    return stmt


def get_scoped(session: Session, model: type[M], workspace_id: int, row_id: Any) -> M:
    """The row with ``row_id`` in this workspace, or NotFound (another workspace's id looks absent)."""
    row = session.scalars(scoped(model, workspace_id).where(model.id == row_id)).first()  # type: ignore[attr-defined]
    if row is None:
        raise NotFound(f"{model.__name__.lower()} {row_id} not found")
    return row
