"""The store simulator: 100k contacts (about 1M touches) on SQLite and on PostgreSQL, against the ORM.

Run: ``.venv/bin/python -m bench.simulate [--contacts N] [--sample N]``. On each backend it builds a scratch
database with the migrations (a temporary SQLite file; a scratch PostgreSQL database next to
``STOREFUNNEL_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``, dropped afterwards),
times ``simulate_store`` end to end (generation + bulk writes + commit), then times the reference: the same
generator's rows for a smaller sample turned into ORM objects and written with ``session.add_all`` + one
commit, whose rate is extrapolated to the full size. Row counts are checked against the truth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import make_engine
from storefunnel.migrate import upgrade
from storefunnel.models import Contact, Identity, Order, OrderLine, Product, Spend, Touch
from storefunnel.simulate import simulate_store
from storefunnel.simulate.engine import TABLE_ORDER
from storefunnel.simulate.generate import Simulator
from storefunnel.simulate.writer import BulkWriter

ANCHOR = dt.date(2026, 11, 22)
DAYS = 365
SEED = 1
MODELS: dict[str, Any] = {
    "contacts": Contact,
    "identities": Identity,
    "orders": Order,
    "order_lines": OrderLine,
    "touches": Touch,
    "products": Product,
    "spend": Spend,
}
JSON_COLUMNS = {"traits", "properties", "discount_codes"}


@contextmanager
def scratch(backend: str) -> Iterator[str]:
    """A migrated, empty database URL that disappears afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            yield url
        return
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin_url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"sf_bench_sim_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_workspace(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO workspaces (name, display_timezone, currency, settings, created_at) "
                    "VALUES (:n, 'UTC', 'EUR', '{}', :t) RETURNING id"
                ),
                {"n": f"bench-{uuid.uuid4().hex[:8]}", "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
            ).scalar_one()
        )


def count(engine: sa.Engine, table: str, ws: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE workspace_id = :ws"), {"ws": ws}).scalar_one()
        )


def orm_objects(table: str, columns: dict[str, Any]) -> list[Any]:
    """The generator's column arrays as ORM instances (datetimes and JSON as the ORM expects them)."""
    model = MODELS[table]
    values: dict[str, list[Any]] = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray) and col.dtype.kind == "M":
            if col.dtype == np.dtype("datetime64[D]"):
                values[name] = col.astype(object).tolist()
            else:
                items = col.astype("datetime64[us]").astype(object).tolist()
                values[name] = [None if v is None else v.replace(tzinfo=dt.UTC) for v in items]
        elif name in JSON_COLUMNS:
            values[name] = [json.loads(v) for v in col]
        else:
            values[name] = col.tolist() if isinstance(col, np.ndarray) else list(col)
    names = list(values)
    return [model(**dict(zip(names, row, strict=True))) for row in zip(*values.values(), strict=True)]


def orm_reference(url: str, contacts: int) -> tuple[float, int]:
    """Generate the same rows and write them through the ORM: add_all per chunk, one commit at the end."""
    engine = make_engine(url)
    ws = new_workspace(engine)
    sim = Simulator(contacts=contacts, days=DAYS, seed=SEED, anchor=ANCHOR)
    start = time.perf_counter()
    with Session(engine) as session:
        writer = BulkWriter(session.connection())
        ids = writer.alloc("products", len(sim.sku))
        session.add_all(orm_objects("products", {"id": ids, **sim.products_table(ws, np.datetime64("2025-01-01"))}))
        sim.product_ids = ids
        session.flush()
        session.add_all(orm_objects("spend", sim.spend_table(ws)))
        for off, n in sim.chunks():
            chunk = sim.generate_chunk(ws, off, n, writer.alloc)
            for table in TABLE_ORDER:
                # mappers without relationship() are flushed in no particular order: parents go first
                session.add_all(orm_objects(table, chunk[table]))
                session.flush()
        session.commit()
    elapsed = time.perf_counter() - start
    touches = count(engine, "touches", ws)
    engine.dispose()
    return elapsed, touches


def ours(url: str, contacts: int) -> tuple[float, dict[str, Any], int]:
    engine = make_engine(url)
    ws = new_workspace(engine)
    start = time.perf_counter()
    truth = simulate_store(engine, ws, contacts=contacts, days=DAYS, seed=SEED, anchor=ANCHOR)
    elapsed = time.perf_counter() - start
    for table, key in [("contacts", "contacts"), ("touches", "touches"), ("orders", "orders")]:
        got = count(engine, table, ws)
        if got != truth["counts"][key]:
            raise SystemExit(f"{table}: {got} rows written, truth says {truth['counts'][key]}")
    engine.dispose()
    return elapsed, truth, ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=10_000, help="contacts written through the ORM")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args, _ = parser.parse_known_args()
    rows = []
    for backend in args.backends.split(","):
        with scratch(backend) as url:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            t_ours, truth, _ = ours(url, args.contacts)
            t_orm, orm_touches = orm_reference(url, args.sample)
        c = truth["counts"]
        orm_rate = args.sample / t_orm
        orm_full = args.contacts / orm_rate
        rows.append(
            (
                backend,
                c["contacts"],
                c["touches"],
                c["orders"],
                t_ours,
                c["contacts"] / t_ours,
                c["touches"] / t_ours,
                t_orm,
                orm_rate,
                orm_touches / t_orm,
                orm_full,
                orm_full / t_ours,
            )
        )
    print(
        f"\nsimulate_store: {args.contacts} contacts over {DAYS} days, seed {SEED} "
        f"(ORM reference: {args.sample} contacts, rate extrapolated)"
    )
    head = (
        f"{'backend':<11}{'contacts':>9}{'touches':>10}{'orders':>8}{'ours s':>9}{'contacts/s':>12}"
        f"{'touches/s':>11}{'ORM s':>8}{'ORM c/s':>9}{'ORM t/s':>9}{'ORM est. s':>11}{'speedup':>9}"
    )
    print(head)
    print("-" * len(head))
    for b, nc, nt, no, t1, cps, tps, t2, ocps, otps, ofull, ratio in rows:
        print(
            f"{b:<11}{nc:>9}{nt:>10}{no:>8}{t1:>9.1f}{cps:>12.0f}{tps:>11.0f}{t2:>8.1f}{ocps:>9.0f}{otps:>9.0f}"
            f"{ofull:>11.0f}{ratio:>8.1f}x"
        )


if __name__ == "__main__":
    main()
