"""CSV import throughput: a generated Shopify order export imported on PostgreSQL and SQLite.

Ours parses every row (money, dates, emails), groups rows into orders, and upserts contacts, products, orders
and lines set-based per chunk. The reference in the same run is pandas ``read_csv`` + ``DataFrame.to_sql(method=
"multi")`` of the same file into one raw table on the same backend: no parsing, no keys, no upsert, so it is a
floor of "just get the rows in", not the same job; it runs on a slice (``--ref-lines``), being very slow. The
stronger floor is the raw load: PostgreSQL's own ``COPY ... (FORMAT csv)`` of the whole file into a table of text
columns (csv.reader + executemany on SQLite). ``rows/CPU-s`` divides by this process's CPU time (both threads),
which a loaded machine inflates far less than wall time; the load average is printed beside each row.

    .venv/bin/python -m bench.csv_import [--lines 1000000] [--ref-lines 2000] [--chunk-rows 100000]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from storefunnel.db import make_engine
from storefunnel.ingest.csv_import import ORDER_CHUNK_ROWS, import_csv
from storefunnel.migrate import upgrade
from storefunnel.workspaces.service import create_workspace

HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,"
    "Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name,"
    "Lineitem price,Lineitem compare at price,Lineitem sku,Lineitem requires shipping,Lineitem taxable,"
    "Lineitem fulfillment status,Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,"
    "Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,Shipping Street,"
    "Shipping Address1,Shipping Address2,Shipping Company,Shipping City,Shipping Zip,Shipping Province,"
    "Shipping Country,Shipping Phone,Notes,Note Attributes,Cancelled at,Payment Method,Payment Reference,"
    "Refunded Amount,Vendor,Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,"
    "Lineitem discount,Tax 1 Name,Tax 1 Value,Phone,Receipt Number,Duties,Billing Province Name,"
    "Shipping Province Name,Payment ID,Payment Terms Name,Next Payment Due At,Payment References"
).split(",")
CITIES = [("Porto", "PT"), ("Lisboa", "PT"), ("Madrid", "ES"), ("Lyon", "FR"), ("Berlin", "DE"), ("Milano", "IT")]
FIRST = ["Ana", "João", "Marta", "Rui", "Sofia", "Léa", "Hans", "Giulia", "Pablo", "Inês"]
LAST = ["Silva", "Pereira", "Costa", "Santos", "Martin", "Müller", "Rossi", "García", "Almeida"]


def write_orders_csv(path: Path, lines: int, seed: int = 1, customers: int | None = None) -> int:
    """A Shopify-layout export of about ``lines`` rows (1–4 lines per order); returns the number of orders."""
    rng = random.Random(seed)
    customers = customers or max(lines // 5, 1)
    idx = {h: i for i, h in enumerate(HEADER)}
    width = len(HEADER)
    products = [(f"SKU-{i:05d}", f"Product {i}", rng.randint(300, 9000)) for i in range(2000)]
    written = orders = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        while written < lines:
            orders += 1
            c = rng.randrange(customers)
            email = f"customer{c}@example.com"
            city, country = CITIES[c % len(CITIES)]
            n = min(rng.choice((1, 1, 2, 2, 3, 4)), lines - written)
            picked = [products[rng.randrange(len(products))] for _ in range(n)]
            qty = [rng.randint(1, 3) for _ in range(n)]
            gross = sum(p[2] * q for p, q in zip(picked, qty, strict=True))
            discount = gross // 10 if rng.random() < 0.2 else 0
            shipping = 490 if gross < 5000 else 0
            total = gross - discount + shipping
            created = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:14:05 +0100"
            for i, (p, q) in enumerate(zip(picked, qty, strict=True)):
                row = [""] * width
                row[idx["Name"]] = f"#{1000 + orders}"
                row[idx["Email"]] = email
                row[idx["Lineitem quantity"]] = str(q)
                row[idx["Lineitem name"]] = p[1]
                row[idx["Lineitem price"]] = f"{p[2] / 100:.2f}"
                row[idx["Lineitem sku"]] = p[0]
                row[idx["Lineitem requires shipping"]] = "true"
                row[idx["Lineitem taxable"]] = "true"
                row[idx["Lineitem discount"]] = "0.00"
                row[idx["Vendor"]] = "Bench Co"
                if i == 0:
                    values = {
                        "Financial Status": "paid",
                        "Paid at": created,
                        "Accepts Marketing": "yes" if c % 3 == 0 else "no",
                        "Currency": "EUR",
                        "Subtotal": f"{(gross - discount) / 100:.2f}",
                        "Shipping": f"{shipping / 100:.2f}",
                        "Taxes": f"{total * 23 // 123 / 100:.2f}",
                        "Total": f"{total / 100:.2f}",
                        "Discount Code": "WELCOME10" if discount else "",
                        "Discount Amount": f"{discount / 100:.2f}",
                        "Shipping Method": "Standard",
                        "Created at": created,
                        "Billing Name": f"{FIRST[c % len(FIRST)]} {LAST[c % len(LAST)]}",
                        "Billing City": city,
                        "Billing Country": country,
                        "Payment Method": "Shopify Payments",
                        "Id": str(5940139491234 + orders),
                        "Risk Level": "Low",
                        "Source": "web",
                    }
                    for key, value in values.items():
                        row[idx[key]] = value
                w.writerow(row)
                written += 1
    return orders


def scratch_postgres(base_url: str) -> tuple[str, Callable[[], None]]:
    admin = sa.create_engine(
        base_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"sf_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def ours(url: str, path: Path, chunk_rows: int) -> tuple[float, float, float, dict[str, int]]:
    """Seconds for a first import (wall and this process's CPU) and for a re-run, and the first run's summary."""
    engine = make_engine(url)
    upgrade(engine, "heads")
    with sa.orm.Session(engine) as session:
        ws = create_workspace(session, "bench").id
        session.commit()
        t0, c0 = time.perf_counter(), time.process_time()
        result = import_csv(session, ws, "orders", path, chunk_rows=chunk_rows, after_chunk=session.commit)
        session.commit()
        first, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"first import: {first:.1f} s, {cpu:.1f} s CPU, {result.vectorised:,} rows vectorised, "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        t0 = time.perf_counter()
        again = import_csv(session, ws, "orders", path, chunk_rows=chunk_rows, after_chunk=session.commit)
        session.commit()
        rerun = time.perf_counter() - t0
        assert again.counts["orders_created"] == again.counts["orders_updated"] == 0, again.summary()
    engine.dispose()
    return first, rerun, cpu, result.summary()


def raw_load(url: str, path: Path) -> float:
    """The whole file into one table of text columns, no parsing or keys: PostgreSQL's COPY ... (FORMAT csv), or
    csv.reader + executemany on SQLite (what the sqlite3 shell's .import does)."""
    engine = make_engine(url)
    columns = ", ".join(f'"c{i}" text' for i in range(len(HEADER)))
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE raw_orders ({columns})"))
        raw: Any = conn.connection.driver_connection
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy("COPY raw_orders FROM STDIN (FORMAT csv, HEADER true)") as copy:
                with path.open("rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
        else:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                next(reader)
                marks = ", ".join("?" * len(HEADER))
                raw.executemany(f"INSERT INTO raw_orders VALUES ({marks})", reader)
    seconds = time.perf_counter() - t0
    engine.dispose()
    return seconds


def reference(url: str, path: Path) -> float:
    """pandas read_csv + to_sql(method="multi") into one raw table."""
    import pandas as pd

    engine = make_engine(url)
    t0 = time.perf_counter()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    chunk = max(30000 // len(frame.columns), 1)  # stay under the backends' bind-parameter limits
    frame.to_sql("pandas_orders", engine, if_exists="replace", index=False, method="multi", chunksize=chunk)
    seconds = time.perf_counter() - t0
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--ref-lines", type=int, default=2_000, help="rows the pandas reference loads (0: skip)")
    parser.add_argument("--chunk-rows", type=int, default=ORDER_CHUNK_ROWS)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        big, small = Path(tmp) / "orders.csv", Path(tmp) / "orders_ref.csv"
        t0 = time.perf_counter()
        orders = write_orders_csv(big, args.lines)
        write_orders_csv(small, min(args.ref_lines, args.lines))
        size_mb = big.stat().st_size / 1e6
        print(
            f"generated {args.lines:,} lines / {orders:,} orders ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        rows: list[tuple[str, int, float, float, float, float, float, str]] = []
        backends: list[tuple[str, Callable[[], tuple[str, Callable[[], None]]]]] = []
        if not args.skip_pg:
            backends.append(("PostgreSQL", lambda: scratch_postgres(args.pg)))
        if not args.skip_sqlite:
            backends.append(("SQLite", lambda: (f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db", lambda: None)))
        ref_n = min(args.ref_lines, args.lines)
        for label, make in backends:
            load = os.getloadavg()[0]
            url, drop = make()
            try:
                first, rerun, cpu, summary = ours(url, big, args.chunk_rows)
                print(f"{label}: ours {first:.1f} s ({cpu:.1f} s CPU), re-run {rerun:.1f} s: {summary}", flush=True)
                assert summary["imported"] == args.lines, summary
                copy = raw_load(url, big)
                ref = reference(url, small) if ref_n else float("nan")
            finally:
                drop()
            print(f"{label}: raw load {copy:.1f} s, pandas {ref:.1f} s for {ref_n:,} lines", flush=True)
            load = max(load, os.getloadavg()[0])
            rows.append(
                (
                    label,
                    args.lines,
                    args.lines / first,
                    args.lines / cpu,
                    args.lines / rerun,
                    args.lines / copy,
                    ref_n / ref,
                    f"{load:.1f}",
                )
            )
        print()
        print(
            f"{'backend':<11} {'lines':>10} {'ours rows/s':>12} {'rows/CPU-s':>11} {'re-run rows/s':>14} "
            f"{'raw load rows/s':>16} {'ours/raw':>9} {'pandas rows/s':>14} {'ours/pandas':>12} {'load':>5}"
        )
        for label, n, rate, cpu_rate, rerun_rate, copy_rate, ref_rate, load_text in rows:
            print(
                f"{label:<11} {n:>10,} {rate:>12,.0f} {cpu_rate:>11,.0f} {rerun_rate:>14,.0f} {copy_rate:>16,.0f} "
                f"{rate / copy_rate:>8.2f}x {ref_rate:>14,.0f} {rate / ref_rate:>11.1f}x {load_text:>5}"
            )


if __name__ == "__main__":
    main()
