"""CSV import of contacts, Shopify order exports and spend: good rows in, bad rows out with reasons, re-runs inert."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.ingest.csv_import import import_csv
from storefunnel.models import Contact, Order, OrderLine, Product, Spend, Workspace
from storefunnel.workspaces.service import create_workspace

DATA = Path(__file__).parent / "data"


def count(session: Session, model: Any, ws: int) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(model.workspace_id == ws)) or 0)


def orders_by_name(session: Session, ws: int) -> dict[str, Order]:
    return {o.external_id or "": o for o in session.scalars(sa.select(Order).where(Order.workspace_id == ws))}


def read_rejects(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_shopify_export_multi_row_orders(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    result = import_csv(session, workspace.id, "orders", DATA / "shopify_orders_export.csv", rejects_path=rejects)
    assert (result.rows, result.imported, result.rejected) == (10, 7, 3)
    assert result.counts["orders_created"] == 4
    assert result.counts["lines_written"] == 7
    assert result.counts["contacts_created"] == 2
    assert result.counts["products_created"] == 4
    orders = orders_by_name(session, workspace.id)
    assert set(orders) == {"#1001", "#1002", "#1003", "#1006"}
    first = orders["#1001"]
    assert (first.subtotal, first.discount, first.shipping, first.tax, first.total) == (5990, 599, 490, 1100, 5881)
    assert first.discount_codes == ["WELCOME10"]
    assert first.status == "paid"
    assert first.placed_at == dt.datetime(2026, 3, 2, 11, 20, 5, tzinfo=dt.UTC)
    assert first.properties["shopify_id"] == 5940139491234
    lines = list(session.scalars(sa.select(OrderLine).where(OrderLine.order_id == first.id).order_by(OrderLine.id)))
    assert [(ln.sku, ln.quantity, ln.unit_price, ln.discount, ln.total) for ln in lines] == [
        ("MUG-BLU", 2, 1250, 250, 2250),
        (None, 1, 3490, 349, 3141),
    ]
    second = orders["#1002"]
    assert second.placed_at == dt.datetime(2026, 3, 5, 17, 2, 44, tzinfo=dt.UTC)
    assert second.subtotal == 1800 + 2 * 1250 + 3870
    assert orders["#1003"].status == "cancelled"
    assert orders["#1006"].contact_id is None
    assert orders["#1001"].contact_id == orders["#1003"].contact_id
    ana = session.get(Contact, first.contact_id)
    assert ana is not None
    assert (ana.email, ana.first_name, ana.last_name, ana.city, ana.country) == (
        "ana.silva@example.pt",
        "Ana",
        "Silva",
        "Porto",
        "PT",
    )
    assert ana.email_consent is True
    joao = session.get(Contact, second.contact_id)
    assert joao is not None
    assert joao.email_consent is False
    skus = set(session.scalars(sa.select(Product.sku).where(Product.workspace_id == workspace.id)))
    assert "BWL-STN" not in skus  # only in the rejected order
    rows = read_rejects(rejects)
    assert rows[0][:3] == ["line", "reason", "Name"]
    by_line = {int(r[0]): r for r in rows[1:]}
    assert set(by_line) == {8, 9, 10}
    assert by_line[9][1].startswith("Lineitem price")
    assert "line 9" in by_line[8][1]
    assert by_line[10][1].startswith("Total")
    assert by_line[10][2] == "#1005"


def test_reimport_changes_nothing_and_an_edit_updates_in_place(
    session: Session, workspace: Workspace, tmp_path: Path
) -> None:
    src = DATA / "shopify_orders_export.csv"
    import_csv(session, workspace.id, "orders", src)
    line_ids = set(session.scalars(sa.select(OrderLine.id).where(OrderLine.workspace_id == workspace.id)))
    again = import_csv(session, workspace.id, "orders", src)
    assert again.counts["orders_created"] == again.counts["orders_updated"] == 0
    assert again.counts["orders_unchanged"] == 4
    assert again.counts["contacts_created"] == again.counts["contacts_updated"] == 0
    assert again.counts["lines_written"] == 0
    assert set(session.scalars(sa.select(OrderLine.id).where(OrderLine.workspace_id == workspace.id))) == line_ids
    edited = tmp_path / "edited.csv"
    edited.write_text(src.read_text().replace(",paid,2026-03-05", ",refunded,2026-03-05"))
    third = import_csv(session, workspace.id, "orders", edited)
    assert third.counts["orders_updated"] == 1
    assert third.counts["lines_written"] == 3
    session.expire_all()
    assert orders_by_name(session, workspace.id)["#1002"].status == "refunded"
    assert count(session, Order, workspace.id) == 4
    assert count(session, OrderLine, workspace.id) == 7


def test_tiny_chunks_never_split_an_order(session: Session, workspace: Workspace) -> None:
    result = import_csv(session, workspace.id, "orders", DATA / "shopify_orders_export.csv", chunk_rows=1)
    assert (result.imported, result.rejected) == (7, 3)
    assert count(session, OrderLine, workspace.id) == 7
    assert orders_by_name(session, workspace.id)["#1002"].subtotal == 8170


def test_order_rows_apart_from_their_first_row_are_rejected(
    session: Session, workspace: Workspace, tmp_path: Path
) -> None:
    lines = (DATA / "shopify_orders_export.csv").read_text().splitlines()
    # Move #1001's second row after #1003, beyond a chunk boundary.
    moved = [lines[0], lines[1], *lines[3:7], lines[2]]
    path = tmp_path / "moved.csv"
    path.write_text("\n".join(moved) + "\n")
    result = import_csv(session, workspace.id, "orders", path, chunk_rows=2)
    assert result.rejected == 1
    assert "order-level fields" in result.rejects[0].reason
    assert result.rejects[0].line == 7


def test_contacts_import(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    rejects = tmp_path / "r.csv"
    result = import_csv(session, workspace.id, "contacts", DATA / "contacts.csv", rejects_path=rejects)
    assert (result.rows, result.imported, result.rejected) == (8, 4, 4)
    assert result.counts["contacts_created"] == 4
    contacts = {c.email: c for c in session.scalars(sa.select(Contact).where(Contact.workspace_id == workspace.id))}
    assert set(contacts) == {
        "ana.silva@example.pt",
        "joao.pereira@example.pt",
        "marta.costa@example.com",
        "sofia.almeida@example.pt",
    }
    ana = contacts["ana.silva@example.pt"]
    assert (ana.age_band, ana.gender, ana.region, ana.email_consent) == ("30-39", "female", "Porto", True)
    assert ana.traits == {"favourite_colour": "blue", "loyalty_tier": "gold"}
    assert ana.consent_source == "import"
    assert contacts["marta.costa@example.com"].country == "PT"
    reasons = {int(r[0]): r[1] for r in read_rejects(rejects)[1:]}
    assert set(reasons) == {5, 6, 7, 8}
    assert reasons[5].startswith("email")
    assert reasons[6].startswith("country")
    assert reasons[7].startswith("email_consent")
    assert reasons[8] == "email: required"
    again = import_csv(session, workspace.id, "contacts", DATA / "contacts.csv")
    assert again.counts["contacts_created"] == again.counts["contacts_updated"] == 0


def test_contacts_update_fills_and_merges_traits(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    import_csv(session, workspace.id, "contacts", DATA / "contacts.csv")
    path = tmp_path / "more.csv"
    path.write_text("Email,City,Loyalty Tier,Shoe Size\nANA.SILVA@example.pt,Matosinhos,platinum,38\n")
    result = import_csv(session, workspace.id, "contacts", path)
    assert result.counts["contacts_updated"] == 1
    session.expire_all()
    ana = session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace.id, Contact.email == "ana.silva@example.pt")
    ).one()
    assert (ana.city, ana.first_name) == ("Matosinhos", "Ana")
    assert ana.traits == {"favourite_colour": "blue", "loyalty_tier": "platinum", "shoe_size": "38"}


def test_unsubscribed_contact_is_not_resubscribed_by_an_import(
    session: Session, workspace: Workspace, tmp_path: Path, make: Any
) -> None:
    make.contact(
        session, workspace.id, email="ana.silva@example.pt", unsubscribed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    import_csv(session, workspace.id, "contacts", DATA / "contacts.csv")
    import_csv(session, workspace.id, "orders", DATA / "shopify_orders_export.csv")
    session.expire_all()
    ana = session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace.id, Contact.email == "ana.silva@example.pt")
    ).one()
    assert ana.email_consent is False


def test_spend_import(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    rejects = tmp_path / "r.csv"
    result = import_csv(session, workspace.id, "spend", DATA / "spend.csv", rejects_path=rejects)
    assert (result.rows, result.imported, result.rejected) == (9, 6, 3)
    rows = {
        (s.day.isoformat(), s.channel, s.campaign): (s.cost, s.currency)
        for s in session.scalars(sa.select(Spend).where(Spend.workspace_id == workspace.id))
    }
    assert rows == {
        ("2026-03-01", "Paid Search", "brand"): (4520, "EUR"),
        ("2026-03-01", "Paid Social", "spring-launch"): (12000, "EUR"),
        ("2026-03-01", "Paid Search", "generic"): (3005, "EUR"),
        ("2026-03-02", "Paid Search", "brand"): (5180, "EUR"),
        ("2026-03-03", "Email", "newsletter-12"): (0, "EUR"),
        ("2026-03-03", "Display", "retargeting"): (12000, "JPY"),
    }
    reasons = {int(r[0]): r[1] for r in read_rejects(rejects)[1:]}
    assert set(reasons) == {6, 7, 9}
    assert reasons[6].startswith("channel")
    assert reasons[7].startswith("date")
    assert reasons[9].startswith("cost")
    again = import_csv(session, workspace.id, "spend", DATA / "spend.csv")
    assert (again.counts["spend_created"], again.counts["spend_updated"], again.counts["spend_unchanged"]) == (0, 0, 6)
    corrected = tmp_path / "corrected.csv"
    corrected.write_text("date,channel,campaign,cost,currency\n2026-03-01,Paid Search,brand,47.00,EUR\n")
    assert import_csv(session, workspace.id, "spend", corrected).counts["spend_updated"] == 1


def test_semicolons_bom_and_bad_bytes(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfdate;channel;campaign;cost;currency\n"
        b"2026-03-01;Email;news;1.00;EUR\n"
        b"2026-03-02;Email;caf\xe9;1.00;EUR\n"
    )
    result = import_csv(session, workspace.id, "spend", path)
    assert (result.imported, result.rejected) == (1, 1)
    assert result.rejects[0].reason == "row: not valid UTF-8"
    assert result.rejects[0].line == 3


def test_missing_column_is_a_clear_error(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    from storefunnel.errors import Invalid

    path = tmp_path / "x.csv"
    path.write_text("day,channel,cost\n2026-03-01,Email,1\n")
    with pytest.raises(Invalid, match="date"):
        import_csv(session, workspace.id, "spend", path)


def test_api_upload_multipart_and_raw(client: TestClient, session: Session, workspace: Workspace, auth: Any) -> None:
    with (DATA / "shopify_orders_export.csv").open("rb") as f:
        r = client.post("/api/v1/imports/orders", files={"file": ("orders.csv", f, "text/csv")}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows"], body["imported"], body["rejected"]) == (10, 7, 3)
    assert body["counts"]["orders_created"] == 4
    assert sorted(x["line"] for x in body["rejects"]) == [8, 9, 10]
    assert body["rejects"][0]["row"][0].startswith("#100")
    raw = client.post(
        "/api/v1/imports/spend",
        content=(DATA / "spend.csv").read_bytes(),
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["counts"]["spend_created"] == 6
    assert count(session, Spend, workspace.id) == 6
    assert count(session, Order, workspace.id) == 4


def test_api_errors_are_problems(client: TestClient, auth: Any) -> None:
    assert client.post("/api/v1/imports/orders", content=b"a,b\n1,2\n").status_code == 401
    unknown = client.post("/api/v1/imports/products", content=b"a\n", headers=auth)
    assert unknown.status_code == 422
    assert "kind" in unknown.json()["detail"]
    missing = client.post("/api/v1/imports/contacts", content=b"name,city\nx,y\n", headers=auth)
    assert missing.status_code == 422
    assert "email" in missing.json()["detail"]
    assert missing.headers["content-type"].startswith("application/problem+json")
    empty = client.post("/api/v1/imports/contacts", content=b"", headers=auth)
    assert empty.status_code == 422


def test_cli_import_and_webhook_secret(committed_session: Session, tmp_path: Path) -> None:
    from storefunnel.cli import app

    name = f"cli-{uuid.uuid4().hex[:8]}"
    ws = create_workspace(committed_session, name)
    committed_session.commit()
    runner = CliRunner()
    src = tmp_path / "orders.csv"
    shutil.copy(DATA / "shopify_orders_export.csv", src)
    rejects = tmp_path / "rejects.csv"
    first = runner.invoke(app, ["import", "orders", str(src), "--workspace", name, "--rejects", str(rejects)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["imported"], summary["rejected"], summary["orders_created"]) == (10, 7, 3, 4)
    assert len(read_rejects(rejects)) == 4
    second = runner.invoke(app, ["import", "orders", str(src), "--workspace", name])
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert (again["orders_created"], again["orders_updated"], again["orders_unchanged"]) == (0, 0, 4)
    committed_session.expire_all()
    assert count(committed_session, Order, ws.id) == 4
    contacts = runner.invoke(app, ["import", "contacts", str(DATA / "contacts.csv"), "-w", name])
    assert json.loads(contacts.stdout.strip().splitlines()[-1])["contacts_created"] == 2  # two came with orders
    nowhere = runner.invoke(app, ["import", "spend", str(DATA / "spend.csv"), "-w", "no-such-workspace"])
    assert nowhere.exit_code == 2
    made = runner.invoke(app, ["webhook-secret", "set", "--platform", "woocommerce", "-w", name])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert f"/webhooks/woocommerce/{ws.id}" in made.stdout
    shown = runner.invoke(app, ["webhook-secret", "show", "--platform", "woocommerce", "-w", name])
    assert shown.stdout.strip().splitlines()[-1] == secret
    absent = runner.invoke(app, ["webhook-secret", "show", "--platform", "shopify", "-w", name])
    assert absent.exit_code == 2


def _groups(path: Path) -> tuple[Any, list[list[tuple[int, list[str]]]]]:
    from storefunnel.ingest.csv_formats import Columns

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        groups: dict[str, list[tuple[int, list[str]]]] = {}
        for n, row in enumerate(reader, start=2):
            groups.setdefault(row[header.index("Name")], []).append((n, row))
    return Columns.from_header("orders", header), list(groups.values())


@pytest.mark.parametrize("pg", [True, False])
def test_fast_path_agrees_with_the_exact_path(tmp_path: Path, pg: bool) -> None:
    """Every order of the fixture and of a generated export becomes the same staging rows (or refusal) both ways."""
    from bench.csv_import import write_orders_csv
    from storefunnel.ingest.csv_formats import FastOrders, OrderRowsError, order_from_rows
    from storefunnel.ingest.orders_upsert import OrderBatch

    generated = tmp_path / "generated.csv"
    write_orders_csv(generated, 3000, seed=5)
    tz = dt.timezone(dt.timedelta(hours=1))
    checked = refused = 0
    for path in (DATA / "shopify_orders_export.csv", generated):
        cols, groups = _groups(path)
        fast = FastOrders.for_columns(cols, "EUR", tz, pg)
        assert fast is not None
        quick, exact = OrderBatch(pg=pg), OrderBatch(pg=pg)
        for group in groups:
            try:
                expected = order_from_rows(cols, group, "EUR", tz)
            except OrderRowsError as exc:
                refusal = (exc.line, str(exc))
                with pytest.raises(OrderRowsError) as raised:
                    fast.add(quick, group)
                assert (raised.value.line, str(raised.value)) == refusal
                refused += 1
                continue
            fast._fast(quick, group)  # the fast path itself, not its fallback
            exact.add(expected)
            checked += 1
        assert quick.orders == exact.orders
        assert quick.lines == exact.lines
        assert quick.products == exact.products
        assert quick.contacts == exact.contacts
    assert checked > 1000
    assert refused == 2


def test_line_numbers_across_blocks_multiline_cells_and_late_bad_bytes(
    session: Session, workspace: Workspace, tmp_path: Path
) -> None:
    """Reject lines stay exact past the reader's 1 MB blocks, after quoted newlines, with CRLF endings."""
    from bench.csv_import import write_orders_csv

    path = tmp_path / "big.csv"
    write_orders_csv(path, 8000, seed=7)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    name, price, city = header.index("Name"), header.index("Lineitem price"), header.index("Billing City")
    rows[1][header.index("Notes")] = "first line\nsecond line\r\nthird"  # one row, three physical lines

    def single(i: int) -> int:
        """The nearest row at or before ``i`` that is a whole order by itself, so it makes exactly one reject."""
        while rows[i][name] in (rows[i - 1][name], rows[i + 1][name]):
            i -= 1
        return i

    bad_price = single(len(rows) - 20)
    rows[bad_price][price] = "12.345"
    bad_bytes = single(len(rows) - 5)
    rows[bad_bytes][city] = "Caf@"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    raw = path.read_bytes()
    assert len(raw) > 1_500_000
    path.write_bytes(raw.replace(b"Caf@", b"Caf\xe9"))
    result = import_csv(session, workspace.id, "orders", path, chunk_rows=3000)
    reasons = {r.line: r.reason for r in result.rejects}
    # Row i (0 = header) starts on physical line i + 1, plus the two extra lines of the multiline cell.
    assert reasons == {
        bad_price + 3: "Lineitem price: '12.345' has more than 2 decimals for EUR",
        bad_bytes + 3: "row: not valid UTF-8",
    }
    assert (result.rows, result.rejected) == (len(rows) - 1, 2)
    assert count(session, OrderLine, workspace.id) == len(rows) - 3


def test_a_failing_merge_stops_the_parsing_thread(session: Session, workspace: Workspace, tmp_path: Path) -> None:
    """An error after a chunk (here from the commit hook) propagates, and the parse-ahead thread is gone."""
    import threading

    from bench.csv_import import write_orders_csv

    path = tmp_path / "orders.csv"
    write_orders_csv(path, 3000, seed=11)
    chunks = 0

    def fail_second() -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        import_csv(session, workspace.id, "orders", path, chunk_rows=500, after_chunk=fail_second)
    assert chunks == 2
    assert not [t for t in threading.enumerate() if t.name == "csv-import-parse"]
