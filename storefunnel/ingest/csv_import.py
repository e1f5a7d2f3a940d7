"""Streaming CSV import of contacts, orders (Shopify export) and spend, in flat memory whatever the file size.

The file is read with the csv module and merged chunk by chunk (a few thousand rows) with set-based upserts.
A row that cannot be taken goes to the reject list (and file) with its line number and reason while the rest
is imported; re-running the same file changes nothing because every kind has a natural key.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.ingest.csv_formats import (
    KINDS,
    Columns,
    OrderRowsError,
    contact_from_row,
    order_from_rows,
    spend_from_row,
)
from storefunnel.ingest.orders_upsert import (
    ContactIn,
    Counts,
    OrderIn,
    RecordError,
    SpendIn,
    merge_contacts,
    upsert_orders,
    upsert_spend,
)
from storefunnel.models import Workspace

CHUNK_ROWS = 5000
KEEP_REJECTS = 1000
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Reject:
    line: int
    reason: str
    row: list[str]


@dataclass
class ImportResult:
    kind: str
    rows: int = 0
    rejected: int = 0
    counts: Counts = field(default_factory=Counts)
    rejects: list[Reject] = field(default_factory=list)
    rejects_truncated: bool = False

    @property
    def imported(self) -> int:
        return self.rows - self.rejected

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "imported": self.imported,
            "rejected": self.rejected,
            **dict(sorted(self.counts.values.items())),
        }


Progress = Callable[[int, int], None]


class _Rejects:
    """Reject rows kept for the caller (up to a cap) and streamed to a CSV file if one was asked for."""

    def __init__(self, result: ImportResult, header: Sequence[str], out: TextIO | None, keep: int) -> None:
        self.result = result
        self.keep = keep
        self.writer = csv.writer(out) if out else None
        if self.writer:
            self.writer.writerow(["line", "reason", *header])

    def add(self, line: int, reason: str, row: Sequence[str]) -> None:
        self.result.rejected += 1
        if len(self.result.rejects) < self.keep:
            self.result.rejects.append(Reject(line, reason, list(row)))
        else:
            self.result.rejects_truncated = True
        if self.writer:
            self.writer.writerow([line, reason, *row])


def _rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the file line each starts on (the header is line 1)."""
    previous = 1
    for row in reader:
        line = previous + 1
        previous = reader.line_num + 1
        if not row or not "".join(row).strip():
            continue
        yield line, row


def _undecodable(row: Sequence[str]) -> bool:
    """Bytes that are not UTF-8 arrive as lone surrogates (surrogateescape); such a row is refused, not mangled."""
    joined = "".join(row)
    if joined.isascii():
        return False
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def import_csv(
    session: Session,
    workspace_id: int,
    kind: str,
    path: Path | str,
    *,
    rejects_path: Path | str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    keep_rejects: int = KEEP_REJECTS,
    progress: Progress | None = None,
    after_chunk: Callable[[], None] | None = None,
) -> ImportResult:
    """Import ``path`` into the workspace; ``after_chunk`` (e.g. a commit) runs after each merged chunk."""
    if kind not in KINDS:
        raise Invalid(f"kind: must be one of {', '.join(KINDS)}")
    workspace = _workspace(session, workspace_id)
    result = ImportResult(kind=kind)
    with ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        total = os.fstat(raw.fileno()).st_size
        text = stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=""))
        header_line = text.readline()
        if not header_line.strip():
            raise Invalid("file: empty, expected a header row")
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        header = next(csv.reader([header_line], delimiter=delimiter))
        cols = Columns.from_header(kind, header)
        if missing := cols.missing(kind):
            raise Invalid(f"file: missing column(s) {', '.join(missing)}")
        out = None
        if rejects_path is not None:
            out = stack.enter_context(open(rejects_path, "w", encoding="utf-8", errors="surrogateescape", newline=""))
        rejects = _Rejects(result, header, out, keep_rejects)
        reader = csv.reader(text, delimiter=delimiter)

        def done() -> None:
            if after_chunk:
                after_chunk()
            if progress:
                progress(raw.tell(), total)

        rows = _rows(reader)
        if kind == "orders":
            _orders(session, workspace, cols, rows, rejects, result, chunk_rows, done)
        else:
            _flat(session, workspace, kind, cols, header, rows, rejects, result, chunk_rows, done)
    return result


def _workspace(session: Session, workspace_id: int) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise Invalid(f"workspace: {workspace_id} does not exist")
    return workspace


def _flat(
    session: Session,
    workspace: Workspace,
    kind: str,
    cols: Columns,
    header: Sequence[str],
    rows: Iterator[tuple[int, list[str]]],
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    done: Callable[[], None],
) -> None:
    """Contacts and spend: one row, one record."""
    batch: list[Any] = []

    def flush() -> None:
        if kind == "contacts":
            contacts: list[ContactIn] = batch
            result.counts.merge(merge_contacts(session, workspace.id, contacts, overwrite=True))
        else:
            spend: list[SpendIn] = batch
            result.counts.merge(upsert_spend(session, workspace.id, spend))
        batch.clear()
        done()

    for line, row in rows:
        result.rows += 1
        try:
            if _undecodable(row):
                raise RecordError("row: not valid UTF-8")
            if kind == "contacts":
                batch.append(contact_from_row(cols, row, header))
            else:
                batch.append(spend_from_row(cols, row, workspace.currency))
        except RecordError as exc:
            rejects.add(line, str(exc), row)
        if len(batch) >= chunk_rows:
            flush()
    flush()


def _orders(
    session: Session,
    workspace: Workspace,
    cols: Columns,
    rows: Iterator[tuple[int, list[str]]],
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    done: Callable[[], None],
) -> None:
    """Shopify's export: rows grouped by ``Name``; a chunk never ends inside an order whose rows are together."""
    try:
        tz: dt.tzinfo = ZoneInfo(workspace.display_timezone)
    except (KeyError, ValueError):
        tz = dt.UTC
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    pending = 0
    last_name: str | None = None

    def flush() -> None:
        orders: list[OrderIn] = []
        for group in groups.values():
            try:
                orders.append(order_from_rows(cols, group, workspace.currency, tz))
            except OrderRowsError as exc:
                for line, row in group:
                    reason = str(exc) if line == exc.line else f"order rejected with its line {exc.line}: {exc}"
                    rejects.add(line, reason, row)
        result.counts.merge(upsert_orders(session, workspace.id, orders, overwrite_contacts=False))
        groups.clear()
        done()

    for line, row in rows:
        result.rows += 1
        name = cols.get(row, "name")
        if _undecodable(row) or not name:
            rejects.add(line, "row: not valid UTF-8" if name else "Name: required", row)
            continue
        if pending >= chunk_rows and name != last_name:
            flush()
            pending = 0
        groups.setdefault(name, []).append((line, row))
        pending += 1
        last_name = name
    flush()
