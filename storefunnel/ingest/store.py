"""Writing a request's accepted messages: one statement per table for touches, idempotent by ``messageId``.

Touches are deduplicated by the unique (workspace_id, message_id) on ``touches``; identify, alias and group
leave a ``receipts`` row (source ``segment``) so a replay changes nothing. Both use INSERT … ON CONFLICT DO
NOTHING, which also settles two concurrent deliveries of the same message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from storefunnel.db import utcnow
from storefunnel.ingest import identity
from storefunnel.ingest.channels import attribute
from storefunnel.ingest.identity import obj
from storefunnel.ingest.segment import TOUCH_TYPES, Message
from storefunnel.models import Receipt, Touch

RECEIPT_SOURCE = "segment"
TOUCH_TABLE: sa.Table = Touch.__table__  # type: ignore[assignment]
RECEIPT_TABLE: sa.Table = Receipt.__table__  # type: ignore[assignment]
# The same table with untyped columns: rows arrive already in wire form (JSON text from orjson, timestamps
# as the driver wants them), which skips SQLAlchemy's per-value bind processing on the hot path.
RAW_TOUCH_TABLE = sa.Table(
    "touches", sa.MetaData(), *(sa.Column(c.name, NullType()) for c in TOUCH_TABLE.c if c.name != "id")
)
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite, so comparisons still hold


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value)
    return text[:limit] if text else None


def _touch_row(workspace_id: int, msg: Message, contact_id: int | None) -> dict[str, Any]:
    body = msg.body
    properties = obj(body.get("properties"))
    context = obj(body.get("context"))
    page = obj(context.get("page"))
    url = properties.get("url") or page.get("url")
    referrer = properties.get("referrer") or page.get("referrer")
    url = url if isinstance(url, str) else None
    referrer = referrer if isinstance(referrer, str) else None
    campaign = obj(context.get("campaign"))
    if msg.type == "screen":
        url = referrer = None
    attr = attribute(url, referrer, campaign)
    event = body.get("event") if msg.type == "track" else body.get("name") or properties.get("name")
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "anonymous_id": msg.anonymous_id,
        "occurred_at": msg.occurred_at,
        "kind": msg.type,
        "event": _text(event, 200),
        "channel": attr.channel,
        "source": _text(attr.source, 200),
        "medium": _text(attr.medium, 200),
        "campaign": _text(attr.campaign, 200),
        "content": _text(attr.content, 200),
        "term": _text(attr.term, 200),
        "url": url,
        "referrer": referrer,
        "properties": properties,
        "message_id": msg.message_id,
    }


def claim_receipts(session: Session, workspace_id: int, keys: Sequence[str]) -> set[str]:
    """The keys never seen before; the others are replays. Concurrent claims of one key: exactly one wins."""
    if not keys:
        return set()
    now = utcnow()
    stmt = (
        identity.insert_for(session, RECEIPT_TABLE)
        .on_conflict_do_nothing(index_elements=["workspace_id", "source", "key"])
        .returning(RECEIPT_TABLE.c.key)
    )
    rows = [{"workspace_id": workspace_id, "source": RECEIPT_SOURCE, "key": k, "received_at": now} for k in keys]
    result = session.execute(stmt, rows)
    return {r[0] for r in result.all()}


def insert_touches(session: Session, rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT … ON CONFLICT DO NOTHING for the whole request."""
    if not rows:
        return
    sqlite = session.get_bind().dialect.name == "sqlite"
    for row in rows:
        row["properties"] = orjson.dumps(row["properties"]).decode()
        when = row["occurred_at"].astimezone(dt.UTC)
        row["occurred_at"] = when.replace(tzinfo=None).strftime(SQLITE_DATETIME) if sqlite else when
    stmt = identity.insert_for(session, RAW_TOUCH_TABLE).on_conflict_do_nothing(
        index_elements=["workspace_id", "message_id"]
    )
    session.execute(stmt, rows)


def ingest(session: Session, workspace_id: int, messages: Iterable[Message]) -> None:
    """Store a request's valid messages: profiles first, then touches in bulk, then stitching and leads."""
    unique: dict[str, Message] = {}
    for msg in messages:
        unique.setdefault(msg.message_id, msg)
    touches = [m for m in unique.values() if m.type in TOUCH_TYPES]
    profiles = [m for m in unique.values() if m.type not in TOUCH_TYPES]

    stitched: set[str] = set()
    leads: list[identity.LeadCandidate] = []
    fresh = claim_receipts(session, workspace_id, [m.message_id for m in profiles])
    for msg in profiles:
        if msg.message_id not in fresh:
            continue
        if msg.type == "identify":
            _, lead = identity.identify(session, workspace_id, msg)
            if lead is not None:
                leads.append(lead)
        elif msg.type == "alias":
            identity.alias(session, workspace_id, msg)
        else:
            identity.group(session, workspace_id, msg)
        if msg.anonymous_id is not None:
            stitched.add(msg.anonymous_id)

    if touches:
        by_user = identity.contacts_by_user_id(
            session, workspace_id, {m.user_id for m in touches if m.user_id is not None}, create=True
        )
        pairs = {m.anonymous_id: by_user[m.user_id] for m in touches if m.user_id and m.anonymous_id}
        known = identity.contacts_by_anonymous_id(
            session, workspace_id, {m.anonymous_id for m in touches if m.anonymous_id and not m.user_id}
        )
        new_links = {a: c for a, c in pairs.items() if a not in known}
        identity.link(session, workspace_id, new_links)
        stitched.update(new_links)
        rows = [
            _touch_row(
                workspace_id,
                m,
                by_user[m.user_id] if m.user_id else known.get(m.anonymous_id) if m.anonymous_id else None,
            )
            for m in touches
        ]
        insert_touches(session, rows)

    identity.reattribute(session, workspace_id, stitched)
    identity.apply_leads(session, workspace_id, leads)
