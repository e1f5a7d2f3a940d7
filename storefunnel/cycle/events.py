"""Stage transitions as events: in-process subscribers after commit, and a durable outbox for the rest.

``subscribe`` is for reactions inside this process (they get each transition once the transaction that made it
has committed; a rolled-back transition is never seen). Anything that must not miss a transition across
restarts (flows, the worker) reads the outbox with ``drain``: rows are written in the same transaction as the
history change and stay unpublished until a consumer stamps ``published_at``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.models import CycleOutbox

log = logging.getLogger(__name__)
OUTBOX: sa.Table = CycleOutbox.__table__  # type: ignore[assignment]
_PENDING = "cycle_pending_transitions"
_HOOKED = "cycle_hooks_installed"


@dataclass(frozen=True)
class StageTransition:
    workspace_id: int
    contact_id: int
    from_stage: str | None
    to_stage: str
    at: dt.datetime
    reason: str = ""


Callback = Callable[[StageTransition], None]
_subscribers: list[Callback] = []


def subscribe(callback: Callback) -> Callable[[], None]:
    """Call ``callback`` with every transition after its transaction commits; returns an unsubscribe function."""
    _subscribers.append(callback)

    def _unsubscribe() -> None:
        if callback in _subscribers:
            _subscribers.remove(callback)

    return _unsubscribe


def _deliver(transitions: Sequence[StageTransition]) -> None:
    for transition in transitions:
        for callback in list(_subscribers):
            try:
                callback(transition)
            except Exception:
                # One failing subscriber must neither stop the others nor undo a committed change.
                log.exception("cycle subscriber %r failed on %r", callback, transition)


def _after_commit(session: Session) -> None:
    pending: list[StageTransition] = session.info.pop(_PENDING, [])
    if pending:
        _deliver(pending)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def publish(session: Session, transitions: Sequence[StageTransition]) -> None:
    """Write the transitions to the outbox in the caller's transaction and queue them for subscribers."""
    if not transitions:
        return
    session.execute(
        sa.insert(OUTBOX),
        [
            {
                "workspace_id": t.workspace_id,
                "contact_id": t.contact_id,
                "from_stage": t.from_stage,
                "to_stage": t.to_stage,
                "at": t.at,
                "reason": t.reason,
                "created_at": utcnow(),
            }
            for t in transitions
        ],
    )
    if not session.info.get(_HOOKED):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
        session.info[_HOOKED] = True
    session.info.setdefault(_PENDING, []).extend(transitions)


def drain(session: Session, handler: Callback, *, limit: int = 500, workspace_id: int | None = None) -> int:
    """Hand the oldest unpublished outbox rows to ``handler`` and stamp them; the caller commits.

    At least once: if the handler raises, nothing of this batch is stamped once the caller rolls back.
    On PostgreSQL concurrent drainers skip each other's rows.
    """
    stmt = sa.select(CycleOutbox).where(CycleOutbox.published_at.is_(None)).order_by(CycleOutbox.id).limit(limit)
    if workspace_id is not None:
        stmt = stmt.where(CycleOutbox.workspace_id == workspace_id)
    rows = session.scalars(stmt.with_for_update(skip_locked=True)).all()
    for row in rows:
        handler(StageTransition(row.workspace_id, row.contact_id, row.from_stage, row.to_stage, row.at, row.reason))
    if rows:
        session.execute(sa.update(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows])).values(published_at=utcnow()))
    return len(rows)
