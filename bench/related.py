"""Related-products benchmark: pair rules from one sparse product vs mlxtend's apriori + association_rules.

100,000 baskets over 1,000 products (Zipf-like popularity, planted pairs), support 0.001, 2-itemsets. mlxtend
gets a boolean DataFrame (its input format; building it is not timed), we get the baskets. The rules are checked
to be identical before the times are printed. Run: ``.venv/bin/python -m bench.related``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from storefunnel.insight import related


def baskets(n: int, n_items: int, seed: int = 3) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop /= pop.sum()
    partner = rng.permutation(n_items)
    sizes = rng.integers(1, 8, n)
    flat = rng.choice(n_items, sizes.sum(), p=pop)
    out = np.split(flat, np.cumsum(sizes)[:-1])
    add = rng.random(n) < 0.3
    return [list(b) + ([int(partner[b[0]])] if a else []) for b, a in zip(out, add, strict=True)]


def main() -> None:
    from mlxtend.frequent_patterns import apriori, association_rules, fpgrowth

    n, n_items, min_support = 100_000, 1_000, 0.001
    data = baskets(n, n_items)
    bm = related.basket_matrix(data)
    frame = pd.DataFrame(bm.matrix.toarray().astype(bool), columns=bm.items.tolist())
    t = time.perf_counter()
    ours = related.pair_rules(data, min_support)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ours_m = related.pair_rules(bm, min_support)
    t_ours_matrix = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # apriori's default materialises every candidate pair x basket (69 GiB here): low_memory is its way out
        t = time.perf_counter()
        sets = apriori(frame, min_support=min_support, max_len=2, use_colnames=True, low_memory=True)
        ref = association_rules(sets, num_itemsets=len(sets), metric="confidence", min_threshold=0.0)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        sets_fp = fpgrowth(frame, min_support=min_support, max_len=2, use_colnames=True)
        ref_fp = association_rules(sets_fp, num_itemsets=len(sets_fp), metric="confidence", min_threshold=0.0)
        t_fp = time.perf_counter() - t
    assert len(ref_fp) == len(ref)
    expect = {
        (next(iter(a)), next(iter(c))): s for a, c, s in zip(ref.antecedents, ref.consequents, ref.support, strict=True)
    }
    got = {(int(a), int(c)): s for a, c, s in zip(ours.antecedent, ours.consequent, ours.support, strict=True)}
    same = set(got) == set(expect) and all(abs(got[k] - v) < 1e-12 for k, v in expect.items())
    assert len(ours_m) == len(ours)
    print(f"{n:,} baskets, {n_items:,} products, support {min_support}: {len(ours):,} pair rules, identical: {same}")
    print()
    print(f"{'tool':44s} {'seconds':>8s} {'apriori/x':>10s} {'fpgrowth/x':>11s}")
    for name, sec in (
        ("mlxtend apriori(low_memory) + association_rules", t_ref),
        ("mlxtend fpgrowth + association_rules", t_fp),
        ("ours, from item lists", t_ours),
        ("ours, from the basket matrix", t_ours_matrix),
    ):
        print(f"{name:44s} {sec:8.2f} {t_ref / sec:9.1f}x {t_fp / sec:10.1f}x")


if __name__ == "__main__":
    # The machine is shared and has 2 cores: OpenBLAS threads spinning on tiny vectors (inside L-BFGS-B, small dot
    # products) cost more than they give, for both sides alike, so both run with one BLAS thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        main()
