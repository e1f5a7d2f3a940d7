"""The dashboard in a real Chromium against a real server: sign in, read the Overview, change range, sign out."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, sync_playwright
from sqlalchemy.orm import Session

from storefunnel.models import Contact, Order, Workspace
from storefunnel.web.render import format_money
from storefunnel.workspaces.service import create_user, create_workspace
from tests.e2e.browser import launch
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e

TZ = "America/New_York"
PASSWORD = "a browser typed this"

# (lead days ago or None, [(order days ago, total in cents, status)]); times are 09:00 and 10:00 local.
PEOPLE: list[tuple[int | None, list[tuple[int, int, str]]]] = [
    (0, [(0, 2500, "paid")]),
    (1, []),
    (3, [(2, 4000, "paid"), (1, 1500, "paid")]),
    (6, [(5, 999, "cancelled")]),
    (10, [(8, 12000, "paid")]),
    (29, [(12, 3000, "paid")]),
    (45, [(44, 7000, "paid"), (3, 2000, "paid")]),
    (100, []),
    (None, [(20, 5000, "refunded"), (15, 1800, "paid")]),
]
GUEST_ORDERS = [(4, 600, "paid"), (31, 900, "paid")]


@dataclass
class Store:
    workspace_id: int
    email: str
    today: dt.date


def _local(today: dt.date, days_ago: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(hour), ZoneInfo(TZ)).astimezone(dt.UTC)


def expected(first_ago: int, last_ago: int = 0) -> dict[str, int]:
    """The figures for the days ``first_ago``..``last_ago`` days back, computed from PEOPLE by the definitions."""

    def inside(k: int) -> bool:
        return last_ago <= k <= first_ago

    valid = [[k for k, _, s in orders if s not in ("cancelled", "refunded")] for _, orders in PEOPLE]
    all_orders = [o for _, orders in PEOPLE for o in orders] + GUEST_ORDERS
    paid = [(k, total) for k, total, s in all_orders if s not in ("cancelled", "refunded") and inside(k)]
    leads = [i for i, (lead, _) in enumerate(PEOPLE) if lead is not None and inside(lead)]
    return {
        "leads": len(leads),
        "customers": sum(1 for ks in valid if ks and inside(max(ks))),
        "converted": sum(1 for i in leads if any(k >= last_ago for k in valid[i])),
        "orders": len(paid),
        "revenue": sum(total for _, total in paid),
    }


@pytest.fixture
def store(committed_session: Session) -> Iterator[Store]:
    s = committed_session
    ws = create_workspace(s, f"browser-{uuid.uuid4().hex[:10]}", currency="EUR", timezone=TZ)
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(s, ws.id, email, PASSWORD)
    today = dt.datetime.now(ZoneInfo(TZ)).date()
    for n, (lead, orders) in enumerate(PEOPLE):
        contact = Contact(
            workspace_id=ws.id,
            email=f"p{n}@example.com",
            traits={},
            lead_at=None if lead is None else _local(today, lead, 9),
        )
        s.add(contact)
        s.flush()
        for k, total, status in orders:
            s.add(
                Order(
                    workspace_id=ws.id,
                    contact_id=contact.id,
                    placed_at=_local(today, k, 10),
                    currency="EUR",
                    total=total,
                    status=status,
                    external_id=f"o-{n}-{k}",
                )
            )
    for k, total, status in GUEST_ORDERS:
        s.add(
            Order(
                workspace_id=ws.id,
                placed_at=_local(today, k, 10),
                currency="EUR",
                total=total,
                status=status,
                external_id=f"guest-{k}",
            )
        )
    s.commit()
    yield Store(ws.id, email, today)
    s.delete(s.get(Workspace, ws.id))
    s.commit()


def read_figures(page: Page) -> dict[str, int]:
    def value(name: str) -> str:
        return page.locator(f'[data-figure="{name}"]').get_attribute("data-value") or ""

    converted, _, leads = value("conversion").partition("/")
    figures = {name: int(value(name)) for name in ("leads", "customers", "orders", "revenue")}
    assert int(leads) == figures["leads"]
    return {**figures, "converted": int(converted)}


def chart_pixels(page: Page) -> list[int]:
    """Non-transparent pixels drawn on each chart canvas: zero would mean an empty chart."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.chart canvas')).map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })"""
    )


def test_sign_in_read_overview_change_range_sign_out(live_server: LiveServer, store: Store) -> None:
    base = live_server.url
    problems: list[str] = []
    outside: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900}, timezone_id="Asia/Tokyo")
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            def only_local(route: object) -> None:  # the dashboard must work with no network but this server
                url = route.request.url  # type: ignore[attr-defined]
                if url.startswith(base):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    outside.append(url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", only_local)

            page.goto(base + "/overview")
            assert page.url.startswith(base + "/login?next=/overview")
            page.fill("#email", store.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/overview")

            # Default: the last 30 days in the store's timezone.
            assert page.locator(".range-caption").get_attribute("data-range-to") == store.today.isoformat()
            thirty = expected(29)
            assert read_figures(page) == thirty
            assert page.locator('[data-figure="revenue"] .card-value').inner_text() == format_money(
                thirty["revenue"], "EUR"
            )
            page.wait_for_selector('[data-overview-charts][data-state="ready"]')
            assert page.locator(".chart .uplot canvas").count() == 2
            assert all(n > 500 for n in chart_pixels(page))

            # A preset swaps the figures in place (HTMX), and the address follows.
            page.click('a[data-preset="7"]')
            page.wait_for_selector('.chip.active[data-preset="7"]')
            assert page.url.endswith("/overview?preset=7")
            seven = expected(6)
            assert read_figures(page) == seven
            assert seven != thirty
            page.wait_for_selector('[data-overview-charts][data-state="ready"]')
            assert page.locator(".chart .uplot canvas").count() == 2

            # A custom range: the last three days.
            first = store.today - dt.timedelta(days=2)
            page.fill('input[name="from"]', first.isoformat())
            page.fill('input[name="to"]', store.today.isoformat())
            page.click(".custom-range button[type=submit]")
            page.wait_for_selector(f'.range-caption[data-range-from="{first.isoformat()}"]')
            assert read_figures(page) == expected(2)

            # The session ends under an HTMX swap: the whole page goes to the login form, and back after.
            context.clear_cookies()
            page.click('a[data-preset="30"]')
            page.wait_for_url(base + "/login?next=/overview%3Fpreset%3D30")
            expired = [m for m in problems if "status of 401" in m]
            assert len(expired) == 1
            problems.remove(expired[0])
            page.fill("#email", store.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/overview?preset=30")
            assert read_figures(page) == thirty

            page.click('[data-testid="logout"]')
            page.wait_for_url(base + "/login")
            page.goto(base + "/overview")
            assert page.url.startswith(base + "/login?next=/overview")
        finally:
            browser.close()
    assert outside == []
    assert problems == []
