"""Set-based upsert of contacts, products, orders, lines and spend, shared by the store webhooks and the CSV import.

A batch is staged into temporary tables (COPY on PostgreSQL, executemany on SQLite) and merged with a fixed
handful of statements whatever its size: resolve the ids that exist, update only the rows that differ, insert
the rest. Rows that would not change are not touched, so replaying a webhook or re-running an import changes
nothing. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from storefunnel.jobs import wakeup
from storefunnel.orders.currencies import CURRENCY_CODES

if TYPE_CHECKING:
    import pyarrow as pa

# Rows for a stage table: tuples in its column order, or an Arrow table with those columns (the CSV import's).
Rows: TypeAlias = "Sequence[Sequence[Any]] | pa.Table"


class RecordError(ValueError):
    """A value that cannot be accepted; the message starts with the field it is about."""


# ISO 4217 minor units; every other code has 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(),
        0,
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d*)?")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def check_currency(value: str | None, field: str) -> str:
    code = (value or "").strip().upper()
    if code not in CURRENCY_CODES:
        raise RecordError(f"{field}: {value!r} is not an ISO 4217 currency code")
    return code


def to_minor(value: Any, currency: str, field: str) -> int:
    """An amount such as "19.99" as integer minor units of ``currency``, exactly; sub-minor digits are refused."""
    exponent = currency_exponent(currency)
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 10**exponent
    text = str(value).strip() if value is not None else ""
    if not text:
        raise RecordError(f"{field}: an amount is required")
    if exponent == 2 and len(text) > 3 and text[-3] == "." and text[:-3].isdigit() and text[-2:].isdigit():
        return int(text[:-3]) * 100 + int(text[-2:])  # "12.50", by far the most common shape
    if _PLAIN_NUMBER.fullmatch(text):
        # Fast exact path for the common "123.45": integer arithmetic, no Decimal.
        whole, _, frac = text.partition(".")
        negative = whole.startswith("-")
        digits = frac.rstrip("0")
        if len(digits) > exponent:
            raise RecordError(f"{field}: {text!r} has more than {exponent} decimals for {currency}")
        minor = abs(int(whole)) * 10**exponent + (int(digits.ljust(exponent, "0")) if exponent else 0)
        return -minor if negative else minor
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RecordError(f"{field}: {text!r} is not a number") from None
    if not number.is_finite():
        raise RecordError(f"{field}: {text!r} is not a number")
    scaled = number.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise RecordError(f"{field}: {text!r} has more than {exponent} decimals for {currency}")
    return int(scaled)


def clean_email(value: str | None, field: str = "email") -> str | None:
    text = (value or "").strip().lower()
    if not text:
        return None
    if len(text) > 254 or not EMAIL_RE.match(text):
        raise RecordError(f"{field}: {value!r} is not an email address")
    return text


def clip(value: str | None, limit: int) -> str | None:
    """Display text is cut to the column's length rather than refused; keys are checked, never cut."""
    text = (value or "").strip()
    return text[:limit] if text else None


def utc_iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


@dataclass(slots=True)
class ContactIn:
    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    age_band: str | None = None
    gender: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    email_consent: bool | None = None
    consent_source: str | None = None
    consent_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        return f"x:{self.external_id}" if self.external_id else f"e:{self.email}"

    def merge(self, newer: ContactIn, *, fill_only: bool = False) -> None:
        """Fold a later record of the same person into this one: its non-empty values win.

        ``fill_only``: the rule the database applies to a stored contact when details come from an order (it only
        fills gaps and can grant consent, never withdraw it), so a batch folds as a series of batches would: where
        a file's chunks end does not change the contact.
        """
        granted = fill_only and newer.email_consent is True and self.email_consent is not True
        for name in self.__slots__:
            value = getattr(newer, name)
            if name == "traits":
                self.traits = {**self.traits, **value}
            elif granted and name in ("email_consent", "consent_source", "consent_at"):
                setattr(self, name, value)
            elif value is not None and not (fill_only and getattr(self, name) is not None):
                setattr(self, name, value)


@dataclass(slots=True)
class LineIn:
    product_key: str
    sku: str | None
    name: str
    quantity: int
    unit_price: int
    discount: int
    total: int


@dataclass(slots=True)
class OrderIn:
    source: str
    external_id: str
    placed_at: dt.datetime
    currency: str
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    status: str
    contact: ContactIn | None = None
    discount_codes: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    lines: list[LineIn] = field(default_factory=list)
    source_updated_at: dt.datetime | None = None


@dataclass(slots=True)
class SpendIn:
    day: dt.date
    channel: str
    campaign: str
    cost: int
    currency: str


@dataclass
class Counts:
    """What a batch changed, by table; re-running the same batch gives created == updated == 0."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int) -> None:
        self.values[name] = self.values.get(name, 0) + max(n, 0)

    def merge(self, other: Counts) -> None:
        for name, n in other.values.items():
            self.add(name, n)

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)


# --------------------------------------------------------------------------------------------- staging


@dataclass(frozen=True)
class _Stage:
    name: str
    columns: tuple[tuple[str, str], ...]
    indexes: tuple[str, ...] = ()
    computed: int = 1  # trailing columns the merge fills in; staged rows carry only the ones before them

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def loaded_names(self) -> list[str]:
        return self.column_names[: len(self.columns) - self.computed]


_PG_TYPES = {"text": "text", "int": "bigint", "bool": "boolean", "ts": "timestamptz", "date": "date", "json": "text"}
_SQLITE_TYPES = {"text": "TEXT", "int": "INTEGER", "bool": "INTEGER", "ts": "TEXT", "date": "TEXT", "json": "TEXT"}

STAGE_CONTACTS = _Stage(
    "sf_stage_contacts",
    (
        ("key", "text"),
        ("email", "text"),
        ("external_id", "text"),
        ("first_name", "text"),
        ("last_name", "text"),
        ("phone", "text"),
        ("country", "text"),
        ("region", "text"),
        ("city", "text"),
        ("age_band", "text"),
        ("gender", "text"),
        ("traits", "json"),
        ("email_consent", "bool"),
        ("consent_source", "text"),
        ("consent_at", "ts"),
        ("contact_id", "int"),
        ("fresh", "bool"),  # inserted by this batch: already as staged, so nothing to update
    ),
    ("key", "email", "external_id"),
    computed=2,
)
STAGE_PRODUCTS = _Stage(
    "sf_stage_products",
    (("sku", "text"), ("name", "text"), ("price", "int"), ("currency", "text"), ("product_id", "int")),
    ("sku",),
)
STAGE_ORDERS = _Stage(
    "sf_stage_orders",
    (
        ("source", "text"),
        ("external_id", "text"),
        ("contact_key", "text"),
        ("placed_at", "ts"),
        ("currency", "text"),
        ("subtotal", "int"),
        ("discount", "int"),
        ("shipping", "int"),
        ("tax", "int"),
        ("total", "int"),
        ("status", "text"),
        ("discount_codes", "json"),
        ("properties", "json"),
        ("source_updated_at", "text"),
        ("contact_id", "int"),
        ("order_id", "int"),
        ("changed", "bool"),
    ),
    ("external_id", "contact_key"),
    computed=2,
)
# What a batch gives for each order: the stage's columns but contact_id, which staging adds from the merged contacts.
ORDER_FIELDS = tuple(STAGE_ORDERS.loaded_names[:-1])
STAGE_LINES = _Stage(
    "sf_stage_lines",
    (
        ("external_id", "text"),
        ("position", "int"),
        ("product_key", "text"),
        ("sku", "text"),
        ("name", "text"),
        ("quantity", "int"),
        ("unit_price", "int"),
        ("discount", "int"),
        ("total", "int"),
    ),
    ("external_id",),
    computed=0,
)
STAGE_SPEND = _Stage(
    "sf_stage_spend",
    (
        ("day", "date"),
        ("channel", "text"),
        ("campaign", "text"),
        ("cost", "int"),
        ("currency", "text"),
        ("spend_id", "int"),
    ),
)


_LOOKUP_COLUMNS = {
    "contacts": ("workspace_id", "email", "external_id"),
    "products": ("workspace_id", "sku"),
    "orders": ("workspace_id", "source", "external_id"),
    "order_lines": ("workspace_id", "order_id"),
    "spend": ("workspace_id", "day", "channel", "campaign"),
}


class _Db:
    """The few places PostgreSQL and SQLite differ: staging, JSON and timestamps."""

    def __init__(self, session: Session) -> None:
        self.conn: Connection = session.connection()
        self.pg = self.conn.dialect.name == "postgresql"
        self.now = self.ts(dt.datetime.now(dt.UTC))

    def ts(self, value: dt.datetime | None) -> Any:
        if value is None:
            return None
        value = value.astimezone(dt.UTC)
        # SQLAlchemy keeps SQLite datetimes as naive UTC text in exactly this layout.
        return value if self.pg else value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    def day(self, value: dt.date) -> Any:
        return value if self.pg else value.isoformat()

    def json(self, expr: str) -> str:
        return f"CAST({expr} AS jsonb)" if self.pg else f"json({expr})"

    def json_old(self, expr: str) -> str:
        """A stored JSON column in a comparable form (SQLite keeps text, so normalise it)."""
        return expr if self.pg else f"json({expr})"

    def json_merge(self, old: str, new: str) -> str:
        return f"({old} || CAST({new} AS jsonb))" if self.pg else f"json_patch({old}, {new})"

    def json_text(self, column: str, key: str) -> str:
        return f"({column} ->> '{key}')" if self.pg else f"json_extract({column}, '$.{key}')"

    def grew(self, table: str, inserted: int) -> None:
        """Refresh PostgreSQL's statistics when a batch grew a table by a fifth or more.

        With the statistics of an empty table the planner looks up staged keys through the wrong index, and a
        bulk import into a new store turns quadratic; autovacuum would notice only after a minute. Only the size
        and the columns the merge looks rows up by are refreshed (``_LOOKUP_COLUMNS``): a fraction of the cost
        of every column's statistics, which autovacuum brings up to date soon after.
        """
        if not self.pg or inserted < 500:
            return
        known = self.run("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)", {"t": table}).scalar()
        if known is None or known < 0 or inserted * 5 >= known:
            self.run(f"ANALYZE {table} ({', '.join(_LOOKUP_COLUMNS[table])})")

    def bulk(self, rows: int) -> None:
        """For a large batch on PostgreSQL, memory enough for its hash joins and sorts not to spill to disk (the
        default 4 MB does from about 20,000 staged rows on); for this transaction only."""
        if self.pg and rows >= 5000:
            self.run("SET LOCAL work_mem = '64MB'")

    def run(self, sql: str, params: dict[str, Any] | None = None) -> sa.CursorResult[Any]:
        return self.conn.execute(sa.text(sql), params or {})

    def stage(self, table: _Stage, rows: Rows) -> None:
        """(Re)create the temporary table empty and load ``rows`` into it in one round trip.

        An Arrow table goes to PostgreSQL as CSV written by Arrow (COPY's CSV reader tells an unquoted empty
        field, NULL, from a quoted one, ''), which costs a fraction of sending the rows one by one.
        """
        types = _PG_TYPES if self.pg else _SQLITE_TYPES
        cols = ", ".join(f"{c} {types[t]}" for c, t in table.columns)
        names = ", ".join(table.loaded_names)
        raw = self.conn.connection.driver_connection
        columnar = not isinstance(rows, Sequence)
        if self.pg:
            self.run(f"CREATE TEMP TABLE IF NOT EXISTS {table.name} ({cols}) ON COMMIT DROP")
            self.run(f"TRUNCATE {table.name}")
            if columnar:
                import pyarrow.csv as pa_csv

                data = io.BytesIO()
                pa_csv.write_csv(rows, data, pa_csv.WriteOptions(include_header=False, batch_size=65536))
                with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN (FORMAT csv)") as copy:  # type: ignore[union-attr]
                    copy.write(data.getbuffer())
            else:
                with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
                    for row in rows:
                        copy.write_row(row)
            # No indexes: each statement reads its stage tables whole (hashing them, or probing the real tables'
            # indexes); statistics on the join keys (sampling only those columns is far cheaper than all) keep the
            # planner's estimates right.
            if table.indexes:
                self.run(f"ANALYZE {table.name} ({', '.join(table.indexes)})")
        else:
            self.run(f"CREATE TEMP TABLE IF NOT EXISTS {table.name} ({cols})")
            self.run(f"DELETE FROM {table.name}")
            for col in table.indexes:
                self.run(f"CREATE INDEX IF NOT EXISTS temp.{table.name}_{col} ON {table.name} ({col})")
            marks = ", ".join("?" * len(table.loaded_names))
            values: Iterable[Sequence[Any]] = (
                zip(*(column.to_pylist() for column in rows.columns), strict=True)  # type: ignore[union-attr]
                if columnar
                else rows
            )
            cur = raw.cursor()  # type: ignore[union-attr]
            try:
                cur.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)
            finally:
                cur.close()


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _changed(pairs: Sequence[tuple[str, str]]) -> str:
    return " OR ".join(f"({new}) IS DISTINCT FROM ({old})" for old, new in pairs)


# --------------------------------------------------------------------------------------------- contacts

_CONTACT_TEXT = ("first_name", "last_name", "phone", "country", "region", "city", "age_band", "gender")


def _contact_row(db: _Db, c: ContactIn) -> tuple[Any, ...]:
    return (
        c.key,
        c.email,
        c.external_id,
        *(getattr(c, name) for name in _CONTACT_TEXT),
        dumps(c.traits) if c.traits else None,
        c.email_consent,
        c.consent_source,
        db.ts(c.consent_at),
    )


def _resolve_contacts(db: _Db, ws: int, *, fresh: bool = False) -> None:
    """Staged contacts get the id of the contact with their external id, else their email (joins: only the rows
    found are written); ``fresh``: flag them as just inserted."""
    s = STAGE_CONTACTS.name
    flag = f", fresh = {'true' if db.pg else '1'}" if fresh else ""
    for col in ("external_id", "email"):
        if db.pg:
            db.run(
                f"UPDATE {s} SET contact_id = c.id{flag} FROM contacts c WHERE {s}.contact_id IS NULL "
                f"AND {s}.{col} IS NOT NULL AND c.workspace_id = :ws AND c.{col} = {s}.{col}",
                {"ws": ws},
            )
        else:
            # SQLite would run the join over every contact of the workspace; a look-up per staged row is cheaper.
            found = f"(SELECT c.id FROM contacts c WHERE c.workspace_id = :ws AND c.{col} = {s}.{col})"
            db.run(
                f"UPDATE {s} SET contact_id = {found}{flag} WHERE contact_id IS NULL AND {col} IS NOT NULL "
                f"AND {found} IS NOT NULL",
                {"ws": ws},
            )


def merge_contacts(session: Session, ws: int, contacts: Iterable[ContactIn], *, overwrite: bool) -> Counts:
    """Insert new contacts and update known ones (matched by external id, then email).

    ``overwrite``: the batch is the source of truth (a contacts file, a platform's customer record), so its
    non-empty values replace stored ones. Otherwise (details copied from an order) it only fills gaps and can
    grant consent but never withdraw it. Consent is never granted to someone who unsubscribed.
    """
    db = _Db(session)
    unique: dict[str, ContactIn] = {}
    for c in contacts:
        if c.email is None and c.external_id is None:
            continue
        if c.key in unique:
            unique[c.key].merge(c, fill_only=not overwrite)
        else:
            unique[c.key] = c
    return _merge_staged_contacts(db, ws, [_contact_row(db, c) for c in unique.values()], overwrite=overwrite)


def _merge_staged_contacts(db: _Db, ws: int, rows: Rows, *, overwrite: bool) -> Counts:
    """:func:`merge_contacts` for contact rows already in staging form, one per key."""
    counts = Counts()
    db.stage(STAGE_CONTACTS, rows)
    if not len(rows):
        return counts
    s = STAGE_CONTACTS.name
    db.bulk(len(rows))
    _resolve_contacts(db, ws)
    text_cols = ", ".join(_CONTACT_TEXT)
    traits = db.json("COALESCE(traits, '{}')")
    insert = (
        f"INSERT INTO contacts (workspace_id, email, external_id, {text_cols}, traits, email_consent, "
        f"consent_source, consent_at, created_at, updated_at) "
        f"SELECT :ws, email, external_id, {text_cols}, {traits}, "
        f"COALESCE(email_consent, {'false' if db.pg else '0'}), "
        f"CASE WHEN email_consent THEN consent_source END, CASE WHEN email_consent THEN consent_at END, :now, :now "
        f"FROM {s} WHERE contact_id IS NULL ON CONFLICT DO NOTHING"
    )
    if db.pg:
        # The new contacts' ids come back from the INSERT; any other row still unresolved (inserted meanwhile by
        # someone else) is found by the join below and merged like a known contact.
        inserted = db.run(
            f"WITH new AS ({insert} RETURNING id, email, external_id) UPDATE {s} SET contact_id = new.id, "
            f"fresh = true FROM new WHERE {s}.key = CASE WHEN new.external_id IS NOT NULL "
            f"THEN 'x:' || new.external_id ELSE 'e:' || new.email END",
            {"ws": ws, "now": db.now},
        ).rowcount
        _resolve_contacts(db, ws)
    else:
        inserted = db.run(insert, {"ws": ws, "now": db.now}).rowcount
        _resolve_contacts(db, ws, fresh=True)  # one writer at a time: what is found now, this batch inserted
    counts.add("contacts_created", inserted)
    db.grew("contacts", inserted)

    t = "contacts"
    sets: list[tuple[str, str]] = []
    for col in _CONTACT_TEXT:
        new = f"COALESCE({s}.{col}, {t}.{col})" if overwrite else f"COALESCE({t}.{col}, {s}.{col})"
        sets.append((col, new))
    for col in ("email", "external_id"):
        # Fill a missing key, unless another contact already holds it (the unique constraint would refuse).
        sets.append(
            (
                col,
                f"CASE WHEN {t}.{col} IS NULL AND {s}.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM contacts c2 "
                f"WHERE c2.workspace_id = :ws AND c2.{col} = {s}.{col}) THEN {s}.{col} ELSE {t}.{col} END",
            )
        )
    sets.append(
        (
            "traits",
            f"CASE WHEN {s}.traits IS NULL THEN {t}.traits ELSE {db.json_merge(f'{t}.traits', f'{s}.traits')} END",
        )
    )
    if overwrite:
        consent = (
            f"CASE WHEN {s}.email_consent IS NULL THEN {t}.email_consent "
            f"WHEN {s}.email_consent AND {t}.unsubscribed_at IS NOT NULL THEN {t}.email_consent "
            f"ELSE {s}.email_consent END"
        )
    else:
        consent = (
            f"CASE WHEN {s}.email_consent AND {t}.unsubscribed_at IS NULL THEN {s}.email_consent "
            f"ELSE {t}.email_consent END"
        )
    granted = f"(({consent}) AND NOT {t}.email_consent)"
    sets.append(("consent_source", f"CASE WHEN {granted} THEN {s}.consent_source ELSE {t}.consent_source END"))
    sets.append(("consent_at", f"CASE WHEN {granted} THEN COALESCE({s}.consent_at, :now) ELSE {t}.consent_at END"))
    sets.append(("email_consent", consent))
    compare = [
        (db.json_old(f"{t}.{col}"), db.json_old(new)) if col == "traits" else (f"{t}.{col}", new)
        for col, new in sets
        if col not in ("consent_source", "consent_at")
    ]
    assignments = ", ".join(f"{col} = {new}" for col, new in sets)
    updated = db.run(
        f"UPDATE {t} SET {assignments}, updated_at = :now FROM {s} "
        f"WHERE {t}.id = {s}.contact_id AND {s}.fresh IS NULL AND {t}.workspace_id = :ws AND ({_changed(compare)})",
        {"ws": ws, "now": db.now},
    ).rowcount
    counts.add("contacts_updated", updated)
    return counts


def contact_ids(session: Session) -> dict[str, int]:
    """The staged contacts' keys and ids, after :func:`merge_contacts`."""
    rows = session.connection().execute(
        sa.text(f"SELECT key, contact_id FROM {STAGE_CONTACTS.name} WHERE contact_id IS NOT NULL")
    )
    return {key: int(cid) for key, cid in rows}


# --------------------------------------------------------------------------------------------- products


def _merge_products(db: _Db, ws: int, products: Rows) -> Counts:
    """New products by key (sku, or a platform key when a line has none); the catalogue is not overwritten."""
    counts = Counts()
    db.stage(STAGE_PRODUCTS, products)
    if not len(products):
        return counts
    s = STAGE_PRODUCTS.name
    resolve = (
        f"UPDATE {s} SET product_id = (SELECT p.id FROM products p WHERE p.workspace_id = :ws AND p.sku = {s}.sku) "
        f"WHERE product_id IS NULL"
    )
    db.run(resolve, {"ws": ws})
    inserted = db.run(
        f"INSERT INTO products (workspace_id, sku, name, price, currency, created_at) "
        f"SELECT :ws, sku, name, price, currency, :now FROM {s} WHERE product_id IS NULL ON CONFLICT DO NOTHING",
        {"ws": ws, "now": db.now},
    ).rowcount
    counts.add("products_created", inserted)
    db.grew("products", inserted)
    if inserted:
        db.run(resolve, {"ws": ws})
    return counts


# --------------------------------------------------------------------------------------------- orders

_ORDER_COLS = ("placed_at", "currency", "subtotal", "discount", "shipping", "tax", "total", "status")


def lines_digest(lines: Sequence[LineIn]) -> str:
    """A fingerprint of an order's lines, so an unchanged order keeps its line rows untouched."""
    text = "\n".join(
        f"{ln.product_key}|{ln.sku}|{ln.name}|{ln.quantity}|{ln.unit_price}|{ln.discount}|{ln.total}" for ln in lines
    )
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def sqlite_ts(value: dt.datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it in SQLite: naive, with microseconds."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class StagedOrders(Protocol):
    """A batch of orders ready to stage: :class:`OrderBatch`, or the CSV import's columnar batches."""

    def staged(self, db: _Db) -> tuple[Rows, Rows, Rows, Rows]: ...


@dataclass
class OrderBatch:
    """Orders already in staging-row form, so a fast producer (the CSV import) can skip ``OrderIn`` objects.

    ``orders`` rows: (source, external_id, contact_key, placed_at (UTC, in the backend's form), currency, subtotal,
    discount, shipping, tax, total, status, discount_codes JSON, properties JSON, source_updated_at).
    ``lines`` rows: (external_id, position, product_key, sku, name, quantity, unit_price, discount, total).
    ``products``: product key -> (name, price, currency), the first line that named it.
    """

    pg: bool
    # Fold repeated customers as an order import merges them into stored contacts (``ContactIn.merge``).
    fill_contacts: bool = False
    contacts: dict[str, ContactIn] = field(default_factory=dict)
    products: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)

    def ts(self, value: dt.datetime) -> Any:
        value = value.astimezone(dt.UTC)
        return value if self.pg else sqlite_ts(value)

    def add_contact(self, contact: ContactIn) -> str:
        key = contact.key
        known = self.contacts.get(key)
        if known is None:
            self.contacts[key] = contact
        else:
            known.merge(contact, fill_only=self.fill_contacts)
        return key

    def staged(self, db: _Db) -> tuple[Rows, Rows, Rows, Rows]:
        """Contacts, products, orders and lines as stage rows."""
        contacts = [_contact_row(db, c) for c in self.contacts.values() if (c.email, c.external_id) != (None, None)]
        products = [(k, name, price, cur) for k, (name, price, cur) in self.products.items()]
        return contacts, products, self.orders, self.lines

    def add(self, o: OrderIn) -> None:
        """One order from its record (webhooks, and the import's exact path)."""
        contact_key = None
        if o.contact is not None and (o.contact.email or o.contact.external_id):
            contact_key = self.add_contact(o.contact)
        for ln in o.lines:
            self.products.setdefault(ln.product_key, (ln.name[:300], ln.unit_price, o.currency))
        props = {**o.properties, "lines_digest": lines_digest(o.lines)}
        updated_at = utc_iso(o.source_updated_at)
        if updated_at:
            props["source_updated_at"] = updated_at
        self.orders.append(
            (
                o.source,
                o.external_id,
                contact_key,
                self.ts(o.placed_at),
                o.currency,
                o.subtotal,
                o.discount,
                o.shipping,
                o.tax,
                o.total,
                o.status,
                dumps(o.discount_codes),
                dumps(props),
                updated_at,
            )
        )
        self.lines.extend(
            (o.external_id, i, ln.product_key, ln.sku, ln.name[:300], ln.quantity, ln.unit_price, ln.discount, ln.total)
            for i, ln in enumerate(o.lines)
        )


def upsert_orders(session: Session, ws: int, orders: Iterable[OrderIn], *, overwrite_contacts: bool) -> Counts:
    """Upsert a batch of orders with their customers, products and lines, keyed by (source, external id).

    An order whose stored copy is newer (``source_updated_at``) is left alone: platforms do not promise to
    deliver webhooks in order. The lines of a created or changed order are replaced as a whole.
    """
    unique: dict[tuple[str, str], OrderIn] = {}
    for o in orders:
        unique[(o.source, o.external_id)] = o
    batch = OrderBatch(pg=session.connection().dialect.name == "postgresql", fill_contacts=not overwrite_contacts)
    for o in unique.values():
        batch.add(o)
    return upsert_order_batch(session, ws, batch, overwrite_contacts=overwrite_contacts)


def upsert_order_batch(session: Session, ws: int, batch: StagedOrders, *, overwrite_contacts: bool) -> Counts:
    """:func:`upsert_orders` for a batch already in staging form; its external ids must be unique."""
    db = _Db(session)
    counts = Counts()
    contacts, products, orders, lines = batch.staged(db)
    counts.merge(_merge_staged_contacts(db, ws, contacts, overwrite=overwrite_contacts))
    counts.merge(_merge_products(db, ws, products))
    db.stage(STAGE_ORDERS, _with_contact_ids(orders, contact_ids(session) if len(contacts) else {}))
    db.stage(STAGE_LINES, lines)
    n_orders = len(orders)
    db.bulk(len(lines))
    if not n_orders:
        return counts
    s, t = STAGE_ORDERS.name, "orders"
    true = "true" if db.pg else "1"
    # Ids by a join, writing only the staged rows that find one (a new order's row is left as it is).
    if db.pg:
        find_orders = (
            f"UPDATE {s} SET order_id = o.id{{also}} FROM orders o WHERE {s}.order_id IS NULL "
            f"AND o.workspace_id = :ws AND o.source = {s}.source AND o.external_id = {s}.external_id"
        )
    else:
        # SQLite would run the join over every order of the workspace; a look-up per staged row is cheaper.
        lookup = (
            f"(SELECT o.id FROM orders o WHERE o.workspace_id = :ws AND o.source = {s}.source "
            f"AND o.external_id = {s}.external_id)"
        )
        find_orders = f"UPDATE {s} SET order_id = {lookup}{{also}} WHERE order_id IS NULL AND {lookup} IS NOT NULL"
    known = db.run(find_orders.format(also=""), {"ws": ws}).rowcount
    sets = [(col, f"{s}.{col}") for col in _ORDER_COLS]
    sets.append(("contact_id", f"COALESCE({s}.contact_id, {t}.contact_id)"))
    sets.append(("discount_codes", db.json(f"{s}.discount_codes")))
    sets.append(("properties", db.json_merge(f"{t}.properties", f"{s}.properties")))
    compare = [
        (db.json_old(f"{t}.{c}"), db.json_old(n)) if c in ("discount_codes", "properties") else (f"{t}.{c}", n)
        for c, n in sets
    ]
    stored_at = db.json_text(f"{t}.properties", "source_updated_at")
    not_stale = f"({s}.source_updated_at IS NULL OR {stored_at} IS NULL OR {stored_at} <= {s}.source_updated_at)"
    # Mark first, then update what is marked: both backends then agree on which orders changed.
    db.run(
        f"UPDATE {s} SET changed = {true} WHERE order_id IS NOT NULL AND EXISTS (SELECT 1 FROM {t} "
        f"WHERE {t}.id = {s}.order_id AND {not_stale} AND ({_changed(compare)}))"
    )
    assignments = ", ".join(f"{col} = {new}" for col, new in sets)
    updated = db.run(
        f"UPDATE {t} SET {assignments}, updated_at = :now FROM {s} "
        f"WHERE {t}.id = {s}.order_id AND {t}.workspace_id = :ws AND {s}.changed = {true}",
        {"ws": ws, "now": db.now},
    ).rowcount
    counts.add("orders_updated", updated)
    insert = (
        f"INSERT INTO {t} (workspace_id, contact_id, source, external_id, {', '.join(_ORDER_COLS)}, discount_codes, "
        f"properties, created_at, updated_at) SELECT :ws, contact_id, source, external_id, {', '.join(_ORDER_COLS)}, "
        f"{db.json('discount_codes')}, {db.json('properties')}, :now, :now FROM {s} WHERE order_id IS NULL "
        f"ON CONFLICT DO NOTHING"
    )
    found = 0
    if db.pg and n_orders > known:
        # The new ids come back from the INSERT itself rather than from looking every order up again.
        inserted = found = db.run(
            f"WITH new AS ({insert} RETURNING id, source, external_id) UPDATE {s} SET changed = true, "
            f"order_id = new.id FROM new WHERE {s}.source = new.source AND {s}.external_id = new.external_id",
            {"ws": ws, "now": db.now},
        ).rowcount
    else:
        inserted = db.run(insert, {"ws": ws, "now": db.now}).rowcount if n_orders > known else 0
    counts.add("orders_created", inserted)
    db.grew("orders", inserted)
    if inserted:
        wakeup.request(session)  # new orders may start flows (the thank-you): wake a worker after the commit
    if n_orders > known + found:
        # Orders just inserted (SQLite), or inserted meanwhile by someone else: found by their keys.
        db.run(find_orders.format(also=f", changed = {true}"), {"ws": ws})
    counts.add("orders_unchanged", n_orders - updated - inserted)
    if updated or inserted:
        if updated:
            db.run(
                f"DELETE FROM order_lines WHERE workspace_id = :ws AND order_id IN "
                f"(SELECT order_id FROM {s} WHERE changed = {true})",
                {"ws": ws},
            )
        written = db.run(
            f"INSERT INTO order_lines (workspace_id, order_id, product_id, sku, name, quantity, unit_price, "
            f"discount, total) SELECT :ws, o.order_id, p.product_id, l.sku, l.name, l.quantity, l.unit_price, "
            f"l.discount, l.total "
            f"FROM {STAGE_LINES.name} l JOIN {s} o ON o.external_id = l.external_id "
            f"LEFT JOIN {STAGE_PRODUCTS.name} p ON p.sku = l.product_key "
            f"WHERE o.changed = {true} AND o.order_id IS NOT NULL ORDER BY o.order_id, l.position",
            {"ws": ws},
        ).rowcount
        counts.add("lines_written", written)
        db.grew("order_lines", written)
    return counts


def _with_contact_ids(orders: Rows, ids: dict[str, int]) -> Rows:
    """Order rows with their contact's id appended, looked up by contact key in the client: cheaper than
    rewriting every staged order with an UPDATE."""
    if isinstance(orders, Sequence):
        return [(*row, ids.get(row[2]) if row[2] is not None else None) for row in orders]
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.array(list(ids), pa.string())
    where = pc.index_in(orders.column("contact_key"), value_set=keys)
    return orders.append_column("contact_id", pa.array(list(ids.values()), pa.int64()).take(where))


def changed_order_contacts(session: Session) -> list[int]:
    """The contacts of the orders the last :func:`upsert_order_batch` created or changed (for the sales cycle)."""
    true = "true" if session.connection().dialect.name == "postgresql" else "1"
    rows = session.connection().execute(
        sa.text(
            f"SELECT DISTINCT contact_id FROM {STAGE_ORDERS.name} WHERE changed = {true} AND contact_id IS NOT NULL"
        )
    )
    return [int(cid) for (cid,) in rows]


# --------------------------------------------------------------------------------------------- spend


def upsert_spend(session: Session, ws: int, spend: Iterable[SpendIn]) -> Counts:
    """Spend keyed by (day, channel, campaign): a new cost for the same key replaces the old one."""
    db = _Db(session)
    unique: dict[tuple[dt.date, str, str], SpendIn] = {}
    for row in spend:
        unique[(row.day, row.channel, row.campaign)] = row
    counts = Counts()
    db.stage(STAGE_SPEND, [(db.day(r.day), r.channel, r.campaign, r.cost, r.currency) for r in unique.values()])
    if not unique:
        return counts
    s = STAGE_SPEND.name
    db.run(
        f"UPDATE {s} SET spend_id = (SELECT x.id FROM spend x WHERE x.workspace_id = :ws AND x.day = {s}.day "
        f"AND x.channel = {s}.channel AND x.campaign = {s}.campaign)",
        {"ws": ws},
    )
    updated = db.run(
        f"UPDATE spend SET cost = {s}.cost, currency = {s}.currency FROM {s} WHERE spend.id = {s}.spend_id "
        f"AND spend.workspace_id = :ws AND (spend.cost <> {s}.cost OR spend.currency <> {s}.currency)",
        {"ws": ws},
    ).rowcount
    inserted = db.run(
        f"INSERT INTO spend (workspace_id, day, channel, campaign, cost, currency) "
        f"SELECT :ws, day, channel, campaign, cost, currency FROM {s} WHERE spend_id IS NULL ON CONFLICT DO NOTHING",
        {"ws": ws},
    ).rowcount
    counts.add("spend_created", inserted)
    db.grew("spend", inserted)
    counts.add("spend_updated", updated)
    counts.add("spend_unchanged", len(unique) - inserted - updated)
    return counts


def record_receipt(session: Session, ws: int, source: str, key: str) -> bool:
    """Note a delivery id; False when it was already noted (a replay), in which case nothing else should run."""
    db = _Db(session)
    inserted = db.run(
        "INSERT INTO receipts (workspace_id, source, key, received_at) VALUES (:ws, :source, :key, :now) "
        "ON CONFLICT DO NOTHING",
        {"ws": ws, "source": source, "key": key[:200], "now": db.now},
    ).rowcount
    return inserted == 1


def parse_datetime(value: Any, field: str, default_tz: dt.tzinfo = dt.UTC) -> dt.datetime:
    """ISO 8601 or Shopify's export layout ("2025-10-07 09:50:26 +0200"); a time without offset is in ``default_tz``."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise RecordError(f"{field}: a date and time is required")
    if len(text) > 6 and text[-6] == " " and text[-5] in "+-":
        text = text[:-6] + text[-5:]
    elif text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{field}: {value!r} is not a date and time (expected ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_tz)
    return moment.astimezone(dt.UTC)
