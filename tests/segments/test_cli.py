"""`storefunnel segment ...` against committed data in the test database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.cli import app
from storefunnel.models import Workspace
from storefunnel.workspaces.service import create_workspace

runner = CliRunner()


@pytest.fixture
def store(committed_session: Session, make: Any) -> Iterator[str]:
    """A committed workspace with three contacts; removed afterwards (members cascade)."""
    ws = create_workspace(committed_session, f"cli-{uuid.uuid4().hex[:8]}")
    make.contact(committed_session, ws.id, email="ana@shop.pt", country="PT")
    make.contact(committed_session, ws.id, email="bob@example.com", country="ES")
    make.contact(committed_session, ws.id, email="carla@example.org", country="PT")
    committed_session.commit()
    yield ws.name
    committed_session.delete(committed_session.get(Workspace, ws.id))
    committed_session.commit()


def run(*args: str) -> Any:
    result = runner.invoke(app, ["segment", *args])
    return result


def test_create_list_show_refresh_members(store: str, tmp_path: Path) -> None:
    rules = tmp_path / "pt.json"
    rules.write_text(json.dumps({"field": "country", "op": "eq", "value": "PT"}))
    r = run("create", "Portugal", "--rules", f"@{rules}", "-w", store)
    assert r.exit_code == 0, r.output
    seg_id = int(r.output.strip().splitlines()[-1])

    listed = json.loads(run("list", "-w", store, "--json").output)
    assert [(s["id"], s["name"], s["member_count"]) for s in listed] == [(seg_id, "Portugal", 2)]
    shown = json.loads(run("show", "Portugal", "-w", store, "--json").output)
    assert shown["rules"] == {"field": "country", "op": "eq", "value": "PT"}
    assert "Portugal (id" in run("show", str(seg_id), "-w", store).output

    refreshed = json.loads(run("refresh", "Portugal", "-w", store, "--json").output)
    assert refreshed == [{"segment_id": seg_id, "entered": 0, "left": 0, "member_count": 2}]
    assert run("refresh", "--all", "-w", store).output.strip().splitlines()[-1].startswith(f"segment {seg_id}:")
    members = json.loads(run("members", "Portugal", "-w", store, "--json").output)
    assert sorted(m["email"] for m in members) == ["ana@shop.pt", "carla@example.org"]


def test_bad_input_is_one_line_and_exit_2(store: str) -> None:
    r = run("create", "Bad", "--rules", '{"field": "country", "op": "gt", "value": 1}', "-w", store)
    assert r.exit_code == 2
    assert "rules.op: 'gt' is not an operator" in r.output
    r = run("create", "Bad", "--rules", "{not json", "-w", store)
    assert (r.exit_code, "--rules: not JSON" in r.output) == (2, True)
    r = run("create", "Bad", "--rules", "@/nonexistent/rules.json", "-w", store)
    assert (r.exit_code, "--rules: cannot read" in r.output) == (2, True)
    r = run("show", "Nope", "-w", store)
    assert (r.exit_code, "no segment named 'Nope'" in r.output) == (2, True)
    r = run("refresh", "-w", store)
    assert r.exit_code == 2


def test_import_csv_of_emails(store: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "name,email\nAna,ana@shop.pt\nStranger,nobody@x.org\nBob,BOB@example.com\nAna again,ana@shop.pt\n"
    )
    r = run("import", "Fair visitors", str(csv_file), "-w", store, "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert (body["added"], body["unknown"], body["member_count"]) == (2, ["nobody@x.org"], 2)
    bare = tmp_path / "bare.csv"
    bare.write_text("carla@example.org\n")
    r = run("import", "Fair visitors", str(bare), "-w", store)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == "3"
    shown = json.loads(run("show", "Fair visitors", "-w", store, "--json").output)
    assert (shown["kind"], shown["member_count"]) == ("static", 3)
