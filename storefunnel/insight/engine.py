"""How an analytic gets its tables: one Ibis expression, compiled for the engine that holds the facts.

Analytics build expressions over *unbound* tables (``storefunnel.insight.facts``) and hand them to a
``Runner``. The SQL runners compile the expression to the session's dialect and run it on the session's own
connection, so an analytic sees exactly what the request's transaction sees (uncommitted test data included)
and Ibis never opens, configures or commits a connection of ours. The DuckDB runner runs the same expression on
a snapshot file of the facts (``snapshot``). Spark would be one more runner: ``ibis.to_sql(expr,
dialect="pyspark")`` on a SparkSession, or the Ibis pyspark backend.

Results are aggregates (a few thousand rows at most), returned as plain Python columns with one type per
column whatever the engine: ``int``, ``float``, ``str``, ``datetime.date``, ``datetime.datetime`` (UTC-naive)
or ``None``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid, NotFound
from storefunnel.models import Workspace

Columns = dict[str, list[Any]]
IBIS_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "duckdb": "duckdb"}


class Runner(Protocol):
    """Something that runs an Ibis table expression over the facts and returns its columns."""

    name: str

    def run(self, expr: ir.Table) -> Columns: ...


def _converter(dtype: idt.DataType) -> Callable[[Any], Any]:
    if dtype.is_integer() or dtype.is_boolean():
        return lambda v: None if v is None else int(v)
    if dtype.is_floating() or dtype.is_decimal():
        return lambda v: None if v is None else float(v)
    if dtype.is_date():
        return _to_date
    if dtype.is_timestamp():
        return _to_datetime
    return lambda v: None if v is None else str(v)


def _to_date(v: Any) -> dt.date | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v)[:10])


def _to_datetime(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, dt.date):
        return dt.datetime.combine(v, dt.time())
    return dt.datetime.fromisoformat(str(v).replace("T", " ")[:26])


def to_columns(expr: ir.Table, rows: Sequence[Sequence[Any]]) -> Columns:
    """Rows from any driver -> one normalised list per column, typed by the expression's schema."""
    schema = expr.schema()
    names = list(schema.names)
    convert = [_converter(schema[n]) for n in names]
    out: Columns = {n: [] for n in names}
    for row in rows:
        for i, name in enumerate(names):
            out[name].append(convert[i](row[i]))
    return out


@lru_cache(maxsize=512)
def compile_sql(expr: ir.Table, dialect: str) -> str:
    """The SQL of ``expr`` for an Ibis dialect; cached, as compiling costs tens of milliseconds a query."""
    return str(ibis.to_sql(expr, dialect=dialect))


@dataclass
class Timing:
    """Compile and run seconds of the last queries, for benchmarks and the query log."""

    compile_s: float = 0.0
    run_s: float = 0.0
    queries: int = 0


@dataclass
class SqlRunner:
    """Runs on the SQLite or PostgreSQL database behind a SQLAlchemy session, inside its transaction."""

    session: Session
    name: str = field(init=False)
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        dialect = self.session.get_bind().dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise Invalid(f"engine: no analytics for database dialect {dialect!r}")
        self.name = dialect

    def compile(self, expr: ir.Table) -> str:
        return compile_sql(expr, IBIS_DIALECTS[self.name])

    def run(self, expr: ir.Table) -> Columns:
        t0 = time.perf_counter()
        sql = self.compile(expr)
        t1 = time.perf_counter()
        conn = self.session.connection()
        if self.name == "postgresql":
            # For this query only: compiled literals and DATE_TRUNC read timestamptz as UTC wall time, and no JIT
            # (it spent 0.7 s compiling each aggregate of a 1M-contact store and won nothing back). The session's
            # settings come back afterwards (a failed query aborts the transaction, whose rollback undoes the
            # SET LOCALs anyway).
            saved = conn.exec_driver_sql(
                "SELECT current_setting('TimeZone'), current_setting('jit'), "
                "set_config('TimeZone', 'UTC', true), set_config('jit', 'off', true)"
            ).one()
            rows = conn.exec_driver_sql(sql).fetchall()
            conn.exec_driver_sql(
                "SELECT set_config('TimeZone', %(tz)s, true), set_config('jit', %(jit)s, true)",
                {"tz": saved[0], "jit": saved[1]},
            )
        else:
            rows = conn.exec_driver_sql(sql).fetchall()
        self.timing.compile_s += t1 - t0
        self.timing.run_s += time.perf_counter() - t1
        self.timing.queries += 1
        return to_columns(expr, rows)


@dataclass
class DuckRunner:
    """Runs on a DuckDB file (a snapshot of the facts) or an open DuckDB connection."""

    con: Any
    name: str = "duckdb"
    timing: Timing = field(default_factory=Timing)
    as_of: dt.datetime | None = None  # when the snapshot was taken (UTC), if known

    def run(self, expr: ir.Table) -> Columns:
        t0 = time.perf_counter()
        sql = compile_sql(expr, "duckdb")
        t1 = time.perf_counter()
        rows = self.con.execute(sql).fetchall()
        self.timing.compile_s += t1 - t0
        self.timing.run_s += time.perf_counter() - t1
        self.timing.queries += 1
        return to_columns(expr, rows)


@contextmanager
def duckdb_runner(path: str | Path) -> Iterator[DuckRunner]:
    """A read-only runner on a snapshot file made by ``storefunnel insight snapshot``."""
    import duckdb

    p = Path(path)
    if not p.exists():
        raise Invalid(f"engine: no DuckDB snapshot at {p}; make one with 'storefunnel insight snapshot'")
    con = duckdb.connect(str(p), read_only=True)
    try:
        yield DuckRunner(con, as_of=dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).replace(tzinfo=None))
    finally:
        con.close()


def workspace_currency(session: Session, workspace_id: int) -> str:
    """The store's currency: revenue and spend in other currencies are left out, never added up."""
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    return ws.currency
