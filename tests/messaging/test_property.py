"""Property: whatever the mix of consents, unsubscribes, suppressions, campaigns and flows, the real SMTP server
never receives a marketing message for a contact without consent, unsubscribed or suppressed, nor any message
for a hard-bounced address; and every contact who may be mailed gets each campaign exactly once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storefunnel.db import get_sessionmaker, utcnow
from storefunnel.messaging import flows, repository, schemas, service
from storefunnel.models import Contact, Send
from storefunnel.models.messaging import SuppressionReason
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.factories import create_contact, create_order
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import drain, segment, template, worker

person = st.fixed_dictionaries(
    {
        "consent": st.booleans(),
        "unsubscribed": st.booleans(),
        "suppressed": st.sampled_from([None, "hard_bounce", "complaint", "unsubscribe", "manual"]),
        "orders": st.booleans(),
        "lead": st.booleans(),
    }
)
world = st.fixed_dictionaries(
    {
        "people": st.lists(person, min_size=1, max_size=10),
        "campaigns": st.lists(st.lists(st.integers(0, 9), max_size=10), min_size=0, max_size=3),
        "thank_you": st.booleans(),
        "welcome": st.booleans(),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=world)
def test_no_marketing_to_anyone_who_may_not_get_it(spec: dict, smtp_server: SmtpServer, engine: sa.Engine) -> None:
    smtp_server.sink.received.clear()
    maker = get_sessionmaker()
    now = utcnow()
    with maker() as s:
        ws = create_workspace(s, f"prop-{uuid.uuid4().hex[:10]}")
        service.update_settings(s, ws.id, schemas.SettingsUpdate(frequency_cap=100))
        if spec["thank_you"]:
            flows.install(s, ws.id, "thank_you", enabled=True)
        if spec["welcome"]:
            flows.install(s, ws.id, "welcome", enabled=True)
        contacts: list[Contact] = []
        for i, p in enumerate(spec["people"]):
            email = f"c{i}.{ws.id}@prop.example"
            c = create_contact(
                s,
                ws.id,
                email=email,
                email_consent=p["consent"],
                unsubscribed_at=now - dt.timedelta(days=1) if p["unsubscribed"] else None,
                lead_at=now if p["lead"] else None,
            )
            if p["suppressed"]:
                repository.suppress(s, ws.id, email.upper(), SuppressionReason(p["suppressed"]))
            if p["orders"]:
                create_order(s, ws.id, c, placed_at=now, created_at=now)
            contacts.append(c)
        tpl = template(s, ws.id)
        campaign_members: list[tuple[int, set[int]]] = []
        for n, picks in enumerate(spec["campaigns"]):
            members = [contacts[i] for i in sorted(set(picks)) if i < len(contacts)]
            seg = segment(s, ws.id, members, name=f"g{n}")
            camp = service.create_campaign(
                s, ws.id, schemas.CampaignCreate(name=f"c{n}", template_id=tpl.id, segment_id=seg.id)
            )
            service.schedule_campaign(s, ws.id, camp.id)
            campaign_members.append((camp.id, {m.id for m in members}))
        s.commit()
        ws_id = ws.id

    w = worker(smtp_server.config)
    drain(w, now + dt.timedelta(minutes=1))
    w.sender.close()

    with maker() as s:
        by_message_id = {
            r.message_id: r
            for r in s.scalars(sa.select(Send).where(Send.workspace_id == ws_id, Send.message_id.is_not(None)))
        }
        state = {c.id: c for c in s.scalars(sa.select(Contact).where(Contact.workspace_id == ws_id))}
        index = {c.id: i for i, c in enumerate(contacts)}
        got = Counter()
        for received in smtp_server.sink.received:
            send = by_message_id[received.message["Message-ID"]]
            contact = state[send.contact_id]
            p = spec["people"][index[contact.id]]
            assert received.rcpt_tos == [contact.email]
            assert p["suppressed"] not in ("hard_bounce", "complaint"), "mail to a bounced or complaining address"
            if send.kind == "marketing":
                assert p["consent"], (p, send.id)
                assert not p["unsubscribed"], (p, send.id)
                assert p["suppressed"] is None, (p, send.id)
                assert received.message["List-Unsubscribe"] is not None
            got[(send.campaign_id, send.flow_id, send.contact_id)] += 1
        assert all(n == 1 for n in got.values())
        # Liveness: each campaign reached exactly the members who may get marketing.
        for campaign_id, members in campaign_members:
            may = {
                c
                for c in members
                if spec["people"][index[c]]["consent"]
                and not spec["people"][index[c]]["unsubscribed"]
                and spec["people"][index[c]]["suppressed"] is None
            }
            reached = {k[2] for k in got if k[0] == campaign_id}
            assert reached == may
