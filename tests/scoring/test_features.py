"""The feature query against hand-built contacts: every number computed by hand from the definitions."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from storefunnel.models import Contact, Segment, SegmentMember, Workspace
from storefunnel.scoring import features as F
from storefunnel.workspaces.service import create_workspace

T = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
HALF_LIFE = 14.0


def days(n: float) -> dt.datetime:
    return T + dt.timedelta(days=n)


def w(age_days: float) -> float:
    return 2.0 ** (-age_days / HALF_LIFE)


@pytest.fixture
def facts(session: Session, workspace: Workspace, make: Any) -> dict[str, Any]:
    ws = workspace.id
    fan = make.contact(
        session,
        ws,
        country="PT",
        city="Porto",
        age_band="25-29",
        gender="female",
        lead_channel="Email",
        created_at=days(-20),
        lead_at=days(-20),
    )
    make.touch(session, ws, fan, occurred_at=days(-1), kind="track", event="Email Opened", channel="Email")
    make.touch(session, ws, fan, occurred_at=days(-8), kind="track", event="Email Opened", channel="Email")
    make.touch(session, ws, fan, occurred_at=days(-3), kind="page", event="Page Viewed", channel="Direct")
    make.touch(session, ws, fan, occurred_at=days(-15), kind="track", event="Product Added", channel="Paid Search")
    make.touch(session, ws, fan, occurred_at=days(2), kind="page", channel="Direct")  # after the cutoff: unseen
    make.order(session, ws, fan, placed_at=days(40))  # beyond a 30-day horizon: label 0

    quiet = make.contact(session, ws, country="ES", city="Madrid", created_at=days(-10))
    make.order(session, ws, quiet, placed_at=days(3), status="cancelled")  # does not count
    make.order(session, ws, quiet, placed_at=days(5))  # a first order inside the horizon: label 1

    buyer = make.contact(session, ws, created_at=days(-30))
    make.touch(session, ws, buyer, occurred_at=days(-2), kind="page", channel="Direct")
    make.order(session, ws, buyer, placed_at=days(-5))  # already a customer: not in the matrix
    make.contact(session, ws, created_at=days(1))  # not yet a contact at the cutoff

    seg = Segment(workspace_id=ws, name="Porto women 25-29", kind="static")
    session.add(seg)
    session.flush()
    session.add(SegmentMember(workspace_id=ws, segment_id=seg.id, contact_id=fan.id, entered_at=days(-30)))
    session.add(
        SegmentMember(workspace_id=ws, segment_id=seg.id, contact_id=quiet.id, entered_at=days(-30), left_at=days(-1))
    )  # a past stay is not membership
    other = create_workspace(session, "elsewhere-features")
    stranger = make.contact(session, other.id, created_at=days(-5))
    make.touch(session, other.id, stranger, occurred_at=days(-1), kind="page")
    session.flush()
    spec = F.Spec(
        half_life_days=HALF_LIFE, target_segments={seg.id: seg.name}, countries=("PT", "ES"), cities=("Porto",)
    )
    return {"fan": fan.id, "quiet": quiet.id, "seg": seg.id, "spec": spec, "ws": ws}


def test_feature_matrix_by_hand(session: Session, facts: dict[str, Any]) -> None:
    m = F.build(session, facts["ws"], facts["spec"], T, horizon_days=30)
    assert m.contact_ids.tolist() == sorted([facts["fan"], facts["quiet"]])
    names = [f.name for f in m.features]
    assert m.x.shape == (2, len(names))
    row = {cid: dict(zip(names, m.x[i], strict=True)) for i, cid in enumerate(m.contact_ids.tolist())}
    fan, quiet = row[facts["fan"]], row[facts["quiet"]]
    label = dict(zip(m.contact_ids.tolist(), m.label.tolist(), strict=True))  # type: ignore[union-attr]
    assert label == {facts["fan"]: 0.0, facts["quiet"]: 1.0}

    seg = f"segment:{facts['seg']}"
    assert (fan[seg], quiet[seg]) == (1.0, 0.0)
    assert (fan["country:PT"], fan["country:ES"], quiet["country:ES"]) == (1.0, 0.0, 1.0)
    assert (fan["city:Porto"], quiet["city:Porto"]) == (1.0, 0.0)
    assert (fan["age_band:25-29"], fan["gender:female"], fan["lead_channel:Email"]) == (1.0, 1.0, 1.0)
    assert sum(v for k, v in quiet.items() if k.split(":")[0] in ("age_band", "gender", "lead_channel")) == 0

    approx = {"rel": 1e-6, "abs": 1e-9}
    assert fan["touches:email_opens"] == pytest.approx(w(1) + w(8), **approx)
    assert fan["touches:page_views"] == pytest.approx(w(3), **approx)
    assert fan["touches:cart_adds"] == pytest.approx(w(15), **approx)
    assert fan["touches:product_views"] == 0.0
    assert fan["channel:Email"] == pytest.approx(w(1) + w(8), **approx)
    assert fan["channel:Direct"] == pytest.approx(w(3), **approx)
    assert fan["channel:Paid Search"] == pytest.approx(w(15), **approx)
    assert fan["recency"] == pytest.approx(math.log1p(1.0), **approx)
    assert fan["touches:all"] == pytest.approx(math.log1p(4), **approx)
    pace = 14.0 / 3  # first touch 15 days before, last 1 day before, 3 gaps
    assert fan["pace"] == pytest.approx(math.log1p(pace), **approx)
    assert fan["overdue"] == pytest.approx(math.log1p(1.0 / pace), **approx)
    assert fan["tenure"] == pytest.approx(math.log1p(20.0), **approx)

    # Never touched: idle for the cap, no engagement at all.
    assert quiet["recency"] == pytest.approx(math.log1p(F.NO_TOUCH_DAYS))
    assert quiet["touches:all"] == 0.0
    assert all(v == 0.0 for k, v in quiet.items() if k.startswith(("touches:", "channel:", "mail:")))
    i = m.contact_ids.tolist().index(facts["fan"])
    assert m.counts["email_opens"][i] == 2
    assert m.days_since_last_touch[i] == pytest.approx(1.0, rel=1e-6)


def test_one_contact_and_later_cutoff(session: Session, facts: dict[str, Any]) -> None:
    """A contact alone gives the same row; at a later cutoff the touch after T counts and the buyer drops out."""
    both = F.build(session, facts["ws"], facts["spec"], T)
    one = F.build(session, facts["ws"], facts["spec"], T, contact_ids=[facts["fan"]])
    i = both.contact_ids.tolist().index(facts["fan"])
    assert one.contact_ids.tolist() == [facts["fan"]]
    assert one.x[0].tolist() == pytest.approx(both.x[i].tolist())
    later = F.build(session, facts["ws"], facts["spec"], days(6), contact_ids=[facts["fan"], facts["quiet"]])
    assert later.contact_ids.tolist() == [facts["fan"]]  # quiet bought on day 5
    names = [f.name for f in later.features]
    assert later.x[0, names.index("touches:all")] == pytest.approx(math.log1p(5))


def test_several_cutoffs_in_one_read_match_one_at_a_time(session: Session, facts: dict[str, Any], make: Any) -> None:
    """Training reads the touches once for all its cutoffs; each matrix must equal the one built on its own.

    A touch exactly at a cutoff counts at that cutoff (``<=``), with its full weight.
    """
    fan = session.get(Contact, facts["fan"])
    make.touch(session, facts["ws"], fan, occurred_at=days(-10), kind="page", channel="Referral")
    session.flush()
    cutoffs: list[F.Cutoff] = [(days(6), None), (days(-10), 30), (T, 30)]
    together = F.build_many(session, facts["ws"], facts["spec"], cutoffs)
    for (as_of, horizon), m in zip(cutoffs, together, strict=True):
        alone = F.build(session, facts["ws"], facts["spec"], as_of, horizon_days=horizon)
        assert m.contact_ids.tolist() == alone.contact_ids.tolist()
        assert np.allclose(m.x, alone.x, rtol=1e-12, atol=1e-12)
        assert (m.label is None) == (alone.label is None)
        if m.label is not None:
            assert m.label.tolist() == alone.label.tolist()  # type: ignore[union-attr]
        assert {k: v.tolist() for k, v in m.counts.items()} == {k: v.tolist() for k, v in alone.counts.items()}
    at_touch = together[1]
    names = [f.name for f in at_touch.features]
    i = at_touch.contact_ids.tolist().index(facts["fan"])
    assert at_touch.x[i, names.index("channel:Referral")] == pytest.approx(1.0)
    assert at_touch.x[i, names.index("touches:page_views")] == pytest.approx(1.0)
    assert at_touch.days_since_last_touch[i] == pytest.approx(0.0, abs=1e-6)
    assert facts["quiet"] not in together[0].contact_ids.tolist()  # a customer since day 5
