"""Tracking links, the open pixel and unsubscribe over HTTP: signed or refused, touches on the Email channel."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.messaging import links, tracking
from storefunnel.models import Contact, MessageEvent, Send, Suppression, Touch, Workspace
from tests.fixtures.factories import create_contact
from tests.messaging.helpers import template


def _send(session: Session, ws: Workspace, contact: Contact) -> Send:
    tpl = template(session, ws.id)
    send = Send(workspace_id=ws.id, contact_id=contact.id, template_id=tpl.id, status="sent", to_email=contact.email)
    session.add(send)
    session.flush()
    return send


def test_click_redirects_and_becomes_an_email_touch(client: TestClient, session: Session, workspace: Workspace) -> None:
    contact = create_contact(session, workspace.id, email_consent=True)
    send = _send(session, workspace, contact)
    url = links.click_url(send.id, "https://shop.example/item?id=7")
    r = client.get(url.removeprefix(links.base_url()), follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example/item?id=7"
    touch = session.scalars(sa.select(Touch).where(Touch.contact_id == contact.id)).one()
    assert (touch.kind, touch.event, touch.channel, touch.medium) == ("track", "Email Link Clicked", "Email", "email")
    assert touch.properties["send_id"] == send.id
    clicks = session.scalars(sa.select(MessageEvent).where(MessageEvent.send_id == send.id)).all()
    assert [(e.kind, e.url) for e in clicks] == [("clicked", "https://shop.example/item?id=7")]


def test_altered_or_unsigned_links_never_redirect(client: TestClient, session: Session, workspace: Workspace) -> None:
    contact = create_contact(session, workspace.id)
    send = _send(session, workspace, contact)
    good = links.click_url(send.id, "https://shop.example/").removeprefix(links.base_url())
    body, mac = good.removeprefix("/t/c/").split(".")
    forged_payload = links._b64(f"c:{send.id}:https://evil.example/".encode())
    for path in (
        f"/t/c/{forged_payload}.{mac}",  # another target under the old signature
        f"/t/c/{body}.{mac[:-2]}AA",  # a changed signature
        f"/t/c/{forged_payload}",  # no signature at all
        "/t/c/https:%2F%2Fevil.example",
        "/t/o/nonsense.gif",
        "/u/nonsense",
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (400, 404), path
        assert "location" not in r.headers
    assert session.scalar(sa.select(sa.func.count()).select_from(Touch).where(Touch.contact_id == contact.id)) == 0


def test_first_open_is_counted_once(client: TestClient, session: Session, workspace: Workspace) -> None:
    contact = create_contact(session, workspace.id)
    send = _send(session, workspace, contact)
    path = links.open_url(send.id).removeprefix(links.base_url())
    for _ in range(3):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
    opens = session.scalar(
        sa.select(sa.func.count()).where(MessageEvent.send_id == send.id, MessageEvent.kind == "opened")
    )
    touches = session.scalars(sa.select(Touch).where(Touch.contact_id == contact.id)).all()
    assert opens == 1
    assert [t.event for t in touches] == ["Email Opened"]


def test_unsubscribe_page_changes_nothing_until_the_one_click_post(
    client: TestClient, session: Session, workspace: Workspace
) -> None:
    contact = create_contact(session, workspace.id, email="Reader@Shop.example", email_consent=True)
    send = _send(session, workspace, contact)
    path = links.unsubscribe_url(workspace.id, contact.id, send.id).removeprefix(links.base_url())
    page = client.get(path)
    assert page.status_code == 200
    assert "<form" in page.text
    session.refresh(contact)
    assert contact.unsubscribed_at is None
    assert contact.email_consent
    r = client.post(
        path, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200
    session.refresh(contact)
    assert contact.unsubscribed_at is not None
    assert not contact.email_consent
    suppression = session.scalars(sa.select(Suppression).where(Suppression.workspace_id == workspace.id)).one()
    assert (suppression.email, suppression.reason) == ("reader@shop.example", "unsubscribe")
    assert (
        session.scalar(
            sa.select(sa.func.count()).where(MessageEvent.send_id == send.id, MessageEvent.kind == "unsubscribed")
        )
        == 1
    )
    again = client.post(path)
    assert again.status_code == 200  # idempotent


def test_thank_you_click_carries_the_flow_for_the_cycle_rules(session: Session, workspace: Workspace) -> None:
    from storefunnel.messaging import flows

    contact = create_contact(session, workspace.id)
    flow = flows.install(session, workspace.id, "thank_you", enabled=True)
    step = flows.steps_of(session, flow.id)[0]
    send = Send(
        workspace_id=workspace.id,
        contact_id=contact.id,
        template_id=step.template_id,
        flow_id=flow.id,
        flow_step_id=step.id,
        kind="transactional",
        status="sent",
    )
    session.add(send)
    session.flush()
    tracking.record_click(session, send.id, "https://shop.example/")
    touch = session.scalars(sa.select(Touch).where(Touch.contact_id == contact.id)).one()
    assert touch.properties["flow"] == "thank_you"
    assert touch.campaign == "thank_you"
