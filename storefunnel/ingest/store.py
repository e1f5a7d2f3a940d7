"""Writing a request's accepted messages: one statement for all its touches, idempotent by ``messageId``.

Touches are deduplicated by the unique (workspace_id, message_id) on ``touches``; identify, alias and group
leave a ``receipts`` row (source ``segment``) so a replay changes nothing. Both use INSERT … ON CONFLICT DO
NOTHING, which also settles two concurrent deliveries of the same message.

The touch INSERT is the hot path of the tracking API, so it skips the ORM and SQLAlchemy's per-value bind
processing: rows are tuples already in wire form, sent as one driver-level statement per request (an
``executemany`` on SQLite, one INSERT … SELECT FROM unnest(arrays) on PostgreSQL), and an anonymous touch's
contact is looked up inside that statement instead of in a separate round trip.

Every contact whose facts the request changed (new touches, stitched touches, a new or merged contact) is marked
for the sales cycle last, in the same transaction (``storefunnel.cycle.dirty``); the worker brings its stage up
to date within seconds. A request of anonymous visitors nobody has identified marks nothing and costs nothing more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import dirty
from storefunnel.db import utcnow
from storefunnel.ingest import identity
from storefunnel.ingest.channels import attribute
from storefunnel.ingest.segment import TOUCH_TYPES, Message
from storefunnel.models import Receipt

RECEIPT_SOURCE = "segment"
RECEIPT_TABLE: sa.Table = Receipt.__table__  # type: ignore[assignment]
TEXT_LIMIT = 200  # the width of touches.event/source/medium/campaign/content/term
TOUCH_COLUMNS = (
    "contact_id, anonymous_id, occurred_at, kind, event, channel, source, medium, campaign, content, term, url, "
    "referrer, properties, message_id"
)
# One row of VALUES per touch; a touch without a known contact takes its anonymous id's, if that id is stitched.
SQLITE_INSERT = (
    f"INSERT INTO touches (workspace_id, {TOUCH_COLUMNS}) VALUES (?, coalesce(?, (SELECT contact_id FROM identities "
    "WHERE workspace_id = ? AND anonymous_id = ?)), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (workspace_id, message_id) DO NOTHING"
)
# One statement for the whole request: the rows arrive as one JSON array of arrays, which orjson writes in C,
# where psycopg would escape a text array element by element in Python.
# It answers with the contacts of the touches it inserted (replays insert nothing), for the cycle's marks.
# (The marks are a statement of their own, the last of the request: a mark written in this one would be locked
# before the foreign-key checks of the touches run, at the end of the statement, and could deadlock with an
# identify that holds a contact row and waits for that mark.)
POSTGRES_INSERT = (
    f"WITH inserted AS (INSERT INTO touches (workspace_id, {TOUCH_COLUMNS}) "
    "SELECT %s, coalesce((r->>0)::bigint, (SELECT i.contact_id FROM identities i "
    "WHERE i.workspace_id = %s AND i.anonymous_id = r->>1)), "
    "r->>1, (r->>2)::timestamptz, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9, r->>10, r->>11, r->>12, "
    "(r->13)::jsonb, r->>14 "
    "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(r, n) "
    "ORDER BY n "
    "ON CONFLICT (workspace_id, message_id) DO NOTHING "
    "RETURNING contact_id) "
    "SELECT DISTINCT contact_id FROM inserted WHERE contact_id IS NOT NULL"
)
SQLITE_STITCHED = "SELECT DISTINCT contact_id FROM identities WHERE workspace_id = ? AND anonymous_id IN ({})"
SQLITE_MAX_PARAMS = 30_000  # under SQLite's 32,766 host parameters per statement
UTC = dt.UTC


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:TEXT_LIMIT] if text else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def touch_row(msg: Message, contact_id: int | None, sqlite: bool) -> tuple[Any, ...]:
    """One touch as the tuple of TOUCH_COLUMNS, values in the form the driver takes them."""
    body = msg.body
    properties = _dict(body.get("properties"))
    context = _dict(body.get("context"))
    kind = msg.type
    if kind == "screen":  # apps have no URL: only context.campaign can tag a screen
        url = referrer = None
    else:
        page = _dict(context.get("page"))
        url = properties.get("url") or page.get("url")
        referrer = properties.get("referrer") or page.get("referrer")
        url = url if isinstance(url, str) else None
        referrer = referrer if isinstance(referrer, str) else None
    campaign = context.get("campaign")
    attr = attribute(url, referrer, campaign if isinstance(campaign, dict) else None)
    event = body.get("event") if kind == "track" else body.get("name") or properties.get("name")
    when: dt.datetime | str = msg.occurred_at
    if sqlite:
        # how SQLAlchemy stores DateTime on SQLite (naive UTC, microseconds always shown), so comparisons hold
        when = msg.occurred_at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return (
        contact_id,
        msg.anonymous_id,
        when,
        kind,
        _text(event),
        attr.channel,
        _text(attr.source),
        _text(attr.medium),
        _text(attr.campaign),
        _text(attr.content),
        _text(attr.term),
        url,
        referrer,
        orjson.dumps(properties).decode() if sqlite else properties,
        msg.message_id,
    )


def insert_touches(session: Session, workspace_id: int, rows: Sequence[tuple[Any, ...]]) -> set[int]:
    """Insert the rows built by :func:`touch_row` in one driver-level statement, skipping known message ids.

    Returns the contacts the touches belong to (on SQLite, replays' contacts too: a spare mark costs one update).
    """
    if not rows:
        return set()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        result = connection.exec_driver_sql(POSTGRES_INSERT, (workspace_id, workspace_id, orjson.dumps(rows).decode()))
        return {r[0] for r in result}
    params = [(workspace_id, r[0], workspace_id, r[1], *r[1:]) for r in rows]
    connection.exec_driver_sql(SQLITE_INSERT, params)
    contacts = {r[0] for r in rows if r[0] is not None}
    anonymous = list({r[1] for r in rows if r[0] is None and r[1] is not None})
    for start in range(0, len(anonymous), SQLITE_MAX_PARAMS):
        part = anonymous[start : start + SQLITE_MAX_PARAMS]
        found = connection.exec_driver_sql(SQLITE_STITCHED.format(",".join("?" * len(part))), (workspace_id, *part))
        contacts.update(r[0] for r in found)
    return contacts


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


def ingest(session: Session, workspace_id: int, messages: Iterable[Message]) -> None:
    """Store a request's valid messages: profiles first, then touches in bulk, then stitching and leads."""
    unique: dict[str, Message] = {}
    for msg in messages:
        unique.setdefault(msg.message_id, msg)
    touches = [m for m in unique.values() if m.type in TOUCH_TYPES]
    profiles = [m for m in unique.values() if m.type not in TOUCH_TYPES]

    stitched: set[str] = set()
    leads: list[identity.LeadCandidate] = []
    changed: set[int] = set()  # contacts whose cycle facts this request changed
    if profiles:
        fresh = claim_receipts(session, workspace_id, [m.message_id for m in profiles])
        for msg in profiles:
            if msg.message_id not in fresh:
                continue
            if msg.type == "identify":
                contact, lead = identity.identify(session, workspace_id, msg)
                changed.add(contact.id)
                if lead is not None:
                    leads.append(lead)
            elif msg.type == "alias":
                changed.add(identity.alias(session, workspace_id, msg))
            else:
                grouped = identity.group(session, workspace_id, msg)
                if grouped is not None:
                    changed.add(grouped)
            if msg.anonymous_id is not None:
                stitched.add(msg.anonymous_id)

    if touches:
        user_ids = {m.user_id for m in touches if m.user_id is not None}
        by_user = identity.contacts_by_user_id(session, workspace_id, user_ids, create=True) if user_ids else {}
        pairs = {m.anonymous_id: by_user[m.user_id] for m in touches if m.user_id and m.anonymous_id}
        if pairs:
            known = identity.contacts_by_anonymous_id(session, workspace_id, pairs)
            new_links = {a: c for a, c in pairs.items() if a not in known}
            identity.link(session, workspace_id, new_links)
            stitched.update(new_links)
        sqlite = session.get_bind().dialect.name == "sqlite"
        rows = [touch_row(m, by_user[m.user_id] if m.user_id else None, sqlite) for m in touches]
        changed |= insert_touches(session, workspace_id, rows)

    changed |= identity.reattribute(session, workspace_id, stitched)
    identity.apply_leads(session, workspace_id, leads)
    dirty.mark(session, workspace_id, changed)  # last: on PostgreSQL it holds the marks' locks until commit
