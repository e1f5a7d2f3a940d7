"""Cursor pagination: stable under inserts, O(limit) per page, the cursor opaque to clients."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        last_id = int(value)
        if kind != "id" or not 0 < last_id < 2**63:  # beyond BIGINT the database would raise, not answer
            raise ValueError(kind)
        return last_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise Invalid("cursor: not a cursor this API returned") from None


CursorParam = Annotated[str | None, Query(description="Opaque cursor from a previous page's next_cursor.")]
LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]


def paginate(
    session: Session, stmt: sa.Select[Any], id_column: Any, cursor: str | None, limit: int
) -> tuple[Sequence[Any], str | None]:
    """Rows of ``stmt`` in descending id order after ``cursor``, and the cursor of the next page."""
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    rows = session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)).all()
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].id)
    return rows, None
