"""Which engine answers: the live database for small stores, a fresh DuckDB snapshot for large ones."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel import config
from storefunnel.db import get_sessionmaker
from storefunnel.errors import Invalid
from storefunnel.insight.funnel import funnel_report
from storefunnel.insight.snapshots import analytics_runner, due_workspaces, refresh_snapshots, snapshot_path
from storefunnel.models import Workspace
from tests.insight.test_funnel import PERIOD, build_store


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[config.Settings]:
    """Settings with a private data directory; the database URL stays the suite's."""
    monkeypatch.setenv("STOREFUNNEL_DATA_DIR", str(tmp_path))
    config.get_settings.cache_clear()
    try:
        yield config.get_settings()
    finally:
        config.get_settings.cache_clear()


def set_engine(monkeypatch: pytest.MonkeyPatch, engine: str, **extra: Any) -> None:
    monkeypatch.setenv("STOREFUNNEL_ANALYTICS_ENGINE", engine)
    for key, value in extra.items():
        monkeypatch.setenv(f"STOREFUNNEL_{key.upper()}", str(value))
    config.get_settings.cache_clear()


def test_small_store_reads_the_live_database(
    settings: config.Settings, session: Session, make: Any, workspace: Workspace
) -> None:
    build_store(session, make, workspace)
    report = funnel_report(session, workspace.id, PERIOD)
    assert report["source"] == {"engine": session.get_bind().dialect.name, "as_of": None}
    assert not snapshot_path(workspace.id).exists()


def test_large_store_reads_its_fresh_snapshot(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, committed_session: Session, make: Any
) -> None:
    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, "snap-" + os.urandom(4).hex())
    build_store(committed_session, make, ws)
    committed_session.commit()
    try:
        live = funnel_report(committed_session, ws.id, PERIOD)
        set_engine(monkeypatch, "auto", snapshot_min_contacts=4, snapshot_max_age_s=600)
        with get_sessionmaker()() as s:
            assert ws.id in due_workspaces(s, 4, 600)
        assert refresh_snapshots(get_sessionmaker(), only={ws.id}) == 1
        path = snapshot_path(ws.id)
        assert path.exists()
        with get_sessionmaker()() as s:
            assert ws.id not in due_workspaces(s, 4, 600)  # fresh: not due again
        snap = funnel_report(committed_session, ws.id, PERIOD)
        assert snap["source"]["engine"] == "duckdb"
        assert snap["source"]["as_of"] is not None
        assert {k: v for k, v in snap.items() if k != "source"} == {k: v for k, v in live.items() if k != "source"}
        old = time.time() - 700
        os.utime(path, (old, old))  # older than the allowed age: the live database answers again
        assert funnel_report(committed_session, ws.id, PERIOD)["source"]["engine"] != "duckdb"
        set_engine(monkeypatch, "database", snapshot_min_contacts=4, snapshot_max_age_s=600)
        os.utime(path)
        assert funnel_report(committed_session, ws.id, PERIOD)["source"]["engine"] != "duckdb"
        assert refresh_snapshots(get_sessionmaker(), only={ws.id}) == 0
    finally:
        committed_session.rollback()
        committed_session.execute(sa.delete(Workspace).where(Workspace.id == ws.id))
        committed_session.commit()


def test_forced_duckdb_without_snapshot_is_a_clear_error(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, session: Session, workspace: Workspace
) -> None:
    set_engine(monkeypatch, "duckdb")
    with pytest.raises(Invalid, match=r"^engine: no snapshot"), analytics_runner(session, workspace.id):
        pass


def test_snapshots_of_two_databases_never_mix(settings: config.Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    first = snapshot_path(1)
    monkeypatch.setenv("STOREFUNNEL_DATABASE_URL", "sqlite:////tmp/another.db")
    config.get_settings.cache_clear()
    assert snapshot_path(1) != first
