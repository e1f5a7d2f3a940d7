"""Marketing → Leads over a busy store: the daily series by channel, and the latest leads' first three touches.

Run: ``.venv/bin/python -m bench.leads [--contacts N] [--touches N]``. Builds one store in a scratch SQLite file
and a scratch PostgreSQL database (next to ``STOREFUNNEL_DATABASE_URL``), then times:

- ``daily_leads_by_channel`` (one SQL GROUP BY on local day and channel) for the last 30 and 365 days, beside
  pandas doing the same job on the same rows already in memory (load time excluded, printed apart);
- ``latest_leads`` (the first three touches of the 20 latest leads with ROW_NUMBER in one query), beside the
  N+1 way (one ``ORDER BY occurred_at LIMIT 3`` query per lead).

Every pair of answers is checked equal before any time is shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.overview import scratch_postgres
from storefunnel.db import make_engine
from storefunnel.insight.leads import UNASSIGNED, daily_leads_by_channel, latest_leads
from storefunnel.insight.overview import LocalRange
from storefunnel.migrate import upgrade
from storefunnel.models import Contact, Touch
from storefunnel.workspaces.service import create_workspace

TZ = "Europe/Paris"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CHANNELS = ["Organic Search", "Paid Search", "Email", "Organic Social", "Paid Social", "Referral", "Direct", None]
RUNS = 5


def make_rows(contacts: int, touches: int, seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    span = 730 * 86400
    lead_s = rng.integers(0, span, contacts)
    is_lead = rng.random(contacts) < 0.8
    channel = rng.integers(0, len(CHANNELS), contacts)
    c_rows = [
        {
            "id": i + 1,
            "email": f"c{i}@example.com",
            "traits": {},
            "lead_at": NOW - dt.timedelta(seconds=int(lead_s[i])) if is_lead[i] else None,
            "lead_channel": CHANNELS[channel[i]] if is_lead[i] else None,
        }
        for i in range(contacts)
    ]
    who = rng.integers(1, contacts + 1, touches)
    at_s = rng.integers(0, span, touches)
    t_channel = rng.integers(0, len(CHANNELS) - 1, touches)
    t_rows = [
        {
            "contact_id": int(who[i]),
            "occurred_at": NOW - dt.timedelta(seconds=int(at_s[i])),
            "kind": "page",
            "channel": CHANNELS[t_channel[i]],
            "url": f"https://shop.test/p/{i % 997}",
            "properties": {},
        }
        for i in range(touches)
    ]
    return c_rows, t_rows


def load(url: str, contacts: list[dict[str, Any]], touches: list[dict[str, Any]]) -> tuple[sa.Engine, int]:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        ws = create_workspace(s, f"bench-{uuid.uuid4().hex[:8]}", timezone=TZ)
        s.flush()
        s.execute(sa.insert(Contact), [{**r, "workspace_id": ws.id} for r in contacts])
        s.execute(sa.insert(Touch), [{**r, "workspace_id": ws.id} for r in touches])
        s.commit()
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(sa.text("ANALYZE"))
                conn.commit()
        return engine, ws.id


def best(fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def pandas_daily(frame: pd.DataFrame, rng: LocalRange) -> dict[tuple[dt.date, str], int]:
    inside = frame[(frame.lead_at >= rng.start_utc) & (frame.lead_at < rng.end_utc)]
    day = inside.lead_at.dt.tz_convert(TZ).dt.date
    counts = inside.assign(day=day).groupby(["day", "channel"]).size()
    return {(d, str(c)): int(n) for (d, c), n in counts.items()}


def n_plus_one(session: Session, workspace_id: int, rng: LocalRange) -> dict[int, list[tuple[Any, ...]]]:
    ids = session.scalars(
        sa.select(Contact.id)
        .where(Contact.workspace_id == workspace_id, Contact.lead_at >= rng.start_utc, Contact.lead_at < rng.end_utc)
        .order_by(Contact.lead_at.desc(), Contact.id.desc())
        .limit(20)
    ).all()
    out = {}
    for cid in ids:
        rows = session.execute(
            sa.select(Touch.occurred_at, Touch.channel, Touch.url)
            .where(Touch.workspace_id == workspace_id, Touch.contact_id == cid)
            .order_by(Touch.occurred_at, Touch.id)
            .limit(3)
        ).all()
        out[cid] = [(r.channel, r.url) for r in rows]
    return out


def run(label: str, url: str, contacts: list[dict[str, Any]], touches: list[dict[str, Any]]) -> list[list[str]]:
    start = time.perf_counter()
    engine, ws = load(url, contacts, touches)
    took = time.perf_counter() - start
    print(f"{label}: loaded {len(contacts):,} contacts and {len(touches):,} touches in {took:.1f} s")
    frame = pd.DataFrame(
        {
            "lead_at": pd.to_datetime([r["lead_at"] for r in contacts], utc=True),
            "channel": [r["lead_channel"] or UNASSIGNED for r in contacts],
        }
    ).dropna(subset=["lead_at"])
    rows = []
    with Session(engine) as s:
        for days in (30, 365):
            rng = LocalRange.last_days(days, TZ, NOW)
            ours_t, ours = best(lambda rng=rng: daily_leads_by_channel(s, ws, rng))
            ref_t, ref = best(lambda rng=rng: pandas_daily(frame, rng))
            assert ours == ref, f"daily series differ for {days} days"
            rows.append([label, f"daily by channel, {days} d", f"{ours_t * 1000:.1f}", "pandas", f"{ref_t * 1000:.1f}"])
        rng = LocalRange.last_days(365, TZ, NOW)
        ours_t, leads = best(lambda: latest_leads(s, ws, rng))
        ref_t, naive = best(lambda: n_plus_one(s, ws, rng))
        assert {lead.contact_id: [(t.channel, t.url) for t in lead.touches] for lead in leads} == naive
        rows.append([label, "20 latest leads' first 3 touches", f"{ours_t * 1000:.1f}", "N+1", f"{ref_t * 1000:.1f}"])
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--touches", type=int, default=400_000)
    args = parser.parse_args()
    contacts, touches = make_rows(args.contacts, args.touches)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += run("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", contacts, touches)
    with scratch_postgres() as url:
        rows += run("PostgreSQL", url, contacts, touches)
    print()
    print("| backend | job | storefunnel ms | reference | reference ms | ratio (>1 = ours faster) |")
    print("|---------|-----|---------------:|-----------|-------------:|------:|")
    for backend, job, ours, ref_name, ref in rows:
        print(f"| {backend} | {job} | {ours} | {ref_name} | {ref} | {float(ref) / float(ours):.2f}x |")


if __name__ == "__main__":
    main()
