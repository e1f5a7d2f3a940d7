"""Streaming CSV import of contacts, orders (Shopify export) and spend, in flat memory whatever the file size.

The file is read with the csv module and merged chunk by chunk (a few thousand rows) with set-based upserts.
A row that cannot be taken goes to the reject list (and file) with its line number and reason while the rest
is imported; re-running the same file changes nothing because every kind has a natural key.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.ingest.csv_formats import (
    KINDS,
    REQUIRED,
    Columns,
    FastOrders,
    OrderRowsError,
    contact_from_row,
    order_from_rows,
    spend_from_row,
)
from storefunnel.ingest.orders_upsert import (
    ContactIn,
    Counts,
    OrderBatch,
    RecordError,
    SpendIn,
    merge_contacts,
    upsert_order_batch,
    upsert_spend,
)
from storefunnel.models import Workspace

CHUNK_ROWS = 20_000
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


class _Source:
    """The file as text for csv.reader, decoded in blocks of whole lines.

    Each block is checked for bytes that are not UTF-8 at once (they decode to lone surrogates); only after a bad
    block has been seen are rows checked one by one, so a clean file pays nothing per row.
    """

    BLOCK = 1 << 20

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.suspect = False
        first = raw.read(self.BLOCK)
        self.rest = first.removeprefix(codecs.BOM_UTF8)

    def header_line(self) -> str:
        end = self.rest.find(b"\n")
        line = self.rest if end < 0 else self.rest[: end + 1]
        return line.decode("utf-8", "surrogateescape")

    def lines(self) -> Iterator[str]:
        while True:
            data = self.raw.read(self.BLOCK)
            buffer = self.rest + data
            if data:
                cut = buffer.rfind(b"\n") + 1 or buffer.rfind(b"\r", 0, len(buffer) - 1) + 1
                if not cut:
                    self.rest = buffer  # no line break yet: read on
                    continue
            else:
                cut = len(buffer)
            block, self.rest = buffer[:cut], buffer[cut:]
            text = block.decode("utf-8", "surrogateescape")
            if not self.suspect and not text.isascii():
                self.suspect = _undecodable((text,))
            yield from io.StringIO(text, newline="")
            if not data:
                return


def _rows(reader: Any, key: int) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the file line each starts on (the header is line 1); ``key``: a column rarely blank."""
    previous = reader.line_num
    for row in reader:
        line = previous + 1
        previous = reader.line_num
        if (key < len(row) and row[key].strip()) or (row and "".join(row).strip()):
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


_T = TypeVar("_T")


def _ahead(items: Iterator[_T]) -> Generator[_T, None, None]:
    """Run ``items`` one step ahead in a thread: the next chunk is parsed while the database merges this one.

    The queue holds one item, so memory stays that of a few chunks; closing the generator stops the thread.
    """
    box: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((0, item)):
                    return
            put((1, None))
        except BaseException as exc:
            put((2, exc))

    thread = threading.Thread(target=run, name="csv-import-parse", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == 0:
                yield value
            elif kind == 1:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


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
        source = _Source(raw)
        header_line = source.header_line()
        if not header_line.strip():
            raise Invalid("file: empty, expected a header row")
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        reader = csv.reader(source.lines(), delimiter=delimiter)
        header = next(reader)
        cols = Columns.from_header(kind, header)
        if missing := cols.missing(kind):
            raise Invalid(f"file: missing column(s) {', '.join(missing)}")
        out = None
        if rejects_path is not None:
            out = stack.enter_context(open(rejects_path, "w", encoding="utf-8", errors="surrogateescape", newline=""))
        rejects = _Rejects(result, header, out, keep_rejects)

        def done(position: int) -> None:
            if after_chunk:
                after_chunk()
            if progress:
                progress(position, total)

        key = cols.index[REQUIRED[kind][0]]
        if kind == "orders":
            _orders(session, workspace, cols, source, _rows(reader, key), rejects, result, chunk_rows, done)
        else:
            _flat(session, workspace, kind, cols, header, source, _rows(reader, key), rejects, result, chunk_rows, done)
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
    source: _Source,
    rows: Iterator[tuple[int, list[str]]],
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    done: Callable[[int], None],
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
        done(source.raw.tell())

    for line, row in rows:
        result.rows += 1
        try:
            if source.suspect and _undecodable(row):
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
    source: _Source,
    rows: Iterator[tuple[int, list[str]]],
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    done: Callable[[int], None],
) -> None:
    """Shopify's export: rows grouped by ``Name``; a chunk never ends inside an order whose rows are together.

    Chunks are parsed in a thread one step ahead of the merge, which is where the database spends its time.
    """
    try:
        tz: dt.tzinfo = ZoneInfo(workspace.display_timezone)
    except (KeyError, ValueError):
        tz = dt.UTC
    pg = session.connection().dialect.name == "postgresql"
    fast = FastOrders.for_columns(cols, workspace.currency, tz, pg)
    chunks = _order_batches(cols, source, rows, rejects, result, chunk_rows, workspace.currency, tz, pg, fast)
    with closing(_ahead(chunks)) as ahead:
        for batch, position in ahead:
            result.counts.merge(upsert_order_batch(session, workspace.id, batch, overwrite_contacts=False))
            done(position)


def _order_batches(
    cols: Columns,
    source: _Source,
    rows: Iterator[tuple[int, list[str]]],
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    currency: str,
    tz: dt.tzinfo,
    pg: bool,
    fast: FastOrders | None,
) -> Iterator[tuple[OrderBatch, int]]:
    """Chunks of orders in staging form, with the file position after each; refused rows go to ``rejects``."""
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    pending = 0
    last_name: str | None = None
    i_name = cols.index["name"]

    def batch() -> OrderBatch:
        built = OrderBatch(pg=pg)
        for group in groups.values():
            try:
                if fast is not None:
                    fast.add(built, group)
                else:
                    built.add(order_from_rows(cols, group, currency, tz))
            except OrderRowsError as exc:
                for line, row in group:
                    reason = str(exc) if line == exc.line else f"order rejected with its line {exc.line}: {exc}"
                    rejects.add(line, reason, row)
        groups.clear()
        if fast is not None:
            fast.trim()
        return built

    for line, row in rows:
        result.rows += 1
        name = row[i_name].strip() if i_name < len(row) else ""
        if not name or (source.suspect and _undecodable(row)):
            rejects.add(line, "row: not valid UTF-8" if name else "Name: required", row)
            continue
        if pending >= chunk_rows and name != last_name:
            yield batch(), source.raw.tell()
            pending = 0
        group = groups.get(name)
        if group is None:
            groups[name] = [(line, row)]
        else:
            group.append((line, row))
        pending += 1
        last_name = name
    yield batch(), source.raw.tell()
