"""`storefunnel cycle …` against the real test database (committed data, cleaned up after)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.cli import app
from storefunnel.models import Contact, Order, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import day

runner = CliRunner()


@pytest.fixture
def store(committed_session: Session) -> Iterator[str]:
    s = committed_session
    ws = create_workspace(s, f"cli-cycle-{uuid.uuid4().hex[:8]}")
    buyer = Contact(workspace_id=ws.id, email="buyer@example.com", created_at=day(0))
    s.add_all([buyer, Contact(workspace_id=ws.id, email="quiet@example.com", created_at=day(0))])
    s.flush()
    s.add(Order(workspace_id=ws.id, contact_id=buyer.id, placed_at=day(2), currency="EUR", external_id="o1"))
    s.commit()
    yield ws.name
    s.execute(sa.delete(Workspace).where(Workspace.id == ws.id))
    s.commit()


def test_recompute_stages_pipeline_json(store: str) -> None:
    r = runner.invoke(app, ["cycle", "recompute", "-w", store, "--as-of", "2026-01-05T00:00:00Z", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output.strip().splitlines()[-1])
    assert body["counts"]["buying"] == 1
    assert body["counts"]["prospecting"] == 1
    assert body["transitions"] == 3
    r = runner.invoke(app, ["cycle", "stages", "-w", store, "--json"])
    assert json.loads(r.output)["total"] == 2
    r = runner.invoke(
        app, ["cycle", "pipeline", "-w", store, "--from", "2026-01-01", "--to", "2026-01-05T00:00:00Z", "--json"]
    )
    assert r.exit_code == 0, r.output
    conv = json.loads(r.output)["conversions"]
    assert conv == [
        {
            "from_stage": "prospecting",
            "to_stage": "buying",
            "count": 1,
            "of": 2,
            "rate": 0.5,
            "low": conv[0]["low"],
            "high": conv[0]["high"],
        }
    ]
    r = runner.invoke(app, ["cycle", "pipeline", "-w", store])
    assert r.exit_code == 0, r.output
    assert "prospecting" in r.output


def test_rules_show_set_and_refuse(store: str) -> None:
    r = runner.invoke(app, ["cycle", "rules", "-w", store, "--json"])
    assert json.loads(r.output)["thank_you_window_days"] == 7
    r = runner.invoke(app, ["cycle", "rules", "-w", store, "--set", "lapse_days=3"])
    assert r.exit_code == 2
    assert "lapse_days" in r.output
    r = runner.invoke(app, ["cycle", "rules", "-w", store, "--set", "lapse_days=30", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["lapse_days"] == 30
    r = runner.invoke(app, ["cycle", "stages", "-w", store, "--json"])
    assert json.loads(r.output)["counts"]["lapsed"] == 2  # recomputed as of now: both went quiet long ago


def test_tick_and_unknown_workspace(store: str) -> None:
    r = runner.invoke(app, ["cycle", "tick", "-w", store, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["transitions"] >= 2
    r = runner.invoke(app, ["cycle", "stages", "-w", "no-such-store"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["cycle", "recompute", "-w", store, "--as-of", "soon"])
    assert r.exit_code == 2
    assert "--as-of" in r.output
