"""Streaming CSV import of contacts, orders (Shopify export) and spend, in flat memory whatever the file size.

The file is merged chunk by chunk with set-based upserts. An order export is read in blocks of whole lines by
Arrow's CSV reader and converted column-wise (:mod:`storefunnel.ingest.csv_columnar`), with any order it does not
handle, and any block that is not one row per line, read by the csv module as everything else is (the exact
path). A row that cannot be taken goes to the reject list (and file) with its line number and reason while the
rest is imported; re-running the same file changes nothing because every kind has a natural key.
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

import numpy as np
from sqlalchemy.orm import Session

from storefunnel.cycle import dirty
from storefunnel.errors import Invalid
from storefunnel.ingest.csv_columnar import Block, ColumnarOrders, NotOneRowPerLine, odd_rows, read_block, row_parser
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
    StagedOrders,
    changed_order_contacts,
    merge_contacts,
    upsert_order_batch,
    upsert_spend,
)
from storefunnel.models import Workspace

CHUNK_ROWS = 20_000  # contacts and spend: Python objects per row
ORDER_CHUNK_ROWS = 100_000  # orders: Arrow columns, and fewer statements per row on the database
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
    vectorised: int = 0  # order rows the columnar path converted (the rest took the exact path)

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

    def __init__(self, raw: BinaryIO, *, start: bool = True) -> None:
        self.raw = raw
        self.suspect = False
        first = raw.read(self.BLOCK)
        self.rest = first.removeprefix(codecs.BOM_UTF8) if start else first
        self.head = first  # the file's first bytes, for the columnar reader's estimate of a line's length
        self.bom = len(first) - len(self.rest)

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


def _rows(reader: Any, key: int, before: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the file line each starts on (the header is line 1); ``key``: a column rarely blank;
    ``before``: the lines of the file before the reader's first."""
    previous = reader.line_num
    for row in reader:
        line = before + previous + 1
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
    chunk_rows: int | None = None,
    keep_rejects: int = KEEP_REJECTS,
    progress: Progress | None = None,
    after_chunk: Callable[[], None] | None = None,
    exact: bool = False,
) -> ImportResult:
    """Import ``path`` into the workspace; ``after_chunk`` (e.g. a commit) runs after each merged chunk.

    ``exact``: read every row with csv.reader and convert it in Python, never the columnar path (which gives the
    same result faster; the flag is there to compare the two). ``chunk_rows``: rows per merge (and commit);
    by default ``ORDER_CHUNK_ROWS`` for orders, ``CHUNK_ROWS`` for the rest.
    """
    if kind not in KINDS:
        raise Invalid(f"kind: must be one of {', '.join(KINDS)}")
    workspace = _workspace(session, workspace_id)
    if chunk_rows is None:
        chunk_rows = ORDER_CHUNK_ROWS if kind == "orders" else CHUNK_ROWS
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
            one_line = reader.line_num == 1 and not exact
            start = source.bom + len(header_line.encode("utf-8", "surrogateescape")) if one_line else None
            layout = _Layout(delimiter, len(header), start, source.head, after_chunk is not None)
            _orders(session, workspace, cols, source, _rows(reader, key), layout, rejects, result, chunk_rows, done)
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


@dataclass(frozen=True)
class _Layout:
    """What the columnar reader needs to know of the file: ``start`` is the byte where the rows begin (None when
    the header spans several lines: then only the exact path reads the file); ``commits``: each chunk is its own
    transaction."""

    delimiter: str
    width: int
    start: int | None
    head: bytes
    commits: bool


def _orders(
    session: Session,
    workspace: Workspace,
    cols: Columns,
    source: _Source,
    rows: Iterator[tuple[int, list[str]]],
    layout: _Layout,
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    done: Callable[[int], None],
) -> None:
    """Shopify's export: rows grouped by ``Name``; a chunk never ends inside an order whose rows are together.

    Chunks are parsed in a thread one step ahead of the merge, which is where the database spends its time. Each
    chunk is committed (``done``) after its orders' customers are marked for the sales cycle, as tracking does.
    """
    try:
        tz: dt.tzinfo = ZoneInfo(workspace.display_timezone)
    except (KeyError, ValueError):
        tz = dt.UTC
    pg = session.connection().dialect.name == "postgresql"
    fast = FastOrders.for_columns(cols, workspace.currency, tz, pg)
    chunks: Iterator[tuple[StagedOrders, int]]
    if fast is not None and layout.start is not None:
        columnar = ColumnarOrders(cols, fast, workspace.currency, tz, pg)
        chunks = _columnar_batches(cols, columnar, source, layout, rejects, result, chunk_rows, workspace.currency, tz)
    else:
        chunks = _order_batches(cols, source, rows, rejects, result, chunk_rows, workspace.currency, tz, pg, fast)
    # Marks hold their locks until commit and must come last in a transaction: before each commit, or at the end
    # when the whole import is one transaction (the API's).
    marks: set[int] = set()
    with closing(_ahead(chunks)) as ahead:
        for batch, position in ahead:
            result.counts.merge(upsert_order_batch(session, workspace.id, batch, overwrite_contacts=False))
            marks.update(changed_order_contacts(session))
            if layout.commits:
                dirty.mark(session, workspace.id, marks)
                marks.clear()
            done(position)
    dirty.mark(session, workspace.id, marks)


_BLOCK_CAP = 1 << 26  # bytes: a chunk of very long lines is cut short rather than held whole


def _blocks(raw: BinaryIO, offset: int, lines: int, size: int) -> Iterator[tuple[int, bytes, bool]]:
    """The file from ``offset`` in blocks of ``lines`` lines (fewer if they pass ``_BLOCK_CAP`` bytes), read
    ``size`` bytes at a time: (offset, data, last). The last block is known as such (its last order then needs no
    carrying over)."""
    raw.seek(offset)
    buffer = b""
    eof = False
    while True:
        while not eof and buffer.count(b"\n") <= lines and (len(buffer) < _BLOCK_CAP or b"\n" not in buffer):
            more = raw.read(size)
            eof = not more
            buffer += more
        ends = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
        if eof and len(ends) <= lines:
            if buffer and not buffer.endswith(b"\n") and not buffer.endswith(b"\r"):
                buffer += b"\n"  # a last line without its line feed reads the same with one
            yield offset, buffer, True
            return
        cut = int(ends[min(lines, len(ends)) - 1]) + 1
        yield offset, buffer[:cut], False
        offset += cut
        buffer = buffer[cut:]


def _trailing_run(names: Sequence[str]) -> int:
    """Index of the first row of the last order's run (blank names inside it belong to it): rows carried over."""
    last: str | None = None
    cut = len(names)
    for i in range(len(names) - 1, -1, -1):
        name = names[i]
        if not name:
            continue
        if last is None:
            last = name
        if name != last:
            break
        cut = i
    return cut if last is not None else len(names)


def _columnar_batches(
    cols: Columns,
    columnar: ColumnarOrders,
    source: _Source,
    layout: _Layout,
    rejects: _Rejects,
    result: ImportResult,
    chunk_rows: int,
    currency: str,
    tz: dt.tzinfo,
) -> Iterator[tuple[StagedOrders, int]]:
    """Chunks from blocks of about ``chunk_rows`` lines, each read by :mod:`csv_columnar` when it is one row per
    line; a block that is not goes through the exact path: alone if it has no quote or bare CR (so each of its
    lines is still one row), else with the rest of the file."""
    assert layout.start is not None
    head = layout.head[layout.start :]
    line_size = max(len(head) // max(head.count(b"\n"), 1), 16)
    size = min(max(chunk_rows * line_size, 1 << 16), _BLOCK_CAP)
    key = cols.index["name"]
    carry, carry_line = b"", 2
    for offset, data, last in _blocks(source.raw, layout.start, chunk_rows, size):
        block = Block(offset - len(carry), carry_line, carry + data)
        if not block.data:
            return
        end = offset + len(data)
        try:
            table, ends = read_block(block, layout.width, layout.delimiter, columnar.needed)
        except NotOneRowPerLine:
            if b'"' in block.data or block.data.count(b"\r") != block.data.count(b"\r\n"):
                raw = source.raw
                raw.seek(block.offset)
                rest = _Source(raw, start=False)
                reader = csv.reader(rest.lines(), delimiter=layout.delimiter)
                rows = _rows(reader, key, before=block.line - 1)
                fast = columnar.fast
                yield from _order_batches(
                    cols, rest, rows, rejects, result, chunk_rows, currency, tz, columnar.pg, fast
                )
                return
            batch, carry, carry_line = _block_exact(block, last, cols, columnar, layout, rejects, result, key)
            if batch is not None:
                yield batch, end - len(carry)
            continue
        full_row = row_parser(block.data, ends, layout.delimiter)
        odd = odd_rows(block.data, ends)
        names: list[str] = columnar.names(table).to_pylist()
        for i in odd.tolist():
            row = full_row(i)
            names[i] = row[key].strip() if key < len(row) else ""
        cut = len(names) if last else _trailing_run(names)
        carry = block.data[int(ends[cut - 1]) + 1 :] if cut else block.data
        carry_line = block.line + cut
        if not cut:
            continue
        batch_c, counted = columnar.convert(table.slice(0, cut), block.line, odd[odd < cut], full_row, rejects.add)
        result.rows += counted
        result.vectorised = columnar.vectorised
        yield batch_c, end - len(carry)


def _block_exact(
    block: Block,
    last: bool,
    cols: Columns,
    columnar: ColumnarOrders,
    layout: _Layout,
    rejects: _Rejects,
    result: ImportResult,
    key: int,
) -> tuple[OrderBatch | None, bytes, int]:
    """A block whose every line is one row (no quote, no bare CR) that Arrow did not take: blank lines, bytes that
    are not UTF-8, rows of another width. Read with csv.reader line by line, as the exact path would."""
    text = block.data.decode("utf-8", "surrogateescape")
    lines = io.StringIO(text, newline="").readlines()
    parsed = [next(csv.reader([ln], delimiter=layout.delimiter), []) for ln in lines]
    names = [row[key].strip() if key < len(row) else "" for row in parsed]
    cut = len(names) if last else _trailing_run(names)
    carry = "".join(lines[cut:]).encode("utf-8", "surrogateescape")
    if not cut:
        return None, carry, block.line
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for i in range(cut):
        row, name = parsed[i], names[i]
        if not ((key < len(row) and row[key].strip()) or (row and "".join(row).strip())):
            continue  # a blank row
        result.rows += 1
        line = block.line + i
        if not name or _undecodable(row):
            rejects.add(line, "row: not valid UTF-8" if name else "Name: required", row)
            continue
        groups.setdefault(name, []).append((line, row))
    batch = OrderBatch(pg=columnar.pg, fill_contacts=True)
    _add_groups(batch, groups, cols, columnar.fast, rejects, columnar.default_currency, columnar.tz)
    return batch, carry, block.line + cut


def _add_groups(
    batch: OrderBatch,
    groups: dict[str, list[tuple[int, list[str]]]],
    cols: Columns,
    fast: FastOrders | None,
    rejects: _Rejects,
    currency: str,
    tz: dt.tzinfo,
) -> None:
    """Orders grouped by name into ``batch`` through the exact path; a refused order's rows go to ``rejects``."""
    for group in groups.values():
        try:
            if fast is not None:
                fast.add(batch, group)
            else:
                batch.add(order_from_rows(cols, group, currency, tz))
        except OrderRowsError as exc:
            for line, row in group:
                reason = str(exc) if line == exc.line else f"order rejected with its line {exc.line}: {exc}"
                rejects.add(line, reason, row)
    groups.clear()
    if fast is not None:
        fast.trim()


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
) -> Iterator[tuple[StagedOrders, int]]:
    """Chunks of orders in staging form, with the file position after each; refused rows go to ``rejects``."""
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    pending = 0
    last_name: str | None = None
    i_name = cols.index["name"]

    def batch() -> OrderBatch:
        built = OrderBatch(pg=pg, fill_contacts=True)
        _add_groups(built, groups, cols, fast, rejects, currency, tz)
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
