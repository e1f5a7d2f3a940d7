"""Related products over the store's orders: build and store pair rules and best sellers, recommend from them.

Baskets are (order, product) pairs read in one SQL query; ``insight.related.pair_rules`` computes the rules.
A build replaces the workspace's ``related_rules`` and ``best_sellers`` (overall, and per buying group: each
segment's current members). A contact's next products are then one indexed query: the confidence of the rules
whose antecedent they own, summed per consequent, owned products left out, then the best sellers of their
buying groups, then the store's best sellers — the same ranking as ``insight.related.recommend`` — with the
products' names joined in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import Invalid, NotFound
from storefunnel.insight import related
from storefunnel.insight.facts import EXCLUDED_STATUSES
from storefunnel.models import BestSeller, Contact, ModelFit, Order, OrderLine, Product, RelatedRule, SegmentMember
from storefunnel.tenancy import get_scoped

DEFAULT_MIN_SUPPORT = 0.001
DEFAULT_MIN_CONFIDENCE = 0.05
MIN_PAIR_BASKETS = 3  # a pair seen in fewer baskets is chance, whatever its lift
BEST_SELLERS = 50
MAX_GROUPS = 200
DEFAULT_K = 10
MAX_K = 100


def _valid(workspace_id: int) -> list[Any]:
    return [Order.workspace_id == workspace_id, Order.status.not_in(EXCLUDED_STATUSES)]


def baskets(
    session: Session, workspace_id: int, before: dt.datetime | None = None, since: dt.datetime | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(order id, product id) per line of each valid order with a known product, in line order."""
    preds = [*_valid(workspace_id), OrderLine.product_id.is_not(None)]
    if before is not None:
        preds.append(Order.placed_at < before)
    if since is not None:
        preds.append(Order.placed_at >= since)
    rows = session.execute(
        sa.select(OrderLine.order_id, OrderLine.product_id)
        .join(Order, Order.id == OrderLine.order_id)
        .where(*preds)
        .order_by(OrderLine.order_id, OrderLine.id)
    ).all()
    n = len(rows)
    return (
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
    )


def compute_rules(
    order_ids: npt.NDArray[np.int64],
    product_ids: npt.NDArray[np.int64],
    min_support: float = DEFAULT_MIN_SUPPORT,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[related.PairRules, npt.NDArray[np.int64], int]:
    """Pair rules and each rule's basket count, pairs seen in fewer than MIN_PAIR_BASKETS baskets dropped."""
    if order_ids.size == 0:
        raise Invalid("orders: no order lines with known products to learn from")
    basket = related.basket_matrix((order_ids, product_ids))
    rules = related.pair_rules(basket, min_support, min_confidence)
    count = np.rint(rules.support * basket.n_baskets).astype(np.int64)
    keep = count >= MIN_PAIR_BASKETS
    kept = related.PairRules(
        rules.antecedent[keep],
        rules.consequent[keep],
        rules.support[keep],
        rules.confidence[keep],
        rules.lift[keep],
        rules.antecedent_support[keep],
        rules.consequent_support[keep],
        rules.items,
    )
    return kept, count[keep], basket.n_baskets


def _best_sellers_sql(workspace_id: int, before: dt.datetime | None) -> sa.Select[Any]:
    """Per buying group (segment; NULL = all customers): products by the number of orders holding them."""
    preds = [*_valid(workspace_id), OrderLine.product_id.is_not(None), Order.contact_id.is_not(None)]
    if before is not None:
        preds.append(Order.placed_at < before)
    lines = (
        sa.select(Order.contact_id, Order.id.label("order_id"), OrderLine.product_id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(*preds)
        .distinct()
        .subquery("lines")
    )
    overall = sa.select(sa.null().label("segment_id"), lines.c.product_id, sa.func.count().label("orders")).group_by(
        lines.c.product_id
    )
    grouped = (
        sa.select(SegmentMember.segment_id, lines.c.product_id, sa.func.count().label("orders"))
        .join(SegmentMember, SegmentMember.contact_id == lines.c.contact_id)
        .where(SegmentMember.workspace_id == workspace_id, SegmentMember.left_at.is_(None))
        .group_by(SegmentMember.segment_id, lines.c.product_id)
    )
    both = sa.union_all(overall, grouped).subquery("counts")
    ranked = sa.select(
        both.c.segment_id,
        both.c.product_id,
        both.c.orders,
        sa.func.row_number()
        .over(partition_by=both.c.segment_id, order_by=(both.c.orders.desc(), both.c.product_id))
        .label("rank"),
    ).subquery("ranked")
    return sa.select(ranked).where(ranked.c.rank <= BEST_SELLERS)


def build_related(
    session: Session,
    workspace_id: int,
    min_support: float = DEFAULT_MIN_SUPPORT,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    before: dt.datetime | None = None,
) -> ModelFit:
    """Replace the workspace's rules and best sellers with ones learnt from its orders (before ``before``)."""
    if not 0 < min_support <= 1:
        raise Invalid("min_support: a share of baskets, above 0 and at most 1")
    if not 0 <= min_confidence <= 1:
        raise Invalid("min_confidence: between 0 and 1")
    order_ids, product_ids = baskets(session, workspace_id, before)
    rules, count, n_baskets = compute_rules(order_ids, product_ids, min_support, min_confidence)
    session.execute(sa.delete(RelatedRule).where(RelatedRule.workspace_id == workspace_id))
    session.execute(sa.delete(BestSeller).where(BestSeller.workspace_id == workspace_id))
    rows = [
        {
            "workspace_id": workspace_id,
            "antecedent_id": a,
            "consequent_id": b,
            "baskets": n,
            "support": s,
            "confidence": c,
            "lift": li,
        }
        for a, b, n, s, c, li in zip(
            rules.antecedent.tolist(),
            rules.consequent.tolist(),
            count.tolist(),
            rules.support.tolist(),
            rules.confidence.tolist(),
            rules.lift.tolist(),
            strict=True,
        )
    ]
    for start in range(0, len(rows), 5000):
        session.execute(sa.insert(RelatedRule), rows[start : start + 5000])
    sellers = session.execute(_best_sellers_sql(workspace_id, before)).all()
    if sellers:
        session.execute(
            sa.insert(BestSeller),
            [
                {"workspace_id": workspace_id, "segment_id": g, "product_id": p, "orders": n, "rank": r}
                for g, p, n, r in sellers
            ],
        )
    fit = ModelFit(
        workspace_id=workspace_id,
        kind="related",
        params={
            "min_support": min_support,
            "min_confidence": min_confidence,
            "min_pair_baskets": MIN_PAIR_BASKETS,
            "before": before.isoformat() if before else None,
        },
        metrics={"baskets": n_baskets, "products": int(np.unique(product_ids).size), "rules": len(rows)},
        fitted_at=utcnow(),
    )
    session.add(fit)
    session.flush()
    return fit


_RECOMMEND = sa.text(
    """
    WITH known AS (
        SELECT id FROM contacts WHERE id = :contact_id AND workspace_id = :ws
    ),
    owned AS (
        SELECT DISTINCT ol.product_id AS product_id
        FROM orders o JOIN order_lines ol ON ol.order_id = o.id
        WHERE o.contact_id = :contact_id AND o.workspace_id = :ws
          AND o.status NOT IN ('cancelled', 'refunded') AND ol.product_id IS NOT NULL
    ),
    groups AS (
        SELECT segment_id FROM segment_members
        WHERE workspace_id = :ws AND contact_id = :contact_id AND left_at IS NULL
    ),
    candidates AS (
        SELECT r.consequent_id AS product_id, 0 AS tier, SUM(r.confidence) AS score
        FROM related_rules r
        WHERE r.antecedent_id IN (SELECT product_id FROM owned) AND r.workspace_id = :ws
        GROUP BY r.consequent_id
        UNION ALL
        SELECT b.product_id, 1 AS tier, -MIN(b.rank) AS score
        FROM best_sellers b
        WHERE b.workspace_id = :ws AND b.segment_id IN (SELECT segment_id FROM groups)
        GROUP BY b.product_id
        UNION ALL
        SELECT b.product_id, 2 AS tier, -b.rank AS score
        FROM best_sellers b
        WHERE b.workspace_id = :ws AND b.segment_id IS NULL
    ),
    picks AS (
        SELECT product_id, tier, score FROM candidates
        WHERE product_id NOT IN (SELECT product_id FROM owned)
        ORDER BY tier, score DESC, product_id
        LIMIT :limit
    )
    SELECT k.product_id, k.tier, k.score, p.id, p.sku, p.name, p.category
    FROM known CROSS JOIN picks k
    LEFT JOIN products p ON p.id = k.product_id AND p.workspace_id = :ws
    ORDER BY k.tier, k.score DESC, k.product_id
    """
)
TIERS = ("related", "buying_group_best_seller", "best_seller")


def _picks(session: Session, workspace_id: int, contact_id: int, k: int) -> list[tuple[int, str, float, Any]]:
    """(product id, source, score, row) of the next ``k`` products, ``row`` holding the product's id, sku, name and
    category. One query; no rows when the contact is not in the workspace (nor when nothing can be offered)."""
    rows = session.execute(_RECOMMEND, {"ws": workspace_id, "contact_id": contact_id, "limit": 3 * k}).all()
    out: list[tuple[int, str, float, Any]] = []
    seen: set[int] = set()
    for row in rows:
        product_id, tier, score = row[0], row[1], row[2]
        if product_id in seen:
            continue
        seen.add(product_id)
        out.append((int(product_id), TIERS[int(tier)], float(score), row))
        if len(out) == k:
            break
    return out


def recommend_ids(
    session: Session, workspace_id: int, contact_id: int, k: int = DEFAULT_K
) -> list[tuple[int, str, float]]:
    """(product id, source, score) of the contact's next ``k`` products, from the stored rules: one query."""
    return [(p, src, score) for p, src, score, _ in _picks(session, workspace_id, contact_id, k)]


def recommendations(session: Session, workspace_id: int, contact_id: int, k: int = DEFAULT_K) -> dict[str, Any]:
    """The contact's next products with their names, for the API: one query, a second only when it finds none
    (to tell an unknown contact, a 404, from one with nothing to offer)."""
    if not 1 <= k <= MAX_K:
        raise Invalid(f"k: between 1 and {MAX_K}")
    picks = _picks(session, workspace_id, contact_id, k)
    if not picks:
        get_scoped(session, Contact, workspace_id, contact_id)
    return {
        "contact_id": contact_id,
        "items": [
            {
                "product_id": p,
                **({"sku": row[4], "name": row[5], "category": row[6]} if row[3] is not None else {}),
                "source": src,
                "score": score if src == "related" else None,
            }
            for p, src, score, row in picks
        ],
    }


def _products(session: Session, workspace_id: int, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = session.execute(
        sa.select(Product.id, Product.sku, Product.name, Product.category).where(
            Product.workspace_id == workspace_id, Product.id.in_(ids)
        )
    ).all()
    return {r[0]: {"sku": r[1], "name": r[2], "category": r[3]} for r in rows}


def rules_report(
    session: Session,
    workspace_id: int,
    *,
    product_id: int | None = None,
    sort: str = "lift",
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Stored rules, strongest first (by lift or confidence), optionally those whose antecedent is one product."""
    if sort not in ("lift", "confidence", "support"):
        raise Invalid("sort: lift, confidence or support")
    fit = latest_related(session, workspace_id)
    preds = [RelatedRule.workspace_id == workspace_id]
    if product_id is not None:
        get_scoped(session, Product, workspace_id, product_id)
        preds.append(RelatedRule.antecedent_id == product_id)
    col = getattr(RelatedRule, sort)
    total = session.scalar(sa.select(sa.func.count()).select_from(RelatedRule).where(*preds)) or 0
    rules = session.scalars(
        sa.select(RelatedRule).where(*preds).order_by(col.desc(), RelatedRule.id).limit(limit).offset(offset)
    ).all()
    names = _products(
        session, workspace_id, sorted({r.antecedent_id for r in rules} | {r.consequent_id for r in rules})
    )
    return {
        "fit": {"id": fit.id, "fitted_at": fit.fitted_at.isoformat(), "params": fit.params, "metrics": fit.metrics},
        "total": int(total),
        "limit": limit,
        "offset": offset,
        "items": [
            {
                "antecedent": {"product_id": r.antecedent_id, **names.get(r.antecedent_id, {})},
                "consequent": {"product_id": r.consequent_id, **names.get(r.consequent_id, {})},
                "baskets": r.baskets,
                "support": r.support,
                "confidence": r.confidence,
                "lift": r.lift,
            }
            for r in rules
        ],
    }


def latest_related(session: Session, workspace_id: int) -> ModelFit:
    fit = session.scalars(
        sa.select(ModelFit)
        .where(ModelFit.workspace_id == workspace_id, ModelFit.kind == "related")
        .order_by(ModelFit.fitted_at.desc(), ModelFit.id.desc())
        .limit(1)
    ).first()
    if fit is None:
        raise NotFound("no related-product rules yet: run 'storefunnel related build' or POST /api/v1/related/build")
    return fit


def holdout_hit_rate(
    session: Session,
    workspace_id: int,
    split_at: dt.datetime,
    k: int = DEFAULT_K,
    min_support: float = DEFAULT_MIN_SUPPORT,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> dict[str, Any]:
    """Time-split check: rules and best sellers from orders before ``split_at``; for each customer who bought
    before and after, a hit when one of their ``k`` picks (from what they owned before) is bought after."""
    before_o, before_p = baskets(session, workspace_id, before=split_at)
    rules, _, _ = compute_rules(before_o, before_p, min_support, min_confidence)
    owner = _order_owners(session, workspace_id)
    b_contact = owner(before_o)
    after_o, after_p = baskets(session, workspace_id, since=split_at)
    a_contact = owner(after_o)
    test = np.intersect1d(np.unique(b_contact[b_contact >= 0]), np.unique(a_contact[a_contact >= 0]))
    if test.size == 0:
        raise Invalid("split_at: no customer bought both before and after it")
    # overall best sellers before the split
    prods, counts = np.unique(before_p, return_counts=True)
    best = prods[np.lexsort((prods, -counts))].tolist()
    sel = np.isin(b_contact, test)
    order = np.argsort(b_contact[sel], kind="stable")
    c_sorted, p_sorted = b_contact[sel][order], before_p[sel][order]
    bounds = np.searchsorted(c_sorted, test, side="left"), np.searchsorted(c_sorted, test, side="right")
    owned = [p_sorted[lo:hi].tolist() for lo, hi in zip(*bounds, strict=True)]
    picks_rules = related.recommend(owned, rules, k=k, fallback=best)
    picks_best = _best_only(owned, best, k)
    sel_a = np.isin(a_contact, test)
    order_a = np.argsort(a_contact[sel_a], kind="stable")
    ca, pa = a_contact[sel_a][order_a], after_p[sel_a][order_a]
    lo_a, hi_a = np.searchsorted(ca, test, side="left"), np.searchsorted(ca, test, side="right")
    bought = [set(pa[lo:hi].tolist()) for lo, hi in zip(lo_a, hi_a, strict=True)]
    hits_rules = sum(1 for p, b in zip(picks_rules, bought, strict=True) if b.intersection(p))
    hits_best = sum(1 for p, b in zip(picks_best, bought, strict=True) if b.intersection(p))
    n = int(test.size)
    return {
        "split_at": split_at.isoformat(),
        "k": k,
        "customers": n,
        "hit_rate_rules": hits_rules / n,
        "hit_rate_best_sellers": hits_best / n,
        "baskets": _basket_completion(after_o, after_p, rules, best, k),
    }


def _basket_completion(
    order_ids: npt.NDArray[np.int64],
    product_ids: npt.NDArray[np.int64],
    rules: related.PairRules,
    best: list[int],
    k: int,
) -> dict[str, Any]:
    """ "Bought together" check on the later orders: from each basket's first product, a hit when one of the ``k``
    picks is another product of the same basket."""
    if order_ids.size == 0:
        return {"orders": 0, "hit_rate_rules": None, "hit_rate_best_sellers": None}
    new = np.ones(order_ids.size, dtype=bool)
    new[1:] = order_ids[1:] != order_ids[:-1]
    starts = np.flatnonzero(new)
    ends = np.concatenate((starts[1:], [order_ids.size]))
    multi = [(a, b) for a, b in zip(starts.tolist(), ends.tolist(), strict=True) if len(set(product_ids[a:b])) > 1]
    if not multi:
        return {"orders": 0, "hit_rate_rules": None, "hit_rate_best_sellers": None}
    seeds = [[int(product_ids[a])] for a, _ in multi]
    rest = [set(product_ids[a + 1 : b].tolist()) - {int(product_ids[a])} for a, b in multi]
    picks_rules = related.recommend(seeds, rules, k=k, fallback=best)
    picks_best = _best_only(seeds, best, k)
    n = len(multi)
    return {
        "orders": n,
        "hit_rate_rules": sum(1 for p, r in zip(picks_rules, rest, strict=True) if r.intersection(p)) / n,
        "hit_rate_best_sellers": sum(1 for p, r in zip(picks_best, rest, strict=True) if r.intersection(p)) / n,
    }


def _best_only(owned: list[list[int]], best: list[int], k: int) -> list[list[int]]:
    out = []
    for items in owned:
        mine = set(items)
        out.append([p for p in best if p not in mine][:k])
    return out


def _order_owners(session: Session, workspace_id: int) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    rows = session.execute(
        sa.select(Order.id, Order.contact_id).where(*_valid(workspace_id), Order.contact_id.is_not(None))
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    contacts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(ids)
    ids, contacts = ids[order], contacts[order]

    def owner(order_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The contact of each order (-1 for orders without one)."""
        if ids.size == 0:
            return np.full(order_ids.size, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(ids, order_ids), ids.size - 1)
        return np.where(ids[pos] == order_ids, contacts[pos], -1).astype(np.int64)

    return owner
