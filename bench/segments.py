"""Segment evaluation at scale: 1M contacts, 10M touches on PostgreSQL, against pandas and per-contact SQL.

Run: ``.venv/bin/python -m bench.segments [--contacts N] [--touches N]``. It creates a scratch database
next to ``STOREFUNNEL_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), fills it
with set-based SQL (``generate_series``), times our compiled query and membership refreshes, times the
same filter in pandas on the same rows already in memory (load time excluded, printed apart) and the
naive one-query-per-contact loop (timed on a sample, extrapolated), checks that all agree, and drops
the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import Base, make_engine
from storefunnel.migrate import upgrade
from storefunnel.segments import service
from storefunnel.segments.compiler import EXCLUDED_ORDER_STATUSES
from storefunnel.segments.schemas import SegmentCreate

AGE_BANDS = ["25-29", "30-39"]
REVENUE_OVER = 20000
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RULES: dict[str, Any] = {
    "all": [
        {"field": "country", "op": "eq", "value": "PT"},
        {"field": "age_band", "op": "in", "value": AGE_BANDS},
        {"field": "revenue", "op": "gt", "value": REVENUE_OVER},
        {"event": "Product Added", "op": ">=", "count": 2, "within_days": 14},
    ]
}
# The touch indexes a read benchmark needs (ours and the per-contact loop); the others only cost load time here.
TOUCH_INDEXES_USED = {"ix_touches_event_time", "ix_touches_contact_time"}
BROAD: dict[str, Any] = {"field": "country", "op": "eq", "value": "PT"}


@contextmanager
def scratch_database() -> Iterator[str]:
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin_url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"sf_bench_segments_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    fn()  # warm the caches once, as a live dashboard would be
    times, result = [], None
    for _ in range(runs):
        t, result = timed(fn)
        times.append(t)
    return statistics.median(times), result


def _load_touches(engine: sa.Engine, ws: int, lo: int, contacts: int, rows: int, seed: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": 0.1 + seed / 10})
        conn.execute(
            sa.text(
                """
                INSERT INTO touches (workspace_id, contact_id, occurred_at, kind, event, channel, properties)
                SELECT :ws, :lo + floor(:n * random() ^ 2)::bigint, :now - random() * interval '180 days',
                       CASE WHEN r < 0.75 THEN 'track' ELSE 'page' END,
                       CASE WHEN r < 0.50 THEN 'Product Viewed' WHEN r < 0.62 THEN 'Product Added'
                            WHEN r < 0.70 THEN 'Checkout Started' WHEN r < 0.75 THEN 'Order Completed' END,
                       (ARRAY['Direct','Organic Search','Paid Social','Email','Referral'])
                           [1 + floor(random() * 5)::int],
                       '{}'::jsonb
                FROM (SELECT random() AS r FROM generate_series(1, :t)) AS x
                """
            ),
            {"ws": ws, "lo": lo, "n": contacts, "t": rows, "now": NOW},
        )


def generate(engine: sa.Engine, contacts: int, touches: int, orders: int) -> int:
    """Fill one workspace set-based; touches load with their indexes and FK triggers off, then index."""
    touch_indexes = list(Base.metadata.tables["touches"].indexes)
    with engine.begin() as conn:
        ws = conn.execute(
            sa.text(
                "INSERT INTO workspaces (name, display_timezone, currency, settings, created_at)"
                " VALUES ('bench', 'UTC', 'EUR', '{}', now()) RETURNING id"
            )
        ).scalar_one()
        conn.execute(sa.text("SELECT setseed(0.42)"))
        conn.execute(
            sa.text(
                """
                INSERT INTO contacts (workspace_id, email, country, age_band, traits, email_consent,
                                      created_at, updated_at)
                SELECT :ws, 'c' || g || '@bench.test',
                       (ARRAY['PT','ES','FR','DE','IT','GB','US','BR','NL','BE'])[1 + floor(random() * 10)::int],
                       (ARRAY['18-24','25-29','30-39','40-49','50-64','65+','under_18'])[1 + floor(random() * 7)::int],
                       '{}'::jsonb, random() < 0.4, :now - random() * interval '730 days', :now
                FROM generate_series(1, :n) AS g
                """
            ),
            {"ws": ws, "n": contacts, "now": NOW},
        )
        lo = conn.execute(sa.text("SELECT min(id) FROM contacts WHERE workspace_id = :ws"), {"ws": ws}).scalar_one()
        # Activity is skewed (random()^2): a minority of contacts make most touches and orders.
        conn.execute(
            sa.text(
                """
                INSERT INTO orders (workspace_id, contact_id, source, placed_at, currency, subtotal, discount,
                                    shipping, tax, total, status, discount_codes, properties, created_at, updated_at)
                SELECT :ws, :lo + floor(:n * random() ^ 2)::bigint, 'api', ts, 'EUR', t, 0, 0, 0, t,
                       CASE WHEN random() < 0.03 THEN 'refunded' ELSE 'paid' END, '[]', '{}', ts, ts
                FROM (SELECT :now - random() * interval '365 days' AS ts, (500 + random() * 15000)::bigint AS t
                      FROM generate_series(1, :m)) AS o
                """
            ),
            {"ws": ws, "lo": lo, "n": contacts, "m": orders, "now": NOW},
        )
        conn.execute(sa.text("ALTER TABLE touches SET UNLOGGED"))
        for ix in touch_indexes:
            conn.execute(sa.text(f"DROP INDEX {ix.name}"))
        conn.execute(sa.text("ALTER TABLE touches DISABLE TRIGGER ALL"))
    # Two loaders in parallel (one per core), each its own seed and half of the rows.
    halves = [touches // 2, touches - touches // 2]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: _load_touches(engine, ws, lo, contacts, halves[k], k), range(2)))
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE touches ENABLE TRIGGER ALL"))
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '1GB'"))
        for ix in touch_indexes:
            if ix.name in TOUCH_INDEXES_USED:
                ix.create(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return int(ws)


def load_frames(engine: sa.Engine, ws: int) -> dict[str, pd.DataFrame]:
    """The same rows in pandas, via COPY (fast) with the columns the filter needs."""
    raw = engine.raw_connection()
    frames: dict[str, pd.DataFrame] = {}
    queries = {
        "contacts": f"SELECT id, country, age_band FROM contacts WHERE workspace_id = {ws}",
        "orders": f"SELECT contact_id, total, status FROM orders WHERE workspace_id = {ws}",
        "touches": "SELECT contact_id, event, floor(extract(epoch FROM occurred_at))::bigint AS ts"
        f" FROM touches WHERE workspace_id = {ws} AND contact_id IS NOT NULL",
    }
    try:
        cur = raw.cursor()
        for name, query in queries.items():
            buf = io.BytesIO()
            with cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:  # type: ignore[attr-defined]
                for chunk in copy:
                    buf.write(chunk)
            buf.seek(0)
            frames[name] = pd.read_csv(
                buf, dtype={"country": "category", "age_band": "category", "status": "category", "event": "category"}
            )
    finally:
        raw.close()
    frames["contacts"] = frames["contacts"].set_index("id")
    return frames


def pandas_filter(f: dict[str, pd.DataFrame]) -> set[int]:
    c, o, t = f["contacts"], f["orders"], f["touches"]
    chosen = c[(c["country"] == "PT") & c["age_band"].isin(AGE_BANDS)]
    revenue = o[~o["status"].isin(EXCLUDED_ORDER_STATUSES)].groupby("contact_id")["total"].sum()
    cutoff = int((NOW - dt.timedelta(days=14)).timestamp())
    recent = t[(t["event"] == "Product Added") & (t["ts"] >= cutoff)].groupby("contact_id").size()
    ok = (revenue.reindex(chosen.index, fill_value=0) > REVENUE_OVER) & (
        recent.reindex(chosen.index, fill_value=0) >= 2
    )
    return {int(i) for i in chosen.index[ok.to_numpy()]}


def naive_per_contact(engine: sa.Engine, ws: int, sample: int) -> tuple[float, set[int], int]:
    """What a loop over contacts does: one round trip per fact per contact, timed on an evenly spread sample."""
    cutoff = NOW - dt.timedelta(days=14)
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM contacts WHERE workspace_id = :ws"), {"ws": ws}).scalar_one()
        step = max(1, total // sample)
        ids = list(
            conn.execute(
                sa.text("SELECT id FROM contacts WHERE workspace_id = :ws AND id % :step = 0 ORDER BY id"),
                {"ws": ws, "step": step},
            ).scalars()
        )
        start, hits = time.perf_counter(), 0
        for cid in ids:
            country, band = conn.execute(
                sa.text("SELECT country, age_band FROM contacts WHERE id = :id"), {"id": cid}
            ).one()
            revenue = conn.execute(
                sa.text(
                    "SELECT coalesce(sum(total), 0) FROM orders WHERE workspace_id = :ws AND contact_id = :id"
                    " AND status NOT IN ('cancelled', 'refunded', 'voided')"
                ),
                {"ws": ws, "id": cid},
            ).scalar_one()
            added = conn.execute(
                sa.text(
                    "SELECT count(*) FROM touches WHERE workspace_id = :ws AND contact_id = :id"
                    " AND event = 'Product Added' AND occurred_at >= :cutoff"
                ),
                {"ws": ws, "id": cid, "cutoff": cutoff},
            ).scalar_one()
            hits += int(country == "PT" and band in AGE_BANDS and revenue > REVENUE_OVER and added >= 2)
        return time.perf_counter() - start, {int(i) for i in ids}, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--touches", type=int, default=10_000_000)
    parser.add_argument("--orders", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-sample", type=int, default=2000)
    args = parser.parse_args()
    with scratch_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        gen_s, ws = timed(lambda: generate(engine, args.contacts, args.touches, args.orders))
        print(
            f"generated {args.contacts:,} contacts, {args.touches:,} touches, {args.orders:,} orders in {gen_s:.1f} s"
        )
        rows: list[tuple[str, float]] = []
        with Session(engine) as session:
            count_s, (count, _) = median_time(lambda: service.preview(session, ws, RULES, 0, NOW), args.runs)
            rows.append(("ours: count the 4-condition segment (one SQL query)", count_s))
            create_s, seg = timed(
                lambda: service.create_segment(session, ws, SegmentCreate(name="4c", rules=RULES), NOW)
            )
            session.commit()
            rows.append((f"ours: create + first refresh, writes {seg.member_count:,} members", create_s))
            ours = set(
                session.scalars(
                    sa.select(sa.literal_column("contact_id"))
                    .select_from(sa.table("segment_members"))
                    .where(sa.text(f"segment_id = {seg.id} AND left_at IS NULL"))
                )
            )
            load_s, frames = timed(lambda: load_frames(engine, ws))
            pandas_s, theirs = median_time(lambda: pandas_filter(frames), args.runs)
            rows.append(("pandas: same filter on the same rows in memory", pandas_s))
            naive_s, sampled, naive_hits = naive_per_contact(engine, ws, args.naive_sample)
            naive_total = naive_s * args.contacts / len(sampled)
            rows.append(
                (f"naive per-contact SQL (3 queries x contact; {len(sampled):,} timed, extrapolated)", naive_total)
            )
            broad_s, broad = timed(
                lambda: service.create_segment(session, ws, SegmentCreate(name="PT", rules=BROAD), NOW)
            )
            session.commit()
            rows.append((f"ours: create + first refresh of 'country = PT', writes {broad.member_count:,}", broad_s))
            # 1% of contacts move country: the refresh closes and opens only those stays.
            session.execute(
                sa.text(
                    "UPDATE contacts SET country = CASE WHEN country = 'PT' THEN 'ES' ELSE 'PT' END"
                    " WHERE workspace_id = :ws AND id % 100 = 7"
                ),
                {"ws": ws},
            )
            session.commit()
            inc_s, inc = timed(lambda: service.refresh(session, ws, broad.id, NOW + dt.timedelta(hours=1)))
            session.commit()
            rows.append((f"ours: refresh after 1% churn (+{inc.entered:,} / -{inc.left:,})", inc_s))
        engine.dispose()
    print(f"\n{'job':<82} {'seconds':>9} {'vs count':>9}")
    for label, seconds in rows:
        print(f"{label:<82} {seconds:>9.3f} {seconds / count_s:>8.1f}x")
    print(f"pandas load time {load_s:.1f} s (excluded above)")
    assert ours == theirs, f"ours {len(ours)} != pandas {len(theirs)}"
    assert count == len(ours)
    assert naive_hits == len(theirs & sampled), (naive_hits, len(theirs & sampled))
    print(f"segment size {count:,}: ours, pandas and the naive loop (on its sample) agree")


if __name__ == "__main__":
    main()
