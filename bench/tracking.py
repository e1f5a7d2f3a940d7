"""Tracking API throughput and latency: ours beside a plain "parse JSON, ORM add_all per event" endpoint.

Both servers run as real uvicorn processes on loopback against the same kind of database; the load
generator runs in a separate process. Measured, per backend (SQLite file, PostgreSQL if reachable):
sustained /v1/batch events/s with concurrent senders, and /v1/track latency p50/p99 at a steady rate.

    .venv/bin/python -m bench.tracking [--seconds 8] [--workers 2] [--batch-size 1000] [--senders 4]
        [--backends sqlite,postgresql] [--only storefunnel|reference] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Every messageId in a run is unique, so the rows stored must equal the events acknowledged; the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import Request

BATCH_SIZE = 1000  # about 330 KB of JSON: close to the 500 KB batch limit, as Segment's libraries fill them
SENDERS = 4
TRACK_RATE = 100  # requests per second for the latency run
SEQUENTIAL = 100  # /v1/track requests sent one after the other before it


# ---- the reference server: what a straightforward implementation does ----


def reference_app() -> Any:
    """Parse the JSON body, build one ORM object per event, ``session.add_all``, commit."""
    import datetime as dt

    from fastapi import FastAPI

    from storefunnel.db import get_sessionmaker
    from storefunnel.models import Touch

    app = FastAPI()
    workspace_id = int(os.environ["BENCH_WORKSPACE_ID"])

    def store(events: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        with get_sessionmaker()() as session:
            session.add_all(
                Touch(
                    workspace_id=workspace_id,
                    anonymous_id=e.get("anonymousId"),
                    occurred_at=now,
                    kind=e.get("type", "track"),
                    event=e.get("event"),
                    properties=e.get("properties") or {},
                    message_id=e.get("messageId"),
                )
                for e in events
            )
            session.commit()

    @app.post("/v1/batch")
    async def batch(request: Request) -> dict[str, bool]:
        body = await request.json()
        await asyncio.to_thread(store, body["batch"])
        return {"success": True}

    @app.post("/v1/track")
    async def track(request: Request) -> dict[str, bool]:
        body = await request.json()
        await asyncio.to_thread(store, [body])
        return {"success": True}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# ---- the load generator (runs in its own process) ----


def _event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": f"visitor-{n % 5000}",
        "event": "Product Viewed",
        "messageId": f"{uuid.uuid4().hex}",
        "timestamp": "2026-11-22T10:00:00Z",
        "properties": {"sku": f"SKU-{n % 300}", "price": 1999, "currency": "EUR"},
        "context": {"page": {"url": "https://shop.test/p?utm_source=google&utm_medium=cpc", "referrer": ""}},
    }


MARK = "@@BATCH@@"


def _template(size: int) -> bytes:
    """One batch body with a placeholder in every messageId: each request gets fresh ids by one bytes.replace."""
    events = [{**_event(i), "messageId": f"{MARK}-{i}"} for i in range(size)]
    return json.dumps({"batch": events}, separators=(",", ":")).encode()


async def _batches(url: str, key: str, seconds: float, size: int, senders: int) -> dict[str, Any]:
    template = _template(size)
    run = uuid.uuid4().hex[:8].encode()
    counter = iter(range(10**9))
    done = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}

    def body() -> bytes:
        return template.replace(MARK.encode(), run + b"-" + str(next(counter)).encode())

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            response = await client.post("/v1/batch", content=body(), headers=headers)
            if response.status_code == 200:
                done += size
            else:
                errors += 1

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=120, limits=limits) as client:
        warm = await client.post("/v1/batch", content=body(), headers=headers)  # warm-up, counted if stored
        done += size if warm.status_code == 200 else 0
        start = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(senders)))
        elapsed = time.perf_counter() - start
    return {"events_per_s": (done - size) / elapsed, "errors": errors, "acked": done}


async def _latency(url: str, key: str, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    acked = 0
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=60) as client:

        async def one(n: int) -> None:
            nonlocal errors, acked
            t0 = time.perf_counter()
            response = await client.post("/v1/track", json=_event(n))
            latencies.append(time.perf_counter() - t0)
            errors += response.status_code != 200
            acked += response.status_code == 200

        for n in range(SEQUENTIAL):  # one at a time first: the service time, free of queueing
            await one(-1 - n)
        sequential = sorted(latencies)
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        for n in range(int(seconds * TRACK_RATE)):
            await asyncio.sleep(max(0.0, start + n / TRACK_RATE - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "seq_p50_ms": 1000 * statistics.median(sequential),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "track_errors": errors,
        "track_acked": acked,
    }


def run_load(url: str, key: str, seconds: float, batch_size: int, senders: int) -> dict[str, Any]:
    """Run the generator in a separate process so it does not share an interpreter with the server."""
    cmd = [sys.executable, "-m", "bench.tracking", "--load", url, "--key", key, "--seconds", str(seconds)]
    cmd += ["--batch-size", str(batch_size), "--senders", str(senders)]
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = max(load_before, os.getloadavg()[0])
    return result


# ---- orchestration ----


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"sf_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(url: str) -> tuple[int, str]:
    from storefunnel.auth.keys import create_key
    from storefunnel.db import make_engine
    from storefunnel.migrate import upgrade
    from storefunnel.models import KeyKind
    from storefunnel.workspaces.service import create_workspace

    engine = make_engine(url)
    upgrade(engine)
    with sa.orm.Session(engine) as session:
        ws = create_workspace(session, "bench")
        key = create_key(session, ws.id, KeyKind.write)[1]
        session.commit()
        ws_id = ws.id
    engine.dispose()
    return ws_id, key


@contextmanager
def server(url: str, workers: int, reference: bool, workspace_id: int) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "STOREFUNNEL_DATABASE_URL": url, "BENCH_WORKSPACE_ID": str(workspace_id)}
    if reference:
        cmd = [sys.executable, "-m", "uvicorn", "bench.tracking:reference_app", "--factory"]
        cmd += ["--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    else:
        cmd = [sys.executable, "-m", "storefunnel", "serve", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a busy shared box can take a while to import and fork the workers
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()  # before reading stderr: a live server would never close it
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count_touches(url: str) -> int:
    from storefunnel.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(sa.text("SELECT count(*) FROM touches")).scalar_one())
    engine.dispose()
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--senders", type=int, default=SENDERS)
    parser.add_argument("--only", choices=["storefunnel", "reference"])
    parser.add_argument("--load")
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    if args.load:
        result = asyncio.run(_batches(args.load, args.key, args.seconds, args.batch_size, args.senders))
        result.update(asyncio.run(_latency(args.load, args.key, min(args.seconds, 5.0))))
        print(json.dumps(result))
        return

    both = (("storefunnel", False), ("reference", True))
    labels = [(label, ref) for label, ref in both if args.only in (None, label)]
    rows = []
    for backend in args.backends.split(","):
        results = {}
        for label, reference in labels:
            with database(backend, args.pg) as url:
                ws_id, key = prepare(url)
                with server(url, args.workers, reference, ws_id) as base:
                    results[label] = run_load(base, key, args.seconds, args.batch_size, args.senders)
                results[label]["stored"] = count_touches(url)
        rows.append((backend, results))

    print(
        f"\nworkers={args.workers}  batch={args.batch_size} events x {args.senders} senders, {args.seconds:.0f} s; "
        f"/v1/track at {TRACK_RATE}/s"
    )
    head = f"{'backend':<11}{'metric':<24}" + "".join(f"{label:>13}" for label, _ in labels)
    head += f"{'ratio':>9}" if len(labels) == 2 else ""
    print(head)
    print("-" * len(head))
    for backend, results in rows:
        for metric, key, better_high in (
            ("batch events/s", "events_per_s", True),
            ("track p50 ms, 1 by 1", "seq_p50_ms", False),
            ("track p50 ms", "p50_ms", False),
            ("track p99 ms", "p99_ms", False),
            ("load average (1 min)", "load", False),
        ):
            line = f"{backend:<11}{metric:<24}" + "".join(f"{results[label][key]:>13.1f}" for label, _ in labels)
            if len(labels) == 2 and key != "load":
                ours, ref = results["storefunnel"][key], results["reference"][key]
                line += f"{(ours / ref if better_high else ref / ours):>8.2f}x"
            print(line)
        # the truth check: every acknowledged event is stored, once (every messageId in the run is unique)
        cells = "".join(
            f"{r['errors'] + r['track_errors']:>6}/{r['acked'] + r['track_acked']}/{r['stored']}".rjust(13)
            for r in (results[label] for label, _ in labels)
        )
        print(f"{backend:<11}{'errors/acked/stored':<24}{cells}")
        for label, _ in labels:
            r = results[label]
            if r["stored"] != r["acked"] + r["track_acked"]:
                print(f"!! {backend} {label}: {r['stored']} rows stored for {r['acked'] + r['track_acked']} acked")
    print("ratio > 1 means storefunnel is better (throughput: ours/ref; latency: ref/ours)")


if __name__ == "__main__":
    main()
