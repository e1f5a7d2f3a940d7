"""The simulator writes what its truth says it planted, and the planted effects are really in the rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from storefunnel.db import UTCDateTime
from storefunnel.simulate import params as P
from storefunnel.simulate import simulate_store
from storefunnel.simulate.generate import bgnbd_expected, first_orders_lost_without

ANCHOR = dt.date(2026, 11, 22)
END = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=28)


def new_workspace(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO workspaces (name, display_timezone, currency, settings, created_at) "
                    "VALUES (:n, 'UTC', 'EUR', '{}', :t) RETURNING id"
                ),
                {"n": f"sim-{uuid.uuid4().hex[:10]}", "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
            ).scalar_one()
        )


def run(engine: Engine, **kw: Any) -> tuple[int, dict[str, Any]]:
    ws = new_workspace(engine)
    truth = simulate_store(engine, ws, anchor=ANCHOR, **kw)
    return ws, truth


def rows(engine: Engine, sql: str, ws: int, **params: Any) -> list[Any]:
    stmt = sa.text(sql).bindparams(
        *(sa.bindparam(k, type_=UTCDateTime()) for k, v in params.items() if isinstance(v, dt.datetime))
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt, {"ws": ws, **params}).all())


def utc(value: Any) -> dt.datetime:
    """Raw SQL gives text on SQLite and datetimes on PostgreSQL."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@pytest.fixture(scope="module")
def baseline(engine: Engine) -> tuple[int, dict[str, Any]]:
    return run(engine, contacts=6000, days=365, seed=7)


@pytest.fixture(scope="module")
def scenarios(engine: Engine) -> dict[str, tuple[int, dict[str, Any]]]:
    return {
        name: run(engine, contacts=4000, days=84, seed=21, scenario=name) for name in ("lead_drop", "conversion_drop")
    }


def fingerprint(engine: Engine, ws: int) -> str:
    """A hash of everything written, without the ids that differ between workspaces."""
    queries = [
        "SELECT email, country, region, city, age_band, gender, email_consent, lead_at, lead_channel, s.stage, "
        "s.stage_at FROM contacts LEFT JOIN contact_stages s ON s.contact_id = contacts.id "
        "WHERE contacts.workspace_id = :ws ORDER BY email",
        "SELECT c.email, t.anonymous_id, t.occurred_at, t.kind, t.event, t.channel, t.source, t.medium, t.campaign, "
        "t.term, t.url, t.referrer FROM touches t LEFT JOIN contacts c ON c.id = t.contact_id "
        "WHERE t.workspace_id = :ws ORDER BY c.email, t.anonymous_id, t.occurred_at, t.event, t.url",
        "SELECT c.email, o.external_id, o.placed_at, o.subtotal, o.discount, o.shipping, o.total "
        "FROM orders o JOIN contacts c ON c.id = o.contact_id WHERE o.workspace_id = :ws ORDER BY o.external_id",
        "SELECT o.external_id, l.sku, l.quantity, l.unit_price, l.total FROM order_lines l "
        "JOIN orders o ON o.id = l.order_id WHERE l.workspace_id = :ws ORDER BY o.external_id, l.sku, l.quantity",
        "SELECT day, channel, campaign, cost FROM spend WHERE workspace_id = :ws ORDER BY day, channel, campaign",
    ]
    digest = hashlib.sha256()
    for q in queries:
        for row in rows(engine, q, ws):
            digest.update(repr(tuple(utc(v) if isinstance(v, dt.datetime) else v for v in row)).encode())
    return digest.hexdigest()


def test_same_seed_same_rows_other_seed_other_rows(engine: Engine) -> None:
    ws_a, truth_a = run(engine, contacts=700, days=90, seed=11)
    ws_b, truth_b = run(engine, contacts=700, days=90, seed=11)
    ws_c, _ = run(engine, contacts=700, days=90, seed=12)
    assert fingerprint(engine, ws_a) == fingerprint(engine, ws_b)
    assert fingerprint(engine, ws_a) != fingerprint(engine, ws_c)
    assert truth_a["counts"] == truth_b["counts"]


def test_row_counts_match_the_truth(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    counts = truth["counts"]
    for table, key in [
        ("contacts", "contacts"),
        ("orders", "orders"),
        ("order_lines", "order_lines"),
        ("touches", "touches"),
        ("identities", "identities"),
        ("products", "products"),
        ("spend", "spend_rows"),
    ]:
        assert rows(engine, f"SELECT COUNT(*) FROM {table} WHERE workspace_id = :ws", ws)[0][0] == counts[key], table
    leads = rows(engine, "SELECT COUNT(*) FROM contacts WHERE workspace_id = :ws AND lead_at IS NOT NULL", ws)[0][0]
    customers = rows(engine, "SELECT COUNT(DISTINCT contact_id) FROM orders WHERE workspace_id = :ws", ws)[0][0]
    anonymous = rows(engine, "SELECT COUNT(*) FROM touches WHERE workspace_id = :ws AND contact_id IS NULL", ws)[0][0]
    assert (leads, customers, anonymous) == (counts["leads"], counts["customers"], counts["anonymous_touches"])
    assert 0.05 < counts["customers"] / counts["contacts"] < 0.3
    assert counts["touches"] > 8 * counts["contacts"]


def test_every_time_is_inside_the_period(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    start = END - dt.timedelta(days=365)
    for table, column in [("touches", "occurred_at"), ("orders", "placed_at"), ("contacts", "lead_at")]:
        lo, hi = rows(engine, f"SELECT MIN({column}), MAX({column}) FROM {table} WHERE workspace_id = :ws", ws)[0]
        assert start <= utc(lo), table
        assert utc(hi) < END, table
    assert truth["anchor"] == END.isoformat()


def test_order_totals_are_their_lines_less_discount_plus_shipping(
    engine: Engine, baseline: tuple[int, dict[str, Any]]
) -> None:
    ws, _ = baseline
    orders = rows(
        engine,
        "SELECT o.id, o.subtotal, o.discount, o.shipping, o.tax, o.total, o.currency, o.discount_codes, "
        "SUM(l.total), SUM(l.unit_price * l.quantity), COUNT(l.id) "
        "FROM orders o JOIN order_lines l ON l.order_id = o.id AND l.workspace_id = o.workspace_id "
        "WHERE o.workspace_id = :ws GROUP BY o.id, o.subtotal, o.discount, o.shipping, o.tax, o.total, o.currency, "
        "o.discount_codes",
        ws,
    )
    assert orders
    coded = 0
    for _, subtotal, discount, shipping, tax, total, currency, codes, line_sum, gross, n_lines in orders:
        assert n_lines >= 1
        assert subtotal == line_sum == gross
        assert total == line_sum - discount + shipping
        assert 0 <= discount < subtotal
        assert tax == 0
        assert total > 0
        assert currency == "EUR"
        codes = json.loads(codes) if isinstance(codes, str) else codes
        assert bool(codes) == (discount > 0)
        coded += bool(codes)
    assert "3FOR2" in {c for r in orders for c in (json.loads(r[7]) if isinstance(r[7], str) else r[7])}
    assert 0.05 < coded / len(orders) < 0.5


def test_buying_group_over_performs(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    g = truth["buying_group"]
    (in_n, in_c), (out_n, out_c) = [
        rows(
            engine,
            "SELECT COUNT(*), COUNT(DISTINCT o.contact_id) FROM contacts c "
            "LEFT JOIN (SELECT DISTINCT contact_id FROM orders WHERE workspace_id = :ws) o ON o.contact_id = c.id "
            f"WHERE c.workspace_id = :ws AND {'' if member else 'NOT'} "
            "(c.gender = :g AND c.age_band = :a AND c.country = :co AND c.city = :ci)",
            ws,
            g=g["gender"],
            a=g["age_band"],
            co=g["country"],
            ci=g["city"],
        )[0]
        for member in (True, False)
    ]
    assert (in_n, in_c) == (g["contacts"], g["customers"])
    assert in_n >= 80
    lift = (in_c / in_n) / (out_c / out_n)
    assert 2.0 < lift < 4.5, lift


def test_planted_pairs_co_occur_far_above_chance(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    lines = rows(engine, "SELECT order_id, sku FROM order_lines WHERE workspace_id = :ws", ws)
    baskets: dict[int, set[str]] = {}
    for order_id, sku in lines:
        baskets.setdefault(order_id, set()).add(sku)
    n = len(baskets)
    has = Counter(s for b in baskets.values() for s in b)
    for pair in truth["co_purchase_pairs"]:
        a, b = pair["sku_a"], pair["sku_b"]
        both = sum(1 for basket in baskets.values() if a in basket and b in basket)
        assert both == pair["orders_with_both"]
        assert both >= 3, pair
        expected = has[a] * has[b] / n
        assert both > 5 * expected, (pair, both, expected)
        # the companion is added with the planted probability, so P(b | a) is of its order
        assert both / min(has[a], has[b]) > 0.5 * pair["probability"]


def test_most_buyers_need_5_to_12_touches(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    counts = rows(
        engine,
        "SELECT f.contact_id, COUNT(t.id) FROM "
        "(SELECT contact_id, MIN(placed_at) AS first_at FROM orders WHERE workspace_id = :ws GROUP BY contact_id) f "
        "JOIN touches t ON t.contact_id = f.contact_id AND t.workspace_id = :ws AND t.occurred_at < f.first_at "
        "GROUP BY f.contact_id",
        ws,
    )
    histogram = Counter(n for _, n in counts)
    assert {str(k): v for k, v in sorted(histogram.items())} == truth["touches_before_first_order"]["histogram"]
    share = sum(v for k, v in histogram.items() if 5 <= k <= 12) / len(counts)
    assert share > 0.65, share
    assert max(histogram) <= 22
    assert min(histogram) >= 1


def test_repeat_purchases_follow_the_stated_bgnbd(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    per_customer = rows(
        engine,
        "SELECT contact_id, MIN(placed_at), COUNT(*) - 1 FROM orders WHERE workspace_id = :ws GROUP BY contact_id",
        ws,
    )
    t = np.array([(END - utc(first)).total_seconds() / 86400 for _, first, _ in per_customer])
    repeats = np.array([r for *_, r in per_customer], dtype=float)
    expected = bgnbd_expected(t)
    se = repeats.std() / np.sqrt(len(repeats))
    assert abs(repeats.mean() - expected.mean()) < 4 * se, (repeats.mean(), expected.mean(), se)
    assert truth["bgnbd"] == {**truth["bgnbd"], "r": 0.25, "alpha": 30.0, "a": 0.8, "b": 2.4}


def test_channels_are_recoverable_from_source_and_medium(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws, truth = baseline
    pairs = rows(engine, "SELECT DISTINCT source, medium, channel FROM touches WHERE workspace_id = :ws", ws)
    by_pair: dict[tuple[str, str], set[str]] = {}
    for source, medium, channel in pairs:
        by_pair.setdefault((source, medium), set()).add(channel)
    assert all(len(c) == 1 for c in by_pair.values())
    assert {c for cs in by_pair.values() for c in cs} == set(truth["channels"])
    paid = rows(
        engine,
        "SELECT COUNT(*) FROM touches WHERE workspace_id = :ws AND channel = 'Paid Search' "
        "AND url NOT LIKE '%utm_medium=cpc%'",
        ws,
    )[0][0]
    assert paid == 0
    lead_channels = dict(
        rows(engine, "SELECT lead_channel, COUNT(*) FROM contacts WHERE workspace_id = :ws GROUP BY lead_channel", ws)
    )
    assert lead_channels == {k: v["leads"] for k, v in truth["channels"].items() if v["leads"]}


def _ratio_window_to_before(engine: Engine, ws: int, sql: str) -> float:
    recent = rows(engine, sql, ws, lo=END - WINDOW, hi=END)[0][0]
    before = rows(engine, sql, ws, lo=END - 2 * WINDOW, hi=END - WINDOW)[0][0]
    return float(recent / before)


LEADS = "SELECT COUNT(*) FROM contacts WHERE workspace_id = :ws AND lead_at >= :lo AND lead_at < :hi"
FIRST_ORDERS = (
    "SELECT COUNT(*) FROM (SELECT contact_id, MIN(placed_at) AS first_at FROM orders WHERE workspace_id = :ws "
    "GROUP BY contact_id) f WHERE f.first_at >= :lo AND f.first_at < :hi"
)


def test_lead_drop_lowers_recent_leads_only(
    engine: Engine, baseline: tuple[int, dict[str, Any]], scenarios: dict[str, tuple[int, dict[str, Any]]]
) -> None:
    base = _ratio_window_to_before(engine, baseline[0], LEADS)
    drop = _ratio_window_to_before(engine, scenarios["lead_drop"][0], LEADS)
    assert 0.85 < base < 1.15, base
    assert 0.45 < drop < 0.75, drop
    truth = scenarios["lead_drop"][1]
    assert truth["scenario"] == "lead_drop"
    assert truth["change_window"]["start"] == (END - WINDOW).isoformat()


def test_conversion_drop_lowers_recent_conversion_not_leads(
    engine: Engine, scenarios: dict[str, tuple[int, dict[str, Any]]]
) -> None:
    ws, truth = scenarios["conversion_drop"]
    leads = _ratio_window_to_before(engine, ws, LEADS)
    first = _ratio_window_to_before(engine, ws, FIRST_ORDERS)
    assert 0.85 < leads < 1.15, leads
    assert first / leads < 0.8, (first, leads)
    assert truth["counts"]["abandoned_checkouts_lost_to_scenario"] > 50
    checkouts = rows(
        engine,
        "SELECT COUNT(*) FROM touches WHERE workspace_id = :ws AND event = 'Checkout Started' AND occurred_at >= :lo",
        ws,
        lo=END - WINDOW,
    )[0][0]
    assert checkouts > rows(engine, FIRST_ORDERS, ws, lo=END - WINDOW, hi=END)[0][0]


def test_thank_you_emails_follow_orders_except_in_no_thank_you(
    engine: Engine, baseline: tuple[int, dict[str, Any]]
) -> None:
    thank = (
        "SELECT COUNT(*) FROM touches WHERE workspace_id = :ws AND campaign = 'thank-you' AND event = 'Email Opened'"
    )
    ws, truth = baseline
    assert rows(engine, thank, ws)[0][0] > 0.75 * truth["counts"]["orders"]
    ws_none, truth_none = run(engine, contacts=1000, days=90, seed=5, scenario="no_thank_you")
    assert truth_none["counts"]["orders"] > 50
    assert rows(engine, thank, ws_none)[0][0] == 0


def test_cli_refuses_a_filled_workspace_unless_replace(engine: Engine, tmp_path: Path) -> None:
    from storefunnel.cli import app

    name = f"cli-{uuid.uuid4().hex[:8]}"
    truth_path = tmp_path / "truth.json"
    args = ["simulate", "--contacts", "300", "--days", "60", "--seed", "3", "-w", name, "--anchor", "2026-11-22"]
    runner = CliRunner()
    first = runner.invoke(app, [*args, "--truth", str(truth_path)])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().splitlines()[-1] == str(truth_path)
    truth = json.loads(truth_path.read_text())
    assert truth["counts"]["contacts"] == 300
    assert truth["anchor"] == END.isoformat()
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "already has 300 contacts" in again.stderr
    replaced = runner.invoke(app, [*args, "--replace", "--truth", str(truth_path)])
    assert replaced.exit_code == 0, replaced.output
    ws = truth["workspace_id"]
    assert rows(engine, "SELECT COUNT(*) FROM contacts WHERE workspace_id = :ws", ws)[0][0] == 300
    assert rows(engine, "SELECT COUNT(*) FROM products WHERE workspace_id = :ws", ws)[0][0] == 200
    bad = runner.invoke(app, ["simulate", "--scenario", "nope", "-w", name])
    assert bad.exit_code == 2
    assert "scenario" in bad.stderr


def test_removal_replay_on_hand_built_journeys() -> None:
    """The replay by hand: who still buys once a channel's touches are gone (weights from the planted table)."""
    search, email, direct = P.CH["Organic Search"], P.CH["Email"], P.CH["Direct"]
    assert [P.CONVERSION_WEIGHT[c] for c in (search, email, direct)] == [1.0, 1.6, 1.1]
    ch = np.array(
        [
            [search, email, direct, direct],  # 1.0, 2.6: buys at touch 2; without Email 1.0, 2.1, 3.2: at touch 4
            [search, email, direct, direct],  # the same, but the journey ends after touch 2: Email was needed
            [email, search, search, search],  # buys at once; acquired by Email, so lost without it
        ]
    )
    threshold = np.array([2.5, 2.5, 1.0])
    stay = np.array([4, 2, 4])
    buy = np.ones(3, dtype=bool)
    everywhere = np.ones(ch.shape, dtype=bool)
    lost = first_orders_lost_without(ch, stay, threshold, np.ones(3, dtype=bool), everywhere, buy)
    assert lost[email] == 2  # journeys 2 and 3
    assert lost[search] == 2  # journeys 1 and 2 began with it
    assert lost[direct] == 0
    assert lost.sum() == 4  # channels with no touch lose nobody
    # a touch after the anchor cannot make the order: journey 1 without Email would buy only at touch 4
    early = everywhere.copy()
    early[0, 3] = False
    assert first_orders_lost_without(ch, stay, threshold, np.ones(3, dtype=bool), early, buy)[email] == 3
    # out of the market nobody buys in the replay: every buyer is lost whichever channel goes
    assert (first_orders_lost_without(ch, stay, threshold, np.zeros(3, dtype=bool), everywhere, buy) == 3).all()


def test_truth_states_the_removal_replay(baseline: tuple[int, dict[str, Any]]) -> None:
    _, truth = baseline
    lost = {c: v["first_orders_lost_without"] for c, v in truth["channels"].items()}
    assert 0 < lost["Direct"] < truth["counts"]["first_orders"]
    assert all(0 <= v <= truth["counts"]["first_orders"] for v in lost.values())
