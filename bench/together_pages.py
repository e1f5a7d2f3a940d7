"""Together-hat pages over HTTP on the 1M-contact store (PostgreSQL or SQLite): live database against the default.

Run: ``.venv/bin/python -m bench.together_pages [--backend sqlite]`` (the store is built once, as ``bench.insight``
does, and reused).

Two servers on the same PostgreSQL database: one with ``STOREFUNNEL_ANALYTICS_ENGINE=database`` (every page
queries PostgreSQL), one with the default ``auto``, which reads the workspace's DuckDB snapshot because the store
has more than ``snapshot_min_contacts`` contacts (the snapshot is taken first, as the worker would). Each page is
fetched once cold and then ``--runs`` times; the table shows the best and the median of the warm runs, and the
ratio database / auto. The period is the 28 days (advice) or 90 days (funnel, channels) before the store's end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from bench.insight import ANCHOR, build, ensure_pg_database
from storefunnel.config import get_settings
from storefunnel.insight.facts import snapshot
from storefunnel.insight.snapshots import snapshot_path
from storefunnel.workspaces.service import create_user
from tests.fixtures.server import start_server, stop_server

PASSWORD = "bench pages password"
PAGES = {
    "Marketing or sales? (28 d)": "/together/advice?from=2026-10-04&to=2026-10-31",
    "Funnel (90 d)": "/together/funnel?from=2026-08-03&to=2026-10-31",
    "Who buys (365 d)": "/together/who-buys?from=2025-11-01&to=2026-10-31",
    "Channels (90 d)": "/marketing/channels?from=2026-08-03&to=2026-10-31",
    "Retention (365 d)": "/sales/retention?from=2025-11-01&to=2026-10-31",
    "Owner's report (28 d, every analytic)": "/report?from=2026-10-04&to=2026-10-31",
}
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def signed_in(url: str, email: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=600)
    match = _TOKEN.search(client.get("/login").text)
    assert match
    r = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": match.group(1), "next": ""})
    assert r.status_code in (200, 303), r.text[:300]
    return client


def time_pages(url: str, email: str, runs: int) -> dict[str, tuple[float, float, float]]:
    client = signed_in(url, email)
    out = {}
    for name, path in PAGES.items():
        t0 = time.perf_counter()
        r = client.get(path)
        cold = time.perf_counter() - t0
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        warm = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = client.get(path)
            warm.append(time.perf_counter() - t0)
            assert r.status_code == 200
        out[name] = (cold, min(warm), statistics.median(warm))
        print(f"  {name}: cold {cold:.2f} s, best {min(warm):.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--modes", default="database,auto", help="Engines to time: database, auto or both.")
    args = ap.parse_args()
    if args.backend == "sqlite":
        Path("var/bench").mkdir(parents=True, exist_ok=True)
        url = "sqlite:///var/bench/insight_1000000.db"
    else:
        url = ensure_pg_database("sf_bench_insight_1000000")
    os.environ["STOREFUNNEL_DATABASE_URL"] = url  # the snapshot path is per database: the server's and ours agree
    get_settings.cache_clear()
    engine, ws = build(url, 100_000, 10)
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    with Session(engine) as s:
        create_user(s, ws, email, PASSWORD)
        s.commit()
    print(f"store end {ANCHOR}; snapshot for the auto engine …", flush=True)
    results = {}
    modes = [m for m in ("database", "auto") if m in args.modes.split(",")]
    for mode in modes:
        env = {"STOREFUNNEL_ANALYTICS_ENGINE": mode}
        server = start_server(url, env)
        try:
            if mode == "auto":
                with Session(engine) as s:
                    t0 = time.perf_counter()
                    snapshot(s, ws, snapshot_path(ws))  # what the worker would have done
                    print(f"  snapshot: {time.perf_counter() - t0:.0f} s", flush=True)
            print(f"engine {mode}:", flush=True)
            results[mode] = time_pages(server.url, email, args.runs)
        finally:
            stop_server(server)
    live = "PostgreSQL" if args.backend == "postgresql" else "SQLite"
    print(
        f"\n| page, 1M contacts | {live} (database) best s | default (auto: DuckDB snapshot) best s | "
        "cold s (database / auto) | ratio database / auto |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    none = (float("nan"),) * 3
    for name in PAGES:
        d, a = results.get("database", {}).get(name, none), results.get("auto", {}).get(name, none)
        print(f"| {name} | {d[1]:.2f} | {a[1]:.2f} | {d[0]:.2f} / {a[0]:.2f} | {d[1] / a[1]:.1f}x |")


if __name__ == "__main__":
    main()
