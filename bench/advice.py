"""The advice on the simulator's scenarios (hit rate, ours beside a naive rule) and its speed on a large store.

Run: ``.venv/bin/python -m bench.advice [--seeds 20] [--large]``.

Hit rate: each scenario simulated with ``--seeds`` seeds exactly as ``tests/insight/test_advice_scenarios.py``
does (5,000 contacts, 84 days, in-memory SQLite), then asked for the advice on its last 28 days. The reference is
the rule a dashboard invites: compare this period's leads, and its new customers per lead, with the period
before, and call a fall of 10% or more a problem (the larger fall wins; no statistics, no stage 4 or 5).

``--large``: the advice on the 1M-contact PostgreSQL store of ``bench.insight`` (built there; its stage history
is computed here first, timed) and on its DuckDB snapshot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from tests.insight.test_advice_scenarios import ADVICE_SCENARIOS, advise_simulated, hit

SCENARIOS = ("baseline", "lead_drop", "conversion_drop", "no_thank_you")


def naive(report: dict[str, Any]) -> tuple[str, str | None]:
    """(focus, stage) by the dashboard rule, from the same periods' raw counts."""
    leads_now, leads_before = report["stages"][0]["current"], report["stages"][0]["previous"]
    ev = report["stages"][1]
    new_now = ev["current"]
    new_before = ev["previous"] or 0.0
    lead_change = leads_now / leads_before - 1 if leads_before else 0.0
    per_lead_now = new_now / leads_now if leads_now else 0.0
    per_lead_before = new_before / leads_before if leads_before else 0.0
    conv_change = per_lead_now / per_lead_before - 1 if per_lead_before else 0.0
    if min(lead_change, conv_change) > -0.10:
        return "unclear", None
    return ("marketing", "prospecting") if lead_change <= conv_change else ("sales", "conversion")


def naive_hit(scenario: str, report: dict[str, Any]) -> bool:
    focus, stage = naive(report)
    expected = {
        "baseline": ("unclear", None),
        "lead_drop": ("marketing", "prospecting"),
        "conversion_drop": ("sales", "conversion"),
        "no_thank_you": ("sales", "thanked"),
    }[scenario]
    return (focus, stage) == expected


def hit_rates(seeds: int) -> None:
    print(f"hit rate over {seeds} seeds per scenario (the test's threshold: {ADVICE_SCENARIOS['min_hit_rate']:.0%})")
    print("| scenario | expected | storefunnel | naive 10% rule | seconds per store (simulate + cycle + advice) |")
    print("| --- | --- | ---: | ---: | ---: |")
    expected = {
        "baseline": "unclear, no problem",
        "lead_drop": "marketing, stage 1",
        "conversion_drop": "sales, stage 2 or 3",
        "no_thank_you": "sales, stage 4",
    }
    for scenario in SCENARIOS:
        ours = ref = 0
        t0 = time.perf_counter()
        for seed in range(seeds):
            report = advise_simulated(scenario, seed)
            ours += hit(scenario, report)
            ref += naive_hit(scenario, report)
        per = (time.perf_counter() - t0) / seeds
        print(f"| {scenario} | {expected[scenario]} | {ours}/{seeds} | {ref}/{seeds} | {per:.1f} |", flush=True)


def large() -> None:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bench.insight import ANCHOR, build, ensure_pg_database
    from storefunnel.cycle import service as cycle
    from storefunnel.insight.advice import advice_report
    from storefunnel.insight.engine import duckdb_runner
    from storefunnel.insight.facts import Period, snapshot

    url = ensure_pg_database("sf_bench_insight_1000000")
    engine, ws = build(url, 100_000, 10)
    period = Period(ANCHOR - dt.timedelta(days=28), ANCHOR - dt.timedelta(days=1))
    with Session(engine) as s:
        n = s.execute(sa.text("SELECT COUNT(*) FROM stage_changes WHERE workspace_id = :w"), {"w": ws}).scalar_one()
    if n == 0:
        with Session(engine) as s:
            t0 = time.perf_counter()
            result = cycle.recompute(s, ws, dt.datetime.combine(ANCHOR, dt.time(), dt.UTC))
            s.commit()
            print(f"cycle recompute, {sum(result.counts.values()):,} contacts: {time.perf_counter() - t0:.1f} s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE stage_changes, contacts")
    duck = "var/bench/advice_1000000.duckdb"
    with Session(engine) as s:
        t0 = time.perf_counter()
        snapshot(s, ws, duck)
        print(f"DuckDB snapshot: {time.perf_counter() - t0:.1f} s")
    print("| engine, 1M contacts | first run s | warm s |")
    print("| --- | ---: | ---: |")
    answers = []
    for name in ("PostgreSQL", "DuckDB"):
        times = []
        for _ in range(2):
            with Session(engine) as s:
                t0 = time.perf_counter()
                if name == "DuckDB":
                    with duckdb_runner(duck) as runner:
                        answers.append(advice_report(s, ws, period, runner))
                else:
                    answers.append(advice_report(s, ws, period))
                times.append(time.perf_counter() - t0)
        print(f"| {name} | {times[0]:.2f} | {times[1]:.2f} |", flush=True)
    assert answers[0]["focus"] == answers[-1]["focus"]
    print(f"focus: {answers[0]['focus']}; {answers[0]['summary']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--large", action="store_true")
    args = ap.parse_args()
    hit_rates(args.seeds)
    if args.large:
        large()


if __name__ == "__main__":
    main()
