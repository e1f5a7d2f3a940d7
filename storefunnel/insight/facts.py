"""The facts the analytics read, as unbound Ibis tables, the period they are asked about, and DuckDB snapshots.

Only the columns analytics use are declared, so a snapshot carries no e-mail addresses or names. Times are
UTC; periods are whole UTC days ``first``..``last`` (both included).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid

# Orders that did not (or no longer) bring money in: the same rule as the Overview.
EXCLUDED_STATUSES = ("cancelled", "refunded")
MAX_PERIOD_DAYS = 3660

SCHEMAS: dict[str, dict[str, str]] = {
    "contacts": {
        "id": "int64",
        "workspace_id": "int64",
        "created_at": "timestamp",
        "lead_at": "timestamp",
        "lead_channel": "string",
        "country": "string",
        "city": "string",
        "age_band": "string",
        "gender": "string",
    },
    "touches": {
        "id": "int64",
        "workspace_id": "int64",
        "contact_id": "int64",
        "anonymous_id": "string",
        "occurred_at": "timestamp",
        "kind": "string",
        "event": "string",
        "channel": "string",
        "campaign": "string",
    },
    "orders": {
        "id": "int64",
        "workspace_id": "int64",
        "contact_id": "int64",
        "placed_at": "timestamp",
        "currency": "string",
        "total": "int64",
        "status": "string",
    },
    "spend": {
        "workspace_id": "int64",
        "day": "date",
        "channel": "string",
        "campaign": "string",
        "cost": "int64",
        "currency": "string",
    },
    "segment_members": {
        "workspace_id": "int64",
        "segment_id": "int64",
        "contact_id": "int64",
        "entered_at": "timestamp",
        "left_at": "timestamp",
    },
    "segments": {"id": "int64", "workspace_id": "int64", "name": "string"},
    "stage_changes": {
        "id": "int64",
        "workspace_id": "int64",
        "contact_id": "int64",
        "stage": "string",
        "changed_at": "timestamp",
    },
}


def table(name: str) -> ir.Table:
    """The unbound fact table ``name``: bound to an engine only when a runner compiles it."""
    return ibis.table(SCHEMAS[name], name=name)


@dataclass(frozen=True)
class Period:
    """Whole UTC days ``first``..``last``, both included."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise Invalid("to: the last day must not be before the first day ('from')")
        if (self.last - self.first).days + 1 > MAX_PERIOD_DAYS:
            raise Invalid(f"to: a period may span at most {MAX_PERIOD_DAYS} days")

    @classmethod
    def parse(cls, first: str | dt.date | None, last: str | dt.date | None, default_days: int = 90) -> Period:
        """From ISO dates; a missing end is today (UTC), a missing start ``default_days`` before the end."""
        end = _date(last, "to") or dt.datetime.now(dt.UTC).date()
        start = _date(first, "from") or end - dt.timedelta(days=default_days - 1)
        return cls(start, end)

    @property
    def start(self) -> dt.datetime:
        """Inclusive, UTC-naive (how the compiled literals are read)."""
        return dt.datetime.combine(self.first, dt.time())

    @property
    def end(self) -> dt.datetime:
        """Exclusive: midnight after the last day."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time())

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _date(value: str | dt.date | None, field: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field}: not an ISO date (YYYY-MM-DD): {value!r}") from None


def valid_orders(workspace_id: int, currency: str | None = None) -> ir.Table:
    """Orders that count: of a known contact, not cancelled or refunded (and in ``currency`` when given)."""
    o = table("orders")
    preds = [o.workspace_id == workspace_id, o.contact_id.notnull(), ~o.status.isin(EXCLUDED_STATUSES)]
    if currency is not None:
        preds.append(o.currency == currency)
    return o.filter(*preds)


def buyers(workspace_id: int, before: dt.datetime) -> ir.Table:
    """One row per contact with an order before ``before``: first order time and number of orders."""
    o = valid_orders(workspace_id)
    o = o.filter(o.placed_at < before)
    return o.group_by(o.contact_id).aggregate(first_at=o.placed_at.min(), n_orders=o.count())


def flag(condition: ir.BooleanValue) -> ir.IntegerValue:
    """1 where ``condition`` holds, else 0 (NULL counts as not holding); PostgreSQL cannot cast bool to bigint."""
    return condition.ifelse(1, 0)


def week_of(ts: ir.TimestampValue) -> ir.DateValue:
    """The Monday starting the ISO week of ``ts`` (UTC), as a date."""
    return ts.truncate("W").date()


def month_of(ts: ir.TimestampValue) -> ir.DateValue:
    return ts.truncate("M").date()


def seconds_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """Whole seconds from ``earlier`` to ``later`` on every engine (SQLite has no interval type)."""
    return (later.epoch_seconds() - earlier.epoch_seconds()).cast("int64")


def days_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """Whole days (floored) from ``earlier`` to ``later``; NULL if either is NULL.

    The NULL guard is explicit because SQLAlchemy gives SQLite connections a Python ``floor`` that fails on NULL.
    """
    days = (seconds_between(later, earlier) / 86400).floor().cast("int64")
    return ibis.ifelse(later.isnull() | earlier.isnull(), ibis.null("int64"), days)


# --- DuckDB snapshots -------------------------------------------------------------------------------------

_DUCK_TYPES = {"int64": "BIGINT", "string": "VARCHAR", "timestamp": "TIMESTAMP", "date": "DATE"}
SNAPSHOT_BATCH = 200_000


def _select_sql(name: str, dialect: str) -> str:
    cols = []
    for col, typ in SCHEMAS[name].items():
        if typ == "timestamp" and dialect == "postgresql":
            cols.append(f"({col} AT TIME ZONE 'UTC') AS {col}")
        else:
            cols.append(col)
    return f"SELECT {', '.join(cols)} FROM {name} WHERE workspace_id = :ws"  # names are ours, not input


def snapshot(
    session: Session,
    workspace_id: int,
    path: str | Path,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy one workspace's facts into a new DuckDB file at ``path`` (replaced if present); rows per table.

    DuckDB's own scanners for SQLite and PostgreSQL are extensions downloaded at run time; copying through the
    session (batches of Arrow columns) needs nothing from outside and reads one consistent transaction.
    """
    import duckdb
    import pyarrow as pa

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    dialect = session.get_bind().dialect.name
    counts: dict[str, int] = {}
    con = duckdb.connect(str(tmp))
    try:
        for name, schema in SCHEMAS.items():
            ddl = ", ".join(f"{col} {_DUCK_TYPES[typ]}" for col, typ in schema.items())
            con.execute(f"CREATE TABLE {name} ({ddl})")
            result = session.connection().execute(sa.text(_select_sql(name, dialect)), {"ws": workspace_id})
            n = 0
            while rows := result.fetchmany(SNAPSHOT_BATCH):
                cols = list(zip(*rows, strict=True))
                batch = pa.table({col: pa.array(values) for col, values in zip(schema, cols, strict=True)})
                con.register("batch", batch)
                casts = ", ".join(f"CAST({col} AS {_DUCK_TYPES[typ]})" for col, typ in schema.items())
                con.execute(f"INSERT INTO {name} SELECT {casts} FROM batch")
                con.unregister("batch")
                n += len(rows)
                if progress:
                    progress(name, n)
            counts[name] = n
        con.execute("CHECKPOINT")
    finally:
        con.close()
    tmp.replace(target)
    return counts
