"""Funnel, channels, who-buys and retention on a large store, on PostgreSQL, SQLite and DuckDB; Ibis vs Core; pandas.

Run: ``.venv/bin/python -m bench.insight [--base 100000] [--copies 10] [--sqlite-copies 1]``.

The store: the simulator writes ``--base`` contacts over 365 days (seed 1) once, then SQL copies every row
``--copies - 1`` more times with shifted ids and suffixed unique keys (``INSERT ... SELECT``): 100k x 10 gives
1M contacts, ~9.8M touches, ~250k orders. The PostgreSQL database ``sf_bench_insight_<n>`` and the SQLite file
``var/bench/insight_<n>.db`` are kept and reused by later runs (building them is timed and printed once). The
DuckDB file is a ``snapshot`` of the PostgreSQL store.

Timed (best of ``--runs``, compile cache warm; the first, cold, run is printed apart): each analytic on each
engine; the funnel's cohort query written in Ibis against the same query written in SQLAlchemy Core (compile
and run separately); and pandas doing the same funnel counts on the same rows already in memory (load time
excluded, printed apart). Answers are checked equal across engines and against pandas before any time is shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from storefunnel.db import make_engine
from storefunnel.insight.channels import channels
from storefunnel.insight.engine import Runner, SqlRunner, compile_sql, duckdb_runner
from storefunnel.insight.facts import EXCLUDED_STATUSES, Period, snapshot
from storefunnel.insight.funnel import funnel, query_cohort
from storefunnel.insight.retention import retention
from storefunnel.insight.who_buys import who_buys
from storefunnel.migrate import upgrade
from storefunnel.models import Contact, Order, Touch, Workspace
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace

ANCHOR = dt.date(2026, 11, 1)
P90 = Period(ANCHOR - dt.timedelta(days=90), ANCHOR - dt.timedelta(days=1))
P365 = Period(ANCHOR - dt.timedelta(days=365), ANCHOR - dt.timedelta(days=1))
TABLES = ("contacts", "touches", "orders", "order_lines")
SUFFIXED = {"email", "external_id", "message_id", "anonymous_id"}


def log(msg: str) -> None:
    print(msg, flush=True)


def replicate(engine: sa.Engine, ws: int, copies: int) -> None:
    """Copy every contact, touch, order and line of ``ws`` ``copies - 1`` times, ids shifted, unique keys suffixed."""
    insp = sa.inspect(engine)
    with engine.begin() as conn:
        offsets = {t: int(conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {t}").scalar_one()) for t in TABLES}
        refs = {"contact_id": offsets["contacts"], "order_id": offsets["orders"]}
        for k in range(1, copies):
            for t in TABLES:
                cols = [c["name"] for c in insp.get_columns(t)]
                exprs = []
                for c in cols:
                    if c == "id":
                        exprs.append(f"id + {k * offsets[t]}")
                    elif c in refs:
                        exprs.append(f"{c} + {k * refs[c]}")
                    elif c in SUFFIXED:
                        exprs.append(f"{c} || '.{k}'")
                    else:
                        exprs.append(c)
                conn.exec_driver_sql(
                    f"INSERT INTO {t} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {t} "
                    f"WHERE workspace_id = {ws} AND id <= {offsets[t]}"
                )
        if engine.dialect.name == "postgresql":
            for t in TABLES:
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT MAX(id) FROM {t}))")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def build(url: str, base: int, copies: int) -> tuple[sa.Engine, int]:
    """The store at ``url`` (built unless a finished one is there); returns the engine and workspace id."""
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        row = s.execute(sa.text("SELECT id, settings FROM workspaces WHERE name = 'bench'")).first()
        if row is not None and (row[1] or {}).get("bench_built") == [base, copies]:
            return engine, int(row[0])
        if row is not None:
            raise SystemExit(f"{url}: a half-built bench store is there; drop it and rerun")
        ws = create_workspace(s, "bench")
        s.commit()
        ws_id = ws.id
    t0 = time.perf_counter()
    simulate_store(engine, ws_id, contacts=base, days=365, seed=1, anchor=ANCHOR)
    t1 = time.perf_counter()
    replicate(engine, ws_id, copies)
    t2 = time.perf_counter()
    with Session(engine) as s:
        ws_row = s.get(Workspace, ws_id)
        assert ws_row is not None
        ws_row.settings = {"bench_built": [base, copies]}
        s.commit()
    log(f"  built {url.split('/')[-1]}: simulate {t1 - t0:.0f} s, copies {t2 - t1:.0f} s")
    return engine, ws_id


def ensure_pg_database(name: str) -> str:
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin_url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


ANALYTICS: dict[str, Callable[[Runner, int], Any]] = {
    "funnel (90 d)": lambda r, ws: funnel(r, ws, P90).as_dict(),
    "channels (90 d)": lambda r, ws: channels(r, ws, P90, "EUR").as_dict(),
    "who-buys (365 d)": lambda r, ws: who_buys(r, ws, P365, "EUR").as_dict(),
    "retention (365 d)": lambda r, ws: retention(r, ws, P365, "EUR").as_dict(),
}


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(first run s, best of the next ``runs`` s, answer)."""
    t0 = time.perf_counter()
    answer = fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best, answer


def core_cohort(ws: int, period: Period, window_days: int) -> sa.Select[Any]:
    """The funnel's cohort query (lead week x channel x campaign) hand-written in SQLAlchemy Core, PostgreSQL form."""
    start, end = period.start.replace(tzinfo=dt.UTC), period.end.replace(tzinfo=dt.UTC)
    o = (
        sa.select(Order.contact_id, sa.func.min(Order.placed_at).label("first_at"), sa.func.count().label("n"))
        .where(
            Order.workspace_id == ws,
            Order.contact_id.is_not(None),
            Order.status.not_in(EXCLUDED_STATUSES),
            Order.placed_at < end,
        )
        .group_by(Order.contact_id)
        .subquery()
    )
    lead = aliased(Contact)
    t = aliased(Touch)
    tagged = (
        sa.select(lead.id.label("cid"), t.campaign, t.occurred_at)
        .join(t, sa.and_(t.contact_id == lead.id, t.channel == lead.lead_channel, t.occurred_at <= lead.lead_at))
        .where(
            lead.workspace_id == ws,
            lead.lead_at >= start,
            lead.lead_at < end,
            t.workspace_id == ws,
            t.campaign.is_not(None),
            t.campaign != "",
            t.occurred_at >= start - dt.timedelta(days=30),
            t.occurred_at >= lead.lead_at - sa.literal(dt.timedelta(days=30), sa.Interval()),
        )
        .subquery()
    )
    ranked = sa.select(
        tagged.c.cid,
        tagged.c.campaign,
        sa.func.row_number().over(partition_by=tagged.c.cid, order_by=tagged.c.occurred_at.desc()).label("rn"),
    ).subquery()
    camp = sa.select(ranked.c.cid, ranked.c.campaign).where(ranked.c.rn == 1).subquery()
    converted = o.c.first_at.is_not(None)
    mature = Contact.lead_at < end - dt.timedelta(days=window_days)
    in_window = sa.and_(
        mature, converted, o.c.first_at <= Contact.lead_at + sa.literal(dt.timedelta(days=window_days), sa.Interval())
    )
    week = sa.cast(sa.func.date_trunc("week", sa.func.timezone("UTC", Contact.lead_at)), sa.Date).label("week")
    channel = sa.func.coalesce(Contact.lead_channel, "Unassigned").label("channel")
    campaign = sa.func.coalesce(camp.c.campaign, "(none)").label("campaign")
    return (
        sa.select(
            week,
            channel,
            campaign,
            sa.func.count().label("leads"),
            sa.func.sum(sa.case((converted, 1), else_=0)).label("customers"),
            sa.func.sum(sa.case((o.c.n >= 2, 1), else_=0)).label("repeat_customers"),
            sa.func.sum(sa.case((mature, 1), else_=0)).label("mature_leads"),
            sa.func.sum(sa.case((in_window, 1), else_=0)).label("converted_in_window"),
        )
        .select_from(Contact)
        .outerjoin(o, o.c.contact_id == Contact.id)
        .outerjoin(camp, camp.c.cid == Contact.id)
        .where(Contact.workspace_id == ws, Contact.lead_at >= start, Contact.lead_at < end)
        .group_by(week, channel, campaign)
    )


def ibis_vs_core(engine: sa.Engine, ws: int, runs: int) -> list[tuple[str, float, float]]:
    """Compile (uncached) and run times of the cohort query: Ibis expression vs SQLAlchemy Core statement."""
    out = []
    with Session(engine) as s:
        conn = s.connection()
        t0 = time.perf_counter()
        for _ in range(runs):
            compile_sql.cache_clear()
            query_cohort.cache_clear()
            sql = compile_sql(query_cohort(ws, P90, 30), "postgres")
        ibis_compile = (time.perf_counter() - t0) / runs
        t0 = time.perf_counter()
        for _ in range(runs):
            stmt = core_cohort(ws, P90, 30)
            compiled = stmt.compile(dialect=engine.dialect)
        core_compile = (time.perf_counter() - t0) / runs
        runner = SqlRunner(s)
        expr = query_cohort(ws, P90, 30)
        ibis_run = min(_time(lambda: runner.run(expr)) for _ in range(runs))
        core_rows: list[Any] = []

        def run_core() -> None:
            core_rows[:] = conn.execute(stmt).fetchall()

        core_run = min(_time(run_core) for _ in range(runs))
        ours = sorted(zip(*runner.run(expr).values(), strict=True))
        theirs = sorted(tuple(r) for r in core_rows)
        assert [x[3:] for x in ours] == [tuple(int(v) for v in x[3:]) for x in theirs], "Ibis and Core disagree"
        del sql, compiled
    out.append(("compile", ibis_compile, core_compile))
    out.append(("run", ibis_run, core_run))
    return out


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pandas_funnel(engine: sa.Engine, ws: int) -> tuple[float, float, dict[str, int]]:
    """The funnel's step counts and touches-before-first-order histogram in pandas: (load s, compute s, answer)."""
    t0 = time.perf_counter()
    with engine.connect() as conn:
        c = pd.read_sql(sa.text(f"SELECT id, lead_at FROM contacts WHERE workspace_id = {ws}"), conn)
        o = pd.read_sql(sa.text(f"SELECT contact_id, placed_at, status FROM orders WHERE workspace_id = {ws}"), conn)
        t = pd.read_sql(
            sa.text(
                f"SELECT contact_id, anonymous_id, occurred_at FROM touches WHERE workspace_id = {ws} "
                f"AND occurred_at >= '{P90.start.isoformat()}' AND occurred_at < '{P90.end.isoformat()}'"
            ),
            conn,
        )
    for df, col in ((c, "lead_at"), (o, "placed_at"), (t, "occurred_at")):
        df[col] = pd.to_datetime(df[col], utc=True, format="mixed")
    load = time.perf_counter() - t0
    start, end = pd.Timestamp(P90.start, tz="UTC"), pd.Timestamp(P90.end, tz="UTC")

    def compute() -> dict[str, int]:
        leads = c[(c.lead_at >= start) & (c.lead_at < end)]
        valid = o[o.contact_id.notna() & ~o.status.isin(EXCLUDED_STATUSES) & (o.placed_at < end)]
        per = valid.groupby("contact_id").agg(first_at=("placed_at", "min"), n=("placed_at", "size"))
        j = leads.join(per, on="id", how="left")
        known = pd.concat([t.loc[t.contact_id.notna(), "contact_id"].astype("int64"), leads.id]).nunique()
        anon = t.loc[t.contact_id.isna() & t.anonymous_id.notna(), "anonymous_id"].nunique()
        return {
            "visitors": int(known + anon),
            "leads": len(leads),
            "customers": int(j.first_at.notna().sum()),
            "repeat_customers": int((j.n >= 2).sum()),
        }

    t0 = time.perf_counter()
    answer = compute()
    first = time.perf_counter() - t0
    best = min(_time(compute) for _ in range(2))
    return load, min(first, best), answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--sqlite-copies", type=int, default=1, help="SQLite store size (copies of --base).")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    log(f"PostgreSQL store: {args.base:,} x {args.copies}")
    pg_url = ensure_pg_database(f"sf_bench_insight_{args.base * args.copies}")
    pg, pg_ws = build(pg_url, args.base, args.copies)
    with pg.connect() as conn:
        sizes = {
            t: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t} WHERE workspace_id = {pg_ws}").scalar_one())
            for t in TABLES
        }
    log("  " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    Path("var/bench").mkdir(parents=True, exist_ok=True)
    lite_url = f"sqlite:///var/bench/insight_{args.base * args.sqlite_copies}.db"
    log(f"SQLite store: {args.base:,} x {args.sqlite_copies}")
    lite, lite_ws = build(lite_url, args.base, args.sqlite_copies)
    duck_path = Path(f"var/bench/insight_{args.base * args.copies}.duckdb")
    if not duck_path.exists():
        with Session(pg) as s:
            t0 = time.perf_counter()
            snapshot(s, pg_ws, duck_path)
            log(f"  DuckDB snapshot of the PostgreSQL store: {time.perf_counter() - t0:.0f} s")

    rows: list[tuple[str, str, float, float]] = []
    answers: dict[tuple[str, str], Any] = {}
    for name, fn in ANALYTICS.items():
        with Session(pg) as s:
            r = SqlRunner(s)
            first, best, answers[("pg", name)] = timed(lambda fn=fn, r=r: fn(r, pg_ws), args.runs)
            rows.append((name, f"PostgreSQL {args.base * args.copies:,}", first, best))
        with duckdb_runner(duck_path) as d:
            first, best, answers[("duck", name)] = timed(lambda fn=fn, d=d: fn(d, pg_ws), args.runs)
            rows.append((name, f"DuckDB {args.base * args.copies:,}", first, best))
        with Session(lite) as s:
            r = SqlRunner(s)
            first, best, _ = timed(lambda fn=fn, r=r: fn(r, lite_ws), args.runs)
            rows.append((name, f"SQLite {args.base * args.sqlite_copies:,}", first, best))
        assert answers[("pg", name)] == answers[("duck", name)], f"{name}: PostgreSQL and DuckDB disagree"

    load, pd_s, pd_answer = pandas_funnel(pg, pg_ws)
    ours = {s["name"]: s["count"] for s in answers[("pg", "funnel (90 d)")]["steps"]}
    assert ours == pd_answer, (ours, pd_answer)

    log("\n| analytic | engine, contacts | first run s | warm best s |")
    log("|---|---|---:|---:|")
    for name, eng, first, best in rows:
        log(f"| {name} | {eng} | {first:.2f} | {best:.2f} |")
    pg_funnel = next(b for n, e, _, b in rows if n == "funnel (90 d)" and e.startswith("PostgreSQL"))
    duck_funnel = next(b for n, e, _, b in rows if n == "funnel (90 d)" and e.startswith("DuckDB"))
    log("\n| funnel step counts, 90 days | s | ratio (pandas / ours) |")
    log("|---|---:|---:|")
    log(f"| storefunnel on PostgreSQL (all six funnel queries) | {pg_funnel:.2f} | {pd_s / pg_funnel:.2f}x |")
    log(f"| storefunnel on DuckDB (all six funnel queries) | {duck_funnel:.2f} | {pd_s / duck_funnel:.2f}x |")
    log(f"| pandas, data in memory (load {load:.1f} s excluded; steps only) | {pd_s:.2f} | 1.00x |")
    log("\n| cohort query on PostgreSQL | Ibis s | SQLAlchemy Core s | ratio (Core / Ibis) |")
    log("|---|---:|---:|---:|")
    for what, ib, core in ibis_vs_core(pg, pg_ws, args.runs):
        log(f"| {what} | {ib:.4f} | {core:.4f} | {core / ib:.2f}x |")
    log(f"\nanswers equal: PostgreSQL = DuckDB for all four analytics; funnel steps = pandas {pd_answer}")


if __name__ == "__main__":
    main()
