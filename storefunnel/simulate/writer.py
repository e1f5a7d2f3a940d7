"""Bulk writing of generated column arrays: COPY on PostgreSQL, executemany on SQLite, inside one transaction.

The ORM would build an object per row; at a million touches that is most of the run, so rows go to the driver
as tuples. Ids that other rows point at are handed out here: from the table's sequence on PostgreSQL (safe next
to other writers), above the current maximum on SQLite (whose write lock the transaction already holds).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa

from storefunnel.simulate.params import PAID_CAMPAIGNS

SQLITE_CACHE_KIB = 256 * 1024


def python_column(values: Any, dialect: str) -> list[Any]:
    """One column as plain Python values the driver takes: times as UTC text, NaT as None."""
    if isinstance(values, list):
        return values
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        if arr.dtype == np.dtype("datetime64[D]"):
            return list(np.datetime_as_string(arr, unit="D").tolist())
        text = np.datetime_as_string(arr.astype("datetime64[us]"), unit="us")
        if dialect == "sqlite":
            # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' on SQLite; range filters compare these strings.
            text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")
        else:
            text = np.char.add(text, "+00")
        nat = np.isnat(arr)
        if nat.any():
            obj = text.astype(object)
            obj[nat] = None
            return list(obj.tolist())
        return list(text.tolist())
    return list(arr.tolist())


class BulkWriter:
    """Writes tables through the connection's own DBAPI connection, so everything shares its transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.raw: Any = conn.connection.driver_connection
        self._next: dict[str, int] = {}
        self.rows_written = 0
        self._cache_size: int | None = None
        if self.dialect == "sqlite":
            # Touches arrive in contact order, so the time index takes random inserts: keep it in memory.
            self._cache_size = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def close(self) -> None:
        """Give the pooled connection its usual page cache back."""
        if self._cache_size is not None:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {self._cache_size}")
            self._cache_size = None

    def alloc(self, table: str, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self.dialect == "postgresql":
            rows = self.conn.exec_driver_sql(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, {int(n)})"
            ).scalars()
            return np.fromiter(rows, dtype=np.int64, count=n)
        if table not in self._next:
            self._next[table] = int(self.conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table}").scalar_one())
        first = self._next[table] + 1
        self._next[table] += n
        return np.arange(first, first + n, dtype=np.int64)

    def insert(self, table: str, columns: dict[str, Any]) -> int:
        names = list(columns)
        data = [python_column(columns[c], self.dialect) for c in names]
        n = len(data[0]) if data else 0
        if n == 0:
            return 0
        rows: Iterable[tuple[Any, ...]] = zip(*data, strict=True)
        if self.dialect == "postgresql":
            cur = self.raw.cursor()
            with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.close()
        else:
            marks = ", ".join("?" for _ in names)
            cur = self.raw.cursor()
            cur.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)
            cur.close()
        self.rows_written += n
        return n


def _foreign_key_children(conn: sa.Connection, parents: set[str]) -> list[tuple[str, str]]:
    """(table, column) of every single-column foreign key pointing at one of ``parents``."""
    inspector = sa.inspect(conn)
    found = []
    for table in inspector.get_table_names():
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] in parents and len(fk["constrained_columns"]) == 1:
                found.append((table, fk["constrained_columns"][0]))
    return sorted(set(found))


def delete_simulated(conn: sa.Connection, workspace_id: int) -> None:
    """Remove the rows an earlier run wrote into this workspace (found by their markers), children first.

    Deleting a parent row makes the database look up its children by the foreign key column; the schema's
    indexes lead with workspace_id, so without help each deleted contact would scan all touches. Helper
    indexes on those columns live only for the length of this transaction.
    """
    helpers = []
    for table, column in _foreign_key_children(conn, {"contacts", "orders", "products"}):
        name = f"ix_simreplace_{table}_{column}"[:60]
        conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({column})")
        helpers.append(name)
    ws = {"ws": workspace_id}
    sim_contacts = "SELECT id FROM contacts WHERE workspace_id = :ws AND external_id LIKE 'sim-%'"
    sim_orders = "SELECT id FROM orders WHERE workspace_id = :ws AND source = 'simulator'"
    statements = [
        f"DELETE FROM order_lines WHERE workspace_id = :ws AND order_id IN ({sim_orders})",
        "DELETE FROM orders WHERE workspace_id = :ws AND source = 'simulator'",
        f"DELETE FROM touches WHERE workspace_id = :ws AND contact_id IN ({sim_contacts})",
        "DELETE FROM touches WHERE workspace_id = :ws AND anonymous_id LIKE 'sim-%'",
        f"DELETE FROM identities WHERE workspace_id = :ws AND contact_id IN ({sim_contacts})",
        f"DELETE FROM stage_changes WHERE workspace_id = :ws AND contact_id IN ({sim_contacts})",
        "DELETE FROM contacts WHERE workspace_id = :ws AND external_id LIKE 'sim-%'",
        "DELETE FROM products WHERE workspace_id = :ws AND sku LIKE 'SIM-%'",
    ]
    for stmt in statements:
        conn.execute(sa.text(stmt), ws)
    campaigns = sorted({c for _, c, _ in PAID_CAMPAIGNS})
    conn.execute(
        sa.text("DELETE FROM spend WHERE workspace_id = :ws AND campaign IN :campaigns").bindparams(
            sa.bindparam("campaigns", expanding=True)
        ),
        {**ws, "campaigns": campaigns},
    )
    for name in helpers:
        conn.exec_driver_sql(f"DROP INDEX {name}")


def count_contacts(conn: sa.Connection, workspace_id: int) -> int:
    return int(
        conn.execute(
            sa.text("SELECT COUNT(*) FROM contacts WHERE workspace_id = :ws"), {"ws": workspace_id}
        ).scalar_one()
    )
