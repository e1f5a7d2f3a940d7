"""Cycle engine at scale on PostgreSQL: full recompute, incremental cost per event, and a Python reference.

Builds a scratch database, fills it with set-based SQL (generate_series), times:
  * the full set-based recompute of every contact's history;
  * ``update_contacts`` after ingesting one new touch for batches of 1 / 100 / 1000 contacts;
  * the reference: a plain per-contact Python state machine (``rules.replay``) over the same events, on a
    sample (reading the sample's events included), extrapolated to all contacts; the SQL history of the
    sample must equal the reference's, contact for contact.

    .venv/bin/python -m bench.cycle [--contacts 1000000] [--touches-per-contact 10] [--sample 20000]
                                    [--db NAME] [--keep]

``--db NAME`` builds the data into database NAME once and reuses it on later runs (it is never dropped; drop it
with ``DROP DATABASE``): filling 10M touches takes minutes. A reused database gets its history cleared before the
first recompute and the touches the incremental step added removed at the end, so every run measures the same work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
import uuid
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import engine, service
from storefunnel.cycle.rules import CycleRules, TouchFact, Transition, replay
from storefunnel.db import make_engine
from storefunnel.migrate import upgrade
from storefunnel.models import Contact, Order, Touch
from storefunnel.workspaces.service import create_workspace

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EVENTS = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Email Opened", "Thank You Sent"]


def _fill(conn: sa.Connection, ws: int, contacts: int, per_contact: int) -> dict[str, float]:
    """Contacts over 2025, touches spread over each contact's year, ~0.3 orders per contact (5% cancelled)."""
    timings: dict[str, float] = {}
    conn.execute(sa.text("SELECT setseed(0.42)"))
    t = time.perf_counter()
    conn.execute(
        sa.text(
            """INSERT INTO contacts (id, workspace_id, email, traits, email_consent, created_at, updated_at)
               SELECT g, :ws, 'c' || g || '@example.com', '{}'::jsonb, false,
                      :t0 + random() * interval '300 days', now()
               FROM generate_series(1, :n) g"""
        ),
        {"ws": ws, "n": contacts, "t0": T0},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('contacts', 'id'), :n)"), {"n": contacts})
    timings["contacts"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute(
        sa.text(
            """INSERT INTO touches (workspace_id, contact_id, occurred_at, kind, event, channel, properties)
               SELECT :ws, x.id, x.created_at + x.r2 * interval '365 days',
                      CASE WHEN x.r < 0.5 THEN 'page' ELSE 'track' END,
                      CASE WHEN x.r < 0.5 THEN NULL ELSE (CAST(:events AS text[]))[1 + floor(x.r3 * 6)::int] END,
                      'Direct',
                      CASE WHEN x.r > 0.97 THEN '{"flow": "thank_you"}'::jsonb ELSE '{}'::jsonb END
               FROM (SELECT c.id, c.created_at, random() AS r, random() AS r2, random() AS r3
                     FROM contacts c CROSS JOIN generate_series(1, :per) k WHERE c.workspace_id = :ws) x"""
        ),
        {"ws": ws, "per": per_contact, "events": EVENTS},
    )
    timings["touches"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute(
        sa.text(
            """INSERT INTO orders (workspace_id, contact_id, source, external_id, placed_at, currency, subtotal,
                                   discount, shipping, tax, total, status, discount_codes, properties,
                                   created_at, updated_at)
               SELECT :ws, 1 + floor(random() * :n)::bigint, 'bench', 'o' || g,
                      :t0 + random() * interval '365 days', 'EUR', 2500, 0, 0, 0, 2500,
                      CASE WHEN random() < 0.05 THEN 'cancelled' ELSE 'paid' END, '[]'::jsonb, '{}'::jsonb,
                      now(), now()
               FROM generate_series(1, :orders) g"""
        ),
        {"ws": ws, "n": contacts, "orders": int(contacts * 0.3), "t0": T0},
    )
    timings["orders"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute(sa.text("ANALYZE contacts; ANALYZE touches; ANALYZE orders"))
    timings["analyze"] = time.perf_counter() - t
    return timings


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _built(eng: sa.Engine, contacts: int) -> bool:
    """Whether the database already holds a filled bench workspace of this size."""
    with eng.connect() as conn:
        if conn.scalar(sa.text("SELECT to_regclass('contacts')")) is None:
            return False
        return int(conn.scalar(sa.text("SELECT count(*) FROM contacts")) or 0) == contacts


def _reset(eng: sa.Engine) -> int:
    """Clear the stored history so the next recompute is a first run again; returns the bench workspace."""
    with eng.begin() as conn:
        ws = int(conn.scalar(sa.text("SELECT id FROM workspaces WHERE name = 'bench'")) or 0)
        conn.execute(sa.text("TRUNCATE stage_changes, contact_stages, cycle_outbox"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE contacts, touches, stage_changes, contact_stages"))
    return ws


def _reference(
    session: Session, ws: int, rules: CycleRules, ids: list[int]
) -> tuple[dict[int, list[Transition]], float]:
    """The plain approach: read each contact's events, run the state machine contact by contact."""
    t = time.perf_counter()
    created = dict(session.execute(sa.select(Contact.id, Contact.created_at).where(Contact.id.in_(ids))).all())
    touches: dict[int, list[TouchFact]] = defaultdict(list)
    for cid, at, event, props in session.execute(
        sa.select(Touch.contact_id, Touch.occurred_at, Touch.event, Touch.properties)
        .where(Touch.workspace_id == ws, Touch.contact_id.in_(ids))
        .order_by(Touch.contact_id, Touch.id)
    ):
        touches[cid].append(TouchFact(at, event, (props or {}).get("flow")))
    orders: dict[int, list[dt.datetime]] = defaultdict(list)
    for cid, at in session.execute(
        sa.select(Order.contact_id, Order.placed_at).where(
            Order.workspace_id == ws, Order.contact_id.in_(ids), Order.status.not_in(rules.cancelled_statuses)
        )
    ):
        orders[cid].append(at)
    out = {cid: replay(rules, created[cid], touches[cid], orders[cid], AS_OF) for cid in ids}
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--touches-per-contact", type=int, default=10)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    parser.add_argument("--db", help="Build into this database once and reuse it on later runs (never dropped).")
    args = parser.parse_args()

    name = args.db or f"sf_bench_cycle_{uuid.uuid4().hex[:8]}"
    admin = make_engine(ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is not None
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    eng = make_engine(url)
    reused = exists and _built(eng, args.contacts)
    try:
        upgrade(eng)
        if reused:
            ws = _reset(eng)
            print(f"reusing {name}: history cleared")
        else:
            with Session(eng) as s:
                ws = create_workspace(s, "bench").id
                s.commit()
            with eng.begin() as conn:
                fill = _fill(conn, ws, args.contacts, args.touches_per_contact)
            print("fill: " + ", ".join(f"{k} {v:.1f}s" for k, v in fill.items()))
        with eng.connect() as conn:
            n_touches = conn.scalar(sa.text("SELECT count(*) FROM touches"))
            n_orders = conn.scalar(sa.text("SELECT count(*) FROM orders"))
            max_touch = int(conn.scalar(sa.text("SELECT coalesce(max(id), 0) FROM touches")) or 0)
        print(f"data: {args.contacts:,} contacts, {n_touches:,} touches, {n_orders:,} orders; load {_load()}")
        rules = CycleRules()

        with Session(eng) as s:
            t = time.perf_counter()
            result = service.recompute(s, ws, AS_OF)
            s.commit()
            full = time.perf_counter() - t
        print(f"full recompute: {full:.1f}s, {result.transitions:,} transitions; {result.counts}; load {_load()}")
        with Session(eng) as s:
            t = time.perf_counter()
            again = service.recompute(s, ws, AS_OF)
            s.commit()
            rerun = time.perf_counter() - t
        same = "same" if (again.transitions, again.counts) == (result.transitions, result.counts) else "DIFFERENT"
        print(f"re-run, nothing changed: {rerun:.1f}s ({same} result); load {_load()}")

        rng = random.Random(7)
        sample = sorted(rng.sample(range(1, args.contacts + 1), min(args.sample, args.contacts)))
        with Session(eng) as s:
            ref, ref_secs = _reference(s, ws, rules, sample)
            t = time.perf_counter()
            rows = s.execute(
                engine.history_select("postgresql", rules, by_contact=True), engine.history_params(ws, AS_OF, sample)
            ).all()
            sql_sample_secs = time.perf_counter() - t
        sql_hist: dict[int, list[Transition]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (r.contact_id, r.changed_at)):
            sql_hist[r.contact_id].append(Transition(r.changed_at, r.from_stage, r.stage, r.reason))
        mismatches = sum(1 for cid in sample if sql_hist.get(cid, []) != ref[cid])
        print(f"sample of {len(sample):,}: SQL and the Python state machine disagree on {mismatches} contacts")

        incremental: dict[int, list[float]] = {}
        for size in (1, 100, 1000):
            times = []
            for rep in range(5 if size < 1000 else 3):
                ids = rng.sample(range(1, args.contacts + 1), size)
                with Session(eng) as s:
                    at = AS_OF - dt.timedelta(hours=rep + 1)
                    s.execute(
                        sa.insert(Touch),
                        [
                            {
                                "workspace_id": ws,
                                "contact_id": i,
                                "occurred_at": at,
                                "kind": "track",
                                "event": "Product Viewed",
                                "properties": {},
                            }
                            for i in ids
                        ],
                    )
                    t = time.perf_counter()
                    service.update_contacts(s, ws, ids, AS_OF)
                    s.commit()
                    times.append(time.perf_counter() - t)
            incremental[size] = times

        scale = args.contacts / len(sample)
        if reused or args.db:
            with eng.begin() as conn:
                conn.execute(sa.text("DELETE FROM touches WHERE id > :m"), {"m": max_touch})

        print()
        print(f"{'job':<58}{'ours (s)':>12}{'reference (s)':>15}{'ratio':>9}")
        print(
            f"{'full history, all ' + format(args.contacts, ',') + ' contacts (ref extrapolated)':<58}"
            f"{full:>12.1f}{ref_secs * scale:>15.1f}{ref_secs * scale / full:>8.1f}x"
        )
        print(
            f"{'re-run of the full history, nothing changed':<58}"
            f"{rerun:>12.1f}{ref_secs * scale:>15.1f}{ref_secs * scale / rerun:>8.1f}x"
        )
        print(
            f"{'history of the ' + format(len(sample), ',') + '-contact sample':<58}"
            f"{sql_sample_secs:>12.2f}{ref_secs:>15.2f}{ref_secs / sql_sample_secs:>8.1f}x"
        )
        for size, times in incremental.items():
            med = statistics.median(times)
            ref_batch = ref_secs / len(sample) * size
            label = f"update_contacts, batch of {size} (per event {med / size * 1000:.2f} ms)"
            print(f"{label:<58}{med:>12.3f}{ref_batch:>15.3f}{ref_batch / med:>8.1f}x")
    finally:
        eng.dispose()
        if not args.keep and not args.db:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
