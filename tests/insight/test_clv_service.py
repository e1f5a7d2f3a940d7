"""Lifetime value from stored orders: the fit recovers the simulator's planted BG/NBD and Gamma-Gamma, the
predictions and keep-in-touch list are stored, the segment follows the list, and the API answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.insight import clv, clv_service
from storefunnel.models import ClvPrediction, KeyKind, Segment, SegmentMember, Workspace
from storefunnel.simulate.generate import bgnbd_expected
from tests.fixtures.factories import create_contact, create_order
from tests.insight.simulated import ANCHOR, simulated_store

END = ANCHOR - dt.timedelta(days=1)


def test_fit_recovers_planted_parameters(session: Session, database_url: str) -> None:
    ws, truth = simulated_store(database_url)
    fit = clv_service.fit_clv(session, ws, END)
    p = fit.params["purchase"]
    model = clv.BetaGeo(p["r"], p["alpha"], p["a"], p["b"], p["log_likelihood"])
    horizons = np.array([30.0, 90.0, 180.0, 365.0])
    fitted, planted = model.expected_purchases_new(horizons), bgnbd_expected(horizons)
    print("BG/NBD", p, "expected repeats fitted", fitted.round(3), "planted", planted.round(3))  # noqa: T201
    # what the owner reads (expected repeat purchases of a new customer) within 8% of the planted curve; each
    # parameter within 20% (about 2,400 customers and a year of data: a and b are the least identified)
    np.testing.assert_allclose(fitted, planted, rtol=0.08)
    for name in ("r", "alpha", "a", "b"):
        assert p[name] == pytest.approx(truth["bgnbd"][name], rel=0.2), name
    gg = fit.params["spend"]
    mean_spend = gg["p"] * gg["v"] / (gg["q"] - 1) / 100  # minor units -> euros
    print("Gamma-Gamma", gg, "mean spend", round(mean_spend, 2), "planted", truth["gamma_gamma"])  # noqa: T201
    assert mean_spend == pytest.approx(truth["gamma_gamma"]["mean_order_value"], rel=0.05)
    assert fit.metrics["customers"] == truth["counts"]["customers"]


def test_predictions_keep_in_touch_and_segment(session: Session, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    fit = clv_service.fit_clv(session, ws, END)
    stored = session.scalar(sa.select(sa.func.count()).where(ClvPrediction.workspace_id == ws))
    assert stored == fit.metrics["customers"]
    ranks = session.scalars(
        sa.select(ClvPrediction.keep_in_touch_rank)
        .where(ClvPrediction.workspace_id == ws, ClvPrediction.keep_in_touch_rank.is_not(None))
        .order_by(ClvPrediction.keep_in_touch_rank)
    ).all()
    assert list(ranks) == list(range(1, fit.metrics["keep_in_touch"] + 1))
    assert len(ranks) > 0
    listed = clv_service.customers(session, ws, keep_in_touch=True, limit=1000)["items"]
    assert all(c["probability_alive"] < 1.0 for c in listed)
    top = clv_service.customers(session, ws, limit=5)["items"]
    assert [c["clv"] for c in top] == sorted((c["clv"] for c in top), reverse=True)

    first = clv_service.refresh_keep_in_touch_segment(session, ws)
    assert first["added"] == len(ranks)
    assert first["member_count"] == len(ranks)
    again = clv_service.refresh_keep_in_touch_segment(session, ws)
    assert (again["added"], again["removed"]) == (0, 0)
    seg = session.scalars(sa.select(Segment).where(Segment.workspace_id == ws, Segment.id == first["segment_id"])).one()
    assert seg.kind == "static"
    assert seg.name == clv_service.KEEP_IN_TOUCH_SEGMENT
    members = set(
        session.scalars(
            sa.select(SegmentMember.contact_id).where(
                SegmentMember.segment_id == seg.id, SegmentMember.left_at.is_(None)
            )
        ).all()
    )
    assert members == set(clv_service.keep_in_touch_ids(session, ws))


def test_holdout_report_predicts_the_holdout_total(session: Session, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    rep = clv_service.holdout_report(session, ws, 90, END)
    print("holdout", rep["total_actual"], rep["total_predicted"], rep["mae"], rep["correlation"])  # noqa: T201
    assert rep["total_predicted"] == pytest.approx(rep["total_actual"], rel=0.15)
    assert rep["correlation"] > 0.4
    assert sum(r["customers"] for r in rep["rows"]) == rep["params"]["n_customers"]


def test_api_clv(session: Session, client: TestClient, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    auth = {"Authorization": f"Bearer {create_key(session, ws, KeyKind.api)[1]}"}
    r = client.post("/api/v1/clv/fit", json={"observation_end": END.isoformat()}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["segment"]["member_count"] == r.json()["metrics"]["keep_in_touch"]
    dist = client.get("/api/v1/clv/distribution", headers=auth).json()
    assert sum(dist["counts"]) == dist["customers"] == r.json()["metrics"]["customers"]
    kit = client.get("/api/v1/clv/keep-in-touch?limit=5", headers=auth).json()
    assert [c["keep_in_touch_rank"] for c in kit["items"]] == [1, 2, 3, 4, 5]
    one = client.get(f"/api/v1/clv/customers/{kit['items'][0]['contact_id']}", headers=auth)
    assert one.json() == kit["items"][0]
    assert client.get("/api/v1/clv/customers/999999999", headers=auth).status_code == 404
    assert client.get("/api/v1/clv/holdout?holdout_days=3", headers=auth).status_code == 422
    bad = client.post("/api/v1/clv/fit", json={"model": "magic"}, headers=auth)
    assert bad.status_code == 422
    assert "model" in bad.json()["detail"]


def test_too_few_customers_is_a_clear_422(
    session: Session, workspace: Workspace, client: TestClient, auth: dict[str, str]
) -> None:
    for _ in range(3):
        create_order(
            session,
            workspace.id,
            create_contact(session, workspace.id),
            placed_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
            total=1000,
        )
    r = client.post("/api/v1/clv/fit", json={}, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("orders:")
    assert client.get("/api/v1/clv/fit", headers=auth).status_code == 404
    assert client.get("/api/v1/clv/keep-in-touch", headers=auth).status_code == 404
