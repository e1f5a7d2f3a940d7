"""Campaigns end to end: API -> worker -> a real SMTP server; consent, suppression, unsubscribe headers."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.messaging import repository, schemas, service
from storefunnel.models import Send, Workspace
from storefunnel.models.messaging import SuppressionReason
from tests.fixtures.factories import create_contact
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import drain, segment, template, worker


def test_campaign_reaches_only_consenting_contacts(
    committed_session: Session, fresh_workspace: Workspace, smtp_server: SmtpServer
) -> None:
    s, ws = committed_session, fresh_workspace
    ok = create_contact(s, ws.id, email="yes@shop.example", first_name="Ana", email_consent=True)
    no_consent = create_contact(s, ws.id, email="no@shop.example", email_consent=False)
    import datetime as dt

    gone = create_contact(
        s, ws.id, email="gone@shop.example", email_consent=True, unsubscribed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    bounced = create_contact(s, ws.id, email="Bounced@shop.example", email_consent=True)
    repository.suppress(s, ws.id, "bounced@shop.example", SuppressionReason.hard_bounce)
    seg = segment(s, ws.id, [ok, no_consent, gone, bounced])
    tpl = template(s, ws.id)
    campaign = service.create_campaign(
        s, ws.id, schemas.CampaignCreate(name="spring", template_id=tpl.id, segment_id=seg.id)
    )
    service.schedule_campaign(s, ws.id, campaign.id)
    s.commit()

    w = worker(smtp_server.config)
    drain(w)
    w.sender.close()

    got = smtp_server.sink.received
    assert [r.rcpt_tos for r in got] == [["yes@shop.example"]]
    msg = got[0].message
    assert msg["Subject"] == "News for Ana"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in msg["List-Unsubscribe"]
    assert "mailto:" in msg["List-Unsubscribe"]
    s.expire_all()
    rows = s.scalars(sa.select(Send).where(Send.campaign_id == campaign.id)).all()
    assert [(r.contact_id, r.status) for r in rows] == [(ok.id, "sent")]
    s.refresh(campaign)
    assert campaign.status == "sent"
