"""The model on a simulated store: it must find the planted signal, and its explanations must add up."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.models import ContactScore, Order, ScoringModel, Touch, Workspace
from storefunnel.scoring import features as F
from storefunnel.scoring import model as M
from storefunnel.scoring import service
from tests.scoring.helpers import SimStore


def test_beats_recency_and_finds_the_buying_group(session: Session, sim: SimStore) -> None:
    """Planted truth: in-market odds x3 for the group, and channels that persuade unequally.

    Recency alone knows neither; a model that learnt them must rank next month's first buyers better.
    """
    summary = service.model_summary(session, sim.workspace_id)
    m = summary["metrics"]
    assert m["holdout_buyers"] >= 50
    assert m["auc"] > m["recency_auc"] + 0.01
    weights = {c["feature"]: c["weight"] for c in summary["coefficients"]}
    assert weights[f"segment:{sim.segment_id}"] > 0.1
    # The calibration table covers the holdout, and its buyers are the holdout's buyers.
    cal = m["calibration"]
    assert sum(b["contacts"] for b in cal) == m["n_holdout"]
    assert sum(b["buyers"] for b in cal) == m["holdout_buyers"]
    assert cal[-1]["observed"] > 5 * max(cal[0]["observed"], 1e-9)  # the top tenth buys far more than the bottom
    assert abs(np.mean([b["predicted"] for b in cal]) - m["base_rate"]) < 0.5 * m["base_rate"]


def test_holdout_metrics_against_sklearn_directly(session: Session, sim: SimStore) -> None:
    """Recompute the holdout AUCs from the matrices with scikit-learn, independent of the stored numbers."""
    from sklearn.metrics import roc_auc_score

    row = service.require_model(session, sim.workspace_id)
    spec = F.Spec.from_dict(row.params["spec"])
    hold_cut = sim.as_of - dt.timedelta(days=row.horizon_days)
    hold = F.build(session, sim.workspace_id, spec, hold_cut, horizon_days=row.horizon_days)
    assert hold.label is not None
    assert len(hold) == row.metrics["n_holdout"]
    assert roc_auc_score(hold.label, -hold.days_since_last_touch) == pytest.approx(row.metrics["recency_auc"])


def test_scores_cover_every_non_customer(session: Session, sim: SimStore) -> None:
    ws = sim.workspace_id
    n_scores = session.scalar(sa.select(sa.func.count()).where(ContactScore.workspace_id == ws))
    customers = session.scalar(sa.select(sa.func.count(sa.distinct(Order.contact_id))).where(Order.workspace_id == ws))
    assert n_scores == sim.truth["counts"]["contacts"] - customers
    scores = session.scalars(sa.select(ContactScore.score).where(ContactScore.workspace_id == ws)).all()
    assert all(0.0 < s < 1.0 for s in scores)


def test_explanations_add_up_to_the_logit(session: Session, sim: SimStore) -> None:
    ws = sim.workspace_id
    top = session.scalars(
        sa.select(ContactScore).where(ContactScore.workspace_id == ws).order_by(ContactScore.score.desc()).limit(3)
    ).all()
    bottom = session.scalars(
        sa.select(ContactScore).where(ContactScore.workspace_id == ws).order_by(ContactScore.score).limit(2)
    ).all()
    for stored in [*top, *bottom]:
        e = service.explain(session, ws, stored.contact_id)
        total = e["base"] + sum(f["contribution"] for f in e["factors"])
        assert total == pytest.approx(e["logit"], abs=1e-9)
        assert e["logit"] == pytest.approx(stored.logit, abs=1e-9)
        assert e["fit"] == pytest.approx(stored.fit, abs=1e-9)
        assert e["engagement"] == pytest.approx(stored.engagement, abs=1e-9)
        assert e["fit"] + e["engagement"] + e["base"] == pytest.approx(e["logit"], abs=1e-9)
        assert e["score"] == pytest.approx(1.0 / (1.0 + math.exp(-e["logit"])))
        assert e["score"] == pytest.approx(stored.score)
        assert all(f["text"] for f in e["factors"])


def test_follow_up_list_is_top_non_customers_with_last_three_touches(session: Session, sim: SimStore) -> None:
    ws = sim.workspace_id
    leads = service.leads_to_follow_up(session, ws, 10)
    assert len(leads) == 10
    assert [x["score"] for x in leads] == sorted((x["score"] for x in leads), reverse=True)
    best = session.scalars(
        sa.select(ContactScore.score).where(ContactScore.workspace_id == ws).order_by(ContactScore.score.desc())
    ).first()
    assert leads[0]["score"] == best
    for lead in leads:
        cid = lead["contact_id"]
        assert session.scalar(sa.select(sa.func.count()).where(Order.contact_id == cid)) == 0
        expected = session.execute(
            sa.select(Touch.occurred_at, Touch.channel)
            .where(Touch.workspace_id == ws, Touch.contact_id == cid)
            .order_by(Touch.occurred_at.desc(), Touch.id.desc())
            .limit(3)
        ).all()
        assert [(t["occurred_at"], t["channel"]) for t in lead["last_touches"]] == [tuple(r) for r in expected]
        assert lead["top_factors"]
        assert all(f["contribution"] > 0 for f in lead["top_factors"])


def test_group_member_explanation_names_the_target_group(session: Session, sim: SimStore) -> None:
    ws = sim.workspace_id
    member = session.execute(
        sa.text(
            "SELECT m.contact_id FROM segment_members m JOIN contact_scores s ON s.contact_id = m.contact_id "
            "WHERE m.segment_id = :seg AND m.left_at IS NULL ORDER BY m.contact_id LIMIT 1"
        ),
        {"seg": sim.segment_id},
    ).scalar_one()
    e = service.explain(session, ws, member)
    factor = next(f for f in e["factors"] if f["feature"] == f"segment:{sim.segment_id}")
    assert factor["text"] == "In target group Porto women 25-29"
    assert factor["contribution"] > 0


def test_not_enough_history_is_a_clear_error(session: Session, workspace: Workspace) -> None:
    with pytest.raises(Invalid, match="not enough history"):
        service.train(session, workspace.id)
    assert session.scalar(sa.select(sa.func.count()).where(ScoringModel.workspace_id == workspace.id)) == 0


def test_model_math() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(float)
    fitted = M.fit(x, y)
    contrib = fitted.contributions(x)
    assert np.allclose(contrib.sum(axis=1) + fitted.intercept, fitted.logits(x))
    assert fitted.coef[0] > abs(fitted.coef[1])
    assert M.auc(np.ones(3), np.arange(3.0)) is None
    assert M.sigmoid(np.array([1000.0, -1000.0])).tolist() == [1.0, 0.0]
