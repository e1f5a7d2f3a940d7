"""The columnar order import gives the database, refusals and line numbers the exact (row by row) path gives."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.csv_import import write_orders_csv
from storefunnel.cycle import dirty
from storefunnel.ingest.csv_import import ImportResult, import_csv
from storefunnel.models import Contact, Workspace
from storefunnel.workspaces.service import create_workspace

DATA = Path(__file__).parent / "data"


def snapshot(session: Session, ws: int, *, consent_at: bool = True) -> dict[str, list[tuple[Any, ...]]]:
    """Everything an order import writes, by natural keys (ids differ between workspaces)."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted((tuple(r) for r in session.execute(sa.text(sql), {"ws": ws})), key=repr)

    consent = ", consent_at" if consent_at else ""
    return {
        "contacts": rows(
            "SELECT email, external_id, first_name, last_name, phone, country, region, city, email_consent, "
            f"consent_source{consent} FROM contacts WHERE workspace_id = :ws"
        ),
        "products": rows("SELECT sku, name, price, currency FROM products WHERE workspace_id = :ws"),
        "orders": rows(
            "SELECT o.source, o.external_id, c.email, o.placed_at, o.currency, o.subtotal, o.discount, o.shipping, "
            "o.tax, o.total, o.status, CAST(o.discount_codes AS TEXT), CAST(o.properties AS TEXT) FROM orders o "
            "LEFT JOIN contacts c ON c.id = o.contact_id WHERE o.workspace_id = :ws"
        ),
        "lines": rows(
            "SELECT o.external_id, p.sku, l.sku, l.name, l.quantity, l.unit_price, l.discount, l.total, l.id - "
            "(SELECT MIN(l2.id) FROM order_lines l2 WHERE l2.order_id = l.order_id) FROM order_lines l "
            "JOIN orders o ON o.id = l.order_id LEFT JOIN products p ON p.id = l.product_id WHERE l.workspace_id = :ws"
        ),
    }


def both_ways(session: Session, path: Path, chunk_rows: int, **kw: Any) -> tuple[ImportResult, ImportResult, int, int]:
    ours = create_workspace(session, f"col-{uuid.uuid4().hex[:8]}").id
    ref = create_workspace(session, f"ref-{uuid.uuid4().hex[:8]}").id
    fast = import_csv(session, ours, "orders", path, chunk_rows=chunk_rows, **kw)
    exact = import_csv(session, ref, "orders", path, chunk_rows=chunk_rows, exact=True, **kw)
    assert exact.vectorised == 0
    return fast, exact, ours, ref


def rejects(result: ImportResult) -> list[tuple[int, str, list[str]]]:
    return sorted((r.line, r.reason, r.row) for r in result.rejects)


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write(path: Path, rows: list[list[str]], ending: str = "\n") -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator=ending).writerows(rows)


def awkward_export(tmp_path: Path) -> Path:
    """A generated export with every kind of value the columnar path hands to the exact path, or refuses."""
    path = tmp_path / "awkward.csv"
    write_orders_csv(path, 3000, seed=21)
    rows = rows_of(path)
    h = {name: i for i, name in enumerate(rows[0])}
    heads = [i for i in range(1, len(rows)) if rows[i][h["Created at"]]]
    edits: list[tuple[int, str, str]] = [
        (heads[1], "Lineitem price", "12.345"),  # refused: decimals
        (heads[2], "Lineitem quantity", "two"),  # refused
        (heads[3], "Lineitem quantity", " 2 "),  # Python's int() takes it
        (heads[4], "Billing Name", "Silva, Ana"),  # quoted
        (heads[5], "Billing City", "Porto\u00a0"),  # a space only str.strip() knows
        (heads[6], "Currency", "USD"),  # not the block's main currency
        (heads[7], "Created at", "2025-02-30 10:00:00 +0100"),  # refused: no such day
        (heads[8], "Created at", "2025-03-01T10:00:00"),  # no offset: the workspace's zone
        (heads[9], "Created at", "2025-03-01 10:00:00 UTC"),
        (heads[10], "Email", "CUSTOMER1@EXAMPLE.COM"),
        (heads[11], "Email", "not-an-email"),  # refused
        (heads[12], "Accepts Marketing", "maybe"),  # refused (the order has an email)
        (heads[13], "Lineitem sku", ""),  # a product keyed by its title
        (heads[14], "Financial Status", "Partially Paid"),
        (heads[15], "Financial Status", "weird"),  # refused
        (heads[16], "Cancelled at", "2025-03-02 10:00:00 +0100"),
        (heads[17], "Discount Code", "A, B,,"),
        (heads[18], "Id", "00123"),
        (heads[19], "Id", "abc"),
        (heads[20], "Name", "#" + "9" * 130),  # refused: too long
        (heads[21], "Total", "1,234.00"),  # refused: not a number
        (heads[22], "Shipping", ""),
        (heads[23], "Lineitem discount", " 1.50"),
        (heads[24], "Total", "12"),
        (heads[25], "Lineitem sku", "S" * 120),  # kept whole in the key by a digest
        (heads[26], "Created at", ""),  # refused: no order-level row
        (heads[27], "Lineitem name", "Mug — ceramic, blue"),
        (heads[28], "Email", ""),  # no contact
        (heads[29], "Billing Country", "pt"),
        (heads[30], "Billing Province Name", "  "),
        (heads[30], "Billing Province", "Minho"),
        (heads[31], "Lineitem quantity", "-1"),  # refused
        (heads[32], "Billing Phone", "+351 " + "9" * 60),  # clipped
        (heads[33], "Email", "  spaced@example.com  "),
        (heads[34], "Lineitem sku", ""),
        (heads[34], "Lineitem name", ""),  # no SKU, no title: still a product key
    ]
    for i, column, value in edits:
        rows[i][h[column]] = value
    # Rows of one order apart from each other (a single chunk groups them), a blank-name row, a blank row.
    moved = rows.pop(heads[40])
    rows.insert(heads[45], moved)
    rows.insert(heads[50], [""] * len(rows[0]))
    nameless = list(rows[heads[55]])
    nameless[h["Name"]] = " "
    rows.insert(heads[55] + 1, nameless)
    write(path, rows)
    return path


def test_awkward_export_same_result_both_ways(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    path = awkward_export(tmp_path)
    fast, exact, ours, ref = both_ways(session, path, chunk_rows=100_000)
    assert fast.vectorised > 2500  # most rows did take the columnar path
    assert fast.summary() == exact.summary()
    assert rejects(fast) == rejects(exact)
    assert len(fast.rejects) >= 12
    assert snapshot(session, ours) == snapshot(session, ref)


def orders_together(rows: list[list[str]]) -> list[list[str]]:
    """The file without rows of an order apart: chunk boundaries would decide which order such a row joins."""
    name = rows[0].index("Name")
    seen: set[str] = set()
    kept = [rows[0]]
    for row in rows[1:]:
        if row[name] in seen and row[name] != kept[-1][name]:
            continue
        seen.add(row[name])
        kept.append(row)
    return kept


def test_many_chunks_same_orders_and_refusals(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    """Chunk boundaries differ between the paths (bytes here, rows there); the result is the same."""
    path = awkward_export(tmp_path)
    write(path, orders_together(rows_of(path)), ending="\r\n")
    fast, exact, ours, ref = both_ways(session, path, chunk_rows=300)
    assert fast.vectorised > 2500
    assert rejects(fast) == rejects(exact)
    assert snapshot(session, ours) == snapshot(session, ref)
    again = import_csv(session, ours, "orders", path, chunk_rows=300)
    assert again.counts["orders_created"] == again.counts["orders_updated"] == again.counts["lines_written"] == 0


def test_where_chunks_end_does_not_change_a_customer(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    """Order details fill a customer's gaps and keep the first value, within a chunk as across chunks."""
    path = awkward_export(tmp_path)
    rows = orders_together(rows_of(path))
    h = {name: i for i, name in enumerate(rows[0])}
    heads: dict[str, list[int]] = {}
    for i, row in enumerate(rows[1:], start=1):
        if row[h["Created at"]] and "@" in row[h["Email"]] and row[h["Email"]] == row[h["Email"]].strip().lower():
            heads.setdefault(row[h["Email"]], []).append(i)
    far = {email: ix for email, ix in heads.items() if len(ix) >= 2 and ix[-1] - ix[0] > 600}
    assert len(far) >= 3
    for n, (_email, ix) in enumerate(sorted(far.items())[:10]):
        first, last = rows[ix[0]], rows[ix[-1]]
        first[h["Billing City"]], last[h["Billing City"]] = f"First {n}", f"Last {n}"
        first[h["Billing Phone"]], last[h["Billing Phone"]] = "", f"+351 200 000 {n:03d}"
        first[h["Accepts Marketing"]], last[h["Accepts Marketing"]] = "no", "yes"
    write(path, rows)
    runs = [(chunk, exact) for chunk in (300, 100_000) for exact in (False, True)]
    shots = []
    for chunk, exact in runs:
        ws = create_workspace(session, f"chunks-{uuid.uuid4().hex[:8]}").id
        import_csv(session, ws, "orders", path, chunk_rows=chunk, exact=exact)
        shots.append(snapshot(session, ws))
    assert all(shot == shots[0] for shot in shots[1:])
    email, _ = sorted(far.items())[0]
    got = session.execute(
        sa.select(Contact.city, Contact.phone, Contact.email_consent).where(
            Contact.workspace_id == ws, Contact.email == email
        )
    ).one()
    assert tuple(got) == ("First 0", "+351 200 000 000", True)


def test_blocks_the_columnar_reader_refuses(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    """Blank lines, bytes that are not UTF-8, a short row mid-file: those blocks go row by row, with exact line
    numbers, and the blocks around them still take the columnar path."""
    path = tmp_path / "mixed.csv"
    write_orders_csv(path, 4000, seed=8)
    lines = path.read_bytes().split(b"\n")
    # Pick whole single-row orders, far apart, so each makes exactly one reject.
    heads = [i for i in range(1, len(lines) - 2) if lines[i].split(b",")[15] and lines[i + 1].split(b",")[15]]
    bad_bytes, short, blank = heads[100], heads[300], heads[500]
    lines[bad_bytes] = lines[bad_bytes].replace(b",Bench Co,", b",Caf\xe9,")
    lines[short] = b",".join(lines[short].split(b",")[:30])
    lines.insert(blank, b"")
    path.write_bytes(b"\n".join(lines))
    fast, exact, ours, ref = both_ways(session, path, chunk_rows=200)
    assert fast.vectorised > 3000
    assert rejects(fast) == rejects(exact)
    got = {r.line: r.reason for r in fast.rejects}
    assert got[bad_bytes + 1] == "row: not valid UTF-8"
    assert len(got) == 1  # the short row lacks only columns the import does not read
    assert fast.rows == exact.rows == 4000
    assert snapshot(session, ours, consent_at=False) == snapshot(session, ref, consent_at=False)


def test_a_quoted_line_break_late_in_the_file(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    """From the block holding a multi-line cell on, csv.reader reads the file; line numbers stay exact."""
    path = tmp_path / "late.csv"
    write_orders_csv(path, 6000, seed=9)
    rows = rows_of(path)
    h = {name: i for i, name in enumerate(rows[0])}
    heads = [i for i in range(1, len(rows) - 1) if rows[i][h["Created at"]] and rows[i + 1][h["Created at"]]]
    early, multi, late = heads[50], heads[600], heads[800]
    rows[early][h["Lineitem price"]] = "1.001"
    rows[multi][h["Notes"]] = "leave it\nat the door"
    rows[late][h["Lineitem price"]] = "2.002"
    write(path, rows)
    fast, exact, ours, ref = both_ways(session, path, chunk_rows=500)
    assert 0 < fast.vectorised < 6000
    assert {r.line: r.reason[:15] for r in fast.rejects} == {
        early + 1: "Lineitem price:",
        late + 2: "Lineitem price:",  # one line further down: the note spans two
    }
    assert rejects(fast) == rejects(exact)
    assert snapshot(session, ours, consent_at=False) == snapshot(session, ref, consent_at=False)


def test_imported_orders_move_their_customers_through_the_cycle(session: Session, workspace: Workspace) -> None:
    """Like tracking, an import marks the customers of new or changed orders; the worker's drain then stages them."""
    result = import_csv(session, workspace.id, "orders", DATA / "shopify_orders_export.csv")
    assert result.counts["orders_created"] == 4
    assert dirty.pending(session, workspace.id) == 2  # Ana (two orders) and João; #1006 has no customer
    dirty.drain_all(session, workspace_id=workspace.id)
    assert dirty.pending(session, workspace.id) == 0
    staged = session.scalars(
        sa.select(Contact.stage).where(Contact.workspace_id == workspace.id, Contact.email == "ana.silva@example.pt")
    ).one()
    assert staged is not None
    import_csv(session, workspace.id, "orders", DATA / "shopify_orders_export.csv")
    assert dirty.pending(session, workspace.id) == 0  # nothing changed, nothing marked


def test_properties_built_column_wise_match_dumps() -> None:
    import pyarrow as pa

    from storefunnel.ingest.csv_columnar import _properties
    from storefunnel.ingest.orders_upsert import dumps

    statuses = ["paid", "", 'pa"id', "x\\y", "tab\there", "ok"]
    ids = ["00123", "", "abc", "9999999999999999999", "0000", 'é"']
    sources = ["web", "", 'sh"op', "", "ü", ""]
    got = _properties(pa.array(statuses), pa.array(["abc"] * 6), pa.array(ids), pa.array(sources)).to_pylist()
    for i, text in enumerate(got):
        props: dict[str, object] = {"financial_status": statuses[i] or None, "lines_digest": "abc"}
        if ids[i]:
            props["shopify_id"] = int(ids[i]) if ids[i].isdigit() else ids[i]
        if sources[i]:
            props["source_name"] = sources[i]
        assert text == dumps(props)


def test_blocks_are_whole_lines_and_bounded(tmp_path: Path, monkeypatch: Any) -> None:
    from storefunnel.ingest import csv_import

    path = tmp_path / "lines.csv"
    body = b"".join(b"row %d,%s\n" % (i, b"x" * (i % 37)) for i in range(1000)) + b"last,without line feed"
    path.write_bytes(body)
    monkeypatch.setattr(csv_import, "_BLOCK_CAP", 500)
    with path.open("rb") as raw:
        blocks = list(csv_import._blocks(raw, 0, 40, 64))
    assert b"".join(data for _, data, _ in blocks) == body + b"\n"
    assert [last for _, _, last in blocks] == [False] * (len(blocks) - 1) + [True]
    offsets = [offset for offset, _, _ in blocks]
    assert offsets == [sum(len(d) for _, d, _ in blocks[:i]) for i in range(len(blocks))]
    for _, data, _ in blocks:
        assert data.endswith(b"\n")
        assert data.count(b"\n") <= 40
        assert len(data) < 500 + 60  # the cap, give or take the line that crosses it


def test_two_imports_of_one_file_at_once_end_as_one(committed_session: Session, tmp_path: Path) -> None:
    """Two imports racing over the same orders, customers and products: no error, no duplicate, each order
    created once between them, and the workspace as one import leaves it.

    PostgreSQL only: on SQLite a chunk that read the database before writing fails with "database is locked"
    when another writer committed in between (see docs/import.md).
    """
    import threading

    from storefunnel.db import get_sessionmaker

    if committed_session.get_bind().dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's")
    path = tmp_path / "orders.csv"
    write_orders_csv(path, 3000, seed=5)
    racing = create_workspace(committed_session, f"race-{uuid.uuid4().hex[:8]}").id
    alone = create_workspace(committed_session, f"alone-{uuid.uuid4().hex[:8]}").id
    committed_session.commit()
    results: list[ImportResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        with get_sessionmaker()() as s:
            try:
                results.append(import_csv(s, racing, "orders", path, chunk_rows=300, after_chunk=s.commit))
            except BaseException as exc:  # the test fails on any error either import raises
                errors.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commit = committed_session.commit
        once = import_csv(committed_session, alone, "orders", path, chunk_rows=300, after_chunk=commit)
        assert errors == []
        assert sum(r.counts["orders_created"] for r in results) == once.counts["orders_created"] > 0
        assert sum(r.counts["contacts_created"] for r in results) == once.counts["contacts_created"]
        assert snapshot(committed_session, racing) == snapshot(committed_session, alone)
    finally:
        # Committed contacts marked for the sales cycle would be drained, and their stage changes published, by
        # the workers of later tests in this database.
        committed_session.rollback()
        committed_session.execute(sa.delete(Workspace).where(Workspace.id.in_([racing, alone])))
        committed_session.commit()
