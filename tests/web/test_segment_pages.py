"""Sales → Buying groups through the real app: pages, the live-count endpoint, saves, refreshes, lists, CSRF."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.models import Segment, SegmentMember, User, Workspace
from storefunnel.segments import service
from storefunnel.segments.schemas import MembersChange, SegmentCreate
from storefunnel.workspaces.service import create_user, create_workspace
from tests.web.helpers import PASSWORD, csrf_from, login

PREVIEW = "/dashboard-data/segments/preview"


@pytest.fixture
def owner(client: TestClient, user: User) -> TestClient:
    assert login(client, user.email)[0] == 303
    return client


@pytest.fixture
def shop(session: Session, workspace: Workspace, make: Any) -> dict[str, Any]:
    """Ten contacts with known countries, age bands, orders and cart events, relative to now."""
    now = utcnow()
    people = [
        # (country, age band, stage, [order totals], cart adds in the last 14 days)
        ("PT", "25-29", "buying", [15000], 2),
        ("PT", "30-39", "thanked", [5000, 6000], 3),
        ("PT", "40-49", "prospecting", [], 2),
        ("PT", "30-39", "conversion", [20000], 0),
        ("ES", "25-29", "buying", [30000], 5),
        ("ES", "18-24", "prospecting", [], 1),
        ("FR", "30-39", "lapsed", [900], 2),
        ("FR", None, "prospecting", [], 0),
        (None, "25-29", None, [12000], 4),
        ("PT", "65+", "keeping_in_touch", [100, 200], 2),
    ]
    contacts = []
    for n, (country, band, stage, totals, adds) in enumerate(people):
        c = make.contact(
            session, workspace.id, email=f"shopper{n}@example.com", country=country, age_band=band, stage=stage
        )
        for k, total in enumerate(totals):
            make.order(session, workspace.id, c, total=total, placed_at=now - dt.timedelta(days=3 + k))
        for k in range(adds):
            make.touch(
                session, workspace.id, c, kind="track", event="Product Added", occurred_at=now - dt.timedelta(days=k)
            )
        # An old add outside every window used below.
        make.touch(
            session, workspace.id, c, kind="track", event="Product Added", occurred_at=now - dt.timedelta(days=90)
        )
        contacts.append(c)
    return {"contacts": contacts, "now": now}


def token(client: TestClient, path: str = "/sales/segments/new") -> str:
    return csrf_from(client.get(path).text)


def post_preview(client: TestClient, rules: Any, **extra: Any) -> Any:
    return client.post(PREVIEW, json={"rules": rules, **extra}, headers={"X-CSRF-Token": token(client)})


RULES = [
    {"field": "country", "op": "eq", "value": "PT"},
    {
        "all": [
            {"field": "country", "op": "eq", "value": "PT"},
            {"field": "age_band", "op": "in", "value": ["25-29", "30-39"]},
        ]
    },
    {"event": "Product Added", "op": ">=", "count": 2, "within_days": 14},
    {"field": "revenue", "op": "gt", "value": 10000},
    {
        "any": [
            {"field": "country", "op": "eq", "value": "FR"},
            {"not": {"field": "order_count", "op": "gte", "value": 1}},
        ]
    },
    {"not": {"field": "country", "op": "eq", "value": "PT"}},
]
# The truth for RULES, read off the shop fixture by hand (contact index numbers).
EXPECTED = [
    {0, 1, 2, 3, 9},
    {0, 1, 3},
    {0, 1, 2, 4, 6, 8, 9},
    {0, 1, 3, 4, 8},
    {2, 5, 6, 7},
    {4, 5, 6, 7, 8},
]


@pytest.mark.parametrize(("rules", "expected"), list(zip(RULES, EXPECTED, strict=True)))
def test_preview_counts_equal_the_service_and_the_truth(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any], rules: Any, expected: set[int]
) -> None:
    r = post_preview(owner, rules, sample_size=5)
    assert r.status_code == 200, r.text
    body = r.json()
    count, sample = service.preview(session, workspace.id, rules, 5)
    ids = [c.id for c in shop["contacts"]]
    assert body["count"] == count == len(expected)
    # The sample: the newest five of exactly the expected contacts, each linking to the contact page.
    want = sorted((ids[i] for i in expected), reverse=True)[:5]
    assert [c["id"] for c in body["sample"]] == [c.id for c in sample] == want
    assert all(c["url"] == f"/sales/contacts/{c['id']}" for c in body["sample"])


def test_bad_rule_is_422_naming_the_path(owner: TestClient, shop: dict[str, Any]) -> None:
    rules = {
        "all": [
            {"field": "country", "op": "eq", "value": "PT"},
            {"any": [{"field": "country", "op": "gt", "value": "PT"}, {"field": "stage", "op": "eq", "value": "x"}]},
        ]
    }
    r = post_preview(owner, rules)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["detail"].startswith("rules.all[1].any[0].op: 'gt' is not an operator for string field 'country'")
    assert [e["path"] for e in body["errors"]] == ["rules.all[1].any[0].op", "rules.all[1].any[1].value"]


def test_preview_needs_the_session_and_the_csrf_header(client: TestClient, owner: TestClient) -> None:
    rules = {"field": "country", "op": "eq", "value": "PT"}
    assert owner.post(PREVIEW, json={"rules": rules}).status_code == 403
    assert owner.post(PREVIEW, json={"rules": rules}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    owner.post("/logout", data={"csrf_token": token(owner)})
    r = client.post(PREVIEW, json={"rules": rules}, headers={"X-CSRF-Token": csrf_from(client.get("/login").text)})
    assert r.status_code == 401


def test_preview_of_a_segment_naming_itself_is_a_cycle(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any]
) -> None:
    seg = service.create_segment(
        session, workspace.id, SegmentCreate(name="PT", rules={"field": "country", "op": "eq", "value": "PT"})
    )
    rules = {"all": [{"field": "country", "op": "eq", "value": "PT"}, {"segment": seg.id, "op": "in"}]}
    r = post_preview(owner, rules, segment_id=seg.id)
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "rules.all[1].segment"
    assert post_preview(owner, rules).json()["count"] == 5


def test_list_shows_members_change_and_refresh_time(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any], make: Any
) -> None:
    now = shop["now"]
    seg = service.create_segment(
        session,
        workspace.id,
        SegmentCreate(name="Portugal", rules={"field": "country", "op": "eq", "value": "PT"}),
        now=now - dt.timedelta(days=40),
    )
    # Forty days ago five contacts entered; now one more comes and one goes: members 5, change 0 over 30 days.
    shop["contacts"][7].country = "PT"
    shop["contacts"][0].country = "ES"
    session.flush()
    service.refresh(session, workspace.id, seg.id, now - dt.timedelta(days=2))
    static = service.create_segment(session, workspace.id, SegmentCreate(name="Fair visitors", kind="static"))
    service.add_members(session, workspace.id, static.id, MembersChange(emails=["shopper1@example.com"]))

    page = owner.get("/sales/segments")
    assert page.status_code == 200
    html = page.text
    assert f'data-segment-id="{seg.id}" data-members="5" data-change="0"' in html
    assert f'data-segment-id="{static.id}" data-members="1" data-change="1"' in html
    assert "Buying groups" in html
    assert 'href="/sales/segments"' in html

    # Now one more leaves: the change over 30 days is -1.
    shop["contacts"][1].country = "ES"
    session.flush()
    service.refresh(session, workspace.id, seg.id)
    assert f'data-segment-id="{seg.id}" data-members="4" data-change="-1"' in owner.get("/sales/segments").text


def test_pages_need_sign_in(client: TestClient) -> None:
    for path in ("/sales/segments", "/sales/segments/new", "/sales/segments/1"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=/sales/segments")


def catalogue_of(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" data-catalogue>(.*?)</script>', html, re.S)
    assert match
    return dict(json.loads(match.group(1)))


def test_builder_catalogue_offers_the_rule_language_and_the_data(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any]
) -> None:
    from storefunnel.segments import rules

    html = owner.get("/sales/segments/new").text
    cat = catalogue_of(html)
    fields = {f["name"]: f for f in cat["fields"]}
    assert set(fields) == set(rules.FIELDS)
    for name, f in fields.items():
        assert f["ops"] == list(rules.OPS_BY_TYPE[rules.FIELDS[name]])
    assert fields["country"]["values"] == ["ES", "FR", "PT"]
    assert fields["stage"]["values"][0] == "prospecting"
    assert fields["stage"]["fixed"]
    assert fields["age_band"]["values"] == ["under_18", "18-24", "25-29", "30-39", "40-49", "50-64", "65+"]
    assert fields["revenue"]["money"]
    assert cat["decimals"] == 2
    assert cat["currency"] == workspace.currency
    assert cat["events"] == ["Product Added"]
    assert 'name="rules"' in html
    assert "segment_builder.js" in html


def form_post(client: TestClient, path: str, data: dict[str, str], page: str = "/sales/segments/new") -> Any:
    return client.post(path, data={**data, "csrf_token": token(client, page)}, follow_redirects=False)


def segment_named(session: Session, workspace: Workspace, name: str) -> Segment | None:
    return session.scalars(sa.select(Segment).where(Segment.workspace_id == workspace.id, Segment.name == name)).first()


def current_ids(session: Session, segment: Segment) -> set[int]:
    stmt = sa.select(SegmentMember.contact_id).where(
        SegmentMember.segment_id == segment.id, SegmentMember.left_at.is_(None)
    )
    return set(session.scalars(stmt))


def test_save_creates_evaluates_then_update_and_refresh(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any], make: Any
) -> None:
    ids = [c.id for c in shop["contacts"]]
    rules = RULES[1]
    r = form_post(owner, "/sales/segments", {"name": "PT 25-39", "kind": "dynamic", "rules": json.dumps(rules)})
    assert r.status_code == 303
    seg = segment_named(session, workspace, "PT 25-39")
    assert seg is not None
    assert seg.kind == "dynamic"
    assert seg.rules == rules
    assert r.headers["location"] == f"/sales/segments/{seg.id}?saved=1"
    assert seg.member_count == 3
    assert current_ids(session, seg) == {ids[0], ids[1], ids[3]}

    page = owner.get(r.headers["location"]).text
    assert 'data-figure="members" data-value="3"' in page
    assert "Saved." in page
    for i in (0, 1, 3):
        assert f'href="/sales/contacts/{ids[i]}"' in page

    # New rules through the same form: the members follow at once.
    path = f"/sales/segments/{seg.id}"
    r = form_post(owner, path, {"name": "PT buyers", "rules": json.dumps(RULES[0])}, path)
    assert r.status_code == 303
    session.refresh(seg)
    assert (seg.name, seg.member_count) == ("PT buyers", 5)

    # A new Portuguese contact appears; a refresh lets them in and says so.
    newcomer = make.contact(session, workspace.id, email="new@example.com", country="PT")
    r = form_post(owner, path + "/refresh", {}, path)
    assert r.status_code == 303
    assert r.headers["location"] == f"{path}?entered=1&left=0"
    session.refresh(seg)
    assert seg.member_count == 6
    assert newcomer.id in current_ids(session, seg)
    assert "Refreshed: 1 entered, 0 left." in owner.get(r.headers["location"]).text


def test_bad_rules_on_save_are_422_with_the_path_and_nothing_saved(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any]
) -> None:
    bad = {"all": [{"field": "country", "op": "eq", "value": "PT"}, {"field": "revenue", "op": "gt", "value": "lots"}]}
    r = form_post(owner, "/sales/segments", {"name": "Broken", "kind": "dynamic", "rules": json.dumps(bad)})
    assert r.status_code == 422
    assert "rules.all[1].value: gt needs an integer" in r.text
    assert '"path": "rules.all[1].value"' in r.text  # handed to the builder to mark the row
    assert segment_named(session, workspace, "Broken") is None
    # The builder comes back with what was sent, and the name typed.
    assert 'value="Broken"' in r.text
    assert '"value": "lots"' in r.text

    r = form_post(owner, "/sales/segments", {"name": "No JSON", "kind": "dynamic", "rules": "{not json"})
    assert r.status_code == 422
    assert "rules: not valid JSON" in r.text
    r = form_post(owner, "/sales/segments", {"name": "", "kind": "dynamic", "rules": json.dumps(RULES[0])})
    assert r.status_code == 422
    assert "name: give the buying group a name" in r.text
    r = form_post(owner, "/sales/segments", {"name": "Empty", "kind": "dynamic", "rules": ""})
    assert r.status_code == 422
    assert "rules: a dynamic segment needs rules" in r.text
    assert segment_named(session, workspace, "Empty") is None

    # A taken name is a conflict, named.
    assert form_post(owner, "/sales/segments", {"name": "Dup", "kind": "static"}).status_code == 303
    r = form_post(owner, "/sales/segments", {"name": "Dup", "kind": "static"})
    assert r.status_code == 409
    assert "name: a segment named &#39;Dup&#39; already exists" in r.text


def test_forms_need_the_csrf_token(owner: TestClient, session: Session, workspace: Workspace) -> None:
    r = owner.post("/sales/segments", data={"name": "X", "kind": "static"}, follow_redirects=False)
    assert r.status_code == 403
    r = owner.post("/sales/segments", data={"name": "X", "kind": "static", "csrf_token": "nope"})
    assert r.status_code == 403
    assert segment_named(session, workspace, "X") is None
    seg = service.create_segment(session, workspace.id, SegmentCreate(name="S", kind="static"))
    for suffix in ("", "/refresh", "/members", "/import"):
        assert owner.post(f"/sales/segments/{seg.id}{suffix}", data={"name": "Y"}).status_code == 403


def test_static_list_add_remove_by_email_and_csv_import(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any]
) -> None:
    ids = [c.id for c in shop["contacts"]]
    assert form_post(owner, "/sales/segments", {"name": "Fair", "kind": "static"}).status_code == 303
    seg = segment_named(session, workspace, "Fair")
    assert seg is not None
    assert seg.kind == "static"
    assert seg.rules is None
    path = f"/sales/segments/{seg.id}"

    r = form_post(
        owner, path + "/members", {"emails": "shopper1@example.com, SHOPPER2@example.com\nshopper3@example.com"}, path
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"{path}?added=3"
    assert current_ids(session, seg) == {ids[1], ids[2], ids[3]}

    # One unknown address refuses the whole change, and is named.
    r = form_post(owner, path + "/members", {"emails": "shopper4@example.com\nnobody@example.com"}, path)
    assert r.status_code == 422
    assert "nobody@example.com" in r.text
    assert "nothing was changed" in r.text
    assert current_ids(session, seg) == {ids[1], ids[2], ids[3]}

    r = form_post(owner, path + "/members", {"emails": "shopper2@example.com", "action": "remove"}, path)
    assert r.headers["location"] == f"{path}?removed=1"
    assert current_ids(session, seg) == {ids[1], ids[3]}

    csv_text = "name,Email\nA,shopper5@example.com\nB,shopper1@example.com\nC,stranger@example.com\n"
    r = owner.post(
        path + "/import",
        data={"csrf_token": token(owner, path)},
        files={"file": ("fair.csv", csv_text.encode(), "text/csv")},
    )
    assert r.status_code == 200
    assert 'data-added="1" data-unknown="1"' in r.text
    assert "stranger@example.com" in r.text
    session.refresh(seg)
    assert current_ids(session, seg) == {ids[1], ids[3], ids[5]}
    assert seg.member_count == 3

    r = owner.post(
        path + "/import", data={"csrf_token": token(owner, path)}, files={"file": ("x.csv", b"\xff\xfe", "text/csv")}
    )
    assert r.status_code == 422
    assert "file: not UTF-8" in r.text


def test_members_are_cursor_paginated(owner: TestClient, session: Session, workspace: Workspace, make: Any) -> None:
    for n in range(63):
        make.contact(session, workspace.id, email=f"m{n}@example.com", country="IE")
    seg = service.create_segment(
        session, workspace.id, SegmentCreate(name="Ireland", rules={"field": "country", "op": "eq", "value": "IE"})
    )
    page = owner.get(f"/sales/segments/{seg.id}").text
    first = re.findall(r'<tr data-contact-id="(\d+)">', page)
    assert len(first) == 50
    cursor = re.search(r"members\?cursor=([\w-]+)", page)
    assert cursor
    more = owner.get(f"/sales/segments/{seg.id}/members?cursor={cursor.group(1)}", headers={"HX-Request": "true"})
    rest = re.findall(r'<tr data-contact-id="(\d+)">', more.text)
    assert len(rest) == 13
    assert "more-members" not in more.text
    assert set(first) | set(rest) == {str(i) for i in current_ids(session, seg)}
    assert not set(first) & set(rest)
    assert owner.get(f"/sales/segments/{seg.id}/members?cursor=garbage").status_code == 422


def test_growth_json_counts_members_per_day(
    owner: TestClient, session: Session, workspace: Workspace, shop: dict[str, Any]
) -> None:
    now = shop["now"]
    seg = service.create_segment(
        session,
        workspace.id,
        SegmentCreate(name="PT", rules={"field": "country", "op": "eq", "value": "PT"}),
        now=now - dt.timedelta(days=3),
    )
    seg.created_at = now - dt.timedelta(days=3)
    shop["contacts"][0].country = "ES"
    session.flush()
    service.refresh(session, workspace.id, seg.id, now - dt.timedelta(days=1))
    data = owner.get(f"/dashboard-data/segments/{seg.id}/growth.json").json()
    today = now.date()
    assert data["day"] == [(today - dt.timedelta(days=k)).isoformat() for k in (3, 2, 1, 0)]
    assert data["members"] == [5, 5, 4, 4]
    assert data["entered"] == [5, 0, 0, 0]
    assert data["left"] == [0, 0, 1, 0]


def test_other_workspaces_segments_are_not_found(owner: TestClient, session: Session) -> None:
    other = create_workspace(session, "elsewhere-seg")
    create_user(session, other.id, "someone@elsewhere.example", PASSWORD)
    seg = service.create_segment(session, other.id, SegmentCreate(name="Theirs", kind="static"))
    assert owner.get(f"/sales/segments/{seg.id}").status_code == 404
    assert owner.get(f"/dashboard-data/segments/{seg.id}/growth.json").status_code == 404
    assert owner.get(f"/sales/segments/{seg.id}/members").status_code == 404
    path = "/sales/segments/new"
    assert form_post(owner, f"/sales/segments/{seg.id}", {"name": "Mine"}, path).status_code == 404
    assert form_post(owner, f"/sales/segments/{seg.id}/refresh", {}, path).status_code == 404
    r = post_preview(owner, {"field": "country", "op": "eq", "value": "PT"}, segment_id=seg.id)
    assert r.status_code == 404
    session.refresh(seg)
    assert seg.name == "Theirs"
