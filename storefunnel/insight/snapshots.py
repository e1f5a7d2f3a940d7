"""Which engine answers the owner's questions: the live database, or a DuckDB snapshot once the store is large.

Measured (bench/RESULTS.md, "Insight"): every analytic is 5 to 13 times faster on a DuckDB copy of the facts than
on PostgreSQL at 1M contacts, where PostgreSQL takes 3 to 21 s a page; below about 50,000 contacts the live
database answers within a second and is never stale. So the default (``STOREFUNNEL_ANALYTICS_ENGINE=auto``) is
the live database for small stores and, for a store with at least ``snapshot_min_contacts`` contacts, a snapshot
the worker refreshes every ``snapshot_max_age_s`` seconds; each answer says which engine gave it and, for a
snapshot, as of when. ``database`` or ``duckdb`` force one engine.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefunnel.config import get_settings
from storefunnel.errors import Invalid
from storefunnel.insight.engine import Runner, SqlRunner, duckdb_runner
from storefunnel.insight.facts import snapshot
from storefunnel.models import Contact, Workspace

log = logging.getLogger("storefunnel.insight")


def snapshot_path(workspace_id: int) -> Path:
    """Per database and workspace: two databases sharing a data directory never read each other's snapshot."""
    settings = get_settings()
    database = hashlib.sha256(settings.database_url.encode()).hexdigest()[:16]
    return settings.data_dir / "snapshots" / database / f"workspace-{workspace_id}.duckdb"


def snapshot_age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


@contextmanager
def analytics_runner(session: Session, workspace_id: int) -> Iterator[Runner]:
    """The runner for this workspace by the measured rule above (see the module docstring)."""
    settings = get_settings()
    choice = settings.analytics_engine
    if choice == "database":
        yield SqlRunner(session)
        return
    path = snapshot_path(workspace_id)
    age = snapshot_age_s(path)
    if choice == "duckdb" and age is None:
        raise Invalid(
            "engine: no snapshot of this workspace yet; the worker makes one (or 'storefunnel insight snapshot')"
        )
    if choice == "duckdb" or (age is not None and age <= settings.snapshot_max_age_s):
        with duckdb_runner(path) as runner:
            yield runner
        return
    yield SqlRunner(session)


def source(runner: Runner) -> dict[str, Any]:
    """What an answer was computed on, for the page to say so: the engine and, for a snapshot, its time."""
    as_of = getattr(runner, "as_of", None)
    return {"engine": runner.name, "as_of": as_of.isoformat() if as_of else None}


def due_workspaces(session: Session, min_contacts: int, max_age_s: float) -> list[int]:
    """Workspaces large enough for a snapshot whose snapshot is missing or at least half its allowed age."""
    sizes = session.execute(
        sa.select(Contact.workspace_id, sa.func.count())
        .group_by(Contact.workspace_id)
        .having(sa.func.count() >= min_contacts)
    ).all()
    due = []
    for ws, _ in sizes:
        age = snapshot_age_s(snapshot_path(ws))
        if age is None or age >= max_age_s / 2:
            due.append(int(ws))
    return sorted(due)


def refresh_snapshots(maker: sessionmaker[Session], only: set[int] | None = None) -> int:
    """Re-snapshot every large workspace that is due (run by the worker; ``only`` limits it to some workspaces);
    returns how many were written."""
    settings = get_settings()
    if settings.analytics_engine == "database":
        return 0
    with maker() as session:
        due = due_workspaces(session, settings.snapshot_min_contacts, settings.snapshot_max_age_s)
    due = [ws for ws in due if only is None or ws in only]
    for ws in due:
        with maker() as session:
            if session.get(Workspace, ws) is None:
                continue
            t0 = time.perf_counter()
            counts = snapshot(session, ws, snapshot_path(ws))
            session.rollback()
        log.info("snapshot of workspace %s: %s rows in %.1f s", ws, sum(counts.values()), time.perf_counter() - t0)
    return len(due)
