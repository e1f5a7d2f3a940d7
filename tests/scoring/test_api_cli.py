"""/api/v1/scoring and `storefunnel score` against the simulated store; bad input is a 4xx naming the field."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.auth.keys import create_key
from storefunnel.cli import app
from storefunnel.models import ContactScore, KeyKind
from storefunnel.scoring import service
from tests.scoring.helpers import SimStore

URL = "/api/v1/scoring"


def headers(session: Session, workspace_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(session, workspace_id, KeyKind.api)[1]}"}


def test_model_scores_explanation_follow_up(client: TestClient, session: Session, sim: SimStore) -> None:
    h = headers(session, sim.workspace_id)
    model = client.get(f"{URL}/model", headers=h).json()
    assert model["metrics"]["auc"] > model["metrics"]["recency_auc"]
    assert model["target_segments"] == {str(sim.segment_id): "Porto women 25-29"}
    page = client.get(f"{URL}/scores", params={"limit": 5}, headers=h).json()
    assert len(page["data"]) == 5
    nxt = client.get(f"{URL}/scores", params={"limit": 5, "cursor": page["next_cursor"]}, headers=h).json()
    both = [d["score"] for d in page["data"] + nxt["data"]]
    assert both == sorted(both, reverse=True)
    top = session.scalars(
        sa.select(ContactScore.contact_id)
        .where(ContactScore.workspace_id == sim.workspace_id)
        .order_by(ContactScore.score.desc(), ContactScore.contact_id.desc())
        .limit(10)
    ).all()
    assert [d["contact_id"] for d in page["data"] + nxt["data"]] == list(top)
    cid = page["data"][0]["contact_id"]
    e = client.get(f"{URL}/contacts/{cid}", headers=h).json()
    assert abs(e["base"] + sum(f["contribution"] for f in e["factors"]) - e["logit"]) < 1e-9
    leads = client.get(f"{URL}/leads-to-follow-up", params={"limit": 3}, headers=h).json()
    assert len(leads) == 3
    assert all(len(x["last_touches"]) <= 3 for x in leads)


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


def test_bad_input_and_isolation(client: TestClient, session: Session, sim: SimStore, auth: dict[str, str]) -> None:
    # Another workspace sees no model and none of this store's contacts.
    assert "no scoring model" in problem(client.get(f"{URL}/model", headers=auth), 404)["detail"]
    assert problem(client.get(f"{URL}/contacts/{_any_scored(session, sim)}", headers=auth), 404)
    assert "not enough history" in problem(client.post(f"{URL}/train", headers=auth), 422)["detail"]
    body = problem(client.post(f"{URL}/train", json={"horizon_days": 3}, headers=auth), 422)
    assert body["detail"].startswith("horizon_days")
    body = problem(client.post(f"{URL}/train", json={"target_segments": [sim.segment_id]}, headers=auth), 422)
    assert body["detail"].startswith("target_segments")
    h = headers(session, sim.workspace_id)
    assert problem(client.get(f"{URL}/scores", params={"cursor": "nonsense"}, headers=h), 422)["detail"].startswith(
        "cursor"
    )
    assert problem(client.get(f"{URL}/leads-to-follow-up", params={"limit": 0}, headers=h), 422)
    assert problem(client.get(f"{URL}/model"), 401)


def _any_scored(session: Session, sim: SimStore) -> int:
    return int(
        session.scalar(sa.select(ContactScore.contact_id).where(ContactScore.workspace_id == sim.workspace_id)) or 0
    )


def test_cli_show_and_leads(sim: SimStore) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["score", "show", "-w", sim.name, "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output.strip().splitlines()[-1])
    assert body["metrics"]["auc"] > body["metrics"]["recency_auc"]
    r = runner.invoke(app, ["score", "leads", "-w", sim.name, "--limit", "4", "--json"])
    assert r.exit_code == 0, r.output
    leads = json.loads(r.output.strip().splitlines()[-1])
    assert len(leads) == 4
    r = runner.invoke(app, ["score", "show", "-w", sim.name])
    assert r.exit_code == 0
    assert "holdout AUC" in r.output
    r = runner.invoke(app, ["score", "train", "-w", "no-such-store-here"])
    assert r.exit_code == 2
    assert "error" in r.output


def test_cli_train_retrains(engine: Any) -> None:
    """A retrain from the shell stores a new model and rescored everyone (its own store, dropped after)."""
    import datetime as dt

    from tests.scoring.helpers import drop, simulated_store

    today = dt.datetime.now(dt.UTC).date()
    store = simulated_store(engine, contacts=2500, days=100, seed=11, anchor=today, train=False)
    try:
        r = CliRunner().invoke(app, ["score", "train", "-w", store.name, "--json"])
        assert r.exit_code == 0, r.output
        body = json.loads(r.output.strip().splitlines()[-1])
        assert body["scored"] > 0
        assert body["horizon_days"] == 30
        with Session(engine) as s:
            assert service.scored_count(s, store.workspace_id) == body["scored"]
    finally:
        drop(engine, store.workspace_id)
