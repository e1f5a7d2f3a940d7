"""RFM quintiles from SQL (NTILE over the workspace's customers) against the same computation in numpy."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from storefunnel.models import Workspace
from storefunnel.segments import service
from storefunnel.segments.rules import parse_rules

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def numpy_quintiles(ids: np.ndarray, values: np.ndarray) -> dict[int, int]:
    """NTILE(5) ordered by (value, id): sort, then split into 5 runs whose sizes differ by at most one."""
    order = np.lexsort((ids, values))
    scores: dict[int, int] = {}
    for score, chunk in enumerate(np.array_split(order, 5), start=1):
        scores.update({int(ids[i]): score for i in chunk})
    return scores


@pytest.mark.parametrize("customers", [23, 5, 3])
def test_rfm_scores_match_numpy(session: Session, workspace: Workspace, make: Any, customers: int) -> None:
    rng = np.random.default_rng(customers)
    ids, last, count, revenue = [], [], [], []
    for _ in range(customers):
        contact = make.contact(session, workspace.id)
        n = int(rng.integers(1, 4))  # few distinct counts: plenty of ties, broken by id
        days = sorted(int(d) for d in rng.integers(1, 400, size=n))
        totals = [int(t) for t in rng.integers(100, 20000, size=n)]
        for d, t in zip(days, totals, strict=True):
            make.order(session, workspace.id, contact, placed_at=NOW - dt.timedelta(days=d), total=t)
        make.order(session, workspace.id, contact, placed_at=NOW, total=10**7, status="refunded")  # ignored
        ids.append(contact.id)
        last.append(-min(days))  # later last order = larger value = higher recency score
        count.append(n)
        revenue.append(sum(totals))
    for _ in range(4):
        make.contact(session, workspace.id)  # never ordered: no score
    arr = np.array(ids)
    expected = {
        "recency": numpy_quintiles(arr, np.array(last)),
        "frequency": numpy_quintiles(arr, np.array(count)),
        "monetary": numpy_quintiles(arr, np.array(revenue)),
    }
    for name, scores in expected.items():
        for score in range(1, 6):
            rules = {"field": f"rfm.{name}", "op": "eq", "value": score}
            got = set(session.scalars(service.compile_for(session, workspace.id, parse_rules(rules), NOW)))
            assert got == {cid for cid, s in scores.items() if s == score}, (name, score)
            # a contact condition beside RFM must not shrink the ranking to the contacts it keeps
            narrowed = {"all": [{"field": "email", "op": "starts_with", "value": "person"}, rules]}
            got = set(session.scalars(service.compile_for(session, workspace.id, parse_rules(narrowed), NOW)))
            assert got == {cid for cid, s in scores.items() if s == score}, (name, score)
    top = {"all": [{"field": f"rfm.{n}", "op": "gte", "value": 4} for n in expected]}
    got = set(session.scalars(service.compile_for(session, workspace.id, parse_rules(top), NOW)))
    assert got == {cid for cid in ids if all(expected[n][cid] >= 4 for n in expected)}
    no_score = {"field": "rfm.recency", "op": "neq", "value": 99}  # the never-ordered have no score: "not 99"
    assert len(list(session.scalars(service.compile_for(session, workspace.id, parse_rules(no_score), NOW)))) == (
        customers + 4
    )
