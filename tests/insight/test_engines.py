"""One expression, several engines: each analytic gives the same answer on the database and on DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.insight.channels import channels
from storefunnel.insight.engine import SqlRunner, duckdb_runner
from storefunnel.insight.facts import SCHEMAS, snapshot
from storefunnel.insight.funnel import funnel
from storefunnel.insight.retention import retention
from storefunnel.insight.who_buys import who_buys
from storefunnel.models import Spend, Workspace
from tests.insight.test_funnel import PERIOD, build_store


def all_reports(runner: Any, ws: int) -> dict[str, Any]:
    return {
        "funnel": funnel(runner, ws, PERIOD, window_days=7).as_dict(),
        "channels": channels(runner, ws, PERIOD, "EUR").as_dict(),
        "who_buys": who_buys(runner, ws, PERIOD, "EUR", min_leads=1, min_customers=0).as_dict(),
        "retention": retention(runner, ws, PERIOD, "EUR").as_dict(),
    }


def test_same_answers_on_database_and_duckdb(session: Session, make: Any, workspace: Workspace, tmp_path: Path) -> None:
    build_store(session, make, workspace)
    session.add(
        Spend(
            workspace_id=workspace.id,
            day=dt.date(2026, 3, 5),
            channel="Paid Search",
            campaign="brand",
            cost=5000,
            currency="EUR",
        )
    )
    session.flush()
    ours = all_reports(SqlRunner(session), workspace.id)
    path = tmp_path / "facts.duckdb"
    counts = snapshot(session, workspace.id, path)
    assert counts["contacts"] == 5
    assert counts["orders"] == 6
    assert counts["touches"] == 13
    assert counts["spend"] == 1
    with duckdb_runner(path) as duck:
        theirs = all_reports(duck, workspace.id)
    for name in ours:
        assert theirs[name] == ours[name], name
    assert ours["funnel"]["steps"][1]["count"] == 4  # not vacuous


def test_snapshot_holds_no_personal_data(session: Session, make: Any, workspace: Workspace, tmp_path: Path) -> None:
    import duckdb

    make.contact(session, workspace.id, email="someone@example.com", first_name="Ana")
    path = tmp_path / "f.duckdb"
    snapshot(session, workspace.id, path)
    con = duckdb.connect(str(path), read_only=True)
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'contacts'"
        ).fetchall()
    }
    con.close()
    assert cols == set(SCHEMAS["contacts"])
    assert "email" not in cols


def test_missing_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    from storefunnel.errors import Invalid

    with pytest.raises(Invalid, match=r"^engine: no DuckDB snapshot"), duckdb_runner(tmp_path / "none.duckdb"):
        pass


def test_cli_snapshot_and_duckdb_engine(committed_session: Session, make: Any, tmp_path: Path) -> None:
    """The CLI end to end: JSON from the database and from a snapshot are the same."""
    import json
    import uuid

    from storefunnel.cli import app
    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, f"cli-{uuid.uuid4().hex[:8]}")
    build_store(committed_session, make, ws)
    committed_session.commit()
    runner = CliRunner()
    args = ["--workspace", ws.name, "--from", "2026-03-02", "--to", "2026-03-15", "--json"]
    path = tmp_path / "facts.duckdb"
    snap = runner.invoke(app, ["insight", "snapshot", "--workspace", ws.name, "--to", str(path)])
    assert snap.exit_code == 0, snap.output
    for command in ("funnel", "channels", "who-buys", "retention"):
        db = runner.invoke(app, ["insight", command, *args])
        assert db.exit_code == 0, db.output
        duck = runner.invoke(app, ["insight", command, *args, "--engine", "duckdb", "--snapshot", str(path)])
        assert duck.exit_code == 0, duck.output
        assert json.loads(db.stdout) == json.loads(duck.stdout), command
    funnel_json = json.loads(runner.invoke(app, ["insight", "funnel", *args]).stdout)
    assert [s["count"] for s in funnel_json["steps"]] == [7, 4, 2, 1]
    bad = runner.invoke(app, ["insight", "funnel", "--workspace", ws.name, "--from", "March"])
    assert bad.exit_code == 2
    assert "from: not an ISO date" in bad.stderr
