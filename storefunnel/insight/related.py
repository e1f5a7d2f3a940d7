"""Related products: which items are bought together, and what to offer each contact next.

Exact pair counts from one sparse product: with X the binary basket x item matrix (scipy CSR), ``X.T @ X`` holds
every pair's co-occurrence count. Pair rules are Agrawal, Imielinski & Swami's (1993) association rules restricted
to one antecedent and one consequent (support, confidence, lift), equal to apriori + association_rules on
2-itemsets; ``item_cosine`` is the item-to-item similarity of Linden, Smith & York (2003).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from storefunnel.errors import Invalid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Baskets = Sequence[Sequence[Any]] | tuple[npt.ArrayLike, npt.ArrayLike]

__all__ = ["Basket", "PairRules", "basket_matrix", "item_cosine", "pair_rules", "recommend", "rules_matrix"]


@dataclass(frozen=True)
class Basket:
    """Binary basket x item matrix and the item id of each column (sorted)."""

    matrix: sp.csr_matrix
    items: npt.NDArray[Any]

    @property
    def n_baskets(self) -> int:
        return int(self.matrix.shape[0])


def basket_matrix(baskets: Baskets | Basket) -> Basket:
    """Baskets as a list of item lists, or as a tuple of two numpy arrays ``(basket_ids, item_ids)``, one row per
    order line."""
    if isinstance(baskets, Basket):
        return baskets
    if isinstance(baskets, tuple) and len(baskets) == 2 and all(isinstance(b, np.ndarray) for b in baskets):
        b_ids, i_ids = np.asarray(baskets[0]), np.asarray(baskets[1])
        if b_ids.shape != i_ids.shape:
            raise Invalid("baskets: basket_ids and item_ids must have the same length")
        _, rows = np.unique(b_ids, return_inverse=True)
        items, cols = np.unique(i_ids, return_inverse=True)
        n_rows = int(rows.max()) + 1 if rows.size else 0
    else:
        lists: list[Sequence[Any]] = list(baskets)  # type: ignore[arg-type]
        lengths = np.fromiter((len(b) for b in lists), dtype=np.int64, count=len(lists))
        flat = np.asarray([i for b in lists for i in b])
        items, cols = np.unique(flat, return_inverse=True) if flat.size else (np.asarray([]), np.zeros(0, np.int64))
        rows = np.repeat(np.arange(len(lists)), lengths)
        n_rows = len(lists)
    data = np.ones(rows.size, dtype=np.int64)
    m = sp.csr_matrix((data, (rows, cols.reshape(-1))), shape=(n_rows, items.size))
    m.sum_duplicates()
    m.data[:] = 1  # an item twice in a basket counts once
    return Basket(m, items)


@dataclass(frozen=True)
class PairRules:
    """Rules antecedent -> consequent with their measures; arrays aligned, ids are the caller's item ids."""

    antecedent: npt.NDArray[Any]
    consequent: npt.NDArray[Any]
    support: FloatArray
    confidence: FloatArray
    lift: FloatArray
    antecedent_support: FloatArray
    consequent_support: FloatArray
    items: npt.NDArray[Any]  # every item seen, to index the rules as a matrix

    def __len__(self) -> int:
        return int(self.support.size)


def _cooccurrence(basket: Basket, keep: npt.NDArray[np.bool_]) -> tuple[sp.coo_matrix, IntArray]:
    cols = np.flatnonzero(keep)
    x = basket.matrix[:, cols].tocsc().astype(np.int64)
    c = (x.T @ x).tocoo()
    return c, cols


def pair_rules(baskets: Baskets | Basket, min_support: float, min_confidence: float = 0.0) -> PairRules:
    """All rules {a} -> {b} with support(a, b) >= min_support and confidence >= min_confidence.

    support = baskets with both / baskets; confidence = support(a, b) / support(a); lift = confidence /
    support(b). Items below ``min_support`` are dropped before the product (no pair can be frequent without
    both of its items), which is apriori's pruning.
    """
    if not 0 < min_support <= 1:
        raise Invalid("min_support: a share of baskets between 0 and 1")
    basket = basket_matrix(baskets)
    n = basket.n_baskets
    if n == 0:
        raise Invalid("baskets: no baskets")
    count = np.asarray(basket.matrix.sum(axis=0)).reshape(-1).astype(np.float64)
    item_support = count / n
    c, cols = _cooccurrence(basket, item_support >= min_support)
    off = c.row != c.col
    a, b, both = cols[c.row[off]], cols[c.col[off]], c.data[off].astype(np.float64)
    support = both / n
    ok = support >= min_support
    a, b, support = a[ok], b[ok], support[ok]
    conf = support / item_support[a]
    ok = conf >= min_confidence
    a, b, support, conf = a[ok], b[ok], support[ok], conf[ok]
    lift = conf / item_support[b]
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    return PairRules(
        basket.items[a],
        basket.items[b],
        support[order],
        conf[order],
        lift[order],
        item_support[a],
        item_support[b],
        basket.items,
    )


def item_cosine(baskets: Baskets | Basket, min_count: int = 1) -> tuple[sp.csr_matrix, npt.NDArray[Any]]:
    """Item x item cosine similarity of the basket columns, c(a, b) / sqrt(c(a) c(b)), diagonal zeroed;
    pairs seen together in fewer than ``min_count`` baskets are dropped."""
    basket = basket_matrix(baskets)
    count = np.asarray(basket.matrix.sum(axis=0)).reshape(-1).astype(np.float64)
    c, cols = _cooccurrence(basket, np.ones(count.size, dtype=bool))
    keep = (c.row != c.col) & (c.data >= min_count)
    r, k, d = cols[c.row[keep]], cols[c.col[keep]], c.data[keep].astype(np.float64)
    sim = d / np.sqrt(count[r] * count[k])
    return sp.csr_matrix((sim, (r, k)), shape=(count.size, count.size)), basket.items


def rules_matrix(rules: PairRules, measure: str = "confidence") -> sp.csr_matrix:
    """Rules as an item x item matrix of one measure (``confidence`` or ``lift``), indexed like ``rules.items``."""
    values = {"confidence": rules.confidence, "lift": rules.lift, "support": rules.support}.get(measure)
    if values is None:
        raise Invalid("measure: confidence, lift or support")
    a = np.searchsorted(rules.items, rules.antecedent)
    b = np.searchsorted(rules.items, rules.consequent)
    n = rules.items.size
    return sp.csr_matrix((values, (a, b)), shape=(n, n))


def recommend(
    contact_items: Sequence[Sequence[Any]],
    scores: sp.spmatrix | PairRules,
    items: npt.ArrayLike | None = None,
    k: int = 10,
    exclude_owned: bool = True,
    fallback: Sequence[Any] = (),
) -> list[list[Any]]:
    """Next products per contact: items scored by the sum of ``scores[owned, item]`` over what they own, best
    first, then the ``fallback`` list (best sellers of their buying group, passed by the caller) to fill k.

    ``scores`` is a PairRules (confidence is used) or an item x item matrix with ``items`` naming its rows.
    """
    if k < 1:
        raise Invalid("k: at least one recommendation")
    if isinstance(scores, PairRules):
        matrix, ids = rules_matrix(scores), scores.items
    else:
        if items is None:
            raise Invalid("items: the item id of each row of the scores matrix is required")
        matrix, ids = sp.csr_matrix(scores), np.asarray(items)
    index = {v: i for i, v in enumerate(ids.tolist())}
    n_items = ids.size
    rows, cols = [], []
    for r, owned in enumerate(contact_items):
        for it in owned:
            j = index.get(it)
            if j is not None:
                rows.append(r)
                cols.append(j)
    own = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(contact_items), n_items))
    own.data[:] = 1.0
    score = (own @ matrix).tocsr()
    out: list[list[Any]] = []
    id_list = ids.tolist()
    for r, owned in enumerate(contact_items):
        lo, hi = score.indptr[r], score.indptr[r + 1]
        cand, val = score.indices[lo:hi], score.data[lo:hi]
        owned_set = set(owned)
        order = np.lexsort((cand, -val))
        picks: list[Any] = []
        for j in cand[order]:
            it = id_list[j]
            if exclude_owned and it in owned_set:
                continue
            picks.append(it)
            if len(picks) == k:
                break
        if len(picks) < k:
            chosen = set(picks)
            for it in fallback:
                if it in chosen or (exclude_owned and it in owned_set):
                    continue
                picks.append(it)
                chosen.add(it)
                if len(picks) == k:
                    break
        out.append(picks)
    return out
