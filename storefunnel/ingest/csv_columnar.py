"""The vectorised path of the Shopify order import: whole blocks of rows checked and converted column by column.

Python handling row by row costs about 30 µs a line; a 1 GB export would spend most of its time there. Here a block
of whole lines (about one chunk) is parsed by Arrow's CSV reader and every order whose rows are all of the common
shape is validated and converted with Arrow compute kernels and NumPy: money to minor units, timestamps, emails,
statuses, keys. The few distinct values a column repeats (currencies, prices, emails, names) are converted once each
by the very functions of the exact path, so a value is accepted or refused the same way on both paths.

Everything else goes, one order at a time, to the exact path (:class:`~storefunnel.ingest.csv_formats.FastOrders`
and ``order_from_rows``), from its cells as ``csv.reader`` reads them: a row with a quote or an unusual space, an
order whose rows are not together, any refused value (the exact path then writes the same refusal), a currency other
than the block's main one. Contacts and products are folded in the order the exact path folds them, so the staged
rows, and so the database, are the same whichever path an order took; ``tests/ingest/test_csv_columnar.py`` checks
this on whole files.

A block is taken this way only if each of its lines is exactly one row (no quoted line break, no bare CR, no blank
line, valid UTF-8, the header's number of columns): then row *i* of the block starts on line *start + i*, so reject
line numbers stay exact. The importer sends any other block to the exact path.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from storefunnel.ingest import shopify
from storefunnel.ingest.csv_formats import (
    FAST_ORDER_COLUMNS,
    Columns,
    FastOrders,
    OrderRowsError,
    parse_bool,
)
from storefunnel.ingest.orders_upsert import (
    ORDER_FIELDS,
    STAGE_CONTACTS,
    STAGE_LINES,
    STAGE_ORDERS,
    STAGE_PRODUCTS,
    ContactIn,
    OrderBatch,
    RecordError,
    check_currency,
    clean_email,
    currency_exponent,
    dumps,
    parse_datetime,
    sqlite_ts,
    to_minor,
)

# What str.strip() removes beyond these ASCII spaces is rare; a line holding any of it takes the exact path, as
# does a line with a quote (csv.reader and Arrow could read odd quoting differently).
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_ODD = re.compile(
    rb'["\x1c-\x1f]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80'
)
_MARKERS = (b'"', b"\x1c", b"\x1d", b"\x1e", b"\x1f", b"\xc2", b"\xe1", b"\xe2", b"\xe3")
_LEADS = np.zeros(256, dtype=bool)
_LEADS[[0xC2, 0xE1, 0xE2, 0xE3]] = True  # the first bytes of the odd spaces of more than one byte
# Shopify's "2025-10-07 09:50:26 +0200": parsed by Arrow when it is surely valid, else by parse_datetime.
_SHOPIFY_TIME = r"^(19|20|21)\d\d-\d\d-\d\d ([01]\d|2[0-3]):[0-5]\d:[0-5]\d [+-]([01]\d|2[0-3])[0-5]\d$"
_QUANTITY = r"^\d{1,6}$"
_MONEY_LIMIT = 10**13  # |amount| in minor units beyond which products could overflow 64 bits: exact path
_US = pa.timestamp("us", tz="UTC")


class NotOneRowPerLine(Exception):
    """The block cannot be read line by line; the importer reads it with csv.reader instead."""


@dataclass
class Block:
    """Whole lines of the file after the header: ``data`` starts on line ``line`` at byte ``offset``."""

    offset: int
    line: int
    data: bytes


def read_block(block: Block, width: int, delimiter: str, needed: Sequence[int]) -> tuple[pa.Table, np.ndarray]:
    """Parse ``block`` with Arrow (only the ``needed`` columns, as text); returns the table and line ends.

    Raises :class:`NotOneRowPerLine` unless each line of the block is exactly one row of ``width`` cells.
    """
    data = block.data
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    if not len(ends) or ends[-1] != len(data) - 1:
        raise NotOneRowPerLine
    if b"\r" in data and (data.count(b"\r") != data.count(b"\r\n") or b"\n\r\n" in data or data[:1] == b"\r"):
        raise NotOneRowPerLine
    if b"\n\n" in data or data[:1] == b"\n":
        raise NotOneRowPerLine  # blank lines, which Arrow would skip
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotOneRowPerLine from None
    names = [f"c{i}" for i in range(width)]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=max(len(data), 1 << 20)),
            # Without a quote there can be no line break in a value, and Arrow reads faster knowing it.
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=b'"' in data),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[names[i] for i in needed],
                column_types={names[i]: pa.string() for i in needed},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise NotOneRowPerLine from None
    if table.num_rows != len(ends):
        raise NotOneRowPerLine
    return table.combine_chunks(), ends


def odd_rows(data: bytes, ends: np.ndarray) -> np.ndarray:
    """Row indexes whose line holds a quote or a space str.strip() knows and Arrow's trim may not."""
    if not any(marker in data for marker in _MARKERS):
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    lead = (raw == 0x22) | ((raw >= 0x1C) & (raw <= 0x1F)) | ((raw >= 0xC2) & (raw <= 0xE3) & _LEADS[raw])
    found = [int(i) for i in np.flatnonzero(lead) if _ODD.match(data, int(i))]
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.searchsorted(ends, np.array(found, dtype=np.int64)))


def _arr(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)


def _trim(values: pa.Array) -> pa.Array:
    return pc.utf8_trim(values, characters=_ASCII_SPACE)


def _mapped(values: pa.Array, convert: Callable[[str], Any]) -> list[Any]:
    """``convert`` applied to each distinct value once, spread back over the rows (as a Python list)."""
    encoded = pc.dictionary_encode(values)
    converted = [convert(v) for v in encoded.dictionary.to_pylist()]
    return [converted[i] for i in encoded.indices.to_numpy(zero_copy_only=False)]


_BAD = object()


def _mapped_np(values: pa.Array, convert: Callable[[str], Any], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_mapped` into a NumPy array; a value ``convert`` refuses (RecordError) is flagged bad."""
    encoded = pc.dictionary_encode(values)
    out = []
    bad = []
    for text in encoded.dictionary.to_pylist():
        try:
            out.append(convert(text))
            bad.append(False)
        except (RecordError, ValueError):
            out.append(0)
            bad.append(True)
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=dtype)[idx], np.asarray(bad, dtype=bool)[idx]


@dataclass
class ColumnBatch:
    """A chunk's staging rows as Arrow tables, in the column order of the stage tables; see ``OrderBatch``."""

    pg: bool
    contacts: pa.Table
    products: pa.Table
    orders: pa.Table
    lines: pa.Table

    def staged(self, db: Any) -> tuple[Any, Any, Any, Any]:
        return self.contacts, self.products, self.orders, self.lines

    @property
    def order_count(self) -> int:
        return int(self.orders.num_rows)


def _schemas(pg: bool) -> dict[str, pa.Schema]:
    ts = _US if pg else pa.string()
    text, i64 = pa.string(), pa.int64()
    types = {"text": text, "int": i64, "bool": pa.bool_(), "ts": ts, "json": text, "date": text}
    out = {}
    for stage in (STAGE_CONTACTS, STAGE_PRODUCTS, STAGE_ORDERS, STAGE_LINES):
        loaded = ORDER_FIELDS if stage is STAGE_ORDERS else stage.loaded_names
        out[stage.name] = pa.schema([(c, types[t]) for c, t in stage.columns if c in loaded])
    return out


@dataclass
class _Slow:
    """Orders the exact path took in this block, with where each would sit in the exact path's fold."""

    orders: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    products: list[tuple[int, int, str, str, int, str]] = field(default_factory=list)
    contacts: list[tuple[int, ContactIn]] = field(default_factory=list)


RejectFn = Callable[[int, str, Sequence[str]], None]


class ColumnarOrders:
    """Turns parsed blocks of a Shopify export into :class:`ColumnBatch` chunks (see the module docstring)."""

    def __init__(self, cols: Columns, fast: FastOrders, default_currency: str, tz: dt.tzinfo, pg: bool) -> None:
        self.cols = cols
        self.fast = fast
        self.default_currency = default_currency
        self.tz = tz
        self.pg = pg
        self.needed = sorted({cols.index[c] for c in FAST_ORDER_COLUMNS})
        self.schemas = _schemas(pg)
        self.vectorised = 0

    def col(self, table: pa.Table, name: str) -> pa.Array:
        return _arr(table, f"c{self.cols.index[name]}")

    # ----------------------------------------------------------------------------------------- block level

    def names(self, table: pa.Table) -> pa.Array:
        return _trim(self.col(table, "name"))

    def convert(
        self,
        table: pa.Table,
        line0: int,
        odd: np.ndarray,
        full_row: Callable[[int], list[str]],
        reject: RejectFn,
    ) -> tuple[ColumnBatch, int]:
        """The block's rows as staging tables; returns the batch and the number of rows counted (blank ones not)."""
        n = table.num_rows
        names_arr = self.names(table)
        names: list[str] = names_arr.to_pylist()
        slow_row = np.zeros(n, dtype=bool)
        slow_row[odd] = True
        key = self.cols.index["name"]
        kept = np.ones(n, dtype=bool)
        counted = n
        for i in odd.tolist():
            names[i] = row[key].strip() if key < len(row := full_row(i)) else ""
        for i in np.flatnonzero(pc.equal(names_arr, "").to_numpy(zero_copy_only=False)).tolist() + odd.tolist():
            if names[i] or not kept[i]:
                continue
            kept[i] = False
            row = full_row(i)
            if "".join(row).strip():
                reject(line0 + i, "Name: required", row)
            else:
                counted -= 1  # a blank row is no row

        # Group rows by name as the exact path does; an order whose rows are not together goes to it whole.
        kept_idx = np.flatnonzero(kept)
        codes = pc.dictionary_encode(pa.array([names[i] for i in kept_idx] if len(odd) else names_arr.filter(kept)))
        code = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        m = len(kept_idx)
        starts = np.ones(m, dtype=bool)
        if m:
            starts[1:] = code[1:] != code[:-1]
        runs_per_code = np.bincount(code[starts], minlength=len(codes.dictionary)) if m else np.zeros(0, np.int64)
        run_id = np.cumsum(starts) - 1
        run_first = kept_idx[starts]  # chunk row of each run's first row: the order's place in the fold
        run_slow = np.zeros(len(run_first), dtype=bool)
        if m:
            np.logical_or.at(run_slow, run_id, slow_row[kept_idx])
            run_slow |= runs_per_code[code[starts]] > 1
        candidate = ~run_slow[run_id] if m else np.zeros(0, dtype=bool)

        values: dict[str, Any] | None = None
        good_rows = np.zeros(0, dtype=np.int64)
        if candidate.any():
            good_rows, values = self._vector(table, kept_idx[candidate], run_id[candidate])
        taken = np.zeros(n, dtype=bool)
        taken[good_rows] = True
        self.vectorised += len(good_rows)
        # The rest, grouped by name in order of first appearance, through the exact path.
        groups: dict[str, tuple[int, list[tuple[int, list[str]]]]] = {}
        for i in kept_idx[~taken[kept_idx]].tolist():
            name = names[i]
            entry = groups.get(name)
            if entry is None:
                groups[name] = (i, [(line0 + i, full_row(i))])
            else:
                entry[1].append((line0 + i, full_row(i)))
        slow = _Slow()
        for first, rows in sorted(groups.values(), key=lambda g: g[0]):
            tiny = OrderBatch(pg=self.pg, fill_contacts=True)
            try:
                self.fast.add(tiny, rows)
            except OrderRowsError as exc:
                for line, row in rows:
                    reason = str(exc) if line == exc.line else f"order rejected with its line {exc.line}: {exc}"
                    reject(line, reason, row)
                continue
            slow.orders.extend(tiny.orders)
            slow.lines.extend(tiny.lines)
            for position, (pkey, (pname, price, currency)) in enumerate(tiny.products.items()):
                slow.products.append((first, position, pkey, pname, price, currency))
            slow.contacts.extend((first, c) for c in tiny.contacts.values())
        self.fast.trim()
        return self._assemble(values, slow), counted

    # ----------------------------------------------------------------------------------------- vectorised

    def _vector(self, table: pa.Table, rows: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Validate and convert the candidate orders (``rows``: chunk rows, ``run``: their order); returns the
        chunk rows of the orders taken and their values."""
        t = table.take(pa.array(rows))
        heads = np.flatnonzero(np.concatenate(([True], run[1:] != run[:-1])))
        order_of = np.cumsum(np.concatenate(([True], run[1:] != run[:-1]))) - 1
        n_orders = len(heads)
        h = t.take(pa.array(heads))
        bad = np.zeros(n_orders, dtype=bool)

        def row_bad(flags: np.ndarray) -> None:
            if flags.any():
                np.logical_or.at(bad, order_of[flags], True)

        name = _trim(self.col(h, "name"))
        bad |= pc.greater(pc.utf8_length(name), 128).to_numpy(zero_copy_only=False)
        created = _trim(self.col(h, "created at"))
        bad |= pc.equal(created, "").to_numpy(zero_copy_only=False)

        def currency_of(text: str) -> str:
            return check_currency(text.strip() or self.default_currency, "Currency")

        currency_codes, currency_bad = _mapped_np(self.col(h, "currency"), currency_of, object)
        bad |= currency_bad
        ok_codes = currency_codes[~bad]
        if not len(ok_codes):
            return np.zeros(0, dtype=np.int64), None
        values, counts = np.unique(ok_codes.astype(str), return_counts=True)
        currency = str(values[np.argmax(counts)])
        bad |= currency_codes != currency  # other currencies: the exact path

        exponent = currency_exponent(currency)

        def money(values: pa.Array, optional: bool) -> tuple[np.ndarray, np.ndarray]:
            """Amounts as minor units: the usual "12.50" and "12" by Arrow, anything else by ``to_minor``."""

            def convert(text: str) -> int:
                stripped = text.strip()
                if not stripped and optional:
                    return 0
                minor = to_minor(stripped, currency, "amount")
                if abs(minor) >= _MONEY_LIMIT:
                    raise RecordError("amount: too large for the vectorised path")
                return minor

            text = _trim(values)
            out = np.zeros(len(text), dtype=np.int64)
            done = np.zeros(len(text), dtype=bool)
            if exponent:
                decimals = pc.match_substring_regex(text, rf"^-?\d{{1,10}}\.\d{{{exponent}}}$")
                mask = decimals.to_numpy(zero_copy_only=False)
                if mask.any():
                    digits = pc.replace_substring(text.filter(decimals), ".", "")
                    out[mask] = pc.cast(digits, pa.int64()).to_numpy()
                    done |= mask
            whole = pc.match_substring_regex(text, r"^-?\d{1,10}$")
            mask = whole.to_numpy(zero_copy_only=False)
            if mask.any():
                out[mask] = pc.cast(text.filter(whole), pa.int64()).to_numpy() * 10**exponent
                done |= mask
            if optional:
                done |= pc.equal(text, "").to_numpy(zero_copy_only=False)  # out is already 0 there
            bad = np.zeros(len(text), dtype=bool)
            if not done.all():
                rest = ~done
                out[rest], bad[rest] = _mapped_np(values.filter(pa.array(rest)), convert, np.int64)
            return out, bad

        total, b = money(self.col(h, "total"), False)
        bad |= b
        shipping, b = money(self.col(h, "shipping"), True)
        bad |= b
        tax, b = money(self.col(h, "taxes"), True)
        bad |= b
        discount, b = money(self.col(h, "discount amount"), True)
        bad |= b

        placed, b = self._placed_at(created)
        bad |= b

        status_text = _trim(self.col(h, "financial status"))
        cancelled = pc.not_equal(_trim(self.col(h, "cancelled at")), "")
        status_key = pc.binary_join_element_wise(status_text, pc.if_else(cancelled, "1", "0"), "\x00")

        def status_of(text: str) -> str:
            fin, _, flag = text.rpartition("\x00")
            return shopify.order_status(fin, flag == "1")

        status, b = _mapped_np(status_key, status_of, object)
        bad |= b

        # Lines.
        qty_text = _trim(self.col(t, "lineitem quantity"))
        qty_ok = pc.match_substring_regex(qty_text, _QUANTITY).to_numpy(zero_copy_only=False)
        row_bad(~qty_ok)
        quantity = np.zeros(len(rows), dtype=np.int64)
        if qty_ok.any():
            quantity[qty_ok] = pc.cast(qty_text.filter(pa.array(qty_ok)), pa.int64()).to_numpy()
        price, b = money(self.col(t, "lineitem price"), False)
        row_bad(b)
        line_discount, b = money(self.col(t, "lineitem discount"), True)
        row_bad(b)
        title = _trim(self.col(t, "lineitem name"))
        sku = _trim(self.col(t, "lineitem sku"))
        row_bad(pc.greater(pc.utf8_length(sku), 100).to_numpy(zero_copy_only=False))
        has_sku = pc.not_equal(sku, "")
        custom = _mapped(pc.if_else(has_sku, "", title), lambda text: shopify.product_key(None, None, None, text))
        product_key = pc.if_else(has_sku, sku, pa.array(custom, pa.string()))
        sku_or_null = pc.if_else(has_sku, sku, pa.scalar(None, pa.string()))
        title = pc.utf8_slice_codeunits(title, 0, 300)

        # The first non-blank email of each order, as FastOrders reads it.
        email_text = _trim(self.col(t, "email"))
        with_email = pc.not_equal(email_text, "").to_numpy(zero_copy_only=False)
        big = len(rows)
        first_email = np.minimum.reduceat(np.where(with_email, np.arange(len(rows)), big), heads)
        has_email = first_email < big
        order_email = email_text.take(pa.array(np.where(has_email, first_email, 0)))
        order_email = pc.if_else(pa.array(has_email), order_email, "")
        emails, b = _mapped_np(order_email, lambda text: clean_email(text, "Email") or "", object)
        bad |= b & has_email
        accepts, b = _mapped_np(
            self.col(h, "accepts marketing"), lambda text: parse_bool(text, "Accepts Marketing"), object
        )
        bad |= b & has_email

        # The orders taken; all arrays below are cut down to them.
        good = ~bad
        row_good = good[order_of]
        lines_n = np.bincount(order_of, minlength=n_orders)[good]
        order_sel = pa.array(good)
        row_sel = pa.array(row_good)
        gross = price * quantity
        line_total = gross - line_discount
        subtotal = np.add.reduceat(gross, heads)[good] if n_orders else gross[:0]
        position = np.arange(len(rows)) - heads[order_of]

        keep = {
            "name": name.filter(order_sel),
            "placed": placed[good],
            "currency": currency,
            "subtotal": subtotal,
            "discount": discount[good],
            "shipping": shipping[good],
            "tax": tax[good],
            "total": total[good],
            "status": status[good],
            "status_text": status_text.filter(order_sel),
            "codes": _mapped(self.col(h, "discount code").filter(order_sel), _codes_json),
            "shopify_id": _trim(self.col(h, "id")).filter(order_sel),
            "source": _trim(self.col(h, "source")).filter(order_sel),
            "has_email": has_email[good],
            "email": emails[good],
            "accepts": accepts[good],
            "billing_name": self.col(h, "billing name").filter(order_sel),
            "phone": self.col(h, "billing phone").filter(order_sel),
            "country": self.col(h, "billing country").filter(order_sel),
            "province_name": _trim(self.col(h, "billing province name")).filter(order_sel),
            "province": self.col(h, "billing province").filter(order_sel),
            "city": self.col(h, "billing city").filter(order_sel),
            "first_row": rows[heads[good]],
            "lines_n": lines_n,
            "l_position": position[row_good],
            "l_key": product_key.filter(row_sel),
            "l_sku": sku_or_null.filter(row_sel),
            "l_title": title.filter(row_sel),
            "l_quantity": quantity[row_good],
            "l_price": price[row_good],
            "l_discount": line_discount[row_good],
            "l_total": line_total[row_good],
        }
        return rows[row_good], keep

    def _placed_at(self, created: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """``Created at`` as UTC microseconds since the epoch; Arrow parses the common layout, the rest goes through
        ``parse_datetime`` once per distinct value."""
        n = len(created)
        out = np.zeros(n, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        common = pc.match_substring_regex(created, _SHOPIFY_TIME).to_numpy(zero_copy_only=False)
        if common.any():
            sel = pa.array(common)
            texts = created.filter(sel)
            parsed = pc.strptime(texts, format="%Y-%m-%d %H:%M:%S %z", unit="us", error_is_null=True)
            day = pc.utf8_slice_codeunits(texts, 0, 10)
            # Arrow rolls 2025-02-30 over to March: a date that does not print back as written goes the long way.
            same_day = pc.equal(
                pc.strftime(pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True), format="%Y-%m-%d"),
                day,
            )
            fine = pc.and_(pc.is_valid(parsed), pc.fill_null(same_day, False)).to_numpy(zero_copy_only=False)
            where = np.flatnonzero(common)
            out[where[fine]] = pc.cast(parsed.filter(pa.array(fine)), pa.int64()).to_numpy()
            common[where[~fine]] = False
        if not common.all():
            tz = self.tz

            def micros(text: str) -> int:
                moment = parse_datetime(text, "Created at", tz)
                return (moment - _EPOCH) // _MICRO

            rest = ~common
            values, b = _mapped_np(created.filter(pa.array(rest)), micros, np.int64)
            out[rest] = values
            bad[rest] = b
        return out, bad

    # ----------------------------------------------------------------------------------------- assembly

    def _assemble(self, v: dict[str, Any] | None, slow: _Slow) -> ColumnBatch:
        schemas = self.schemas
        parts: dict[str, list[pa.Table]] = {name: [] for name in schemas}
        contact_parts: list[pa.Table] = []
        product_parts: list[pa.Table] = []
        if v is not None and len(v["name"]):
            self._fast_tables(v, parts, contact_parts, product_parts)
        if slow.orders:
            parts[STAGE_ORDERS.name].append(_from_rows(slow.orders, schemas[STAGE_ORDERS.name]))
        if slow.lines:
            parts[STAGE_LINES.name].append(_from_rows(slow.lines, schemas[STAGE_LINES.name]))
        if slow.products:
            product_parts.append(
                pa.table(
                    {
                        "rank_a": pa.array([p[0] for p in slow.products], pa.int64()),
                        "rank_b": pa.array([p[1] for p in slow.products], pa.int64()),
                        "sku": pa.array([p[2] for p in slow.products], pa.string()),
                        "name": pa.array([p[3] for p in slow.products], pa.string()),
                        "price": pa.array([p[4] for p in slow.products], pa.int64()),
                        "currency": pa.array([p[5] for p in slow.products], pa.string()),
                    }
                )
            )
        if slow.contacts:
            contact_parts.append(self._slow_contacts(slow.contacts))

        def table(stage: str, tables: list[pa.Table]) -> pa.Table:
            schema = schemas[stage]
            if not tables:
                return schema.empty_table()
            return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])

        products = self._first_products(product_parts)
        contacts = self._fold_contacts(contact_parts)
        return ColumnBatch(
            pg=self.pg,
            contacts=table(STAGE_CONTACTS.name, [contacts] if contacts is not None else []),
            products=table(STAGE_PRODUCTS.name, [products] if products is not None else []),
            orders=table(STAGE_ORDERS.name, parts[STAGE_ORDERS.name]),
            lines=table(STAGE_LINES.name, parts[STAGE_LINES.name]),
        )

    def _ts(self, micros: np.ndarray) -> pa.Array:
        stamps = pa.array(micros, pa.int64()).cast(_US)
        return stamps if self.pg else pc.strftime(stamps, format="%Y-%m-%d %H:%M:%S")

    def _fast_tables(
        self,
        v: dict[str, Any],
        parts: dict[str, list[pa.Table]],
        contact_parts: list[pa.Table],
        product_parts: list[pa.Table],
    ) -> None:
        n = len(v["name"])
        currency = v["currency"]
        has_email = v["has_email"]
        contact_key = pa.array([f"e:{e}" if h else None for e, h in zip(v["email"], has_email, strict=True)])
        # The lines' digest, exactly as the exact path prints it.
        digest_lines = pc.binary_join_element_wise(
            v["l_key"],
            pc.fill_null(v["l_sku"], "None"),
            v["l_title"],
            pa.array(v["l_quantity"]).cast(pa.string()),
            pa.array(v["l_price"]).cast(pa.string()),
            pa.array(v["l_discount"]).cast(pa.string()),
            pa.array(v["l_total"]).cast(pa.string()),
            "|",
        )
        offsets = np.concatenate(([0], np.cumsum(v["lines_n"]))).astype(np.int32)
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), digest_lines), "\n")
        digests = [hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16] for text in joined.to_pylist()]
        properties = _properties(v["status_text"], pa.array(digests, pa.string()), v["shopify_id"], v["source"])
        placed = self._ts(v["placed"])
        parts[STAGE_ORDERS.name].append(
            pa.table(
                {
                    "source": pa.array([shopify.SOURCE] * n, pa.string()),
                    "external_id": v["name"],
                    "contact_key": contact_key,
                    "placed_at": placed,
                    "currency": pa.array([currency] * n, pa.string()),
                    "subtotal": v["subtotal"],
                    "discount": v["discount"],
                    "shipping": v["shipping"],
                    "tax": v["tax"],
                    "total": v["total"],
                    "status": pa.array(v["status"].tolist(), pa.string()),
                    "discount_codes": pa.array(v["codes"], pa.string()),
                    "properties": pa.array(properties, pa.string()),
                    "source_updated_at": pa.nulls(n, pa.string()),
                }
            )
        )
        order_names = v["name"].take(pa.array(np.repeat(np.arange(n), v["lines_n"])))
        parts[STAGE_LINES.name].append(
            pa.table(
                {
                    "external_id": order_names,
                    "position": v["l_position"],
                    "product_key": v["l_key"],
                    "sku": v["l_sku"],
                    "name": v["l_title"],
                    "quantity": v["l_quantity"],
                    "unit_price": v["l_price"],
                    "discount": v["l_discount"],
                    "total": v["l_total"],
                }
            )
        )
        product_parts.append(
            pa.table(
                {
                    "rank_a": np.repeat(v["first_row"], v["lines_n"]),
                    "rank_b": v["l_position"],
                    "sku": v["l_key"],
                    "name": v["l_title"],
                    "price": v["l_price"],
                    "currency": pa.array([currency] * len(v["l_key"]), pa.string()),
                }
            )
        )
        if not has_email.any():
            return
        sel = pa.array(has_email)
        names = _mapped(v["billing_name"].filter(sel), shopify.split_name)
        accepts = v["accepts"][has_email]
        consent = [True if a else None for a in accepts.tolist()]
        consented = pa.array([bool(a) for a in accepts.tolist()])
        province_name = v["province_name"].filter(sel)
        region = pc.if_else(pc.not_equal(province_name, ""), province_name, v["province"].filter(sel))
        emails = v["email"][has_email].tolist()
        contact_parts.append(
            pa.table(
                {
                    "rank": v["first_row"][has_email],
                    "key": pa.array([f"e:{e}" for e in emails], pa.string()),
                    "email": pa.array(emails, pa.string()),
                    "external_id": pa.nulls(len(emails), pa.string()),
                    "first_name": pa.array([f for f, _ in names], pa.string()),
                    "last_name": pa.array([last for _, last in names], pa.string()),
                    "phone": _clip(v["phone"].filter(sel), 40),
                    "country": pa.array(_mapped(v["country"].filter(sel), shopify.country), pa.string()),
                    "region": _clip(region, 100),
                    "city": _clip(v["city"].filter(sel), 100),
                    "age_band": pa.nulls(len(emails), pa.string()),
                    "gender": pa.nulls(len(emails), pa.string()),
                    "traits": pa.nulls(len(emails), pa.string()),
                    "email_consent": pa.array(consent, pa.bool_()),
                    "consent_source": pc.if_else(consented, shopify.SOURCE, pa.scalar(None, pa.string())),
                    "consent_at": pc.if_else(consented, placed.filter(sel), pa.scalar(None, placed.type)),
                }
            )
        )

    def _slow_contacts(self, contacts: list[tuple[int, ContactIn]]) -> pa.Table:
        ts = [c.consent_at for _, c in contacts]
        if self.pg:
            consent_at = pa.array([t.astimezone(dt.UTC) if t else None for t in ts], _US)
        else:
            consent_at = pa.array([sqlite_ts(t.astimezone(dt.UTC)) if t else None for t in ts], pa.string())
        cs = [c for _, c in contacts]
        return pa.table(
            {
                "rank": pa.array([r for r, _ in contacts], pa.int64()),
                "key": pa.array([c.key for c in cs], pa.string()),
                "email": pa.array([c.email for c in cs], pa.string()),
                "external_id": pa.array([c.external_id for c in cs], pa.string()),
                "first_name": pa.array([c.first_name for c in cs], pa.string()),
                "last_name": pa.array([c.last_name for c in cs], pa.string()),
                "phone": pa.array([c.phone for c in cs], pa.string()),
                "country": pa.array([c.country for c in cs], pa.string()),
                "region": pa.array([c.region for c in cs], pa.string()),
                "city": pa.array([c.city for c in cs], pa.string()),
                "age_band": pa.array([c.age_band for c in cs], pa.string()),
                "gender": pa.array([c.gender for c in cs], pa.string()),
                "traits": pa.array([dumps(c.traits) if c.traits else None for c in cs], pa.string()),
                "email_consent": pa.array([c.email_consent for c in cs], pa.bool_()),
                "consent_source": pa.array([c.consent_source for c in cs], pa.string()),
                "consent_at": consent_at,
            }
        )

    def _fold_contacts(self, parts: list[pa.Table]) -> pa.Table | None:
        """One staged contact per key, each field the first non-empty value in the exact path's order.

        The first, as ``ContactIn.merge(fill_only=True)`` folds and as the database merges order details into a
        stored contact: the result does not depend on where chunks end. Consent is only ever true or empty here,
        with its source and time set exactly when it is true, so the first of each is the grant's.
        """
        if not parts:
            return None
        both = pa.concat_tables(parts)
        both = both.take(pc.sort_indices(both, sort_keys=[("rank", "ascending")]))
        fields = [c for c in both.column_names if c not in ("rank", "key")]
        if both.column("traits").null_count != both.num_rows:
            # Traits merge as dicts, which "last" would not do; contacts from orders never carry any.
            raise ValueError("traits in order contacts are not folded column-wise")
        if pc.any(pc.equal(both.column("email_consent"), False)).as_py():
            raise ValueError("consent withdrawn in order contacts is not folded column-wise")
        folded = both.group_by("key", use_threads=False).aggregate([(f, "first") for f in fields])
        return folded.rename_columns(["key" if c == "key" else c.removesuffix("_first") for c in folded.column_names])

    def _first_products(self, parts: list[pa.Table]) -> pa.Table | None:
        """Each product key once, as the first line naming it in the exact path's order has it."""
        if not parts:
            return None
        both = pa.concat_tables(parts)
        both = both.take(pc.sort_indices(both, sort_keys=[("rank_a", "ascending"), ("rank_b", "ascending")]))
        both = both.append_column("i", pa.array(np.arange(both.num_rows)))
        first = both.group_by("sku", use_threads=False).aggregate([("i", "min")]).column("i_min")
        return both.take(first)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _json_text(values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', values, '"', "")


def _properties(status_text: pa.Array, digests: pa.Array, shopify_id: pa.Array, source: pa.Array) -> pa.Array:
    """Each order's ``properties`` JSON as ``dumps`` writes it, built column-wise; a value JSON would escape (or
    an id beyond 18 digits) has its row written by ``dumps`` itself."""
    empty = pa.scalar("", pa.string())
    numeric = pc.match_substring_regex(shopify_id, r"^[0-9]{1,18}$")
    number = pc.utf8_ltrim(shopify_id, characters="0")
    number = pc.if_else(pc.equal(number, ""), "0", number)
    id_value = pc.if_else(numeric, number, _json_text(shopify_id))
    status = pc.if_else(pc.equal(status_text, ""), "null", _json_text(status_text))
    parts = [
        '{"financial_status":',
        status,
        ',"lines_digest":"',
        digests,
        '"',
        pc.if_else(pc.equal(shopify_id, ""), empty, pc.binary_join_element_wise(',"shopify_id":', id_value, "")),
        pc.if_else(pc.equal(source, ""), empty, pc.binary_join_element_wise(',"source_name":', _json_text(source), "")),
        "}",
        "",
    ]
    built = pc.binary_join_element_wise(*parts)
    escaped = r'["\\\x00-\x1f]'
    odd = pc.or_(
        pc.or_(pc.match_substring_regex(status_text, escaped), pc.match_substring_regex(source, escaped)),
        pc.and_(pc.invert(numeric), pc.match_substring_regex(shopify_id, rf"{escaped}|^[0-9]+$")),
    ).to_numpy(zero_copy_only=False)
    if not odd.any():
        return built
    out = built.to_pylist()
    statuses, ids, sources, sums = (a.to_pylist() for a in (status_text, shopify_id, source, digests))
    for i in np.flatnonzero(odd).tolist():
        props: dict[str, object] = {"financial_status": statuses[i] or None, "lines_digest": sums[i]}
        if ids[i]:
            props["shopify_id"] = int(ids[i]) if ids[i].isascii() and ids[i].isdigit() else ids[i]
        if sources[i]:
            props["source_name"] = sources[i]
        out[i] = dumps(props)
    return pa.array(out, pa.string())


def _clip(values: pa.Array, limit: int) -> pa.Array:
    """``clip``: trimmed, cut to ``limit`` characters, None when empty."""
    trimmed = pc.utf8_slice_codeunits(_trim(values), 0, limit)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _codes_json(text: str) -> str:
    codes = [c.strip() for c in text.split(",") if c.strip()] if text.strip() else []
    return dumps(codes)


def _from_rows(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {f.name: pa.array(list(columns[i]), f.type) for i, f in enumerate(schema)},
    )


def row_parser(data: bytes, ends: np.ndarray, delimiter: str) -> Callable[[int], list[str]]:
    """The cells of row ``i`` of a one-row-per-line block, read by csv.reader as the exact path reads them."""

    def full_row(i: int) -> list[str]:
        start = int(ends[i - 1]) + 1 if i else 0
        text = data[start : int(ends[i]) + 1].decode("utf-8")
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])

    return full_row
