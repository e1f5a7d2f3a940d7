"""Recent events: what the tracking API just stored shows up, newest arrival first, filtered by kind, per workspace."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import KeyKind, User, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.web.helpers import login

_ROW = re.compile(r'data-touch-id="(\d+)" data-kind="([^"]+)"')


@pytest.fixture
def signed_in(client: TestClient, user: User) -> TestClient:
    assert login(client, user.email)[0] == 303
    return client


def send_batch(client: TestClient, write_key: str, messages: list[dict[str, Any]]) -> None:
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    r = client.post("/v1/batch", json={"batch": messages}, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text


def msg(**fields: Any) -> dict[str, Any]:
    return {"messageId": uuid.uuid4().hex, **fields}


def test_feed_shows_arrivals_newest_first_with_kind_channel_and_who(
    signed_in: TestClient, session: Session, workspace: Workspace
) -> None:
    key = create_key(session, workspace.id, KeyKind.write)[1]
    old = "2026-01-05T10:00:00Z"  # an old client timestamp: arrival order still puts it on top below
    send_batch(
        signed_in,
        key,
        [
            msg(
                type="page",
                anonymousId="anon-7",
                timestamp="2026-03-01T09:00:00Z",
                properties={"url": "https://shop.test/?utm_source=news&utm_medium=email&utm_campaign=spring"},
            ),
            msg(type="identify", anonymousId="anon-7", userId="cust-7", traits={"email": "seven@example.com"}),
        ],
    )
    send_batch(signed_in, key, [msg(type="track", userId="cust-7", event="Order Completed", timestamp=old)])
    send_batch(signed_in, key, [msg(type="page", anonymousId="anon-9", properties={"url": "https://shop.test/a"})])

    r = signed_in.get("/marketing/events")
    assert r.status_code == 200
    html = r.text
    kinds = [kind for _, kind in _ROW.findall(html)]
    assert kinds == ["page", "track", "page"]  # arrival order, newest first
    ids = [int(i) for i, _ in _ROW.findall(html)]
    assert ids == sorted(ids, reverse=True)
    assert "Order Completed" in html
    assert 'anonymous</span> <span class="mono">anon-9</span>' in html
    assert "seven@example.com" in html  # the track call's contact, and the identify call below
    assert "Email" in html  # the utm-tagged page view's channel
    assert "https://shop.test/a" in html
    assert "2026-01-05 10:00:00" in html  # shown at its own time (UTC workspace)
    assert 'hx-trigger="every 2s"' in html
    assert "new contact" in html


def test_filter_by_kind(signed_in: TestClient, session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, email="kim@example.com")
    for kind in ("page", "track", "page", "email_open"):
        make.touch(session, workspace.id, c, kind=kind, event="Clicked" if kind == "track" else None)
    feed = signed_in.get("/marketing/events/feed", params={"kind": "page"})
    assert feed.status_code == 200
    assert "<html" not in feed.text
    assert [k for _, k in _ROW.findall(feed.text)] == ["page", "page"]
    assert 'hx-get="/marketing/events/feed?kind=page&amp;limit=50"' in feed.text
    assert "Identify calls" not in feed.text
    assert [k for _, k in _ROW.findall(signed_in.get("/marketing/events?kind=email_open").text)] == ["email_open"]
    only_profiles = signed_in.get("/marketing/events/feed", params={"kind": "identify"}).text
    assert _ROW.findall(only_profiles) == []
    assert "kim@example.com" in only_profiles
    assert len(_ROW.findall(signed_in.get("/marketing/events/feed", params={"limit": 3}).text)) == 3


def test_other_workspaces_events_never_show(signed_in: TestClient, session: Session, make: Any) -> None:
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    c = make.contact(session, other.id, email="secret-person@victim.example")
    make.touch(session, other.id, c, url="https://victim.example/secret", occurred_at=dt.datetime.now(dt.UTC))
    html = signed_in.get("/marketing/events").text
    assert "victim.example" not in html
    assert _ROW.findall(html) == []
    assert "Nothing yet" in html


def test_bad_filters_name_the_field(signed_in: TestClient) -> None:
    r = signed_in.get("/marketing/events/feed", params={"kind": "page'; drop"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("kind:")
    r = signed_in.get("/marketing/events/feed", params={"limit": 0})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "limit"
    assert signed_in.get("/marketing/events", params={"limit": 201}).status_code == 422


def test_anonymous_visitors_are_sent_to_login(client: TestClient) -> None:
    for path in ("/marketing/events", "/marketing/events/feed"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=/marketing/events")
    r = client.get("/marketing/events/feed", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401
    assert r.headers["HX-Redirect"].startswith("/login")
