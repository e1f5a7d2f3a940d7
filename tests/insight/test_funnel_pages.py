"""The insight pages in the dashboard: each renders its figures, chart and CSV; the buying group becomes a segment."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.models import Segment, Workspace
from storefunnel.workspaces.service import create_user
from tests.insight.test_funnel import build_store
from tests.web.helpers import PASSWORD, csrf_from, login

QUERY = {"from": "2026-03-02", "to": "2026-03-15"}


def signed_in(client: TestClient, session: Session, workspace: Workspace) -> None:
    user = create_user(session, workspace.id, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
    status, _ = login(client, user.email)
    assert status == 303


def test_pages_show_the_figures(client: TestClient, session: Session, make: Any, workspace: Workspace) -> None:
    build_store(session, make, workspace)
    signed_in(client, session, workspace)
    page = client.get("/together/funnel", params=QUERY)
    assert page.status_code == 200, page.text
    assert 'data-testid="chart-steps"' in page.text
    assert "57.1%" in page.text  # 4 leads of 7 visitors
    assert 'href="/together/funnel"' in page.text  # in the navigation
    for path, marker in (
        ("/marketing/channels", 'data-testid="campaigns"'),
        ("/sales/retention", 'data-testid="cohorts"'),
        ("/together/who-buys", 'data-testid="finding"'),
    ):
        r = client.get(path, params=QUERY)
        assert r.status_code == 200, (path, r.text[:500])
        assert marker in r.text
    bad = client.get("/together/funnel", params={"from": "2026-03-20", "to": "2026-03-01"})
    assert bad.status_code == 422
    assert "to: the last day must not be before" in bad.text


def test_csv_exports(client: TestClient, session: Session, make: Any, workspace: Workspace) -> None:
    build_store(session, make, workspace)
    signed_in(client, session, workspace)
    r = client.get("/dashboard-data/insight/funnel.csv", params=QUERY)
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["key"], row["leads"], row["new_customers"]) for row in rows] == [
        ("2026-03-02", "2", "2"),
        ("2026-03-09", "2", "1"),
    ]
    ch = list(csv.DictReader(io.StringIO(client.get("/dashboard-data/insight/channels.csv", params=QUERY).text)))
    assert sum(int(row["revenue"]) for row in ch) == 9000
    assert client.get("/dashboard-data/insight/nothing.csv").status_code == 404


def test_make_segment_button(client: TestClient, session: Session, make: Any, workspace: Workspace) -> None:
    day = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for i in range(200):
        group = i < 40
        c = make.contact(
            session,
            workspace.id,
            lead_at=day,
            country="PT",
            city="Porto" if group else "Lisboa",
            gender="female" if group else "male",
            age_band="25-29" if group else "40-49",
        )
        if (group and i % 2 == 0) or (not group and i % 10 == 0):
            make.order(session, workspace.id, c, placed_at=day + dt.timedelta(days=3), total=1000)
    signed_in(client, session, workspace)
    page = client.get("/together/who-buys", params={"from": "2026-01-01", "to": "2026-03-31"})
    assert "of your customers are" in page.text
    token = csrf_from(page.text)
    r = client.post(
        "/together/who-buys/segment",
        data={"csrf_token": token, "country": "PT", "city": "Porto", "age_band": "25-29", "gender": "female"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    seg = session.query(Segment).filter_by(workspace_id=workspace.id).one()
    assert r.headers["location"] == f"/sales/segments/{seg.id}"
    assert seg.member_count == 40
