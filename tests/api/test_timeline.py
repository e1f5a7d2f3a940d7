"""The contact timeline: one merged list, newest first, ties broken by (type, id), paged without gaps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.models import StageChange, Workspace
from storefunnel.workspaces.service import create_workspace

T = dt.datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _stage(session: Session, workspace_id: int, contact_id: int, at: dt.datetime, stage: str) -> StageChange:
    row = StageChange(workspace_id=workspace_id, contact_id=contact_id, stage=stage, changed_at=at, reason="rule")
    session.add(row)
    session.flush()
    return row


def _walk(client: TestClient, auth: dict[str, str], contact_id: int, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"/api/v1/contacts/{contact_id}/timeline", params=params, headers=auth)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["data"]) == limit


@pytest.fixture
def history(session: Session, workspace: Workspace, make: Any) -> tuple[int, list[tuple[dt.datetime, str, int]]]:
    """A contact with touches, orders and stage changes, several sharing one instant; plus noise elsewhere."""
    ws = workspace.id
    who = make.contact(session, ws)
    expected: list[tuple[dt.datetime, str, int]] = []
    for minutes in (0, 5, 5, 30, 90):
        at = T + dt.timedelta(minutes=minutes)
        expected.append((at, "touch", make.touch(session, ws, contact=who, occurred_at=at, channel="Email").id))
    for minutes in (5, 60):
        at = T + dt.timedelta(minutes=minutes)
        expected.append((at, "order", make.order(session, ws, contact=who, placed_at=at).id))
    for minutes, stage in ((5, "conversion"), (61, "buying"), (61, "thanked")):
        at = T + dt.timedelta(minutes=minutes)
        expected.append((at, "stage_change", _stage(session, ws, who.id, at, stage).id))
    # Someone else's history, in this workspace and in another, must never show up.
    other = make.contact(session, ws)
    make.touch(session, ws, contact=other, occurred_at=T)
    make.order(session, ws, contact=other, placed_at=T)
    _stage(session, ws, other.id, T, "buying")
    foreign_ws = create_workspace(session, "timeline-foreign")
    stranger = make.contact(session, foreign_ws.id)
    make.touch(session, foreign_ws.id, contact=stranger, occurred_at=T)
    expected.sort(key=lambda e: (e[0], e[1], e[2]), reverse=True)
    return who.id, expected


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 10, 50])
def test_timeline_merges_newest_first_and_pages_exactly(
    client: TestClient, auth: dict[str, str], history: tuple[int, list[tuple[dt.datetime, str, int]]], limit: int
) -> None:
    contact_id, expected = history
    items = _walk(client, auth, contact_id, limit)
    got = [(dt.datetime.fromisoformat(i["at"]), i["type"], i["id"]) for i in items]
    assert got == expected
    assert len(set(got)) == len(got) == 10


def test_timeline_items_carry_their_fields(
    client: TestClient, auth: dict[str, str], history: tuple[int, list[tuple[dt.datetime, str, int]]]
) -> None:
    contact_id, _ = history
    items = _walk(client, auth, contact_id, 50)
    by_type = {i["type"]: i for i in items}
    assert by_type["touch"]["channel"] == "Email"
    assert by_type["touch"]["kind"] == "page"
    assert by_type["order"]["currency"] == "EUR"
    assert by_type["order"]["status"] == "paid"
    assert by_type["stage_change"]["stage"] in {"conversion", "buying", "thanked"}
    assert dt.datetime.fromisoformat(items[0]["at"]) == T + dt.timedelta(minutes=90)


def test_timeline_of_unknown_or_foreign_contact_is_404(
    client: TestClient, auth: dict[str, str], session: Session, make: Any
) -> None:
    foreign = create_workspace(session, "timeline-foreign-2")
    stranger = make.contact(session, foreign.id)
    make.touch(session, foreign.id, contact=stranger, occurred_at=T, url="https://secret.example/")
    for cid in (stranger.id, 999_999_999):
        r = client.get(f"/api/v1/contacts/{cid}/timeline", headers=auth)
        assert r.status_code == 404
        assert "secret.example" not in r.text


def test_empty_timeline_and_bad_cursor(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    who = make.contact(session, workspace.id)
    r = client.get(f"/api/v1/contacts/{who.id}/timeline", headers=auth)
    assert r.json() == {"data": [], "next_cursor": None}
    bad = client.get(f"/api/v1/contacts/{who.id}/timeline", params={"cursor": "aWQ6MTI"}, headers=auth)
    assert bad.status_code == 422
    assert "cursor" in bad.json()["detail"]
