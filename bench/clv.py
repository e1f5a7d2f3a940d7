"""Lifetime value benchmark: our BG/NBD, Pareto/NBD and Gamma-Gamma fitters vs lifetimes', 100,000 customers.

Customers are simulated from the Pareto/NBD with a year of daily history (recency and T in weeks, from whole
days, as a store's order table gives them). Each fitter runs once on the same arrays in this process; the
parameters of both are printed so that the speed is not bought with a different answer. Run:
``.venv/bin/python -m bench.clv``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from storefunnel.insight import clv


def customers(n: int, seed: int = 5) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.6, 1.0 / 8.0, n)
    mu = rng.gamma(0.8, 1.0 / 12.0, n)
    big_t = rng.integers(1, 366, n) / 7.0
    life = np.minimum(rng.exponential(1.0 / mu), big_t)
    x = rng.poisson(lam * life).astype(np.float64)
    tx = np.where(x > 0, np.floor(7 * life * rng.random(n) ** (1.0 / np.maximum(x, 1))) / 7.0, 0.0)
    x[tx == 0] = 0
    nu = rng.gamma(4.0, 1.0 / 15.0, n)
    spend = np.where(x > 0, rng.gamma(6.0 * np.maximum(x, 1), 1.0 / nu) / np.maximum(x, 1), 0.0)
    return x, tx, big_t, spend


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    warnings.filterwarnings("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    n = 100_000
    x, tx, big_t, spend = customers(n)
    distinct = len(np.unique(np.column_stack((x, tx, big_t)), axis=0))
    print(f"{n:,} customers, {distinct:,} distinct (frequency, recency, T) rows, {int((x > 0).sum()):,} repeat buyers")
    rep = x > 0
    rows = []
    t_o, o = timed(lambda: clv.fit_bgnbd(x, tx, big_t))
    t_r, r = timed(lambda: BetaGeoFitter().fit(x, tx, big_t))
    rows.append(("BG/NBD", t_o, t_r, (o.r, o.alpha, o.a, o.b), tuple(r.params_[["r", "alpha", "a", "b"]])))
    t_o, o = timed(lambda: clv.fit_pareto_nbd(x, tx, big_t))
    t_r, r = timed(lambda: ParetoNBDFitter().fit(x, tx, big_t))
    rows.append(("Pareto/NBD", t_o, t_r, (o.r, o.alpha, o.s, o.beta), tuple(r.params_[["r", "alpha", "s", "beta"]])))
    t_o, o = timed(lambda: clv.fit_gamma_gamma(x[rep], spend[rep]))
    t_r, r = timed(lambda: GammaGammaFitter().fit(x[rep], spend[rep]))
    rows.append(("Gamma-Gamma", t_o, t_r, (o.p, o.q, o.v), tuple(r.params_[["p", "q", "v"]])))
    print()
    print(f"{'model':12s} {'ours s':>8s} {'lifetimes s':>12s} {'ratio':>8s}  {'max rel. param gap':>18s}")
    for name, a, b, po, pr in rows:
        gap = max(abs(u - v) / abs(v) for u, v in zip(po, pr, strict=True))
        print(f"{name:12s} {a:8.2f} {b:12.2f} {b / a:7.1f}x  {gap:18.1e}")
    for name, _, _, po, pr in rows:
        print(f"  {name}: ours {np.round(po, 4).tolist()}  lifetimes {np.round(pr, 4).tolist()}")


if __name__ == "__main__":
    # The machine is shared and has 2 cores: OpenBLAS threads spinning on tiny vectors (inside L-BFGS-B, small dot
    # products) cost more than they give, for both sides alike, so both run with one BLAS thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        main()
