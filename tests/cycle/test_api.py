"""The /api/v1/cycle endpoints over HTTP (TestClient on the test session)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from scipy.stats import binomtest
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.models import Workspace
from tests.cycle.helpers import day


def _customer(session: Session, ws: int, make: Any, thanked: bool) -> Any:
    c = make.contact(session, ws, created_at=day(0))
    make.touch(session, ws, c, kind="track", event="Product Viewed", occurred_at=day(1))
    make.order(session, ws, c, placed_at=day(3))
    if thanked:
        make.touch(session, ws, c, kind="track", event="Thank You Sent", occurred_at=day(4))
    return c


def test_recompute_stages_and_history(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    c = _customer(session, workspace.id, make, thanked=True)
    make.contact(session, workspace.id, created_at=day(0))
    r = client.post("/api/v1/cycle/recompute", json={"as_of": day(20).isoformat()}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"]["keeping_in_touch"] == 1
    assert body["counts"]["prospecting"] == 1
    assert body["transitions"] == 6
    stages = client.get("/api/v1/cycle/stages", headers=auth).json()
    assert stages["total"] == 2
    assert stages["counts"]["keeping_in_touch"] == 1
    hist = client.get(f"/api/v1/cycle/contacts/{c.id}/history", headers=auth).json()
    assert [h["stage"] for h in hist] == ["prospecting", "conversion", "buying", "thanked", "keeping_in_touch"]
    assert hist[3]["reason"] == "thank_you"
    assert hist[4]["changed_at"].startswith("2026-01-11")


def test_history_of_another_workspaces_contact_is_404(
    client: TestClient, auth: dict[str, str], session: Session, make: Any
) -> None:
    from storefunnel.workspaces.service import create_workspace

    other = create_workspace(session, "cycle-api-other")
    theirs = make.contact(session, other.id, created_at=day(0))
    r = client.get(f"/api/v1/cycle/contacts/{theirs.id}/history", headers=auth)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_rules_get_put_validate_and_recompute(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    rules = client.get("/api/v1/cycle/rules", headers=auth).json()
    assert rules["lapse_days"] == 90
    assert "Product Viewed" in rules["intent_events"]
    bad = client.put("/api/v1/cycle/rules", json={**rules, "lapse_days": 3}, headers=auth)
    assert bad.status_code == 422
    assert "lapse_days" in bad.json()["detail"]
    unknown = client.put("/api/v1/cycle/rules", json={**rules, "lapse_dayz": 3}, headers=auth)
    assert unknown.status_code == 422
    assert "lapse_dayz" in unknown.json()["detail"]
    c = make.contact(session, workspace.id, created_at=day(-400))
    ok = client.put("/api/v1/cycle/rules", json={**rules, "lapse_days": 30}, headers=auth)
    assert ok.status_code == 200, ok.text
    assert client.get("/api/v1/cycle/rules", headers=auth).json()["lapse_days"] == 30
    session.refresh(c)
    assert c.stage == "lapsed"
    assert c.stage_at == day(-370)


def test_bad_times_are_422_naming_the_field(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/v1/cycle/recompute", json={"as_of": "2026-01-01T00:00:00"}, headers=auth)
    assert r.status_code == 422
    assert "as_of" in r.json()["detail"]
    r = client.get("/api/v1/cycle/pipeline?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", headers=auth)
    assert r.status_code == 422
    assert "from" in r.json()["detail"]
    r = client.get("/api/v1/cycle/pipeline?from=yesterday", headers=auth)
    assert r.status_code == 422
    assert "from" in r.json()["detail"]
    r = client.get("/api/v1/cycle/pipeline?to=2026-01-01T00:00:00", headers=auth)
    assert r.status_code == 422
    assert "to" in r.json()["detail"]


def test_pipeline_counts_rates_wilson_and_median(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    for i in range(10):
        _customer(session, workspace.id, make, thanked=i < 3)
    for _ in range(5):  # intent but no order
        c = make.contact(session, workspace.id, created_at=day(0))
        make.touch(session, workspace.id, c, kind="track", event="Cart Viewed", occurred_at=day(2))
    service.recompute(session, workspace.id, day(60))
    r = client.get(
        f"/api/v1/cycle/pipeline?from={day(0).isoformat().replace('+00:00', 'Z')}&to={day(30).isoformat()[:19]}Z",
        headers=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    by = {s["stage"]: s for s in body["stages"]}
    assert by["conversion"]["entered"] == 15
    assert by["buying"]["entered"] == 10
    assert by["buying"]["contacts"] == 0
    assert by["keeping_in_touch"]["contacts"] == 10
    assert by["conversion"]["contacts"] == 5
    # conversion lasted 2 days for the 10 buyers; buying lasted 1 day (thanked) or 7 days (not thanked).
    assert by["conversion"]["median_days_in_stage"] == 2.0
    assert by["buying"]["median_days_in_stage"] == 7.0
    assert by["thanked"]["median_days_in_stage"] == 6.0
    conv = {(c["from_stage"], c["to_stage"]): c for c in body["conversions"]}
    to_buying = conv[("conversion", "buying")]
    assert (to_buying["count"], to_buying["of"]) == (10, 15)
    ci = binomtest(10, 15).proportion_ci(confidence_level=0.95, method="wilson")
    assert abs(to_buying["low"] - ci.low) < 1e-9
    assert abs(to_buying["high"] - ci.high) < 1e-9
    assert conv[("buying", "thanked")]["count"] == 3
    assert conv[("buying", "keeping_in_touch")]["count"] == 7


def test_wilson_matches_scipy_at_the_edges() -> None:
    for k, n in [(0, 1), (1, 1), (0, 50), (50, 50), (7, 263), (1, 3)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = service.wilson(k, n)
        assert abs(low - ci.low) < 1e-9
        assert abs(high - ci.high) < 1e-9
