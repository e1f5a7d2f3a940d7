"""Refresh records who entered and left, static lists, segments of segments, and growth over time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.errors import Conflict, Invalid
from storefunnel.models import Contact, SegmentMember, Workspace
from storefunnel.segments import service
from storefunnel.segments.schemas import MembersChange, SegmentCreate, SegmentUpdate
from tests.segments.conftest import NOW

PT = {"field": "country", "op": "eq", "value": "PT"}


def day(n: int) -> dt.datetime:
    return NOW + dt.timedelta(days=n)


def stays(session: Session, segment_id: int, people: dict[str, int]) -> list[tuple[str, dt.datetime, Any]]:
    names = {v: k for k, v in people.items()}
    rows = session.execute(
        sa.select(SegmentMember.contact_id, SegmentMember.entered_at, SegmentMember.left_at)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(SegmentMember.id)
    )
    # one INSERT ... SELECT numbers its rows in no particular order: sort by time, then name
    return sorted(((names[c], e, lft) for c, e, lft in rows), key=lambda s: (s[1], s[0]))


def current(session: Session, segment_id: int, people: dict[str, int]) -> set[str]:
    return {name for name, _e, left in stays(session, segment_id, people) if left is None}


def dynamic(session: Session, ws: int, name: str, rules: dict[str, Any], now: dt.datetime = NOW) -> int:
    return service.create_segment(session, ws, SegmentCreate(name=name, rules=rules), now).id


def test_refresh_records_entries_and_exits(session: Session, workspace: Workspace, people: dict[str, int]) -> None:
    ws = workspace.id
    seg = dynamic(session, ws, "Portugal", PT, day(0))
    assert stays(session, seg, people) == [("ana", day(0), None), ("carla", day(0), None)]

    session.get(Contact, people["bob"]).country = "PT"  # type: ignore[union-attr]
    session.flush()
    r = service.refresh(session, ws, seg, day(1))
    assert (r.entered, r.left, r.member_count) == (1, 0, 3)

    session.get(Contact, people["carla"]).country = "ES"  # type: ignore[union-attr]
    session.flush()
    r = service.refresh(session, ws, seg, day(2))
    assert (r.entered, r.left, r.member_count) == (0, 1, 2)

    r = service.refresh(session, ws, seg, day(3))  # nothing changed: nothing written
    assert (r.entered, r.left, r.member_count) == (0, 0, 2)

    session.get(Contact, people["carla"]).country = "PT"  # type: ignore[union-attr]
    session.flush()
    r = service.refresh(session, ws, seg, day(4))
    assert (r.entered, r.left, r.member_count) == (1, 0, 3)

    assert stays(session, seg, people) == [
        ("ana", day(0), None),
        ("carla", day(0), day(2)),  # the first stay is kept, closed
        ("bob", day(1), None),
        ("carla", day(4), None),
    ]
    points = service.growth(session, ws, seg, "day", until=day(4).date())
    assert [(p.period, p.members, p.entered, p.left) for p in points] == [
        (day(0).date(), 2, 2, 0),
        (day(1).date(), 3, 1, 0),
        (day(2).date(), 2, 0, 1),
        (day(3).date(), 2, 0, 0),
        (day(4).date(), 3, 1, 0),
    ]
    weekly = service.growth(session, ws, seg, "week", until=day(4).date())
    # NOW is Sunday 2026-03-01: its week began on Monday 2026-02-23
    assert [(str(p.period), p.members, p.entered, p.left) for p in weekly] == [
        ("2026-02-23", 2, 2, 0),
        ("2026-03-02", 3, 2, 1),
    ]
    monthly = service.growth(session, ws, seg, "month", since=dt.date(2026, 3, 2), until=day(4).date())
    assert [(str(p.period), p.members) for p in monthly] == [("2026-03-01", 3)]


def test_rule_change_reevaluates_at_once(session: Session, workspace: Workspace, people: dict[str, int]) -> None:
    seg = dynamic(session, workspace.id, "Spain", {"field": "country", "op": "eq", "value": "ES"})
    assert current(session, seg, people) == {"bob"}
    service.update_segment(session, workspace.id, seg, SegmentUpdate(rules=PT), day(1))
    assert current(session, seg, people) == {"ana", "carla"}
    assert stays(session, seg, people)[0] == ("bob", NOW, day(1))


def test_segments_of_segments(session: Session, workspace: Workspace, people: dict[str, int]) -> None:
    ws = workspace.id
    pt = dynamic(session, ws, "Portugal", PT)
    buyers = dynamic(
        session, ws, "PT buyers", {"all": [{"segment": pt}, {"field": "order_count", "op": "gte", "value": 1}]}
    )
    outside = dynamic(session, ws, "Not PT", {"segment": pt, "op": "not_in"})
    listed = service.create_segment(session, ws, SegmentCreate(name="Hand-picked", kind="static"), NOW).id
    service.add_members(session, ws, listed, MembersChange(contact_ids=[people["bob"]]), NOW)
    picked = dynamic(session, ws, "Picked or PT", {"any": [{"segment": listed}, {"segment": pt}]})
    assert current(session, buyers, people) == {"ana"}
    assert current(session, outside, people) == {"bob", "dan"}
    assert current(session, picked, people) == {"ana", "bob", "carla"}

    # changing a segment re-evaluates those built on it
    service.update_segment(
        session, ws, pt, SegmentUpdate(rules={"field": "country", "op": "eq", "value": "ES"}), day(1)
    )
    assert current(session, buyers, people) == {"bob"}
    assert current(session, outside, people) == {"ana", "carla", "dan"}
    # so does changing a list
    service.remove_members(session, ws, listed, MembersChange(contact_ids=[people["bob"]]), day(2))
    service.add_members(session, ws, listed, MembersChange(emails=["DAN_X%@example.com"]), day(2))
    assert current(session, picked, people) == {"bob", "dan"}

    with pytest.raises(Invalid) as info:  # a cycle through another segment
        service.update_segment(session, ws, pt, SegmentUpdate(rules={"all": [PT, {"segment": buyers}]}))
    assert info.value.errors == [
        {
            "path": "rules.all[1].segment",
            "message": f"segment {pt} would include itself (cycle: {pt} -> {buyers} -> {pt})",
        }
    ]
    with pytest.raises(Invalid) as info:  # a segment naming itself
        service.update_segment(session, ws, pt, SegmentUpdate(rules={"segment": pt}))
    assert info.value.errors is not None
    assert info.value.errors[0]["path"] == "rules.segment"
    with pytest.raises(Invalid) as info:
        dynamic(session, ws, "Ghost", {"all": [PT, {"any": [PT, {"segment": 987654321}]}]})
    assert info.value.errors == [{"path": "rules.all[1].any[1].segment", "message": "unknown segment 987654321"}]
    with pytest.raises(Conflict):  # in use by "PT buyers" and "Not PT"
        service.delete_segment(session, ws, pt)
    service.delete_segment(session, ws, buyers)
    service.delete_segment(session, ws, outside)
    service.delete_segment(session, ws, picked)
    service.delete_segment(session, ws, pt)
    assert session.scalar(sa.select(sa.func.count()).where(SegmentMember.segment_id == pt)) == 0


def test_static_lists(session: Session, workspace: Workspace, people: dict[str, int]) -> None:
    ws = workspace.id
    seg = service.create_segment(session, ws, SegmentCreate(name="VIPs", kind="static"), NOW).id
    added, count = service.add_members(
        session, ws, seg, MembersChange(contact_ids=[people["ana"]], emails=["Bob@Example.com"]), NOW
    )
    assert (added, count) == (2, 2)
    added, count = service.add_members(session, ws, seg, MembersChange(contact_ids=[people["ana"]]), day(1))
    assert (added, count) == (0, 2)  # adding again changes nothing
    with pytest.raises(Invalid) as info:
        service.add_members(session, ws, seg, MembersChange(emails=["carla@example.org", "nobody@x.org"]), day(1))
    assert info.value.errors == [{"path": "emails[1]", "message": "no contact with email 'nobody@x.org'"}]
    assert current(session, seg, people) == {"ana", "bob"}  # the refused request added nobody
    with pytest.raises(Invalid) as info:
        service.add_members(session, ws, seg, MembersChange(contact_ids=[people["dan"], 10**12]), day(1))
    assert info.value.errors is not None
    assert info.value.errors[0]["path"] == "contact_ids[1]"
    removed, count = service.remove_members(session, ws, seg, MembersChange(contact_ids=[people["ana"]]), day(2))
    assert (removed, count) == (1, 1)
    assert stays(session, seg, people) == [("ana", NOW, day(2)), ("bob", NOW, None)]
    assert service.refresh(session, ws, seg, day(3)).member_count == 1  # a list is only recounted

    rules_seg = dynamic(session, ws, "PT", PT)
    with pytest.raises(Conflict):
        service.add_members(session, ws, rules_seg, MembersChange(contact_ids=[people["dan"]]))
    with pytest.raises(Invalid):
        service.create_segment(session, ws, SegmentCreate(name="L", kind="static", rules=PT))
    with pytest.raises(Invalid):
        service.create_segment(session, ws, SegmentCreate(name="D"))
    with pytest.raises(Conflict):
        service.create_segment(session, ws, SegmentCreate(name="VIPs", kind="static"))


def test_import_emails_creates_the_list_and_reports_strangers(
    session: Session, workspace: Workspace, people: dict[str, int]
) -> None:
    seg, added, unknown = service.import_emails(
        session, workspace.id, "Newsletter", ["ana@shop.pt", "stranger@x.org", "CARLA@example.org"], NOW
    )
    assert (seg.kind, added, unknown, seg.member_count) == ("static", 2, ["stranger@x.org"], 2)
    assert current(session, seg.id, people) == {"ana", "carla"}
