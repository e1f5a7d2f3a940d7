"""Who buys: the test statistics against scipy, FDR against scipy, a hand-built store, and the planted group."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats as sps
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.insight.engine import SqlRunner
from storefunnel.insight.facts import Period
from storefunnel.insight.stats import benjamini_hochberg, binomial_test, two_proportion_z
from storefunnel.insight.who_buys import cells_from_counts, describe, segment_rules, sentence, who_buys
from storefunnel.models import Workspace
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace
from tests.insight.test_funnel import analyze

PERIOD = Period(dt.date(2026, 1, 1), dt.date(2026, 3, 31))


def test_benjamini_hochberg_by_hand_and_against_scipy() -> None:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    p = np.random.default_rng(1).uniform(size=200) ** 3
    assert benjamini_hochberg(p) == pytest.approx(sps.false_discovery_control(p, method="bh"))


def test_tests_against_scipy() -> None:
    assert binomial_test(30, 100, 0.18) == pytest.approx(sps.binomtest(30, 100, 0.18).pvalue)
    # the pooled z-test squared is the chi-square test of the 2x2 table without continuity correction
    table = np.array([[30, 70], [18, 82]])
    chi2 = sps.chi2_contingency(table, correction=False)
    assert two_proportion_z(30, 100, 18, 100) == pytest.approx(chi2.pvalue)


def test_cells_on_plain_counts() -> None:
    # finest cells: (gender, age band); women 25-29 convert 3x more often than the rest
    attrs = {"gender": ["female", "female", "male", "male"], "age_band": ["25-29", "30-39", "25-29", "30-39"]}
    leads = [200, 400, 200, 400]
    customers = [60, 40, 20, 40]
    cells = cells_from_counts(attrs, leads, customers, min_leads=30, min_customers=10)
    top = max((c for c in cells if c.q_value <= 0.05 and c.direction == "over"), key=lambda c: c.lift or 0)
    assert top.attributes == {"gender": "female", "age_band": "25-29"}
    assert top.lead_share == pytest.approx(200 / 1200)
    assert top.customer_share == pytest.approx(60 / 160)
    assert top.lift == pytest.approx((60 / 160) / (200 / 1200))
    assert top.p_value == pytest.approx(sps.binomtest(60, 160, 200 / 1200).pvalue)
    ps = [c.p_value for c in cells]
    assert [c.q_value for c in cells] == pytest.approx(list(sps.false_discovery_control(ps)))
    assert len(cells) == 2 + 2 + 4  # each gender, each band, each pair: all have support
    assert sentence(top) == "38% of your customers are women aged 25-29, against 17% of your leads."


def test_support_and_unknowns_filter_cells() -> None:
    attrs = {"gender": ["female", "(unknown)"], "age_band": ["25-29", "25-29"]}
    cells = cells_from_counts(attrs, [100, 100], [9, 30], min_leads=30, min_customers=10)
    assert [c.attributes for c in cells] == [{"age_band": "25-29"}]


def test_words_and_rules() -> None:
    assert describe({"gender": "male", "age_band": "under_18", "country": "PT"}) == "men under 18 in PT"
    assert describe({"city": "Porto", "country": "PT"}) == "people in Porto (PT)"
    assert segment_rules({"country": "PT", "gender": "female"}) == {
        "all": [{"field": "country", "op": "eq", "value": "PT"}, {"field": "gender", "op": "eq", "value": "female"}]
    }


def _hand_store(session: Session, make: Any, ws: int) -> None:
    """40 women 25-29 in Porto with 20 customers; 160 others with 16 customers."""
    day = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for i in range(200):
        group = i < 40
        c = make.contact(
            session,
            ws,
            lead_at=day,
            country="PT",
            city="Porto" if group else ("Lisboa" if i % 2 else "Porto"),
            gender="female" if group or i % 3 == 0 else "male",
            age_band="25-29" if group else "40-49",
        )
        if (group and i % 2 == 0) or (not group and i % 10 == 0):
            make.order(session, ws, c, placed_at=day + dt.timedelta(days=3), total=1000)


def test_hand_store_finds_the_group(session: Session, make: Any, workspace: Workspace) -> None:
    _hand_store(session, make, workspace.id)
    w = who_buys(SqlRunner(session), workspace.id, PERIOD, "EUR", min_leads=30, min_customers=10)
    assert (w.leads, w.customers) == (200, 36)
    top = w.top
    assert top is not None
    assert top.attributes["age_band"] == "25-29"
    assert (top.leads, top.customers) == (40, 20)
    assert top.revenue_share == pytest.approx(20 / 36)


def test_create_buying_group_via_api(
    client: TestClient, auth: dict[str, str], session: Session, make: Any, workspace: Workspace
) -> None:
    _hand_store(session, make, workspace.id)
    r = client.get("/api/v1/insight/who-buys", params={"from": "2026-01-01", "to": "2026-03-31"}, headers=auth)
    assert r.status_code == 200, r.text
    top = r.json()["top"]
    assert top["sentence"].startswith("56% of your customers are")
    made = client.post("/api/v1/insight/who-buys/segment", json={"attributes": top["attributes"]}, headers=auth)
    assert made.status_code == 201, made.text
    seg = made.json()
    assert seg["member_count"] == 40 if "member_count" in seg else True
    again = client.post("/api/v1/insight/who-buys/segment", json={"attributes": top["attributes"]}, headers=auth)
    assert again.status_code == 409
    bad = client.post("/api/v1/insight/who-buys/segment", json={"attributes": {"shoe": "42"}}, headers=auth)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "attributes" in bad.json()["detail"]
    bad_fdr = client.get("/api/v1/insight/who-buys", params={"fdr": 2}, headers=auth)
    assert bad_fdr.status_code == 422
    assert "fdr" in bad_fdr.json()["detail"]


@pytest.fixture(scope="module")
def simulated(engine: Engine) -> tuple[int, dict[str, Any]]:
    with Session(engine) as s:
        ws = create_workspace(s, f"sim-who-{uuid.uuid4().hex[:8]}")
        s.commit()
        ws_id = ws.id
    truth = simulate_store(engine, ws_id, contacts=4000, days=365, seed=11, anchor=dt.date(2026, 10, 1))
    analyze(engine)
    return ws_id, truth


def test_planted_buying_group_comes_out_top(engine: Engine, simulated: tuple[int, dict[str, Any]]) -> None:
    ws_id, truth = simulated
    group = truth["buying_group"]
    with Session(engine) as s:
        w = who_buys(SqlRunner(s), ws_id, Period(dt.date(2025, 1, 1), dt.date(2026, 10, 1)), "EUR")
    top = w.top
    assert top is not None
    assert top.attributes == {k: group[k] for k in ("country", "city", "age_band", "gender")}
    assert (top.leads, top.customers) == (group["contacts"], group["customers"])
    assert top.q_value <= 0.05
