"""The tracking API's cycle marks: what they cost ingest, and what draining them costs per contact.

Ingest: /v1/batch events/s against a real server (uvicorn, ``--workers``) with the marks (the code as it is)
and without them (the same app with the tracking store put back as it was before marks: the plain touch
INSERT, no mark statement), on a fresh database each, for two kinds of traffic:

* ``anonymous``: visitors nobody has identified (``bench.tracking``'s load): nothing to mark; on SQLite the
  request still looks its anonymous ids up in ``identities``;
* ``identified``: every event carries a ``userId`` (5,000 customers): every request marks up to 1,000 contacts.

Drain: after the identified run with marks (and an ANALYZE), ``dirty.drain`` chunk after chunk, one transaction
each, until no mark is left (the worker's job), and the same for every contact marked again with chunks of 100
and 2,000: ms per contact.

    .venv/bin/python -m bench.cycle_dirty [--seconds 6] [--workers 2] [--senders 4] [--rounds 1]
        [--backends sqlite,postgresql] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import sqlalchemy as sa

from bench.tracking import _free_port, count_touches, database, prepare

BATCH_SIZE = 1000
USERS = 5000
MARK = "@@ID@@"

# The PostgreSQL touch INSERT as it was before marks: no CTE, nothing returned.
PLAIN_POSTGRES_INSERT = (
    "INSERT INTO touches (workspace_id, {columns}) "
    "SELECT %s, coalesce((r->>0)::bigint, (SELECT i.contact_id FROM identities i "
    "WHERE i.workspace_id = %s AND i.anonymous_id = r->>1)), "
    "r->>1, (r->>2)::timestamptz, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9, r->>10, r->>11, r->>12, "
    "(r->13)::jsonb, r->>14 "
    "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(r, n) "
    "ORDER BY n "
    "ON CONFLICT (workspace_id, message_id) DO NOTHING"
)


def marked_app() -> Any:
    from storefunnel.main import create_app

    return create_app()


def unmarked_app() -> Any:
    """The app with the tracking store as before marks: touches inserted exactly as then, no mark written."""
    import orjson

    from storefunnel.ingest import store
    from storefunnel.main import create_app

    statement = PLAIN_POSTGRES_INSERT.format(columns=store.TOUCH_COLUMNS)

    def insert_touches(session: Any, workspace_id: int, rows: Any) -> set[int]:
        if not rows:
            return set()
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            params = [(workspace_id, r[0], workspace_id, r[1], *r[1:]) for r in rows]
            connection.exec_driver_sql(store.SQLITE_INSERT, params)
        else:
            connection.exec_driver_sql(statement, (workspace_id, workspace_id, orjson.dumps(rows).decode()))
        return set()

    store.insert_touches = insert_touches  # type: ignore[assignment]
    store.dirty = SimpleNamespace(mark=lambda *_: None)  # type: ignore[assignment]
    return create_app()


# ---- load (in its own process) ----


def _event(n: int, identified: bool) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"{MARK}-{n}",
        "timestamp": "2026-11-22T10:00:00Z",
        "properties": {"sku": f"SKU-{n % 300}", "price": 1999, "currency": "EUR"},
        "context": {"page": {"url": "https://shop.test/p?utm_source=google&utm_medium=cpc", "referrer": ""}},
    }
    if identified:
        event["userId"] = f"user-{n % USERS}"
    else:
        event["anonymousId"] = f"visitor-{n % USERS}"
    return event


async def _load(url: str, key: str, seconds: float, senders: int, identified: bool) -> dict[str, Any]:
    template = json.dumps({"batch": [_event(i, identified) for i in range(BATCH_SIZE)]}, separators=(",", ":")).encode()
    run = uuid.uuid4().hex[:8].encode()
    counter = iter(range(10**9))
    done = errors = 0
    headers = {"Content-Type": "application/json"}

    def body() -> bytes:
        return template.replace(MARK.encode(), run + b"-" + str(next(counter)).encode())

    async def sender(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            response = await client.post("/v1/batch", content=body(), headers=headers)
            if response.status_code == 200:
                done += BATCH_SIZE
            else:
                errors += 1

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=120, limits=limits) as client:
        # warm-up: every customer exists before the clock starts (a new contact is a cost of its own)
        for start in range(0, USERS, BATCH_SIZE):
            warm = [_event(n, identified) for n in range(start, start + BATCH_SIZE)]
            for e in warm:
                e["messageId"] = f"warm-{uuid.uuid4().hex}"
            await client.post("/v1/batch", content=json.dumps({"batch": warm}).encode(), headers=headers)
        done = 0
        start_t = time.perf_counter()
        await asyncio.gather(*(sender(client, start_t + seconds) for _ in range(senders)))
        elapsed = time.perf_counter() - start_t
    return {"events_per_s": done / elapsed, "errors": errors, "acked": done}


# ---- orchestration ----


@contextmanager
def server(url: str, workers: int, factory: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "STOREFUNNEL_DATABASE_URL": url}
    cmd = [sys.executable, "-m", "uvicorn", f"bench.cycle_dirty:{factory}", "--factory", "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                raise RuntimeError("server did not start: " + err.decode()[-2000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(base: str, key: str, seconds: float, senders: int, identified: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.cycle_dirty", "--load", base, "--key", key, "--seconds", str(seconds)]
    cmd += ["--senders", str(senders)] + (["--identified"] if identified else [])
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = max(load_before, os.getloadavg()[0])
    return result


def measure_drain(url: str, workspace_id: int) -> list[tuple[int, int, float]]:
    """(chunk, contacts, seconds) for draining every mark; then every contact marked again, per chunk size."""
    from storefunnel.cycle import dirty
    from storefunnel.db import make_engine
    from storefunnel.models import Contact

    engine = make_engine(url)
    with engine.connect() as conn:  # fresh statistics, as autovacuum would have by now on a live store
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    maker = sa.orm.sessionmaker(engine)
    rows = []
    with maker() as session:
        contacts = list(session.scalars(sa.select(Contact.id).where(Contact.workspace_id == workspace_id)))
    for chunk in (dirty.CHUNK, 100, 2000):
        if chunk != dirty.CHUNK:  # the first pass drains the marks the load left
            with maker() as session, session.begin():
                dirty.mark(session, workspace_id, contacts)
        done = 0
        start = time.perf_counter()
        while True:
            with maker() as session, session.begin():  # one transaction per chunk, as the worker does
                step = dirty.drain(session, limit=chunk)
            done += step.contacts
            if step.marks == 0:
                break
        rows.append((chunk, done, time.perf_counter() - start))
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="Repeat each pair, alternating, to average out noise.")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--load")
    parser.add_argument("--key", default="")
    parser.add_argument("--identified", action="store_true")
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(_load(args.load, args.key, args.seconds, args.senders, args.identified))))
        return

    lines = []
    drains = []
    for backend in args.backends.split(","):
        for traffic in ("anonymous", "identified"):
            rates: dict[str, list[float]] = {"unmarked_app": [], "marked_app": []}
            loads: list[float] = []
            for _ in range(args.rounds):
                for factory in ("unmarked_app", "marked_app"):
                    with database(backend, args.pg) as url:
                        ws_id, key = prepare(url)
                        with server(url, args.workers, factory) as base:
                            result = run_load(base, key, args.seconds, args.senders, traffic == "identified")
                        stored = count_touches(url)
                        expected = result["acked"] + USERS
                        if result["errors"] or stored < expected:
                            print(f"!! {backend} {traffic} {factory}: {result['errors']} errors, {stored} stored")
                        rates[factory].append(result["events_per_s"])
                        loads.append(result["load"])
                        if factory == "marked_app" and traffic == "identified" and not drains_for(drains, backend):
                            drains.extend((backend, *row) for row in measure_drain(url, ws_id))
            without = sum(rates["unmarked_app"]) / len(rates["unmarked_app"])
            with_marks = sum(rates["marked_app"]) / len(rates["marked_app"])
            lines.append((backend, traffic, without, with_marks, max(loads)))

    print(f"\nworkers={args.workers}, {BATCH_SIZE} events x {args.senders} senders, {args.seconds:.0f} s per run")
    print(f"{'backend':<11}{'traffic':<12}{'without marks':>15}{'with marks':>12}{'change':>9}{'load':>7}")
    for backend, traffic, without, with_marks, load in lines:
        change = 100 * (with_marks / without - 1)
        print(f"{backend:<11}{traffic:<12}{without:>15,.0f}{with_marks:>12,.0f}{change:>8.1f}%{load:>7.1f}")
    print(f"\n{'backend':<11}{'chunk':>7}{'contacts':>10}{'seconds':>9}{'ms/contact':>12}")
    for backend, chunk, n, secs in drains:
        print(f"{backend:<11}{chunk:>7}{n:>10}{secs:>9.2f}{1000 * secs / max(n, 1):>12.2f}")


def drains_for(drains: list[tuple[Any, ...]], backend: str) -> bool:
    return any(d[0] == backend for d in drains)


if __name__ == "__main__":
    main()
