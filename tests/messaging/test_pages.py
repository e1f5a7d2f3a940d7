"""The Marketing hat's Campaigns and Flows pages: real numbers on the page, switching a flow on with CSRF."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.messaging import flows, schemas, service
from storefunnel.models import Send, Workspace
from storefunnel.workspaces.service import create_user
from tests.fixtures.factories import create_contact
from tests.messaging.helpers import template
from tests.web.helpers import PASSWORD, csrf_from, login


def _login(client: TestClient, session: Session, workspace: Workspace) -> None:
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(session, workspace.id, email, PASSWORD)
    status, _ = login(client, email)
    assert status in (200, 303)


def test_campaigns_page_shows_the_ledger(client: TestClient, session: Session, workspace: Workspace) -> None:
    _login(client, session, workspace)
    tpl = template(session, workspace.id)
    camp = service.create_campaign(session, workspace.id, schemas.CampaignCreate(name="autumn", template_id=tpl.id))
    for status in ("sent", "sent", "skipped"):
        c = create_contact(session, workspace.id)
        session.add(
            Send(workspace_id=workspace.id, contact_id=c.id, template_id=tpl.id, campaign_id=camp.id, status=status)
        )
    session.flush()
    r = client.get("/marketing/campaigns")
    assert r.status_code == 200
    assert f'data-campaign-id="{camp.id}" data-sent="2"' in r.text
    assert "autumn" in r.text


def test_flows_page_switches_a_ready_made_flow_on(client: TestClient, session: Session, workspace: Workspace) -> None:
    _login(client, session, workspace)
    page = client.get("/marketing/flows")
    assert page.status_code == 200
    assert 'data-flow="thank_you" data-enabled="off"' in page.text
    token = csrf_from(page.text)
    refused = client.post("/marketing/flows", data={"name": "thank_you", "enabled": "on"}, follow_redirects=False)
    assert refused.status_code == 403
    r = client.post(
        "/marketing/flows", data={"name": "thank_you", "enabled": "on", "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    assert flows.get_flow_by_name(session, workspace.id, "thank_you").enabled
    listed = client.get("/marketing/flows")
    assert 'data-flow="thank_you" data-enabled="on"' in listed.text
    flow = flows.get_flow_by_name(session, workspace.id, "thank_you")
    detail = client.get(f"/marketing/flows/{flow.id}")
    assert detail.status_code == 200
    assert 'data-step="0" data-sent="0"' in detail.text
    bad = client.post("/marketing/flows", data={"name": "nope", "enabled": "on", "csrf_token": token})
    assert bad.status_code == 422
    assert "not a ready-made flow" in bad.text
