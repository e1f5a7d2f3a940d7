"""The Overview's figures (leads, customers, conversion, orders, revenue, daily series) over a busy store.

Run: ``.venv/bin/python -m bench.overview [--contacts N] [--orders N]``. Builds one store in a scratch SQLite
file and a scratch PostgreSQL database (next to ``STOREFUNNEL_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``), times ``insight.overview`` for the last 30 and 365 days
in Europe/Paris, and times the same job done by pandas and by DuckDB on the same rows already in memory
(their load time is excluded and printed apart). All four answers are checked equal before any time is shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import make_engine
from storefunnel.insight.overview import EXCLUDED_STATUSES, LocalRange, overview
from storefunnel.migrate import upgrade
from storefunnel.models import Contact, Order, Workspace
from storefunnel.workspaces.service import create_workspace

TZ = "Europe/Paris"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RUNS = 5


@contextmanager
def scratch_postgres() -> Iterator[str]:
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin_url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"sf_bench_overview_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_rows(contacts: int, orders: int, seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two years of leads and orders; 5% cancelled, 3% refunded, 2% in USD, 10% guest checkouts."""
    rng = np.random.default_rng(seed)
    span = 730 * 86400
    lead_s = rng.integers(0, span, contacts)
    is_lead = rng.random(contacts) < 0.8
    c_rows = [
        {
            "id": i + 1,
            "email": f"c{i}@example.com",
            "traits": {},
            "lead_at": NOW - dt.timedelta(seconds=int(lead_s[i])) if is_lead[i] else None,
        }
        for i in range(contacts)
    ]
    who = rng.integers(1, contacts + 1, orders)
    guest = rng.random(orders) < 0.1
    placed_s = rng.integers(0, span, orders)
    totals = rng.integers(500, 20000, orders)
    roll = rng.random(orders)
    usd = rng.random(orders) < 0.02
    o_rows = [
        {
            "contact_id": None if guest[i] else int(who[i]),
            "external_id": f"o{i}",
            "placed_at": NOW - dt.timedelta(seconds=int(placed_s[i])),
            "currency": "USD" if usd[i] else "EUR",
            "total": int(totals[i]),
            "status": "cancelled" if roll[i] < 0.05 else "refunded" if roll[i] < 0.08 else "paid",
            "discount_codes": [],
            "properties": {},
        }
        for i in range(orders)
    ]
    return c_rows, o_rows


def fill(url: str, c_rows: list[dict[str, Any]], o_rows: list[dict[str, Any]]) -> tuple[sa.Engine, int]:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        wid = create_workspace(s, "bench-overview", currency="EUR", timezone=TZ).id
        s.commit()
    with engine.begin() as conn:  # Core executemany: the ORM's bulk path fetches ids back and is far slower
        conn.execute(sa.insert(Contact.__table__), [{**r, "workspace_id": wid} for r in c_rows])
        conn.execute(sa.insert(Order.__table__), [{**r, "workspace_id": wid} for r in o_rows])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    return engine, wid


def ours(engine: sa.Engine, wid: int, rng: LocalRange) -> dict[str, Any]:
    with Session(engine) as s:
        ws = s.get(Workspace, wid)
        assert ws is not None
        return overview(s, ws, rng).as_dict()


def with_pandas(contacts: pd.DataFrame, orders: pd.DataFrame, rng: LocalRange) -> dict[str, Any]:
    start, end = pd.Timestamp(rng.start_utc), pd.Timestamp(rng.end_utc)
    leads = contacts[(contacts.lead_at >= start) & (contacts.lead_at < end)]
    valid = orders[~orders.status.isin(EXCLUDED_STATUSES)]
    firsts = valid.dropna(subset=["contact_id"]).groupby("contact_id").placed_at.min()
    in_range = valid[(valid.placed_at >= start) & (valid.placed_at < end)]
    days = pd.Index([d.isoformat() for d in rng.dates()])
    lead_days = leads.lead_at.dt.tz_convert(TZ).dt.strftime("%Y-%m-%d").value_counts()
    order_days = in_range.placed_at.dt.tz_convert(TZ).dt.strftime("%Y-%m-%d")
    eur = in_range.currency == "EUR"
    converted = leads.id.map(firsts).lt(end).sum()
    return {
        "leads": len(leads),
        "customers": int(((firsts >= start) & (firsts < end)).sum()),
        "converted": int(converted),
        "orders": len(in_range),
        "revenue": int(in_range.total[eur].sum()),
        "daily_leads": lead_days.reindex(days, fill_value=0).astype(int).tolist(),
        "daily_orders": order_days.value_counts().reindex(days, fill_value=0).astype(int).tolist(),
        "daily_revenue": in_range.total[eur]
        .groupby(order_days[eur])
        .sum()
        .reindex(days, fill_value=0)
        .astype(int)
        .tolist(),
    }


def with_duckdb(con: duckdb.DuckDBPyConnection, rng: LocalRange) -> dict[str, Any]:
    params = {"s": rng.start_utc, "e": rng.end_utc, "tz": TZ}
    ex = ", ".join(f"'{s}'" for s in EXCLUDED_STATUSES)
    con.execute(f"CREATE OR REPLACE TEMP VIEW valid AS SELECT * FROM orders WHERE status NOT IN ({ex})")
    bounds = {"s": rng.start_utc, "e": rng.end_utc}
    leads = con.execute("SELECT count(*) FROM contacts WHERE lead_at >= $s AND lead_at < $e", bounds).fetchone()
    customers_converted = con.execute(
        """WITH f AS (SELECT contact_id, min(placed_at) AS first_at FROM valid WHERE contact_id IS NOT NULL
                      GROUP BY contact_id)
           SELECT (SELECT count(*) FROM f WHERE first_at >= $s AND first_at < $e),
                  (SELECT count(*) FROM contacts c JOIN f ON f.contact_id = c.id
                   WHERE c.lead_at >= $s AND c.lead_at < $e AND f.first_at < $e)""",
        bounds,
    ).fetchone()
    per_day_leads = dict(
        con.execute(
            "SELECT CAST(timezone($tz, lead_at) AS DATE), count(*) FROM contacts WHERE lead_at >= $s AND lead_at < $e "
            "GROUP BY 1",
            params,
        ).fetchall()
    )
    per_day_orders = con.execute(
        "SELECT CAST(timezone($tz, placed_at) AS DATE), count(*), sum(CASE WHEN currency = 'EUR' THEN total ELSE 0 END)"
        " FROM valid WHERE placed_at >= $s AND placed_at < $e GROUP BY 1",
        params,
    ).fetchall()
    o = {d: (n, int(r)) for d, n, r in per_day_orders}
    assert leads is not None
    assert customers_converted is not None
    return {
        "leads": leads[0],
        "customers": customers_converted[0],
        "converted": customers_converted[1],
        "orders": sum(n for n, _ in o.values()),
        "revenue": sum(r for _, r in o.values()),
        "daily_leads": [per_day_leads.get(d, 0) for d in rng.dates()],
        "daily_orders": [o.get(d, (0, 0))[0] for d in rng.dates()],
        "daily_revenue": [o.get(d, (0, 0))[1] for d in rng.dates()],
    }


def comparable(d: dict[str, Any]) -> dict[str, Any]:
    """Our as_dict() in the references' shape."""
    return {
        "leads": d["leads"],
        "customers": d["customers"],
        "converted": d["conversion"]["converted"],
        "orders": d["orders"],
        "revenue": d["revenue"],
        "daily_leads": d["daily"]["leads"],
        "daily_orders": d["daily"]["orders"],
        "daily_revenue": d["daily"]["revenue"],
    }


def median_time(fn: Callable[[], Any]) -> tuple[float, Any]:
    result = fn()  # warm caches once, as a live dashboard would be
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=75_000)
    args = parser.parse_args()
    c_rows, o_rows = make_rows(args.contacts, args.orders)
    print(f"store: {args.contacts:,} contacts, {args.orders:,} orders over 730 days; timezone {TZ}; median of {RUNS}")
    with tempfile.TemporaryDirectory() as tmp, scratch_postgres() as pg_url:
        t0 = time.perf_counter()
        engines = {
            "SQLite": fill(f"sqlite:///{Path(tmp) / 'bench.db'}", c_rows, o_rows),
            "PostgreSQL": fill(pg_url, c_rows, o_rows),
        }
        print(f"filled both databases in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        sqlite_engine, sqlite_ws = engines["SQLite"]
        with sqlite_engine.connect() as conn:
            contacts = pd.read_sql(
                sa.select(Contact.id, Contact.lead_at).where(Contact.workspace_id == sqlite_ws), conn
            )
            orders = pd.read_sql(
                sa.select(Order.contact_id, Order.placed_at, Order.total, Order.status, Order.currency).where(
                    Order.workspace_id == sqlite_ws
                ),
                conn,
            )
        for col, frame in (("lead_at", contacts), ("placed_at", orders)):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        con = duckdb.connect()
        con.register("contacts_df", contacts)
        con.register("orders_df", orders)
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TABLE contacts AS SELECT * FROM contacts_df")
        con.execute("CREATE TABLE orders AS SELECT * FROM orders_df")
        print(f"loaded the rows into pandas and DuckDB (not timed below) in {time.perf_counter() - t0:.1f} s\n")

        header = (
            f"{'range':>9} | {'ours SQLite':>11} | {'ours PG':>9} | {'pandas':>9} | {'DuckDB':>9} | "
            f"{'SQLite/pandas':>13} | {'PG/pandas':>9} | {'PG/DuckDB':>9}"
        )
        print(header)
        print("-" * len(header))
        for days in (30, 365):
            rng = LocalRange.last_days(days, TZ, now=NOW)
            t_sqlite, r_sqlite = median_time(lambda rng=rng: ours(*engines["SQLite"], rng))
            t_pg, r_pg = median_time(lambda rng=rng: ours(*engines["PostgreSQL"], rng))
            t_pd, r_pd = median_time(lambda rng=rng: with_pandas(contacts, orders, rng))
            t_dk, r_dk = median_time(lambda rng=rng: with_duckdb(con, rng))
            assert comparable(r_sqlite) == comparable(r_pg) == r_pd == r_dk, "the four answers differ"
            print(
                f"{days:>4} days | {t_sqlite * 1e3:>8.1f} ms | {t_pg * 1e3:>6.1f} ms | {t_pd * 1e3:>6.1f} ms | "
                f"{t_dk * 1e3:>6.1f} ms | {t_sqlite / t_pd:>12.2f}x | {t_pg / t_pd:>8.2f}x | {t_pg / t_dk:>8.2f}x"
            )
        for engine, _ in engines.values():
            engine.dispose()
    print("\nall four agree on every figure and every day.")


if __name__ == "__main__":
    main()
