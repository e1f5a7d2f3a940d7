"""Related products: pair rules by hand, against mlxtend, and a time-split hit rate on planted pairs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from storefunnel.errors import Invalid
from storefunnel.insight import related

BASKETS = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b"], ["a", "a", "d"]]


def test_pair_rules_by_hand() -> None:
    # 5 baskets; a in 4, b in 3, c in 2, d in 1; {a,b} in 2, {a,c} in 2, {b,c} in 1, {a,d} in 1
    rules = related.pair_rules(BASKETS, min_support=0.4)
    got = {
        (a, b): (s, c, lift)
        for a, b, s, c, lift in zip(
            rules.antecedent, rules.consequent, rules.support, rules.confidence, rules.lift, strict=True
        )
    }
    assert set(got) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    assert got[("a", "b")] == pytest.approx((0.4, 0.4 / 0.8, 0.5 / 0.6))
    assert got[("b", "a")] == pytest.approx((0.4, 0.4 / 0.6, (0.4 / 0.6) / 0.8))
    assert got[("c", "a")] == pytest.approx((0.4, 1.0, 1.0 / 0.8))
    confident = related.pair_rules(BASKETS, min_support=0.4, min_confidence=0.9)
    assert list(zip(confident.antecedent, confident.consequent, strict=True)) == [("c", "a")]
    # the (basket_id, item_id) form gives the same rules
    b_ids = np.array([i for i, b in enumerate(BASKETS) for _ in b])
    i_ids = np.array([x for b in BASKETS for x in b])
    same = related.pair_rules((b_ids, i_ids), min_support=0.4)
    assert same.support.tolist() == rules.support.tolist()
    with pytest.raises(Invalid, match="min_support"):
        related.pair_rules(BASKETS, min_support=0)


def test_item_cosine_by_hand() -> None:
    sim, items = related.item_cosine(BASKETS)
    idx = {v: i for i, v in enumerate(items.tolist())}
    assert sim[idx["a"], idx["b"]] == pytest.approx(2 / np.sqrt(4 * 3))
    assert sim[idx["b"], idx["c"]] == pytest.approx(1 / np.sqrt(3 * 2))
    assert sim[idx["a"], idx["a"]] == 0


def test_recommend_excludes_owned_and_falls_back() -> None:
    rules = related.pair_rules(BASKETS, min_support=0.2)
    recs = related.recommend([["c"], ["a", "b"], ["zzz"]], rules, k=3, fallback=["b", "d", "e"])
    assert recs[0][0] == "a"  # c -> a has confidence 1
    assert "c" not in recs[0]
    assert all(x not in ("a", "b") for x in recs[1])
    assert recs[2] == ["b", "d", "e"]  # unknown item: best sellers only
    sim, items = related.item_cosine(BASKETS)
    assert related.recommend([["d"]], sim, items, k=1) == [["a"]]
    with pytest.raises(Invalid, match="items"):
        related.recommend([["d"]], sim, k=1)


def test_same_rules_as_mlxtend() -> None:
    from mlxtend.frequent_patterns import apriori, association_rules

    rng = np.random.default_rng(0)
    pop = rng.dirichlet(np.full(120, 0.3))
    baskets = [list(rng.choice(120, s, replace=False, p=pop)) for s in rng.integers(1, 6, 8000)]
    for i in range(0, 8000, 3):
        baskets[i] += [500, 501]
    for min_support in (0.001, 0.01):
        ours = related.pair_rules(baskets, min_support)
        bm = related.basket_matrix(baskets)
        frame = pd.DataFrame(bm.matrix.toarray().astype(bool), columns=bm.items.tolist())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = apriori(frame, min_support=min_support, max_len=2, use_colnames=True)
            ref = association_rules(sets, num_itemsets=len(sets), metric="confidence", min_threshold=0.0)
        expect = {
            (next(iter(a)), next(iter(c))): (s, cf, lf)
            for a, c, s, cf, lf in zip(
                ref.antecedents, ref.consequents, ref.support, ref.confidence, ref.lift, strict=True
            )
        }
        got = {
            (int(a), int(c)): (s, cf, lf)
            for a, c, s, cf, lf in zip(
                ours.antecedent, ours.consequent, ours.support, ours.confidence, ours.lift, strict=True
            )
        }
        assert set(got) == set(expect)
        assert len(got) > 100
        for key, vals in expect.items():
            assert got[key] == pytest.approx(vals, rel=0, abs=1e-9)


def test_holdout_hit_rate_beats_best_sellers(capsys: pytest.CaptureFixture[str]) -> None:
    """Contacts buy, then later buy the planted partners of what they bought; rules learnt on the first period
    must find those partners more often than the best-seller list does."""
    rng = np.random.default_rng(21)
    n_items, n_contacts = 300, 4000
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    partner = rng.permutation(n_items)  # planted: item i leads to partner[i]
    history, future, train = [], [], []
    for _ in range(n_contacts):
        owned = set(rng.choice(n_items, rng.integers(1, 4), replace=False, p=pop).tolist())
        basket = list(owned)
        for i in list(owned):
            if rng.random() < 0.3:
                basket.append(int(partner[i]))  # bought together in the same basket
        later = {int(partner[i]) for i in basket if rng.random() < 0.5} | set(rng.choice(n_items, 1, p=pop).tolist())
        history.append(basket)
        train.append(basket)
        future.append(later - set(basket))
    rules = related.pair_rules(train, min_support=0.0005)
    counts = np.bincount(np.concatenate([np.asarray(b) for b in train]), minlength=n_items)
    best = np.argsort(-counts, kind="stable").tolist()
    ours = related.recommend(history, rules, k=10, fallback=best)
    base = related.recommend(history, related.pair_rules([[0, 1]], 1.0), k=10, fallback=best)
    judged = [i for i, f in enumerate(future) if f]
    hit_ours = np.mean([bool(set(ours[i]) & future[i]) for i in judged])
    hit_base = np.mean([bool(set(base[i]) & future[i]) for i in judged])
    with capsys.disabled():
        print(f"\nhit rate@10 on {len(judged)} contacts: pair rules {hit_ours:.3f}, best sellers {hit_base:.3f}")  # noqa: T201
    assert hit_ours > hit_base + 0.2
