"""The advice: its statistics by hand, its decisions on hand-built counts, and the same answer on every engine."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from scipy import stats as sps
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.auth.keys import create_key
from storefunnel.cli import app as cli_app
from storefunnel.cycle import service as cycle
from storefunnel.errors import Invalid
from storefunnel.insight.advice import Facts, Targets, advice_report, advise, get_targets, previous_of
from storefunnel.insight.engine import duckdb_runner
from storefunnel.insight.facts import Period, snapshot
from storefunnel.insight.stats import poisson_rate_ratio, proportion_ratio, standardised_rate_ratio
from storefunnel.models import KeyKind, Workspace
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_user, create_workspace

# --- the statistics ---------------------------------------------------------------------------------------


def test_poisson_rate_ratio_is_the_exact_conditional_interval() -> None:
    r = poisson_rate_ratio(10, 1.0, 20, 1.0)
    assert r.ratio == pytest.approx(0.5)
    lo_p, hi_p = sps.beta.ppf(0.025, 10, 21), sps.beta.ppf(0.975, 11, 20)  # Clopper-Pearson by its definition
    assert r.interval == pytest.approx((lo_p / (1 - lo_p), hi_p / (1 - hi_p)))
    assert r.p_value == pytest.approx(sps.binomtest(10, 30, 0.5).pvalue)
    assert r.change == pytest.approx(-0.5)
    unequal = poisson_rate_ratio(30, 30.0, 20, 10.0)  # 1 a day against 2 a day
    assert unequal.ratio == pytest.approx(0.5)
    assert unequal.expected == pytest.approx(60.0)


def test_standardising_removes_a_change_of_mix() -> None:
    """Same rate in each stratum, different mix of strata: the crude ratio says -25%, the standardised one 0%."""
    events, exposure = [10, 20], [100, 400]
    ref_events, ref_exposure = [30, 10], [300, 200]
    crude = (sum(events) / sum(exposure)) / (sum(ref_events) / sum(ref_exposure))
    assert crude == pytest.approx(0.75)
    r = standardised_rate_ratio(events, exposure, ref_events, ref_exposure)
    assert r.ratio == pytest.approx(1.0)
    assert r.expected == pytest.approx(30.0)
    assert r.p_value is not None
    assert r.p_value > 0.5
    assert r.interval is not None
    assert r.interval[0] < 1.0 < r.interval[1]


def test_one_stratum_is_the_plain_rate_ratio() -> None:
    r = standardised_rate_ratio([40], [1000], [80], [1000])
    assert r.ratio == pytest.approx(0.5)
    half = 1.959963984540054 * math.sqrt(1 / 40 + 1 / 80)  # the textbook variance of a log rate ratio
    assert r.interval == pytest.approx((0.5 * math.exp(-half), 0.5 * math.exp(half)))
    # the score test of one stratum is the normal approximation of the conditional binomial
    z = (40 - 120 * 0.5) / math.sqrt(120 * 0.25)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(abs(z)))


def test_strata_without_exposure_drop_out() -> None:
    r = standardised_rate_ratio([5, 7], [100, 0], [5, 9], [100, 50])
    assert r.ratio == pytest.approx(1.0)
    assert r.observed == 5


def test_proportion_ratio() -> None:
    r = proportion_ratio(45, 100, 90, 100)
    assert r.ratio == pytest.approx(0.5)
    assert r.p_value is not None
    assert r.p_value < 1e-9
    assert proportion_ratio(5, 0, 5, 10).ratio is None


# --- decisions on hand-built counts -----------------------------------------------------------------------

CURRENT = Period(dt.date(2026, 3, 1), dt.date(2026, 3, 28))
PREVIOUS = previous_of(CURRENT)


def store_counts(
    leads_before: int = 60,
    leads_now: int = 60,
    conversion_before: float = 0.1,
    conversion_now: float = 0.1,
    thanked_share: float = 0.85,
    days: int = 300,
) -> Facts:
    """A steady store: ``leads`` new leads a day; a share of each day's leads buys 3 days later, at the rate of
    the day the order falls on; 90 of 100 checkouts complete; every customer reorders 30 days after buying."""
    leads: dict[str, list[Any]] = {"day": [], "channel": [], "n": []}
    first: dict[str, list[Any]] = {"entry_day": [], "day": [], "n": []}
    new: dict[str, list[Any]] = {"day": [], "n": []}
    repeat: dict[str, list[Any]] = {"entry_day": [], "day": [], "n": []}
    start = CURRENT.last - dt.timedelta(days=days)
    for i in range(days + 1):
        day = start + dt.timedelta(days=i)
        n = leads_now if day >= CURRENT.first else leads_before
        leads["day"].append(day)
        leads["channel"].append("Paid Search" if i % 2 else "Organic Search")
        leads["n"].append(n)
        buy_day = day + dt.timedelta(days=3)
        rate = conversion_now if buy_day >= CURRENT.first else conversion_before
        k = round(n * rate)
        if buy_day <= CURRENT.last and k:
            first["entry_day"].append(day)
            first["day"].append(buy_day)
            first["n"].append(k)
            new["day"].append(buy_day)
            new["n"].append(k)
            again = buy_day + dt.timedelta(days=30)
            if again <= CURRENT.last:
                repeat["entry_day"].append(buy_day)
                repeat["day"].append(again)
                repeat["n"].append(k)
    orders = sum(first["n"][-21:])
    thanked = round(orders * thanked_share)
    return Facts(
        leads=leads,
        first_orders=first,
        new_customers=new,
        repeat_orders=repeat,
        checkouts={"current": [0, 1], "checkouts": [100, 100], "completed": [90, 90]},
        thank_you={"current": [0, 1], "orders": [orders, orders], "thanked": [thanked, thanked]},
        orders={"current": [0, 1], "orders": [orders, orders]},
        thank_you_window_days=7,
    )


def test_a_steady_store_gets_no_alarm() -> None:
    a = advise(store_counts(), CURRENT, PREVIOUS)
    assert (a.focus, a.reason) == ("unclear", "no_significant_change")
    assert [s.status for s in a.stages] == ["steady"] * 5
    assert a.recommendations == []


def test_fewer_leads_is_marketing_even_though_fewer_people_buy() -> None:
    """Half the leads: first orders fall too, but per lead of the same age conversion is unchanged."""
    a = advise(store_counts(leads_now=30), CURRENT, PREVIOUS)
    assert (a.focus, a.reason) == ("marketing", "lead_volume_down")
    assert a.stages[0].comparison is not None
    assert a.stages[0].comparison.ratio == pytest.approx(0.5)
    conversion = a.stages[1]
    assert conversion.status == "steady"
    assert conversion.comparison is not None
    assert conversion.comparison.ratio == pytest.approx(1.0, abs=0.01)
    top = a.recommendations[0]
    assert (top.rank, top.side, top.stage, top.kind) == (1, "marketing", "prospecting", "problem")
    assert "Paid Search" in top.text
    assert "Organic Search" in top.text


def test_fewer_buyers_per_lead_is_sales() -> None:
    a = advise(store_counts(conversion_now=0.05), CURRENT, PREVIOUS)
    assert (a.focus, a.reason) == ("sales", "conversion_down")
    assert a.stages[0].status == "steady"
    assert a.stages[1].comparison is not None
    assert a.stages[1].comparison.ratio == pytest.approx(0.5, abs=0.02)
    assert a.recommendations[0].stage == "conversion"


def test_no_thank_you_is_stage_four_whatever_the_trend() -> None:
    a = advise(store_counts(thanked_share=0.0), CURRENT, PREVIOUS)
    assert (a.focus, a.reason) == ("sales", "thank_you_missing")
    assert a.stages[3].status == "low"
    assert a.recommendations[0].stage == "thanked"


def test_both_sides_slipping_picks_the_costlier() -> None:
    a = advise(store_counts(leads_now=25, conversion_now=0.04), CURRENT, PREVIOUS)
    assert {s.stage for s in a.stages if s.problem} == {"prospecting", "conversion"}
    # 35 fewer leads a day cost ~98 customers; 4% instead of 10% of the remaining leads cost ~42
    assert a.focus == "marketing"
    assert [r.stage for r in a.recommendations[:2]] == ["prospecting", "conversion"]


def test_too_little_data_is_said_plainly() -> None:
    a = advise(store_counts(leads_before=0, leads_now=0), CURRENT, PREVIOUS)
    assert (a.focus, a.reason) == ("unclear", "not_enough_data")


def test_targets_are_tested_too() -> None:
    a = advise(store_counts(), CURRENT, PREVIOUS, Targets(leads_per_week=700))
    assert (a.focus, a.reason) == ("marketing", "leads_below_target")
    b = advise(store_counts(), CURRENT, PREVIOUS, Targets(conversion_rate=0.3))
    assert (b.focus, b.reason) == ("sales", "conversion_below_target")
    met = advise(store_counts(), CURRENT, PREVIOUS, Targets(leads_per_week=400, conversion_rate=0.05))
    assert met.focus == "unclear"


def test_periods_are_checked() -> None:
    with pytest.raises(Invalid, match=r"^from:"):
        previous_of(Period(dt.date(2026, 3, 1), dt.date(2026, 3, 3)))


# --- on the database, DuckDB, the API and the CLI ---------------------------------------------------------

ANCHOR = dt.date(2026, 6, 1)
ADVICE_PERIOD = Period(ANCHOR - dt.timedelta(days=28), ANCHOR - dt.timedelta(days=1))


@pytest.fixture(scope="module")
def lead_drop_store(engine: Engine) -> Iterator[Workspace]:
    with Session(engine) as s:
        ws = create_workspace(s, f"advice-{uuid.uuid4().hex[:8]}")
        s.commit()
        ws_id = ws.id
    simulate_store(engine, ws_id, contacts=4000, days=84, seed=2, scenario="lead_drop", anchor=ANCHOR)
    with Session(engine) as s:
        cycle.recompute(s, ws_id, dt.datetime.combine(ANCHOR, dt.time(), dt.UTC))
        s.commit()
        ws = s.get_one(Workspace, ws_id)
        s.expunge(ws)
    yield ws
    with Session(engine) as s:
        s.execute(sa.delete(Workspace).where(Workspace.id == ws_id))
        s.commit()


def rounded(value: Any) -> Any:
    """Floats to 9 significant digits: engines may sum in a different order."""
    return json.loads(json.dumps(value), parse_float=lambda x: float(f"{float(x):.9g}"))


def test_same_advice_on_the_database_and_duckdb(engine: Engine, lead_drop_store: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "facts.duckdb"
    with Session(engine) as s:
        ours = advice_report(s, lead_drop_store.id, ADVICE_PERIOD)
        counts = snapshot(s, lead_drop_store.id, path)
        with duckdb_runner(path) as duck:
            theirs = advice_report(s, lead_drop_store.id, ADVICE_PERIOD, duck)
    assert counts["stage_changes"] > 0
    assert theirs.pop("source")["engine"] == "duckdb"
    assert ours.pop("source")["engine"] == engine.dialect.name
    assert rounded(theirs) == rounded(ours)
    assert ours["focus"] == "marketing"
    assert ours["stages"][0]["change"] < -0.25  # planted: x0.6
    assert ours["stages"][3]["current"] > 0.7  # planted: 85% of orders thanked


def test_advice_over_the_api(session: Session, client: TestClient, lead_drop_store: Workspace) -> None:
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    auth = {"Authorization": f"Bearer {create_key(session, lead_drop_store.id, KeyKind.api)[1]}"}
    other_auth = {"Authorization": f"Bearer {create_key(session, other.id, KeyKind.api)[1]}"}
    query = {"from": ADVICE_PERIOD.first.isoformat(), "to": ADVICE_PERIOD.last.isoformat()}
    r = client.get("/api/v1/insight/advice", params=query, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["focus"] == "marketing"
    assert [s["number"] for s in body["stages"]] == [1, 2, 3, 4, 5]
    assert body["recommendations"][0]["evidence"]["leads"] == body["stages"][0]["current"]
    csv = client.get("/api/v1/insight/advice", params={**query, "format": "csv"}, headers=auth)
    assert csv.status_code == 200
    assert csv.text.splitlines()[0].startswith("number,stage,side")
    assert len(csv.text.splitlines()) == 6
    empty = client.get("/api/v1/insight/advice", params=query, headers=other_auth).json()
    assert empty["reason"] == "not_enough_data"  # the other workspace sees none of it
    short = client.get("/api/v1/insight/advice", params={"from": "2026-05-01", "to": "2026-05-03"}, headers=auth)
    assert short.status_code == 422
    assert "from" in short.json()["detail"]
    bad = client.put("/api/v1/insight/advice/targets", json={"leads_per_week": -3}, headers=auth)
    assert bad.status_code == 422
    assert "leads_per_week" in bad.text
    ok = client.put("/api/v1/insight/advice/targets", json={"leads_per_week": 5000}, headers=auth)
    assert ok.status_code == 200
    assert client.get("/api/v1/insight/advice/targets", headers=auth).json()["leads_per_week"] == 5000
    assert client.get("/api/v1/insight/advice/targets", headers=other_auth).json()["leads_per_week"] is None
    with_target = client.get("/api/v1/insight/advice", params=query, headers=auth).json()
    assert with_target["stages"][0]["status"] == "worse"  # the drop itself is still the first finding


def test_advise_command(lead_drop_store: Workspace) -> None:
    runner = CliRunner()
    args = ["advise", "-w", lead_drop_store.name, "--from", ADVICE_PERIOD.first.isoformat()]
    args += ["--to", ADVICE_PERIOD.last.isoformat()]
    result = runner.invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["focus"] == "marketing"
    table = runner.invoke(cli_app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "MARKETING" in table.stdout
    assert "Bring in more leads" in table.stdout
    bad = runner.invoke(cli_app, ["advise", "-w", lead_drop_store.name, "--to", "2026-13-01"])
    assert bad.exit_code == 2
    assert "to" in bad.stderr
    targets = runner.invoke(cli_app, ["advise", "targets", "-w", lead_drop_store.name, "--conversion-rate", "2"])
    assert targets.exit_code == 2
    assert "conversion_rate" in targets.stderr


def test_advice_page(client: TestClient, session: Session, lead_drop_store: Workspace) -> None:
    from tests.web.helpers import csrf_from, login

    user = create_user(session, lead_drop_store.id, f"owner-{uuid.uuid4().hex[:8]}@example.com", "a long password 1")
    assert login(client, user.email, "a long password 1")[0] == 303
    query = {"from": ADVICE_PERIOD.first.isoformat(), "to": ADVICE_PERIOD.last.isoformat()}
    page = client.get("/together/advice", params=query)
    assert page.status_code == 200, page.text
    assert "Improve your marketing" in page.text
    assert 'data-testid="chart-stages"' in page.text
    assert 'data-stage="prospecting" data-status="worse"' in page.text
    assert 'href="/together/advice"' in page.text  # in the navigation
    csv = client.get("/dashboard-data/insight/advice.csv", params=query)
    assert csv.status_code == 200
    assert csv.text.startswith("number,stage,side")
    token = csrf_from(page.text)
    bad = client.post("/together/advice/targets", data={"csrf_token": token, "conversion_percent": "250"})
    assert bad.status_code == 422
    assert "conversion_percent" in bad.text
    assert get_targets(session, lead_drop_store.id).conversion_rate is None
    ok = client.post(
        "/together/advice/targets",
        data={"csrf_token": token, "leads_per_week": "900", "conversion_percent": "12.5"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert get_targets(session, lead_drop_store.id) == Targets(leads_per_week=900, conversion_rate=0.125)
    short = client.get("/together/advice", params={"from": "2026-05-01", "to": "2026-05-02"})
    assert short.status_code == 422
    assert "from: the period must span" in short.text
