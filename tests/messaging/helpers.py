"""Small builders for email tests: templates, static segments, a worker bound to the test SMTP server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import get_sessionmaker, utcnow
from storefunnel.jobs.worker import Worker, WorkerOptions
from storefunnel.messaging import schemas, service
from storefunnel.messaging.smtp import SmtpConfig
from storefunnel.models import Contact, CycleOutbox, EmailTemplate, Segment, SegmentMember

HTML = (
    "<html><body><p>Hi {{ contact.first_name }}</p>"
    '<p><a href="https://shop.example/new?x=1&amp;y=2">See what is new</a></p></body></html>'
)


def template(session: Session, workspace_id: int, name: str = "news", kind: str = "marketing") -> EmailTemplate:
    data = schemas.TemplateCreate(
        name=name, kind=kind, subject="News for {{ contact.first_name }}", html=HTML, text="Hi {{ contact.first_name }}"
    )  # type: ignore[arg-type]
    return service.create_template(session, workspace_id, data)


def segment(session: Session, workspace_id: int, contacts: Sequence[Contact], name: str = "group") -> Segment:
    seg = Segment(workspace_id=workspace_id, name=name, kind="static", rules=None)
    session.add(seg)
    session.flush()
    for c in contacts:
        session.add(SegmentMember(workspace_id=workspace_id, segment_id=seg.id, contact_id=c.id))
    session.flush()
    return seg


def worker(smtp: SmtpConfig, **options: float) -> Worker:
    """A worker with the periodic recomputes off (tests drive time), talking to ``smtp``."""
    opts = WorkerOptions(cycle_tick_s=0, segments_s=0, clv_s=0, poll_s=0.05, **options)  # type: ignore[arg-type]
    return Worker(get_sessionmaker(), smtp, opts)


def drain(w: Worker, now: dt.datetime | None = None, passes: int = 20) -> None:
    """Run worker passes until one delivers nothing and no stage change waits in the outbox.

    A pass hands the flows at most a batch of the outbox, oldest first, and earlier tests of this database may
    have left stage changes of their own workspaces there.
    """
    for _ in range(passes):
        if w.step(now or utcnow()).claimed == 0 and not _outbox_waiting():
            return


def _outbox_waiting() -> bool:
    with get_sessionmaker()() as s:
        return bool(s.scalar(sa.select(sa.exists().where(CycleOutbox.published_at.is_(None)))))
