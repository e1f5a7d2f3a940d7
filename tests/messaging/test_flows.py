"""Flows through the worker and a real SMTP server: triggers, delays, conditions, exits, the thank-you touch."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle.events import StageTransition, publish
from storefunnel.db import utcnow
from storefunnel.messaging import flows, repository, schemas, service
from storefunnel.models import FlowEnrollment, Send, Touch, Workspace
from storefunnel.models.messaging import SuppressionReason
from tests.fixtures.factories import create_contact, create_order, create_touch
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import drain, segment, template, worker

MIN = dt.timedelta(minutes=1)


def test_thank_you_is_transactional_and_thanks_in_the_cycle(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    flows.install(s, ws.id, "thank_you", enabled=True)
    buyer = create_contact(s, ws.id, email="buyer@shop.example", first_name="Bea", email_consent=False)
    bounced = create_contact(s, ws.id, email="bounced@shop.example", email_consent=True)
    repository.suppress(s, ws.id, "bounced@shop.example", SuppressionReason.hard_bounce)
    now = utcnow()
    create_order(s, ws.id, buyer, placed_at=now, created_at=now)
    create_order(s, ws.id, bounced, placed_at=now, created_at=now)
    create_order(s, ws.id, buyer, placed_at=now - dt.timedelta(days=30), created_at=now)  # an import of history
    s.commit()

    w = worker(smtp_server.config)
    drain(w, now + MIN)
    drain(w, now + 2 * MIN)  # a second pass enrolls nothing new
    w.sender.close()

    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["buyer@shop.example"]]
    msg = smtp_server.sink.received[0].message
    assert msg["Subject"] == "Thank you for your order"
    assert msg["List-Unsubscribe"] is None  # transactional
    s.expire_all()
    statuses = dict(s.execute(sa.select(Send.to_email, Send.status).where(Send.workspace_id == ws.id)).all())
    assert statuses == {"buyer@shop.example": "sent", "bounced@shop.example": "skipped"}
    thanks = s.scalars(sa.select(Touch).where(Touch.contact_id == buyer.id)).all()
    assert [(t.event, t.channel, t.properties["flow"]) for t in thanks] == [("Thank You Sent", "Email", "thank_you")]


def test_welcome_series_waits_between_steps_and_stops_when_they_buy(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    flows.install(s, ws.id, "welcome", enabled=True)
    now = utcnow()
    stays = create_contact(s, ws.id, email="stays@shop.example", email_consent=True, lead_at=now)
    buys = create_contact(s, ws.id, email="buys@shop.example", email_consent=True, lead_at=now)
    create_contact(s, ws.id, email="old@shop.example", email_consent=True, lead_at=now - dt.timedelta(days=40))
    s.commit()
    w = worker(smtp_server.config)

    def got() -> list[str]:
        return sorted(f"{r.rcpt_tos[0]}:{r.message['Subject']}" for r in smtp_server.sink.received)

    drain(w, now + MIN)
    assert got() == ["buys@shop.example:Welcome to " + ws.name, "stays@shop.example:Welcome to " + ws.name]
    drain(w, now + dt.timedelta(days=1))
    assert len(got()) == 2  # step two waits two days
    create_order(s, ws.id, buys, placed_at=now + dt.timedelta(days=1), created_at=now + dt.timedelta(days=1))
    s.commit()
    drain(w, now + dt.timedelta(days=2, minutes=2))
    drain(w, now + dt.timedelta(days=7, minutes=3))
    w.sender.close()
    assert [r for r in got() if r.startswith("buys")] == ["buys@shop.example:Welcome to " + ws.name]
    assert len([r for r in got() if r.startswith("stays")]) == 3
    s.expire_all()
    states = dict(
        s.execute(
            sa.select(FlowEnrollment.contact_id, FlowEnrollment.status).where(FlowEnrollment.workspace_id == ws.id)
        ).all()
    )
    assert states == {stays.id: "completed", buys.id: "exited"}


def test_abandoned_cart_after_an_hour_unless_they_bought(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    flows.install(s, ws.id, "abandoned_cart", enabled=True)
    now = utcnow()
    left = create_contact(s, ws.id, email="left@shop.example", email_consent=True)
    bought = create_contact(s, ws.id, email="bought@shop.example", email_consent=True)
    for c in (left, bought):
        create_touch(s, ws.id, c, kind="track", event="Product Added", occurred_at=now)
    create_order(s, ws.id, bought, placed_at=now + 10 * MIN, created_at=now + 10 * MIN)
    s.commit()
    w = worker(smtp_server.config)
    drain(w, now + MIN)
    assert smtp_server.sink.received == []
    drain(w, now + 61 * MIN)
    w.sender.close()
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["left@shop.example"]]


def test_win_back_reads_stage_changes_from_the_outbox(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    flows.install(s, ws.id, "win_back", enabled=True)
    lapsed = create_contact(s, ws.id, email="lapsed@shop.example", email_consent=True)
    s.commit()
    now = utcnow()
    publish(s, [StageTransition(ws.id, lapsed.id, "keeping_in_touch", "lapsed", now, "lapse")])
    s.commit()  # written while no worker runs: the outbox keeps it
    w = worker(smtp_server.config)
    drain(w, now + MIN)
    w.sender.close()
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["lapsed@shop.example"]]


def test_frequency_cap_counts_every_marketing_source(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    service.update_settings(s, ws.id, schemas.SettingsUpdate(frequency_cap=2))
    c = create_contact(s, ws.id, email="often@shop.example", email_consent=True)
    seg = segment(s, ws.id, [c])
    tpl = template(s, ws.id)
    for i in range(3):
        camp = service.create_campaign(
            s, ws.id, schemas.CampaignCreate(name=f"c{i}", template_id=tpl.id, segment_id=seg.id)
        )
        service.schedule_campaign(s, ws.id, camp.id)
    s.commit()
    w = worker(smtp_server.config)
    drain(w)
    w.sender.close()
    assert len(smtp_server.sink.received) == 2
    s.expire_all()
    details = s.scalars(sa.select(Send.detail).where(Send.workspace_id == ws.id, Send.status == "skipped")).all()
    assert details == ["frequency cap: 2 marketing emails in 7 days"]
