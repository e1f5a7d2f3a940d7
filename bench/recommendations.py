"""Recommendations benchmark: ``GET /api/v1/contacts/{id}/recommendations`` on a real server at 100 requests/s.

A store of 20,000 simulated contacts (seed 5) is written to a fresh SQLite file (``--backend postgresql``: a
scratch PostgreSQL database on localhost, dropped at the end; or ``--database-url``), its rules built and
stored; ``storefunnel serve`` runs in its own process and a load generator in another sends requests at a
steady 100/s for 20 s (open loop: each request leaves at its scheduled time, whatever the previous one did) for
random customers. Reported: p50/p99/max latency seen by the client, with the load average before and after;
then the same for ``GET /healthz`` at the same rate, the floor that the HTTP stack and the client cost here.

The reference does the same job the obvious way: per request, load the workspace's rules, the contact's products
and the best sellers, then rank with ``insight.related.recommend``. Both are also timed in-process on the same
contacts (no HTTP), so the ratio compares the two methods alone. Run: ``.venv/bin/python -m bench.recommendations``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

RATE = 100
SECONDS = 20
PG_SERVER = "postgresql+psycopg://postgres@localhost"
LOADGEN = r"""
import asyncio, json, sys, time, httpx
url, key, path, ids = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
rate, seconds = int(sys.argv[5]), int(sys.argv[6])
async def main():
    lat, errors = [], 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer " + key}, timeout=10,
                                 limits=httpx.Limits(max_connections=64)) as c:
        await c.get(path.format(ids[0]))
        start = time.perf_counter()
        async def one(i):
            nonlocal errors
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t = time.perf_counter()
            try:
                r = await c.get(path.format(ids[i % len(ids)]))
                errors += r.status_code != 200
            except httpx.HTTPError:
                errors += 1
            lat.append(time.perf_counter() - t)
        await asyncio.gather(*(one(i) for i in range(rate * seconds)))
        elapsed = time.perf_counter() - start
    print(json.dumps({"latencies": lat, "errors": errors, "elapsed": elapsed}))
asyncio.run(main())
"""


def percentiles(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def reference(session: sa.orm.Session, workspace_id: int, contact_id: int, k: int = 10) -> list[int]:
    """Recommendations computed on the fly: every rule loaded, then ``recommend`` over them."""
    from storefunnel.insight import related

    rows = session.execute(
        sa.text(
            "SELECT antecedent_id, consequent_id, support, confidence, lift FROM related_rules WHERE workspace_id = :ws"
        ),
        {"ws": workspace_id},
    ).all()
    owned = session.scalars(
        sa.text(
            "SELECT DISTINCT ol.product_id FROM orders o JOIN order_lines ol ON ol.order_id = o.id "
            "WHERE o.workspace_id = :ws AND o.contact_id = :c AND ol.product_id IS NOT NULL "
            "AND o.status NOT IN ('cancelled', 'refunded')"
        ),
        {"ws": workspace_id, "c": contact_id},
    ).all()
    best = session.scalars(
        sa.text("SELECT product_id FROM best_sellers WHERE workspace_id = :ws AND segment_id IS NULL ORDER BY rank"),
        {"ws": workspace_id},
    ).all()
    a = np.asarray([r[0] for r in rows], dtype=np.int64)
    b = np.asarray([r[1] for r in rows], dtype=np.int64)
    items = np.unique(np.concatenate((a, b)))
    rules = related.PairRules(
        a,
        b,
        np.asarray([r[2] for r in rows]),
        np.asarray([r[3] for r in rows]),
        np.asarray([r[4] for r in rows]),
        np.zeros(a.size),
        np.zeros(a.size),
        items,
    )
    return related.recommend([list(owned)], rules, k=k, fallback=list(best))[0]


def _wait_ready(base: str, server: subprocess.Popen[bytes], seconds: float = 180) -> None:
    """Until /healthz answers (imports are slow on a loaded machine), or the server exits."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited before it was ready")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", default="", help="Use this database instead of a scratch one.")
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=SECONDS)
    args = parser.parse_args()
    scratch = None
    if args.database_url:
        url = args.database_url
    elif args.backend == "postgresql":
        scratch = f"sf_bench_rec_{os.getpid()}"
        _admin(f'CREATE DATABASE "{scratch}"')
        url = f"{PG_SERVER}/{scratch}"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='sf-bench-rec-')) / 'bench.db'}"
    try:
        run(url, args.contacts, args.seconds)
    finally:
        if scratch:
            from storefunnel import db as dbmod

            dbmod.get_engine().dispose()
            _admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def _admin(statement: str) -> None:
    engine = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


def run(url: str, contacts: int, seconds: int) -> None:
    os.environ["STOREFUNNEL_DATABASE_URL"] = url
    os.environ.setdefault("STOREFUNNEL_ENV", "test")

    from storefunnel import db as dbmod
    from storefunnel.auth.keys import create_key
    from storefunnel.config import get_settings
    from storefunnel.insight import related_service
    from storefunnel.migrate import upgrade
    from storefunnel.models import KeyKind, Order
    from storefunnel.simulate import simulate_store
    from storefunnel.workspaces.service import create_workspace
    from tests.fixtures.server import free_port

    get_settings.cache_clear()
    upgrade(dbmod.get_engine())
    with dbmod.get_sessionmaker()() as s:
        ws = create_workspace(s, f"bench-rec-{int(time.time())}")
        s.commit()
        wid = ws.id
    simulate_store(dbmod.get_engine(), wid, contacts=contacts, days=365, seed=5, anchor=dt.date(2026, 11, 1))
    with dbmod.get_sessionmaker()() as s:
        fit = related_service.build_related(s, wid)
        key = create_key(s, wid, KeyKind.api)[1]
        s.commit()
        customers = s.scalars(sa.select(Order.contact_id).where(Order.workspace_id == wid).distinct()).all()
    if url.startswith("postgresql"):
        # planner statistics for the freshly loaded tables, as autovacuum would gather them in a running store
        with dbmod.get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    rng = np.random.default_rng(1)
    ids = [int(c) for c in rng.choice(np.asarray(customers), min(500, len(customers)), replace=False)]
    backend = url.split(":")[0]
    print(f"store: {contacts:,} contacts, {len(customers):,} customers, {fit.metrics['rules']} rules; {backend}")

    # in-process: ours (one indexed query) vs the reference (load rules, then recommend)
    ours_t, ref_t = [], []
    with dbmod.get_sessionmaker()() as s:
        for c in ids[:300]:
            t = time.perf_counter()
            got = [p for p, _, _ in related_service.recommend_ids(s, wid, c, 10)]
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            want = reference(s, wid, c)
            ref_t.append(time.perf_counter() - t)
            assert got == want, (c, got, want)
    o50, o99, _ = percentiles(ours_t)
    r50, r99, _ = percentiles(ref_t)
    print(
        f"in-process, {len(ours_t)} contacts: ours p50 {o50:.2f} ms p99 {o99:.2f} ms; "
        f"reference p50 {r50:.2f} ms p99 {r99:.2f} ms"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "storefunnel", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "STOREFUNNEL_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    runs = {}
    try:
        _wait_ready(base, server)
        for name, path in (("recommendations", "/api/v1/contacts/{}/recommendations"), ("healthz", "/healthz")):
            before = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, "-c", LOADGEN, base, key, path, json.dumps(ids), str(RATE), str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            runs[name] = (json.loads(out.stdout), before, os.getloadavg()[0])
    finally:
        server.terminate()
        server.wait(20)
    print(f"\nHTTP, {RATE} req/s for {seconds} s each, open loop, one uvicorn worker, client in another process:")
    print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  requests  errors  req/s  load before/after")
    for name, label in (
        ("recommendations", "ours over HTTP (stored rules)"),
        ("healthz", "floor: GET /healthz, same rate"),
    ):
        load, before, after = runs[name]
        p50, p99, worst = percentiles(load["latencies"])
        sent = len(load["latencies"])
        print(
            f"{label:34} {p50:8.2f} {p99:8.2f} {worst:8.2f}  {sent:8}  {load['errors']:6}  "
            f"{sent / load['elapsed']:5.1f}  {before:.2f}/{after:.2f}"
        )
    print(f"{'ours in-process (one query)':34} {o50:8.2f} {o99:8.2f}")
    print(f"{'reference in-process (load+rank)':34} {r50:8.2f} {r99:8.2f}")
    print(
        f"ratio reference/ours in-process: p50 {r50 / o50:.1f}x, p99 {r99 / o99:.1f}x "
        f"(same {len(ours_t)} contacts, same picks)"
    )


if __name__ == "__main__":
    main()
