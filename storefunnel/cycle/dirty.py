"""The cheap ingest hook: mark contacts whose facts changed, and bring their stages up to date later, in bulk.

The tracking API writes tens of thousands of touches a second; running the incremental update inside each request
would cost far more than the request itself. Instead the request marks the contacts it touched in ``cycle_dirty``
(one statement, in its own transaction) and ``drain`` (the worker, every few seconds, and ``storefunnel cycle
tick``) runs ``update_contacts`` for a chunk of marked contacts and deletes their marks in the same transaction.

Why no mark is ever lost:

* PostgreSQL: marking a contact already marked gives its row a fresh ``id`` (INSERT … ON CONFLICT DO UPDATE
  SET id = excluded.id), and a drainer deletes only the ids it read. A mark committed after the drainer's read
  either changed the id (the row stays) or waited on the drainer's DELETE and then inserted a new row. A mark
  committed before the read is seen together with its facts, which commit in the same transaction.
* SQLite: one writer at a time, and the drain starts with its write (DELETE … RETURNING), so no ingest commits
  between its claim and its update; a plain ON CONFLICT DO NOTHING is enough.

Concurrent drainers on PostgreSQL lock the contacts they update with FOR NO KEY UPDATE SKIP LOCKED (which does not
block the foreign-key checks of touch inserts): a contact another transaction is updating keeps its mark for the
next pass. A drain waits on a lock for at most ``LOCK_TIMEOUT`` and then gives its chunk up, well before
PostgreSQL's deadlock detector would pick a victim, so an ingest request is never the one that fails. While a full
recompute of a workspace runs (it holds ``engine.RECOMPUTE_LOCK`` exclusively), drains leave that workspace's marks
alone instead of racing it for the same contacts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from storefunnel.cycle import engine
from storefunnel.cycle.events import StageTransition
from storefunnel.cycle.service import update_contacts
from storefunnel.db import utcnow
from storefunnel.models import Contact, CycleDirty

DIRTY: sa.Table = CycleDirty.__table__  # type: ignore[assignment]
CONTACTS: sa.Table = Contact.__table__  # type: ignore[assignment]
CHUNK = 500
LOCK_TIMEOUT = "200ms"  # below deadlock_timeout (1 s by default)
LOCK_ERRORS = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected


@dataclass
class DrainResult:
    """What a drain did: marks consumed, contacts updated, marks left for later, transitions published."""

    marks: int = 0
    contacts: int = 0
    deferred: int = 0
    transitions: list[StageTransition] = field(default_factory=list)

    def add(self, other: DrainResult) -> None:
        self.marks += other.marks
        self.contacts += other.contacts
        self.deferred += other.deferred
        self.transitions.extend(other.transitions)


# Marks are on the tracking API's hot path: one driver-level statement each, like the touch INSERT.
SQLITE_MARK = (
    "INSERT INTO cycle_dirty (workspace_id, contact_id, marked_at) VALUES (?, ?, ?) "
    "ON CONFLICT (workspace_id, contact_id) DO NOTHING"
)
# Sorted rows lock in one order, so two requests marking the same contacts cannot deadlock.
POSTGRES_MARK = (
    "INSERT INTO cycle_dirty (workspace_id, contact_id, marked_at) "
    "SELECT %s, c, %s FROM unnest(%s::bigint[]) AS c ORDER BY c "
    "ON CONFLICT (workspace_id, contact_id) DO UPDATE SET id = excluded.id, marked_at = excluded.marked_at"
)


def mark(session: Session, workspace_id: int, contact_ids: Iterable[int | None]) -> None:
    """Mark these contacts for the next drain, in the caller's transaction: one statement, ids in order.

    Call it last in a transaction, as a statement of its own: on PostgreSQL it locks the marks until commit, and a
    transaction holding them must not wait on anything else (not even the foreign-key checks that end a statement
    inserting touches: those lock contact rows that an identify may hold while it waits for its own marks).
    """
    ids = sorted({c for c in contact_ids if c is not None})
    if not ids:
        return
    now = utcnow()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(POSTGRES_MARK, (workspace_id, now, ids))
    else:
        # how SQLAlchemy stores DateTime on SQLite (naive UTC, microseconds always shown)
        when = now.replace(tzinfo=None).isoformat(" ", "microseconds")
        connection.exec_driver_sql(SQLITE_MARK, [(workspace_id, c, when) for c in ids])


def pending(session: Session, workspace_id: int | None = None) -> int:
    """How many contacts wait for a drain (all workspaces, or one)."""
    stmt = sa.select(sa.func.count()).select_from(DIRTY)
    if workspace_id is not None:
        stmt = stmt.where(DIRTY.c.workspace_id == workspace_id)
    return int(session.scalar(stmt) or 0)


def _pick(limit: int, workspace_id: int | None) -> sa.Select[tuple[int]]:
    pick = sa.select(DIRTY.c.id).order_by(DIRTY.c.id).limit(limit)
    return pick if workspace_id is None else pick.where(DIRTY.c.workspace_id == workspace_id)


def drain(session: Session, *, limit: int = CHUNK, workspace_id: int | None = None) -> DrainResult:
    """Update up to ``limit`` marked contacts (oldest marks first) and delete their marks; the caller commits."""
    if session.get_bind().dialect.name == "postgresql":
        return _drain_postgres(session, limit, workspace_id)
    claimed = session.execute(
        sa.delete(DIRTY)
        .where(DIRTY.c.id.in_(_pick(limit, workspace_id).scalar_subquery()))
        .returning(DIRTY.c.workspace_id, DIRTY.c.contact_id)
    ).all()
    by_workspace: dict[int, set[int]] = defaultdict(set)
    for ws, contact_id in claimed:
        by_workspace[ws].add(contact_id)
    result = DrainResult(marks=len(claimed))
    for ws, ids in sorted(by_workspace.items()):
        result.contacts += len(ids)
        result.transitions.extend(update_contacts(session, ws, ids))
    return result


def _drain_postgres(session: Session, limit: int, workspace_id: int | None) -> DrainResult:
    previous = session.scalar(sa.text("SELECT current_setting('lock_timeout')"))
    session.execute(sa.text("SELECT set_config('lock_timeout', :value, true)"), {"value": LOCK_TIMEOUT})
    try:
        with session.begin_nested():
            return _drain_chunk_postgres(session, limit, workspace_id)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) not in LOCK_ERRORS:
            raise
        # Someone holds a lock this chunk needs: give the chunk up (its marks stay) and let the holder finish.
        return DrainResult(deferred=1)
    finally:
        session.execute(sa.text("SELECT set_config('lock_timeout', :value, true)"), {"value": previous})


def _drain_chunk_postgres(session: Session, limit: int, workspace_id: int | None) -> DrainResult:
    rows = session.execute(
        sa.select(DIRTY.c.id, DIRTY.c.workspace_id, DIRTY.c.contact_id).where(
            DIRTY.c.id.in_(_pick(limit, workspace_id).scalar_subquery())
        )
    ).all()
    marks: dict[int, dict[int, int]] = defaultdict(dict)  # workspace -> contact -> id of the mark as read
    for row_id, ws, contact_id in rows:
        marks[ws][contact_id] = row_id
    result = DrainResult()
    done: list[int] = []
    for ws, by_contact in sorted(marks.items()):
        ids = sorted(by_contact)
        if not session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock_shared(engine.RECOMPUTE_LOCK, ws))):
            # A full recompute of this workspace is running: its marks wait for the next pass.
            result.deferred += len(ids)
            continue
        locked = set(
            session.scalars(
                sa.select(CONTACTS.c.id)
                .where(CONTACTS.c.workspace_id == ws, CONTACTS.c.id.in_(ids))
                .order_by(CONTACTS.c.id)
                .with_for_update(key_share=True, skip_locked=True)
            )
        )
        rest = [c for c in ids if c not in locked]
        busy = set(
            session.scalars(sa.select(CONTACTS.c.id).where(CONTACTS.c.workspace_id == ws, CONTACTS.c.id.in_(rest)))
            if rest
            else ()
        )
        # A contact that no longer exists (merged, deleted) has nothing to update: its mark just goes.
        settled = [c for c in ids if c not in busy]
        result.transitions.extend(update_contacts(session, ws, sorted(locked)))
        result.contacts += len(locked)
        result.deferred += len(busy)
        done.extend(by_contact[c] for c in settled)
    if done:
        # Only the ids read: a contact marked again since has a new id, and its mark stays for the next pass.
        session.execute(sa.delete(DIRTY).where(DIRTY.c.id.in_(done)))
    result.marks = len(done)
    return result


def drain_all(session: Session, *, workspace_id: int | None = None, limit: int = CHUNK) -> DrainResult:
    """Drain chunk after chunk in the caller's transaction until a chunk consumes no mark."""
    total = DrainResult()
    while True:
        step = drain(session, limit=limit, workspace_id=workspace_id)
        total.add(step)
        if step.marks == 0:
            return total
