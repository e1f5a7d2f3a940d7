"""One simulated store per test run (fixed seed), committed, shared by the model service tests."""

from __future__ import annotations

import datetime as dt
import uuid
from functools import lru_cache
from typing import Any

from storefunnel import db as dbmod
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace

SEED = 11
CONTACTS = 16_000
DAYS = 365
ANCHOR = dt.date(2026, 11, 1)


@lru_cache(maxsize=4)
def simulated_store(database_url: str) -> tuple[int, dict[str, Any]]:
    """(workspace id, planted truth) of a store simulated once per database."""
    with dbmod.get_sessionmaker()() as session:
        ws = create_workspace(session, f"sim-{uuid.uuid4().hex[:8]}")
        session.commit()
        workspace_id = ws.id
    engine = dbmod.get_engine()
    truth = simulate_store(engine, workspace_id, contacts=CONTACTS, days=DAYS, seed=SEED, anchor=ANCHOR)
    if engine.dialect.name == "postgresql":
        # Fresh planner statistics after the bulk load, as autovacuum would give them a minute later: without
        # them PostgreSQL plans the analytics' joins as if the tables were empty.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE contacts, touches, orders, order_lines, products")
    return workspace_id, truth
