"""Lifetime value models against published figures, data simulated from the models, and hand-made customers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storefunnel.errors import Invalid
from storefunnel.insight import clv

DATA = Path(__file__).parent / "data"


def _csv(name: str) -> dict[str, np.ndarray]:
    raw = np.genfromtxt(DATA / name, delimiter=",", names=True)
    return {k: np.asarray(raw[k], dtype=np.float64) for k in raw.dtype.names or ()}


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    return _csv("cdnow_customers_summary.csv")


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow: dict[str, np.ndarray]) -> None:
    # Fader, Hardie & Lee (2005), CDNOW 2,357 customers, 39 weeks: r=0.243, alpha=4.414, a=0.793, b=2.426, LL -9582.4
    m = clv.fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert (m.r, m.alpha, m.a, m.b) == pytest.approx((0.243, 4.414, 0.793, 2.426), abs=6e-4)
    assert m.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_pareto_nbd_reproduces_the_published_cdnow_fit(cdnow: dict[str, np.ndarray]) -> None:
    # Fader & Hardie's Pareto/NBD note on the same data: r=0.55, alpha=10.58, s=0.61, beta=11.67, LL -9595.0
    m = clv.fit_pareto_nbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert (m.r, m.alpha, m.s, m.beta) == pytest.approx((0.55, 10.58, 0.61, 11.67), abs=6e-3)
    assert m.log_likelihood == pytest.approx(-9595.0, abs=0.05)


def test_gamma_gamma_reproduces_the_published_cdnow_fit() -> None:
    # Fader, Hardie & Lee (2005, "RFM and CLV"): p=6.25, q=3.74, v=15.44 on the 946 repeat customers
    d = _csv("cdnow_customers_summary_with_transactions.csv")
    m = clv.fit_gamma_gamma(d["x"], d["zbar"])
    assert m.n_customers == 946
    assert (m.p, m.q, m.v) == pytest.approx((6.25, 3.74, 15.44), abs=0.011)


def _simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    big_t = rng.uniform(20.0, 60.0, n)
    t = np.zeros(n)
    x = np.zeros(n)
    tx = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        t[idx] += rng.exponential(1.0 / lam[idx])
        bought = t[idx] < big_t[idx]
        hit = idx[bought]
        x[hit] += 1
        tx[hit] = t[hit]
        active[idx[~bought]] = False
        active[hit[rng.random(hit.size) < p[hit]]] = False  # dropout after a repeat purchase
    return x, tx, big_t


def test_bgnbd_recovers_simulated_parameters() -> None:
    truth = (0.5, 6.0, 0.8, 2.5)
    x, tx, big_t = _simulate_bgnbd(40_000, *truth, seed=42)
    m = clv.fit_bgnbd(x, tx, big_t)
    assert (m.r, m.alpha, m.a, m.b) == pytest.approx(truth, rel=0.15)


def test_pareto_nbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    n, truth = 40_000, (0.6, 8.0, 0.8, 12.0)
    r, alpha, s, beta = truth
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    big_t = rng.uniform(20.0, 60.0, n)
    life = np.minimum(rng.exponential(1.0 / mu), big_t)
    x = rng.poisson(lam * life).astype(np.float64)
    tx = np.where(x > 0, life * rng.random(n) ** (1.0 / np.maximum(x, 1)), 0.0)
    m = clv.fit_pareto_nbd(x, tx, big_t)
    assert (m.r, m.alpha, m.s, m.beta) == pytest.approx(truth, rel=0.2)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(3)
    n, (p, q, v) = 20_000, (6.0, 4.0, 15.0)
    x = rng.integers(1, 10, n).astype(np.float64)
    nu = rng.gamma(q, 1.0 / v, n)
    m = rng.gamma(p * x, 1.0 / nu) / x
    g = clv.fit_gamma_gamma(x, m)
    assert (g.p, g.q, g.v) == pytest.approx((p, q, v), rel=0.1)


def test_weights_equal_repeated_rows(cdnow: dict[str, np.ndarray]) -> None:
    x, tx, t = cdnow["frequency"][:500], cdnow["recency"][:500], cdnow["T"][:500]
    doubled = clv.fit_bgnbd(np.tile(x, 2), np.tile(tx, 2), np.tile(t, 2))
    weighted = clv.fit_bgnbd(x, tx, t, weights=np.full(500, 2.0))
    assert (weighted.r, weighted.alpha, weighted.a, weighted.b) == pytest.approx(
        (doubled.r, doubled.alpha, doubled.a, doubled.b), rel=1e-6
    )


def test_predictions_behave(cdnow: dict[str, np.ndarray]) -> None:
    m = clv.fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    # no repeat purchase: alive by definition of the BG/NBD (dropout only follows a purchase)
    assert m.probability_alive([0], [0], [38.86]).tolist() == [1.0]
    # the same customer going quiet for longer is less likely alive and expected to buy less
    quiet = m.probability_alive([4, 4], [10, 10], [20, 38])
    assert quiet[0] > quiet[1]
    exp = m.expected_purchases(39, [4, 4], [10, 10], [20, 38])
    assert exp[0] > exp[1] > 0
    # expected purchases of a new customer at t=39 weeks grow with t and start at zero
    assert m.expected_purchases_new(0.0) == pytest.approx(0.0)
    assert m.expected_purchases_new(78.0) > m.expected_purchases_new(39.0)


def test_rfm_summary_by_hand() -> None:
    ids = np.array(["a", "a", "a", "b", "c", "c"])
    days = np.array(
        ["2026-01-01", "2026-01-01", "2026-01-05", "2026-01-03", "2026-01-02", "2026-02-01"], "datetime64[D]"
    )
    values = np.array([10.0, 5.0, 20.0, 7.0, 3.0, 99.0])
    r = clv.rfm_summary(ids, days, values, observation_end="2026-01-11")
    # c's February order is after the end and dropped; a's two orders on Jan 1 are one purchase
    assert r.customer_ids.tolist() == ["a", "b", "c"]
    assert r.frequency.tolist() == [1.0, 0.0, 0.0]
    assert r.recency.tolist() == [4.0, 0.0, 0.0]
    assert r.T.tolist() == [10.0, 8.0, 9.0]
    assert r.monetary_value.tolist() == [20.0, 0.0, 0.0]
    weeks = clv.rfm_summary(ids, days, values, observation_end="2026-01-11", unit_days=7)
    assert weeks.T.tolist() == pytest.approx([10 / 7, 8 / 7, 9 / 7])
    frame = clv.rfm_summary_frame({"id": ids, "at": days, "v": values}, "id", "at", "v", observation_end="2026-01-11")
    assert frame.monetary_value.tolist() == [20.0, 0.0, 0.0]
    with pytest.raises(Invalid, match="nope"):
        clv.rfm_summary_frame({"id": ids, "at": days}, "id", "nope")


def test_keep_in_touch_picks_valuable_customers_slipping_away(cdnow: dict[str, np.ndarray]) -> None:
    m = clv.fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    x = np.array([10.0, 10.0, 1.0, 10.0, 0.0])
    tx = np.array([10.0, 37.0, 1.0, 36.0, 0.0])
    t = np.full(5, 38.0)
    spend = np.array([50.0, 50.0, 5.0, 50.0, 0.0])
    alive = m.probability_alive(x, tx, t)
    assert alive[0] < 0.5 < alive[1]
    picked = clv.keep_in_touch(x, tx, t, spend, m, top_share=0.6, alive_below=0.5, periods_per_month=4.345)
    assert picked.tolist() == [0]  # valuable and quiet; customer 1 and 3 still buy, 2 and 4 are not valuable
    # with a look-back: customer 3 has not bought for 2 weeks, its P(alive) fell since then
    fell = clv.keep_in_touch(
        x, tx, t, spend, m, top_share=0.6, alive_below=0.0, days_ago=2.0, drop=0.01, periods_per_month=4.345
    )
    before = m.probability_alive(x, tx, t - 2.0)
    assert 3 in fell.tolist()
    assert before[3] - alive[3] >= 0.01
    assert 1 not in fell.tolist()  # bought within the look-back window


def test_calibration_holdout_report_counts_truth() -> None:
    raw = np.genfromtxt(DATA / "example_transactions.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    days = np.array([d[:10] for d in raw["date"]], dtype="datetime64[D]")
    ids = raw["id"]
    rep = clv.calibration_holdout_report(ids, days, "2014-09-01", "2014-12-31")
    cal_customers = np.unique(ids[days <= np.datetime64("2014-09-01")])
    hold = (days > np.datetime64("2014-09-01")) & np.isin(ids, cal_customers)
    truth = len({(i, d) for i, d in zip(ids[hold].tolist(), days[hold].tolist(), strict=True)})
    assert rep.total_actual == truth
    assert rep.customers.sum() == cal_customers.size
    assert rep.total_predicted == pytest.approx(rep.total_actual, rel=0.25)
    assert rep.mae > 0
    assert rep.rmse >= rep.mae
    assert 0 < rep.correlation <= 1
    assert rep.rows()[0]["frequency"] == 0.0
    with pytest.raises(Invalid, match="observation_end"):
        clv.calibration_holdout_report(ids, days, "2014-09-01", "2014-08-01")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (([1, 2], [0, 1], [5]), "frequency"),
        (([1], [6], [5]), "recency"),
        (([0], [1], [5]), "recency"),
        (([-1], [0], [5]), "recency"),
    ],
)
def test_bad_input_names_the_field(args: tuple[list[float], ...], field: str) -> None:
    with pytest.raises(Invalid, match=field):
        clv.fit_bgnbd(*args)
