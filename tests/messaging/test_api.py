"""The email API: templates (preview, test send), campaigns, flows, suppressions, events, and results against truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.config import get_settings
from storefunnel.models import MessageEvent, Send, Workspace
from tests.fixtures.factories import create_contact, create_order
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import HTML, segment

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def _template(client: TestClient, auth: dict[str, str], **fields: str) -> dict:
    body = {"name": "news", "subject": "Hi {{ contact.first_name }}", "html": HTML, "text": "Hi", **fields}
    r = client.post("/api/v1/messages/templates", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def smtp_env(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    monkeypatch.setenv("STOREFUNNEL_SMTP_URL", smtp_server.url)
    get_settings.cache_clear()
    yield smtp_server
    monkeypatch.undo()
    get_settings.cache_clear()


def test_template_errors_name_the_field(client: TestClient, auth: dict[str, str]) -> None:
    cases = {
        "subject": {"subject": "{{ contact.first_name "},
        "html": {"html": "{{ secrets }}"},
        "text": {"text": "{{ contact.password_hash }}"},
    }
    for field, override in cases.items():
        body = {"name": f"bad-{field}", "subject": "s", "html": "<p>x</p>", "text": "x", **override}
        r = client.post("/api/v1/messages/templates", json=body, headers=auth)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"].startswith(f"{field}:")
    _template(client, auth)
    dup = client.post("/api/v1/messages/templates", json={"name": "news", "subject": "s", "text": "x"}, headers=auth)
    assert dup.status_code == 409
    assert "name" in dup.json()["detail"]


def test_sandbox_refuses_reaching_into_python(client: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "evil", "subject": "s", "text": "{{ contact.__class__.__mro__ }}"}
    r = client.post("/api/v1/messages/templates", json=body, headers=auth)
    assert r.status_code == 422


def test_preview_with_a_real_contact(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    tpl = _template(client, auth)
    c = create_contact(session, workspace.id, first_name="<b>Zoë</b>")
    r = client.post(f"/api/v1/messages/templates/{tpl['id']}/preview", json={"contact_id": c.id}, headers=auth)
    assert r.status_code == 200
    assert r.json()["subject"] == "Hi <b>Zoë</b>"  # the subject is a header: no HTML escaping
    assert "Hi &lt;b&gt;Zoë&lt;/b&gt;" in r.json()["html"]  # the HTML part is autoescaped
    sample = client.post(f"/api/v1/messages/templates/{tpl['id']}/preview", headers=auth)
    assert sample.json()["subject"] == "Hi Alex"


def test_test_send_reaches_the_smtp_server(client: TestClient, auth: dict[str, str], smtp_env: SmtpServer) -> None:
    tpl = _template(client, auth)
    r = client.post(f"/api/v1/messages/templates/{tpl['id']}/test-send", json={"to": "me@shop.example"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "sent"
    got = smtp_env.sink.to("me@shop.example")
    assert len(got) == 1
    assert got[0].message["Subject"] == "[Test] Hi Alex"
    bad = client.post(f"/api/v1/messages/templates/{tpl['id']}/test-send", json={"to": "not-an-address"}, headers=auth)
    assert bad.status_code == 422
    assert "to" in bad.json()["detail"]


def test_campaign_lifecycle_and_refusals(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    tpl = _template(client, auth)
    missing = client.post("/api/v1/campaigns", json={"name": "x", "template_id": 999999}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["detail"].startswith("template_id")
    seg = segment(session, workspace.id, [])
    r = client.post(
        "/api/v1/campaigns", json={"name": "spring", "template_id": tpl["id"], "segment_id": seg.id}, headers=auth
    )
    assert r.status_code == 201
    cid = r.json()["id"]
    workspace.display_timezone = "Europe/Lisbon"
    session.flush()
    sched = client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at": "2026-07-01T09:00:00"}, headers=auth)
    assert sched.status_code == 200
    assert sched.json()["scheduled_at"].startswith("2026-07-01T08:00:00")  # 09:00 in Lisbon summer time is 08:00 UTC
    bad_time = client.post(f"/api/v1/campaigns/{cid}/send", json={"send_at": "tomorrow"}, headers=auth)
    assert bad_time.status_code == 422
    assert "send_at" in bad_time.json()["detail"]
    cancel = client.post(f"/api/v1/campaigns/{cid}/cancel", headers=auth)
    assert cancel.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/campaigns/{cid}/send", headers=auth)
    assert again.status_code == 409


def test_flows_are_switched_on_by_name(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/v1/flows", json={"name": "welcome", "enabled": True}, headers=auth)
    assert r.status_code == 201, r.text
    flow = r.json()
    assert flow["enabled"]
    assert [s["delay_minutes"] for s in flow["steps"]] == [0, 2880, 7200]
    off = client.patch(f"/api/v1/flows/{flow['id']}", json={"enabled": False}, headers=auth)
    assert off.json()["enabled"] is False
    unknown = client.post("/api/v1/flows", json={"name": "nope"}, headers=auth)
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("name")
    bad_step = client.patch(
        f"/api/v1/flows/{flow['id']}",
        json={"steps": [{"delay_minutes": 0, "template_id": flow["steps"][0]["template_id"], "condition": {"x": 1}}]},
        headers=auth,
    )
    assert bad_step.status_code == 422
    assert bad_step.json()["detail"].startswith("steps.0.condition")
    listed = client.get("/api/v1/flows", headers=auth).json()
    assert [f["name"] for f in listed] == ["welcome"]
    detail = client.get(f"/api/v1/flows/{flow['id']}", headers=auth).json()
    assert len(detail["steps"]) == 3
    assert detail["steps"][0]["results"]["sent"] == 0


def test_suppressions_and_bounces(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    c = create_contact(session, workspace.id, email="Comp@Shop.example", email_consent=True)
    r = client.post("/api/v1/messages/events", json={"kind": "complained", "email": "comp@shop.example"}, headers=auth)
    assert r.status_code == 201
    assert r.json()["suppressed"]
    session.refresh(c)
    assert c.unsubscribed_at is not None
    assert not c.email_consent
    add = client.post(
        "/api/v1/messages/suppressions", json={"email": "x@shop.example", "reason": "hard_bounce"}, headers=auth
    )
    assert add.status_code == 201
    rows = client.get("/api/v1/messages/suppressions", headers=auth).json()["data"]
    assert {(s["email"], s["reason"]) for s in rows} == {
        ("comp@shop.example", "complaint"),
        ("x@shop.example", "hard_bounce"),
    }
    gone = client.delete("/api/v1/messages/suppressions", params={"email": "X@shop.example"}, headers=auth)
    assert gone.json()["removed"] is True
    bad = client.post(
        "/api/v1/messages/suppressions", json={"email": "x@shop.example", "reason": "bored"}, headers=auth
    )
    assert bad.status_code == 422
    assert "reason" in bad.json()["detail"]


def test_results_credit_orders_to_the_last_click_within_the_window(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    """Planted truth: contact A clicks campaign 1 then campaign 2, then orders 100.00 (credited to 2, the last
    click); B clicks campaign 1 and orders 30.00 a day later (credited to 1) and 70.00 ten days later (outside the
    five-day window: nobody's); C's refunded order earns nothing; D orders without clicking."""
    tpl = _template(client, auth)
    ids = []
    for name in ("one", "two"):
        r = client.post("/api/v1/campaigns", json={"name": name, "template_id": tpl["id"]}, headers=auth)
        ids.append(r.json()["id"])
    a, b, c, d = (create_contact(session, workspace.id, email_consent=True) for _ in range(4))

    def sent(campaign: int, contact: object, status: str = "sent") -> Send:
        row = Send(
            workspace_id=workspace.id,
            contact_id=contact.id,
            template_id=tpl["id"],
            campaign_id=campaign,
            status=status,
            to_email=contact.email,
        )
        session.add(row)
        session.flush()
        return row

    def click(send: Send, at: dt.datetime) -> None:
        session.add(
            MessageEvent(
                workspace_id=workspace.id,
                send_id=send.id,
                contact_id=send.contact_id,
                kind="clicked",
                occurred_at=at,
                url="https://shop.example/",
            )
        )
        session.flush()

    s1a, s2a, s1b, s1c = sent(ids[0], a), sent(ids[1], a), sent(ids[0], b), sent(ids[0], c)
    sent(ids[0], d)
    sent(ids[1], b, "skipped")
    click(s1a, T0)
    click(s2a, T0 + dt.timedelta(hours=1))
    click(s1b, T0)
    click(s1c, T0)
    session.add(MessageEvent(workspace_id=workspace.id, send_id=s1a.id, contact_id=a.id, kind="opened", occurred_at=T0))
    create_order(session, workspace.id, a, placed_at=T0 + dt.timedelta(hours=2), total=10000)
    create_order(session, workspace.id, b, placed_at=T0 + dt.timedelta(days=1), total=3000)
    create_order(session, workspace.id, b, placed_at=T0 + dt.timedelta(days=10), total=7000)
    create_order(session, workspace.id, c, placed_at=T0 + dt.timedelta(hours=3), total=5000, status="refunded")
    create_order(session, workspace.id, d, placed_at=T0 + dt.timedelta(hours=3), total=9900)
    one = client.get(f"/api/v1/campaigns/{ids[0]}", headers=auth).json()["results"]
    two = client.get(f"/api/v1/campaigns/{ids[1]}", headers=auth).json()["results"]
    assert (one["sent"], one["opened"], one["clicked"], one["orders"], one["revenue"]) == (4, 1, 3, 1, 3000)
    assert (two["sent"], two["skipped"], two["clicked"], two["orders"], two["revenue"]) == (1, 1, 1, 1, 10000)
    assert one["delivered"] == 4
    assert one["attribution_days"] == 5
