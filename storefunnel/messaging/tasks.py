"""Worker tasks for email: each one committed transaction, safe to run twice and from several workers at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from storefunnel.db import get_sessionmaker, utcnow
from storefunnel.messaging import flows, service


def plan(maker: sessionmaker[Session] | None = None, now: dt.datetime | None = None) -> dict[str, int]:
    """Enroll from every trigger, move due enrollments on, start due campaigns, close finished ones
    ("messaging.plan"). What it queues is delivered by the sender."""
    maker = maker or get_sessionmaker()
    now = now or utcnow()
    out: dict[str, int] = {}
    with maker() as session, session.begin():
        out["enrolled"] = flows.enroll_from_facts(session, now) + flows.enroll_from_outbox(session, now)
    with maker() as session, session.begin():
        out["advanced"] = flows.advance(session, now)
    with maker() as session, session.begin():
        out["campaigns_started"] = service.start_due_campaigns(session, now)
        out["campaigns_finished"] = service.finish_campaigns(session, now)
    return out


def clv_keep_in_touch(maker: sessionmaker[Session] | None = None, now: dt.datetime | None = None) -> int:
    """Enroll the lifetime-value keep-in-touch list in the flows that use it ("messaging.clv")."""
    maker = maker or get_sessionmaker()
    with maker() as session, session.begin():
        return flows.enroll_clv(session, now or utcnow())


TASKS: dict[str, Callable[..., Any]] = {
    "messaging.plan": plan,
    "messaging.clv": clv_keep_in_touch,
}
