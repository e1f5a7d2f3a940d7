"""Overview figures against hand-computed truth, days in the store's timezone, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from scipy.stats import binomtest
from sqlalchemy.orm import Session

from storefunnel.insight.overview import LocalRange, daily_leads, overview, utc_offsets, wilson_interval
from storefunnel.models import Contact, User, Workspace
from storefunnel.web.render import format_money
from storefunnel.workspaces.service import create_user, create_workspace
from tests.web.helpers import PASSWORD, login

UTC = dt.UTC
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def paris(session: Session) -> Workspace:
    """A Paris store: March 2026 has the switch to summer time (29 March, 02:00 -> 03:00)."""
    return create_workspace(session, f"paris-{uuid.uuid4().hex[:8]}", currency="EUR", timezone="Europe/Paris")


@pytest.fixture
def paris_user(session: Session, paris: Workspace) -> User:
    return create_user(session, paris.id, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)


@pytest.fixture
def march(session: Session, paris: Workspace, make: Any) -> None:
    """Hand-built facts; the comments give each one's Paris local time and what it must count for."""
    ws = paris.id
    c = make.contact
    o: Callable[..., Any] = make.order
    a = c(session, ws, lead_at=at(2026, 2, 28, 23, 30))  # 1 Mar 00:30: lead on 1 Mar
    c(session, ws, lead_at=at(2026, 2, 28, 22, 30))  # 28 Feb 23:30: before the range
    lc = c(session, ws, lead_at=at(2026, 3, 31, 21, 30))  # 31 Mar 23:30 (CEST): lead on 31 Mar
    c(session, ws, lead_at=at(2026, 3, 31, 22, 30))  # 1 Apr 00:30: after the range
    d = c(session, ws, lead_at=at(2026, 3, 29, 0, 30))  # 29 Mar 01:30 (CET): lead on 29 Mar
    e = c(session, ws, lead_at=at(2026, 3, 28, 23, 30))  # 29 Mar 00:30: lead on 29 Mar
    g = c(session, ws)  # a customer who never was a lead
    h = c(session, ws)
    o(session, ws, a, placed_at=at(2026, 3, 10, 12), total=5000)  # a: first order -> customer, converted
    o(session, ws, lc, placed_at=at(2026, 4, 1, 10), total=800)  # c: orders after the range: not converted
    o(session, ws, d, placed_at=at(2026, 3, 30, 9), total=1200, status="cancelled")  # d: counts for nothing
    o(session, ws, e, placed_at=at(2026, 3, 31, 21, 59), total=2550)  # 31 Mar 23:59: e converted
    o(session, ws, g, placed_at=at(2026, 2, 15, 9), total=1000)  # g's first order, before the range
    o(session, ws, g, placed_at=at(2026, 3, 5, 9), total=1999)  # g's second: an order, not a new customer
    o(session, ws, h, placed_at=at(2026, 3, 20, 9), total=9999, status="refunded")  # not h's first order
    o(session, ws, h, placed_at=at(2026, 3, 29, 0, 30), total=700)  # 29 Mar 01:30: h's first order
    o(session, ws, None, placed_at=at(2026, 3, 15, 9), total=100)  # a guest checkout
    o(session, ws, None, placed_at=at(2026, 3, 16, 9), total=4200, currency="USD")  # another currency
    o(session, ws, None, placed_at=at(2026, 2, 28, 23), total=300)  # 1 Mar 00:00 sharp: in
    o(session, ws, None, placed_at=at(2026, 3, 31, 22), total=50000)  # 1 Apr 00:00 sharp: out
    # Another store's facts in the same days must not leak in.
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}", timezone="Europe/Paris")
    x = c(session, other.id, lead_at=at(2026, 3, 10, 12))
    o(session, other.id, x, placed_at=at(2026, 3, 10, 13), total=123456)


EXPECTED_DAILY = {  # day of March: (leads, orders, EUR revenue)
    1: (1, 1, 300),
    5: (0, 1, 1999),
    10: (0, 1, 5000),
    15: (0, 1, 100),
    16: (0, 1, 0),
    29: (2, 1, 700),
    31: (1, 1, 2550),
}


def _expected_series() -> dict[str, list[Any]]:
    days = [dt.date(2026, 3, d) for d in range(1, 32)]
    rows = [EXPECTED_DAILY.get(d.day, (0, 0, 0)) for d in days]
    return {
        "day": [d.isoformat() for d in days],
        "leads": [r[0] for r in rows],
        "orders": [r[1] for r in rows],
        "revenue": [r[2] for r in rows],
    }


@pytest.mark.usefixtures("march")
def test_overview_figures_equal_the_hand_computed_ones(session: Session, paris: Workspace) -> None:
    data = overview(session, paris, LocalRange(dt.date(2026, 3, 1), dt.date(2026, 3, 31), "Europe/Paris"))
    assert data.leads == 4
    assert data.customers == 3  # a, e, h
    assert (data.conversion.successes, data.conversion.trials) == (2, 4)  # a and e of a, c, d, e
    assert data.orders == 7
    assert data.revenue == 300 + 1999 + 5000 + 100 + 700 + 2550
    assert data.other_revenue == {"USD": 4200}
    assert data.as_dict()["daily"] == _expected_series()


@pytest.mark.usefixtures("march")
def test_overview_json_and_csv(client: TestClient, paris_user: User) -> None:
    login(client, paris_user.email)
    body = client.get("/dashboard-data/overview.json", params=MARCH).json()
    assert (body["leads"], body["customers"], body["orders"], body["revenue"]) == (4, 3, 7, 10649)
    assert body["conversion"]["converted"] == 2
    assert body["conversion"]["leads"] == 4
    low, high = body["conversion"]["interval95"]
    ref = binomtest(2, 4).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)
    assert body["daily"] == _expected_series()
    assert body["timezone"] == "Europe/Paris"

    r = client.get("/dashboard-data/overview.csv", params=MARCH)
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="overview_2026-03-01_2026-03-31.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 31
    assert rows[0] == {"day": "2026-03-01", "leads": "1", "orders": "1", "revenue": "3.00", "currency": "EUR"}
    assert rows[28] == {"day": "2026-03-29", "leads": "2", "orders": "1", "revenue": "7.00", "currency": "EUR"}
    assert rows[30]["revenue"] == "25.50"
    assert sum(int(row["orders"]) for row in rows) == 7


@pytest.mark.usefixtures("march")
def test_overview_page_shows_the_figures(client: TestClient, paris_user: User) -> None:
    login(client, paris_user.email)
    page = client.get("/overview", params=MARCH)
    assert page.status_code == 200
    html = page.text
    figures = dict(re.findall(r'data-figure="(\w+)" data-value="([^"]+)"', html))
    assert figures == {"leads": "4", "customers": "3", "conversion": "2/4", "orders": "7", "revenue": "10649"}
    assert "€106.49" in html
    assert "50.0%" in html  # 2 of 4
    assert "$42.00" in html  # the USD order, apart
    assert "€15.21 per order on average" not in html  # other currencies present: no average across them
    assert "1 Mar 2026 – 31 Mar 2026" in html
    assert 'data-src="/dashboard-data/overview.json?from=2026-03-01&amp;to=2026-03-31"' in html
    # An HTMX swap gets only the body of the section, not the whole page.
    part = client.get("/overview", params=MARCH, headers={"HX-Request": "true"})
    assert "<html" not in part.text
    assert 'data-figure="leads" data-value="4"' in part.text


def test_average_order_value_is_shown_in_one_currency(
    client: TestClient, session: Session, paris: Workspace, paris_user: User, make: Any
) -> None:
    for total in (1000, 2001):
        make.order(session, paris.id, None, placed_at=at(2026, 3, 3, 12), total=total)
    login(client, paris_user.email)
    html = client.get("/overview", params=MARCH).text
    assert "€30.01" in html
    assert "€15.00 per order on average" in html  # 3001 // 2 minor units


def test_default_range_is_the_last_30_days_in_the_store_timezone(client: TestClient, paris_user: User) -> None:
    login(client, paris_user.email)
    html = client.get("/overview").text
    today = dt.datetime.now(ZoneInfo("Europe/Paris")).date()
    assert f'data-range-from="{(today - dt.timedelta(days=29)).isoformat()}"' in html
    assert f'data-range-to="{today.isoformat()}"' in html
    seven = client.get("/overview?preset=7").text
    assert f'data-range-from="{(today - dt.timedelta(days=6)).isoformat()}"' in seven
    assert 'class="chip active" data-preset="7"' in seven


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-31", "to": "2026-03-01"}, "to"),
        ({"from": "2026-13-01", "to": "2026-03-01"}, "from"),
        ({"from": "2026-03-01"}, "to"),
        ({"preset": "8"}, "preset"),
        ({"from": "2000-01-01", "to": "2026-03-01"}, "to"),
    ],
)
def test_bad_ranges_are_4xx_naming_the_field(
    client: TestClient, paris_user: User, params: dict[str, str], field: str
) -> None:
    login(client, paris_user.email)
    data = client.get("/dashboard-data/overview.json", params=params)
    assert data.status_code == 422
    assert data.headers["content-type"].startswith("application/problem+json")
    assert data.json()["detail"].startswith(f"{field}:")
    page = client.get("/overview", params=params)
    assert page.status_code == 422
    assert f"{field}:" in page.text


def test_kathmandu_quarter_hour_offset(session: Session, make: Any) -> None:
    """UTC+05:45: bucketing whole UTC hours would put 18:00-18:15 UTC on the wrong day."""
    ws = create_workspace(session, f"ktm-{uuid.uuid4().hex[:8]}", timezone="Asia/Kathmandu")
    make.contact(session, ws.id, lead_at=at(2026, 5, 1, 18, 14, 59))  # 1 May 23:59:59 local
    make.contact(session, ws.id, lead_at=at(2026, 5, 1, 18, 15))  # 2 May 00:00 local
    rng = LocalRange(dt.date(2026, 5, 1), dt.date(2026, 5, 2), "Asia/Kathmandu")
    assert daily_leads(session, ws.id, rng) == {dt.date(2026, 5, 1): 1, dt.date(2026, 5, 2): 1}


def test_new_york_year_of_random_times_matches_zoneinfo(session: Session) -> None:
    """A year with both DST changes: every lead lands on the day Python's zoneinfo says, on both backends."""
    ws = create_workspace(session, f"nyc-{uuid.uuid4().hex[:8]}", timezone="America/New_York")
    rng = LocalRange(dt.date(2026, 1, 1), dt.date(2026, 12, 31), "America/New_York")
    gen = random.Random(7)
    span = int((rng.end_utc - rng.start_utc).total_seconds())
    times = [rng.start_utc + dt.timedelta(seconds=gen.randrange(span)) for _ in range(600)]
    # Seconds around both changes and around local midnights, where a wrong offset shows.
    for edge in (at(2026, 3, 8, 7), at(2026, 11, 1, 6), at(2026, 3, 9, 4), at(2026, 11, 2, 5), rng.start_utc):
        times += [edge + dt.timedelta(seconds=s) for s in (-3601, -3600, -1, 0, 1, 3599, 3600)]
    times = [t for t in times if rng.start_utc <= t < rng.end_utc]
    session.execute(
        sa.insert(Contact),
        [
            {"workspace_id": ws.id, "email": f"p{i}@example.com", "traits": {}, "lead_at": t}
            for i, t in enumerate(times)
        ],
    )
    expected = Counter(t.astimezone(ZoneInfo("America/New_York")).date() for t in times)
    assert daily_leads(session, ws.id, rng) == dict(expected)


def test_utc_offsets_split_exactly_at_the_changes() -> None:
    rng = LocalRange(dt.date(2026, 1, 1), dt.date(2026, 12, 31), "Europe/Paris")
    assert utc_offsets(rng.tz, rng.start_utc, rng.end_utc) == [
        (at(2026, 3, 29, 1), 3600),
        (at(2026, 10, 25, 1), 7200),
        (None, 3600),
    ]


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (2, 4), (7, 40), (0, 25), (25, 25), (333, 1000)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ours = wilson_interval(k, n)
    assert ours is not None
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours[0] == pytest.approx(ref.low, abs=1e-12)
    assert ours[1] == pytest.approx(ref.high, abs=1e-12)
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(10649, "EUR", "€106.49"), (-5, "EUR", "-€0.05"), (1234567, "JPY", "¥1,234,567"), (1500, "KWD", "1.500 KWD")],
)
def test_money_formatting(minor: int, currency: str, text: str) -> None:
    assert format_money(minor, currency) == text


def test_pages_only_show_the_signed_in_workspace(
    client: TestClient, session: Session, paris_user: User, make: Any
) -> None:
    """The session's workspace scopes every figure: another store's busy March is invisible."""
    other = create_workspace(session, f"busy-{uuid.uuid4().hex[:8]}", timezone="Europe/Paris")
    for _ in range(5):
        make.contact(session, other.id, lead_at=at(2026, 3, 10, 12))
    login(client, paris_user.email)
    body = client.get("/dashboard-data/overview.json", params=MARCH).json()
    assert (body["leads"], body["orders"], body["revenue"]) == (0, 0, 0)
