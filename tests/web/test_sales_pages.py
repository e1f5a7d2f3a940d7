"""Sales pages through the TestClient: Pipeline against the stored stages, follow-up list, contact page, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.cycle import service as cycle
from storefunnel.models import Contact, ScoringModel, StageChange, User
from storefunnel.scoring import service as scoring
from storefunnel.workspaces.service import create_user
from tests.scoring.helpers import SimStore, drop, simulated_store
from tests.web.helpers import PASSWORD, csrf_from, login


@pytest.fixture(scope="module")
def store(engine: Engine) -> Iterator[SimStore]:
    today = dt.datetime.now(dt.UTC).date()
    s = simulated_store(engine, contacts=2500, days=100, seed=3, anchor=today)
    with Session(engine) as sess:
        cycle.recompute(sess, s.workspace_id)
        sess.commit()
    yield s
    drop(engine, s.workspace_id)


@pytest.fixture
def seller(session: Session, store: SimStore) -> User:
    return create_user(session, store.workspace_id, f"seller-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)


def _signed_in(client: TestClient, user: User) -> None:
    status, _ = login(client, user.email)
    assert status == 303


def test_pages_need_sign_in(client: TestClient) -> None:
    for path in ("/sales/pipeline", "/sales/follow-up", "/sales/contacts/1"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=/sales/")
    assert client.get("/dashboard-data/pipeline.csv").status_code == 401


def test_pipeline_counts_match_the_database(
    client: TestClient, session: Session, seller: User, store: SimStore
) -> None:
    _signed_in(client, seller)
    r = client.get("/sales/pipeline?preset=30")
    assert r.status_code == 200
    html = r.text
    counts = dict(
        session.execute(
            sa.select(Contact.stage, sa.func.count())
            .where(Contact.workspace_id == store.workspace_id, Contact.stage.is_not(None))
            .group_by(Contact.stage)
        ).all()
    )
    shown = {m[0]: int(m[1]) for m in re.findall(r'<tr data-stage="(\w+)" data-contacts="(\d+)"', html)}
    assert {k: v for k, v in shown.items() if v} == counts
    assert f'data-figure="total" data-value="{sum(counts.values())}"' in html
    assert "<svg" in html
    assert 'data-chart="stages"' in html
    assert "Wilson" in html
    assert html.count('<tr data-from="') >= 1

    # The CSV says what the cycle service says for the same days.
    query = re.search(r'href="/dashboard-data/pipeline.csv\?([^"]+)"', html)
    assert query
    body = client.get("/dashboard-data/pipeline.csv?" + query.group(1).replace("&amp;", "&"))
    assert body.status_code == 200
    assert body.headers["content-type"].startswith("text/csv")
    stages_part, conv_part = body.text.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(stages_part)))
    assert {r["stage"]: int(r["contacts_at_end"]) for r in rows if int(r["contacts_at_end"])} == counts
    conv = list(csv.DictReader(io.StringIO(conv_part)))
    for c in conv:
        assert float(c["low_95"]) <= float(c["rate"]) <= float(c["high_95"])
        assert float(c["rate"]) == pytest.approx(int(c["count"]) / int(c["of"]), abs=1e-4)


def test_pipeline_bad_range_is_422_on_the_page(client: TestClient, seller: User) -> None:
    _signed_in(client, seller)
    r = client.get("/sales/pipeline?from=2026-13-01&to=2026-01-02")
    assert r.status_code == 422
    assert "from: expected a date" in r.text


def test_follow_up_and_contact_page(client: TestClient, session: Session, seller: User, store: SimStore) -> None:
    _signed_in(client, seller)
    html = client.get("/sales/follow-up").text
    ids = [int(x) for x in re.findall(r'<tr data-contact="(\d+)"', html)]
    expected = [x["contact_id"] for x in scoring.leads_to_follow_up(session, store.workspace_id, 25)]
    assert ids == expected
    assert f'href="/sales/contacts/{ids[0]}"' in html

    page = client.get(f"/sales/contacts/{ids[0]}").text
    history = session.scalars(
        sa.select(StageChange).where(StageChange.contact_id == ids[0]).order_by(StageChange.changed_at)
    ).all()
    assert history
    assert page.count('<tr data-stage="') == len(history)
    e = scoring.explain(session, store.workspace_id, ids[0])
    assert f'data-value="{e["score"]}"' in page
    contributions = [float(v) for v in re.findall(r'data-contribution="([-0-9.e]+)"', page)]
    assert contributions
    assert all(abs(v) >= 0.05 for v in contributions)
    top = max(e["factors"], key=lambda f: abs(f["contribution"]))
    assert top["text"] in page


def test_contact_of_another_store_is_404(client: TestClient, session: Session, user: User, store: SimStore) -> None:
    _signed_in(client, user)  # a user of another workspace
    cid = session.scalar(sa.select(Contact.id).where(Contact.workspace_id == store.workspace_id))
    r = client.get(f"/sales/contacts/{cid}")
    assert r.status_code == 404
    assert "Train the model" in client.get("/sales/follow-up").text  # no model in that workspace


def test_retrain_button_needs_csrf_and_trains(
    client: TestClient, session: Session, seller: User, store: SimStore
) -> None:
    _signed_in(client, seller)
    before = session.scalar(sa.select(sa.func.count()).where(ScoringModel.workspace_id == store.workspace_id))
    assert client.post("/sales/follow-up/train", follow_redirects=False).status_code == 403
    token = csrf_from(client.get("/sales/follow-up").text)
    r = client.post("/sales/follow-up/train", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    after = session.scalar(sa.select(sa.func.count()).where(ScoringModel.workspace_id == store.workspace_id))
    assert after == before + 1


def test_retrain_without_history_says_why(client: TestClient, user: User) -> None:
    _signed_in(client, user)
    token = csrf_from(client.get("/sales/follow-up").text)
    r = client.post("/sales/follow-up/train", data={"csrf_token": token})
    assert r.status_code == 422
    assert "not enough history" in r.text
