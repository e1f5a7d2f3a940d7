"""Attribution on cases small enough to compute by hand, plus the invariants every model keeps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from storefunnel.errors import Invalid
from storefunnel.insight import attribution as at


def credits(result: at.Attribution) -> dict[str, float]:
    return {c: float(v) for c, v in zip(result.channels, result.conversions, strict=True)}


def values(result: at.Attribution) -> dict[str, float]:
    return {c: float(v) for c, v in zip(result.channels, result.value, strict=True)}


PATHS = ["A > B > C > B", "A"]
CONV = [2, 1]
VALUE = [100.0, 10.0]


def test_first_and_last_touch() -> None:
    first = at.heuristic(PATHS, CONV, VALUE, model="first_touch")
    assert credits(first) == {"A": 3.0, "B": 0.0, "C": 0.0}
    assert values(first) == {"A": 110.0, "B": 0.0, "C": 0.0}
    last = at.heuristic(PATHS, CONV, VALUE, model="last_touch")
    assert credits(last) == {"A": 1.0, "B": 2.0, "C": 0.0}


def test_linear_counts_every_touch() -> None:
    # path 1: four touches, 2 conversions -> 0.5 each: A 0.5, B 0.5 + 0.5, C 0.5; path 2: A 1
    assert credits(at.heuristic(PATHS, CONV, VALUE, model="linear")) == pytest.approx({"A": 1.5, "B": 1.0, "C": 0.5})
    # collapsing repeats changes nothing here (B is never repeated consecutively)
    collapsed = at.heuristic(["A > A > B"], [3], model="linear", repeats="collapse")
    assert credits(collapsed) == pytest.approx({"A": 1.5, "B": 1.5})
    kept = at.heuristic(["A > A > B"], [3], model="linear")
    assert credits(kept) == pytest.approx({"A": 2.0, "B": 1.0})


def test_position_based() -> None:
    # path 1 (4 touches): first A 0.4, last B 0.4, middle B, C 0.1 each; x2 conversions; path 2 (1 touch): A 1
    got = credits(at.heuristic(PATHS, CONV, VALUE, model="position_based"))
    assert got == pytest.approx({"A": 0.8 + 1.0, "B": 1.0, "C": 0.2})
    assert credits(at.heuristic(["A > B"], [1], model="position_based")) == pytest.approx({"A": 0.5, "B": 0.5})


def test_time_decay_halves_per_half_life() -> None:
    # ages 7 and 0 days, half-life 7: weights 1/2 and 1 -> shares 1/3 and 2/3
    got = at.heuristic(["A > B"], [3], [30.0], model="time_decay", half_life=7.0, times=[[7.0, 0.0]])
    assert credits(got) == pytest.approx({"A": 1.0, "B": 2.0})
    assert values(got) == pytest.approx({"A": 10.0, "B": 20.0})
    with pytest.raises(Invalid, match="times"):
        at.heuristic(["A > B"], [1], model="time_decay")
    with pytest.raises(Invalid, match="times"):
        at.heuristic(["A > B"], [1], model="time_decay", times=[[1.0]])


def test_markov_by_hand() -> None:
    # start->A 2, start->B 2; A->B 1, A->null 1; B->conv 2, B->null 1
    # P(conv) = 1/2*1/2*2/3 + 1/2*2/3 = 1/2; without A: 1/2*2/3 = 1/3; without B: 0
    # removal effects 1/6 and 1/2 -> shares 1/4, 3/4 of 2 conversions; value: mean 20 after B, same shares of 40
    paths = ["A > B", "A", "B"]
    got = at.markov(paths, [1, 0, 1], [10.0, 0.0, 30.0], [0, 1, 1])
    assert credits(got) == pytest.approx({"A": 0.5, "B": 1.5}, abs=1e-12)
    assert values(got) == pytest.approx({"A": 10.0, "B": 30.0}, abs=1e-12)
    assert got.removal_effects is not None
    assert got.removal_effects.tolist() == pytest.approx([1 / 3, 1.0])


def test_markov_raw_and_aggregated_agree_and_sum_exactly() -> None:
    rng = np.random.default_rng(3)
    names = ["Email", "Paid Search", "Direct", "Referral"]
    raw = [" > ".join(rng.choice(names, rng.integers(1, 7))) for _ in range(3000)]
    conv = (rng.random(3000) < 0.3).astype(int)
    value = conv * rng.uniform(5, 50, 3000)
    enc = at.encode(raw, conv, value, 1 - conv, aggregate=True)
    assert enc.n_paths < len(raw)
    for order in (1, 2, 3):
        a = at.markov(raw, conv, value, 1 - conv, order=order)
        b = at.markov(enc, order=order)
        assert dict(zip(a.channels, a.conversions, strict=True)) == pytest.approx(
            dict(zip(b.channels, b.conversions, strict=True)), rel=1e-10
        )
        assert a.conversions.sum() == pytest.approx(conv.sum(), rel=1e-12)
        assert a.value.sum() == pytest.approx(value.sum(), rel=1e-12)
    for model in ("first_touch", "last_touch", "linear", "position_based"):
        h = at.heuristic(raw, conv, value, model=model)
        assert h.conversions.sum() == pytest.approx(conv.sum())
        assert h.value.sum() == pytest.approx(value.sum())
    s = at.shapley(raw, conv, value, 1 - conv, game="conversion_rate")
    assert s.conversions.sum() == pytest.approx(conv.sum())
    assert s.value.sum() == pytest.approx(value.sum())


def test_markov_horizon_converges_to_exact_chain() -> None:
    paths = ["A > B > A > B > C", "B > A", "C"]
    exact = at.markov(paths, [3, 1, 1], None, [2, 2, 4])
    long = at.markov(paths, [3, 1, 1], None, [2, 2, 4], horizon=400)
    short = at.markov(paths, [3, 1, 1], None, [2, 2, 4], horizon=2)
    assert long.conversions.tolist() == pytest.approx(exact.conversions.tolist(), rel=1e-9)
    assert short.conversions.tolist() != pytest.approx(exact.conversions.tolist(), rel=1e-3)


def test_shapley_by_hand() -> None:
    # sets {A}: 1 conv of 4 (rate 1/4), {B}: 1 of 2 (1/2), {A,B}: 3 of 4 (3/4)
    paths = ["A", "B", "A > B"]
    conv, nulls = [1, 1, 3], [3, 1, 1]
    # simplified: {A,B}'s 3 conversions split 1.5 / 1.5
    assert credits(at.shapley(paths, conv, None, nulls)) == pytest.approx({"A": 2.5, "B": 2.5})
    # conversion-rate game on {A,B}: phi_A = (1/4 + (3/4 - 1/2)) / 2 = 1/4, phi_B = (1/2 + (3/4 - 1/4)) / 2 = 1/2
    # shares 1/3, 2/3 of 3 conversions -> A 1 + 1, B 2 + 1
    got = at.shapley(paths, conv, None, nulls, game="conversion_rate")
    assert credits(got) == pytest.approx({"A": 2.0, "B": 3.0})


def _brute_shapley(players: list[int], v: dict[frozenset[int], float]) -> dict[int, float]:
    out = dict.fromkeys(players, 0.0)
    perms = list(itertools.permutations(players))
    for perm in perms:
        seen: frozenset[int] = frozenset()
        for p in perm:
            out[p] += v.get(seen | {p}, 0.0) - v.get(seen, 0.0)
            seen = seen | {p}
    return {p: x / math.factorial(len(players)) for p, x in out.items()}


def test_shapley_matches_permutation_definition() -> None:
    rng = np.random.default_rng(5)
    names = ["a", "b", "c", "d"]
    raw = [" > ".join(rng.choice(names, rng.integers(1, 5))) for _ in range(400)]
    conv = rng.integers(0, 3, 400)
    nulls = rng.integers(0, 3, 400)
    enc = at.encode(raw, conv, None, nulls)
    sets: dict[frozenset[int], list[float]] = {}
    for i in range(enc.n_paths):
        s = frozenset(enc.codes[enc.offsets[i] : enc.offsets[i + 1]].tolist())
        acc = sets.setdefault(s, [0.0, 0.0])
        acc[0] += enc.conversions[i]
        acc[1] += enc.nulls[i]
    players = list(range(len(enc.channels)))
    # simplified game: v(S) = conversions of journeys whose set is a subset of S, over all channels at once
    v_sub = {
        frozenset(c): sum(n for s, (n, _) in sets.items() if s <= frozenset(c))
        for r in range(1, 5)
        for c in itertools.combinations(players, r)
    }
    expect = _brute_shapley(players, v_sub)
    got = at.shapley(enc)
    assert got.conversions.tolist() == pytest.approx([expect[p] for p in players], rel=1e-12)
    # conversion-rate game: per converting set, Shapley of the exact-set rate restricted to its subsets
    rate = {s: n / (n + z) for s, (n, z) in sets.items() if n + z > 0}
    total = np.zeros(len(players))
    for s, (n, _) in sets.items():
        if n == 0:
            continue
        phi = _brute_shapley(sorted(s), {k: r for k, r in rate.items() if k <= s})
        for p, x in phi.items():
            total[p] += n * x / rate[s]
    got_rate = at.shapley(enc, game="conversion_rate")
    assert got_rate.conversions.tolist() == pytest.approx(total.tolist(), rel=1e-10)


def test_bootstrap_intervals_cover_the_estimate() -> None:
    rng = np.random.default_rng(11)
    names = ["Email", "Search", "Social"]
    raw = [" > ".join(rng.choice(names, rng.integers(1, 5))) for _ in range(2000)]
    conv = (rng.random(2000) < 0.4).astype(int)
    for model in ("markov", "shapley"):
        iv = at.bootstrap(raw, conv, 1 - conv, model=model, n=60, seed=2)  # type: ignore[arg-type]
        assert iv.samples.shape == (60, 3)
        assert np.all(iv.low <= iv.estimate + 1e-9)
        assert np.all(iv.estimate <= iv.high + 1e-9)
        assert np.all(iv.high - iv.low > 0)
        assert iv.samples.sum(axis=1) == pytest.approx(np.full(60, iv.samples.sum(axis=1)[0]), rel=0.2)
    again = at.bootstrap(raw, conv, 1 - conv, n=10, seed=2)
    assert np.array_equal(again.samples, at.bootstrap(raw, conv, 1 - conv, n=10, seed=2).samples)


def test_encode_accepts_lists_and_odd_spacing() -> None:
    a = at.encode([["Email", "Direct"], ["Direct"]], [1, 0], None, [0, 1])
    b = at.encode(["Email>  Direct ", " Direct"], [1, 0], None, [0, 1])
    c = at.encode(["Email > > Direct", "Direct"], [1, 0], None, [0, 1])
    for e in (a, b, c):
        assert e.channels == ("Email", "Direct")
        assert e.codes.tolist() == [0, 1, 1]
        assert e.offsets.tolist() == [0, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"conversions": [1, 2, 3]}, "conversions"),
        ({"conversions": [1, -1]}, "conversions"),
        ({"conversions": [1, 1], "nulls": [float("nan"), 0]}, "nulls"),
        ({"conversions": [1, 1], "order": 4}, "order"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid, match=field):
        at.markov(["A > B", "B"], **kwargs)  # type: ignore[arg-type]
