"""The Marketing hat's Campaigns and Flows pages: real numbers on the page, switching a flow on with CSRF."""

from __future__ import annotations

import html
import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.messaging import flows, schemas, service
from storefunnel.models import EmailTemplate, Send, Workspace
from storefunnel.workspaces.service import create_user, create_workspace
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


def _welcome(client: TestClient, session: Session, workspace: Workspace) -> tuple[int, str]:
    _login(client, session, workspace)
    flow = flows.install(session, workspace.id, "welcome", enabled=False)
    page = client.get(f"/marketing/flows/{flow.id}")
    assert page.status_code == 200
    return flow.id, csrf_from(page.text)


def _steps(session: Session, flow_id: int) -> list[tuple[int, int, dict[str, object]]]:
    session.expire_all()
    return [(s.delay_minutes, s.template_id, s.condition) for s in flows.steps_of(session, flow_id)]


def test_flow_editor_changes_a_step_and_its_subject(client: TestClient, session: Session, workspace: Workspace) -> None:
    flow_id, token = _welcome(client, session, workspace)
    before = _steps(session, flow_id)
    form = {
        "csrf_token": token,
        "position": "1",
        "delay": "3",
        "unit": "days",
        "template_id": str(before[1][1]),
        "subject": "Three days in: {{ store }}",
        "condition": "no_open_of_previous",
        "stage_in": "",
    }
    r = client.post(f"/marketing/flows/{flow_id}/steps", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    after = _steps(session, flow_id)
    assert after[1] == (3 * 24 * 60, before[1][1], {"no_open_of_previous": True})
    assert [after[0], after[2]] == [before[0], before[2]]
    tpl = session.get(EmailTemplate, before[1][1])
    assert tpl is not None
    assert tpl.subject == "Three days in: {{ store }}"
    page = client.get(f"/marketing/flows/{flow_id}")
    assert 'data-step="1" data-delay-minutes="4320"' in page.text
    # Through HTMX the answer is the editor alone, to swap in place.
    part = client.post(f"/marketing/flows/{flow_id}/steps", data={**form, "delay": "4"}, headers={"HX-Request": "true"})
    assert part.status_code == 200
    assert 'id="flow-body"' in part.text
    assert "<html" not in part.text
    assert _steps(session, flow_id)[1][0] == 4 * 24 * 60


def test_flow_editor_refusals_are_shown_by_the_step_and_change_nothing(
    client: TestClient, session: Session, workspace: Workspace
) -> None:
    flow_id, token = _welcome(client, session, workspace)
    before = _steps(session, flow_id)
    tpl = session.get(EmailTemplate, before[0][1])
    assert tpl is not None
    subject = tpl.subject
    base = {"csrf_token": token, "position": "0", "unit": "days", "template_id": str(before[0][1]), "condition": ""}
    cases = [
        ({"delay": "soon"}, "delay: a whole number"),
        ({"delay": "400"}, "delay: at most 365 days (525,600 minutes)"),
        ({"delay": "1", "template_id": "999999999"}, "steps.0.template_id: template 999999999 not found"),
        ({"delay": "1", "subject": "{{ contact.password_hash }}"}, "subject:"),
        ({"delay": "1", "condition": "sometimes"}, "condition:"),
    ]
    for override, message in cases:
        r = client.post(f"/marketing/flows/{flow_id}/steps", data={**base, **override}, headers={"HX-Request": "true"})
        assert r.status_code == 422, (override, r.status_code)
        error = r.text.split('data-testid="error-step-0">', 1)[1].split("</div>", 1)[0]
        assert message in html.unescape(error), (override, error)
        assert 'data-testid="error-step-1"></div>' in r.text  # the other steps show no error
    assert _steps(session, flow_id) == before
    session.refresh(tpl)
    assert tpl.subject == subject  # a refused step leaves the email's subject as it was too
    # Without HTMX the whole page comes back, with the typed values kept in the form.
    page = client.post(f"/marketing/flows/{flow_id}/steps", data={**base, "delay": "400"})
    assert page.status_code == 422
    assert "<html" in page.text
    assert 'value="400"' in page.text


def test_flow_editor_adds_and_removes_steps_and_switches_the_flow(
    client: TestClient, session: Session, workspace: Workspace
) -> None:
    flow_id, token = _welcome(client, session, workspace)
    before = _steps(session, flow_id)
    extra = template(session, workspace.id, name="last-call")
    add = {"csrf_token": token, "delay": "12", "unit": "hours", "template_id": str(extra.id), "condition": ""}
    assert client.post(f"/marketing/flows/{flow_id}/steps/add", data=add, follow_redirects=False).status_code == 303
    assert _steps(session, flow_id) == [*before, (12 * 60, extra.id, {})]
    bad = client.post(f"/marketing/flows/{flow_id}/steps/add", data={**add, "template_id": ""})
    assert bad.status_code == 422
    assert "template: choose" in bad.text
    r = client.post(
        f"/marketing/flows/{flow_id}/steps/remove", data={"csrf_token": token, "position": "0"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert _steps(session, flow_id) == [*before[1:], (12 * 60, extra.id, {})]
    for _ in range(3):
        client.post(f"/marketing/flows/{flow_id}/steps/remove", data={"csrf_token": token, "position": "0"})
    last = client.post(f"/marketing/flows/{flow_id}/steps/remove", data={"csrf_token": token, "position": "0"})
    assert last.status_code == 422
    assert "at least one step" in last.text
    assert len(_steps(session, flow_id)) == 1
    on = client.post(f"/marketing/flows/{flow_id}/enabled", data={"csrf_token": token, "enabled": "on"})
    assert on.status_code == 200  # followed the redirect back to the page
    assert 'data-testid="flow-state" data-enabled="on"' in on.text
    session.expire_all()
    assert flows.get_flow_by_name(session, workspace.id, "welcome").enabled
    refused = client.post(f"/marketing/flows/{flow_id}/enabled", data={"enabled": "off"}, follow_redirects=False)
    assert refused.status_code == 403  # no CSRF token


def test_another_workspaces_flow_is_not_found_in_the_editor(
    client: TestClient, session: Session, workspace: Workspace
) -> None:
    _, token = _welcome(client, session, workspace)
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    theirs = flows.install(session, other.id, "thank_you")
    before = _steps(session, theirs.id)
    assert client.get(f"/marketing/flows/{theirs.id}").status_code == 404
    for path, data in (
        ("steps", {"position": "0", "delay": "1", "unit": "days", "template_id": str(before[0][1])}),
        ("steps/add", {"delay": "1", "unit": "days", "template_id": str(before[0][1])}),
        ("steps/remove", {"position": "0"}),
        ("enabled", {"enabled": "on"}),
    ):
        r = client.post(f"/marketing/flows/{theirs.id}/{path}", data={**data, "csrf_token": token})
        assert r.status_code == 404, path
    assert _steps(session, theirs.id) == before
    session.refresh(theirs)
    assert theirs.enabled is False
