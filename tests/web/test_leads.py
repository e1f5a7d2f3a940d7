"""Marketing → Leads against hand-built truth: days in the store's timezone, channels, shares, first touches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.insight.leads import latest_leads, leads_report
from storefunnel.insight.overview import LocalRange, daily_leads
from storefunnel.models import User, Workspace
from storefunnel.workspaces.service import create_user, create_workspace
from tests.web.helpers import PASSWORD, login

UTC = dt.UTC
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def paris(session: Session) -> Workspace:
    """A Paris store: summer time starts on 29 March 2026 (02:00 -> 03:00), so days are 23, 24 or 25 hours."""
    return create_workspace(session, f"paris-{uuid.uuid4().hex[:8]}", timezone="Europe/Paris")


@pytest.fixture
def owner(session: Session, paris: Workspace) -> User:
    return create_user(session, paris.id, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)


@pytest.fixture
def signed_in(client: TestClient, owner: User) -> TestClient:
    assert login(client, owner.email)[0] == 303
    return client


# (UTC lead time, lead channel); comments give the Paris local time and the day it must count for.
LEADS: list[tuple[dt.datetime, str | None]] = [
    (at(2026, 2, 28, 23, 30), "Email"),  # 1 Mar 00:30 CET -> 1 Mar
    (at(2026, 2, 28, 22, 59), "Email"),  # 28 Feb 23:59 -> before the range
    (at(2026, 3, 1, 9), "Paid Search"),  # 1 Mar
    (at(2026, 3, 1, 10), None),  # 1 Mar, no channel known -> Unassigned
    (at(2026, 3, 28, 23, 30), "Organic Search"),  # 29 Mar 00:30 CET -> 29 Mar
    (at(2026, 3, 29, 0, 59), "Organic Search"),  # 29 Mar 01:59 CET -> 29 Mar
    (at(2026, 3, 29, 1, 0), "Email"),  # 29 Mar 03:00 CEST (the hour 02:00-03:00 does not exist) -> 29 Mar
    (at(2026, 3, 29, 21, 59), "Email"),  # 29 Mar 23:59 CEST -> 29 Mar
    (at(2026, 3, 29, 22, 0), "Paid Search"),  # 30 Mar 00:00 CEST -> 30 Mar
    (at(2026, 3, 31, 21, 59), "Email"),  # 31 Mar 23:59 CEST -> 31 Mar
    (at(2026, 3, 31, 22, 0), "Email"),  # 1 Apr 00:00 CEST -> after the range
]
EXPECTED = {  # (day of March, channel) -> leads
    (1, "Email"): 1,
    (1, "Paid Search"): 1,
    (1, "Unassigned"): 1,
    (29, "Organic Search"): 2,
    (29, "Email"): 2,
    (30, "Paid Search"): 1,
    (31, "Email"): 1,
}
EXPECTED_TOTALS = {"Email": 4, "Organic Search": 2, "Paid Search": 2, "Unassigned": 1}


@pytest.fixture
def march(session: Session, paris: Workspace, make: Any) -> None:
    for when, channel in LEADS:
        make.contact(session, paris.id, lead_at=when, lead_channel=channel)
    make.contact(session, paris.id)  # never a lead
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}", timezone="Europe/Paris")
    make.contact(session, other.id, lead_at=at(2026, 3, 10, 12), lead_channel="Email")  # must not leak in


def _march_range() -> LocalRange:
    return LocalRange(dt.date(2026, 3, 1), dt.date(2026, 3, 31), "Europe/Paris")


def test_daily_series_by_channel_against_truth(session: Session, paris: Workspace, march: None) -> None:
    report = leads_report(session, paris, _march_range())
    assert report.days[0] == dt.date(2026, 3, 1)
    assert len(report.days) == 31
    got = {
        (day.day, ch): n
        for ch, values in report.series.items()
        for day, n in zip(report.days, values, strict=True)
        if n
    }
    assert got == EXPECTED
    assert report.total == sum(EXPECTED_TOTALS.values()) == 9
    # Most leads first; ties by name.
    assert [(c.channel, c.leads) for c in report.channels] == [
        ("Email", 4),
        ("Organic Search", 2),
        ("Paid Search", 2),
        ("Unassigned", 1),
    ]
    assert [c.share for c in report.channels] == pytest.approx([4 / 9, 2 / 9, 2 / 9, 1 / 9])
    # The same days as the Overview's leads, day by day.
    overview_days = daily_leads(session, paris.id, _march_range())
    for i, day in enumerate(report.days):
        assert sum(values[i] for values in report.series.values()) == overview_days.get(day, 0)


def test_empty_range_has_no_channels(session: Session, paris: Workspace) -> None:
    report = leads_report(session, paris, _march_range())
    assert (report.total, report.channels, report.series, report.latest) == (0, [], {}, [])


def test_latest_leads_first_three_touches_by_time(session: Session, paris: Workspace, make: Any) -> None:
    a = make.contact(session, paris.id, email="a@example.com", lead_at=at(2026, 3, 20, 12), lead_channel="Email")
    b = make.contact(session, paris.id, email="b@example.com", lead_at=at(2026, 3, 21, 12), lead_channel="Referral")
    make.contact(session, paris.id, email="c@example.com", lead_at=at(2026, 3, 19, 12))  # no touches at all
    # a's touches inserted out of time order: the first three by time are 1, 2 and 3 March.
    for day, channel in [(5, "Direct"), (2, "Organic Search"), (9, "Email"), (1, "Paid Search"), (3, "Referral")]:
        make.touch(session, paris.id, a, occurred_at=at(2026, 3, day, 8), channel=channel, url=f"https://s.test/{day}")
    make.touch(
        session,
        paris.id,
        b,
        occurred_at=at(2026, 3, 21, 11),
        channel="Paid Social",
        source="facebook",
        medium="paid_social",
        campaign="spring",
    )
    make.touch(session, paris.id, None, anonymous_id="anon-1", occurred_at=at(2026, 3, 1, 1))  # nobody's
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    make.touch(session, other.id, None, occurred_at=at(2026, 3, 1, 1))

    statements: list[str] = []
    engine = session.get_bind()

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        leads = latest_leads(session, paris.id, _march_range())
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2  # the leads, then every lead's first touches at once: no N+1
    assert "row_number() OVER" in statements[1].replace("ROW_NUMBER", "row_number")

    assert [lead.email for lead in leads] == ["b@example.com", "a@example.com", "c@example.com"]
    first_a = leads[1].touches
    assert [(t.occurred_at, t.channel) for t in first_a] == [
        (at(2026, 3, 1, 8), "Paid Search"),
        (at(2026, 3, 2, 8), "Organic Search"),
        (at(2026, 3, 3, 8), "Referral"),
    ]
    assert first_a[0].url == "https://s.test/1"
    t = leads[0].touches[0]
    assert (t.source, t.medium, t.campaign) == ("facebook", "paid_social", "spring")
    assert leads[2].touches == []
    assert leads[2].channel == "Unassigned"


def test_page_shows_totals_latest_leads_and_local_times(
    signed_in: TestClient, session: Session, paris: Workspace, march: None, make: Any
) -> None:
    lead = make.contact(session, paris.id, email="ana@example.com", first_name="Ana", lead_at=at(2026, 3, 30, 10))
    make.touch(session, paris.id, lead, occurred_at=at(2026, 3, 29, 0, 30), channel="Email", campaign="launch")
    r = signed_in.get("/marketing/leads", params=MARCH)
    assert r.status_code == 200
    html = r.text
    assert 'data-figure="leads" data-value="10"' in html
    assert re.search(r'data-channel="Email" data-leads="4"', html)
    assert "40.0%" in html  # Email: 4 of the 10 leads
    assert "ana@example.com" in html
    assert "2026-03-30 12:00" in html  # 10:00 UTC is noon in Paris (summer time)
    assert "2026-03-29 01:30" in html  # the touch: before the switch, CET
    assert "launch" in html
    assert "Content-Security-Policy" in r.headers
    # The range picker swaps only the body in place.
    partial = signed_in.get("/marketing/leads", params=MARCH, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "<html" not in partial.text
    assert "data-leads-chart" in partial.text


def test_json_and_csv_series(signed_in: TestClient, march: None) -> None:
    data = signed_in.get("/dashboard-data/leads.json", params=MARCH).json()
    assert data["total"] == 9
    assert data["timezone"] == "Europe/Paris"
    assert data["daily"]["day"][28] == "2026-03-29"
    assert data["daily"]["leads"]["Email"][28] == 2
    assert data["daily"]["leads"]["Organic Search"][28] == 2
    assert set(data["colors"]) == set(EXPECTED_TOTALS)

    r = signed_in.get("/dashboard-data/leads.csv", params=MARCH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="leads_by_channel_2026-03-01_2026-03-31.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["day", "Email", "Organic Search", "Paid Search", "Unassigned", "total"]
    assert len(rows) == 32
    by_day = {row[0]: row[1:] for row in rows[1:]}
    assert by_day["2026-03-01"] == ["1", "0", "1", "1", "3"]
    assert by_day["2026-03-29"] == ["2", "2", "0", "0", "4"]
    assert by_day["2026-03-30"] == ["0", "0", "1", "0", "1"]
    assert sum(int(row[-1]) for row in rows[1:]) == 9


def test_bad_range_names_the_field(signed_in: TestClient) -> None:
    page = signed_in.get("/marketing/leads", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert page.status_code == 422
    assert "to: the last day must not be before" in page.text
    r = signed_in.get("/dashboard-data/leads.csv", params={"from": "March", "to": "2026-03-01"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"].startswith("from:")
    assert signed_in.get("/dashboard-data/leads.json", params={"preset": "8"}).status_code == 422


def test_anonymous_visitors_are_sent_to_login(client: TestClient) -> None:
    r = client.get("/marketing/leads", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/marketing/leads"
    assert client.get("/dashboard-data/leads.json").status_code == 401
    assert client.get("/dashboard-data/leads.csv").status_code == 401
