"""A bounce, end to end: a campaign goes through the real SMTP server, the relay's DSN for one recipient comes back
over HTTP to the running app, and the next campaign does not go to that address. The CLI reading the same bounce
from the mailbox afterwards changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.auth.keys import create_key
from storefunnel.cli import app
from storefunnel.db import get_sessionmaker
from storefunnel.messaging import schemas, service
from storefunnel.messaging.tasks import plan
from storefunnel.models import Contact, KeyKind, Send, Suppression, Workspace
from tests.fixtures.factories import create_contact
from tests.fixtures.server import LiveServer
from tests.messaging import dsn_samples as samples
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import drain, segment, template, worker

pytestmark = pytest.mark.e2e


def _campaign(s: Session, ws: Workspace, name: str, template_id: int, segment_id: int) -> int:
    c = service.create_campaign(
        s, ws.id, schemas.CampaignCreate(name=name, template_id=template_id, segment_id=segment_id)
    )
    service.schedule_campaign(s, ws.id, c.id)
    s.commit()
    return c.id


def test_a_bounce_stops_the_next_marketing_message(
    committed_session: Session,
    fresh_workspace: Workspace,
    smtp_server: SmtpServer,
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    s, ws = committed_session, fresh_workspace
    ana = create_contact(s, ws.id, email="ana@shop.example", first_name="Ana", email_consent=True)
    gone = create_contact(s, ws.id, email="gone@example.net", first_name="Gil", email_consent=True)
    seg = segment(s, ws.id, [ana, gone])
    tpl = template(s, ws.id)
    _, key = create_key(s, ws.id, KeyKind.api)
    first = _campaign(s, ws, "first", tpl.id, seg.id)

    w = worker(smtp_server.config)
    drain(w)
    [sent] = smtp_server.sink.to("gone@example.net")
    assert sent.message["X-Storefunnel-Message"] == sent.message["Message-ID"]
    # The next campaign is already written (queued for both) when the bounce comes in.
    second = _campaign(s, ws, "second", tpl.id, seg.id)
    plan(get_sessionmaker())
    queued = s.scalars(sa.select(Send.status).where(Send.campaign_id == second, Send.contact_id == gone.id)).all()
    assert queued == ["queued"]

    # The relay could not deliver it and wrote back; the bounce mailbox's reader posts it to the app.
    bounce = samples.postfix(sent.raw, "gone@example.net")
    r = httpx.post(
        live_server.url + "/api/v1/messaging/bounces",
        content=bounce,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "message/rfc822"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    [outcome] = r.json()["outcomes"]
    send_id = s.scalar(sa.select(Send.id).where(Send.campaign_id == first, Send.contact_id == gone.id))
    assert (outcome["kind"], outcome["send_id"], outcome["suppressed"]) == ("hard_bounce", send_id, True)
    s.expire_all()
    reason = s.scalar(sa.select(Suppression.reason).where(Suppression.workspace_id == ws.id))
    assert reason == "hard_bounce"

    # The same bounce read again from the mailbox (an mbox with an auto-reply beside it) changes nothing.
    box = tmp_path / "bounces.mbox"
    box.write_bytes(
        samples.mbox(bounce, b"From: Gil <gil@example.org>\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n")
    )
    cli = CliRunner().invoke(app, ["messaging", "bounces", str(box), "-w", ws.name, "--json"])
    assert cli.exit_code == 0, cli.output
    result = json.loads(cli.output)
    assert [(o["kind"], o["duplicate"]) for o in result["outcomes"]] == [("hard_bounce", True)]
    assert [n["detail"].split(":")[0] for n in result["not_reports"]] == ["Content-Type"]
    lone = tmp_path / "reply.eml"
    lone.write_bytes(b"From: someone@example.org\r\nSubject: thanks\r\n\r\nthanks!\r\n")
    refused = CliRunner().invoke(app, ["messaging", "bounces", str(lone), "-w", ws.name])
    assert refused.exit_code == 2
    assert "not a report: Content-Type" in refused.output

    # The next campaign goes out: Ana gets it, the bounced address is passed over when its row is claimed.
    drain(w)
    w.sender.close()
    assert len(smtp_server.sink.to("gone@example.net")) == 1
    assert len(smtp_server.sink.to("ana@shop.example")) == 2
    s.expire_all()
    rows = dict(
        s.execute(
            sa.select(Contact.email, Send.status + ":" + Send.detail)
            .join(Contact, Contact.id == Send.contact_id)
            .where(Send.campaign_id == second)
        ).all()
    )
    assert rows == {"ana@shop.example": "sent:", "gone@example.net": "skipped:suppressed: hard_bounce"}
