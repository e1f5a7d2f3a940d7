"""Attribution on cases small enough to compute by hand, plus the invariants every model keeps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import partial

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
        iv = at.bootstrap(raw, conv, 1 - conv, model=model, n=60, seed=2)
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


# --------------------------------------------------------------------------------------------------------------
# The encoder: deduplicated and Arrow-backed tokenising must give exactly what the plain Python one gave
# --------------------------------------------------------------------------------------------------------------


def _plain_encode(
    paths: at.Paths, conv: list[float], nulls: list[float], sep: str, aggregate: bool, values: list[float] | None = None
) -> at.Encoded:
    """The straightforward encoder (every row split in Python), the definition the fast one must reproduce."""
    keys = [p if isinstance(p, str) else sep.join(p) for p in paths]
    c, z = np.asarray(conv, dtype=np.float64), np.asarray(nulls, dtype=np.float64)
    v = np.zeros(len(keys)) if values is None else np.asarray(values, dtype=np.float64)
    if aggregate:
        index: dict[str, int] = {}
        inverse = [index.setdefault(k, len(index)) for k in keys]
        keys = list(index)
        c = np.bincount(inverse, weights=c, minlength=len(keys)).astype(np.float64)
        z = np.bincount(inverse, weights=z, minlength=len(keys)).astype(np.float64)
        v = np.bincount(inverse, weights=v, minlength=len(keys)).astype(np.float64)
    names: dict[str, int] = {}
    codes: list[int] = []
    offsets = [0]
    for key in keys:
        for token in key.split(sep):
            if name := token.strip():
                codes.append(names.setdefault(name, len(names)))
        offsets.append(len(codes))
    return at.Encoded(tuple(names), np.asarray(codes, dtype=np.int64), np.asarray(offsets, dtype=np.int64), c, z, v)


def _assert_same(got: at.Encoded, want: at.Encoded) -> None:
    assert got.channels == want.channels
    for field in ("codes", "offsets", "conversions", "nulls", "values"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype, field
        assert np.array_equal(a, b), field


TRICKY: dict[str, at.Paths] = {
    "spaces around names": ["  Email >Direct  ", "Direct>  Email", " Email ", "Email>Direct", "\tDirect\n> Email"],
    "empty names": ["A > > B", " > A", "A >", ">", "", "  ", "> >", "B"],
    "single-channel paths": ["A", "B", "A", "C", "B", "A"],
    "empty strings only": ["", "", ""],
    "unicode names": ["Café > Ünïcode 🚀", "日本語 > Café", "\u00a0Café\u3000 > 日本語", "Ünïcode 🚀\u2003>x\x00y"],
    "duplicate paths": ["C > B", "A", "C > B", "D > A", "A", "C > B", "B > C", "D > A"],
    "sequences": [["Email", "Direct"], ["Direct"], [" Email ", ""], [], ["Email", "Direct"], ["A>B", "C"]],
    "tuples": [("Email", "Direct"), ("Direct",), ("Email", "Direct")],
    "no journeys": [],
}


@pytest.mark.parametrize("case", list(TRICKY))
@pytest.mark.parametrize("aggregate", [False, True])
@pytest.mark.parametrize("arrow_from", [0, 10**9], ids=["arrow", "python"])
def test_encode_is_identical_to_plain_splitting(
    case: str, aggregate: bool, arrow_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(at, "_ARROW_FROM", arrow_from)
    paths = TRICKY[case]
    conv = [float(i % 3) for i in range(len(paths))]
    nulls = [float(i % 2) for i in range(len(paths))]
    values = [2.5 * i for i in range(len(paths))]
    got = at.encode(paths, conv, values, nulls, aggregate=aggregate)
    _assert_same(got, _plain_encode(paths, conv, nulls, ">", aggregate, values))


@pytest.mark.parametrize("sep", [" > ", ">>", "->", "→"])
@pytest.mark.parametrize("arrow_from", [0, 10**9], ids=["arrow", "python"])
def test_encode_other_separators(sep: str, arrow_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(at, "_ARROW_FROM", arrow_from)
    paths = ["A>>>B", "A -> B > C", "A → B→→C", " > A >  > B", ">>>>>", "A", "A -> B > C"]
    ones = [1.0] * len(paths)
    for aggregate in (False, True):
        got = at.encode(paths, ones, None, ones, sep=sep, aggregate=aggregate)
        _assert_same(got, _plain_encode(paths, ones, ones, sep, aggregate))


def test_encode_random_text_matches_plain_splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random strings over an alphabet of separators, spaces and non-ASCII letters, with many repeats."""
    rng = np.random.default_rng(17)
    alphabet = np.array(list("ab >>  é\t\u00a0Ω"))
    pool = ["".join(rng.choice(alphabet, rng.integers(0, 12))) for _ in range(400)]
    paths = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    conv = rng.integers(0, 3, len(paths)).astype(float).tolist()
    nulls = rng.integers(0, 3, len(paths)).astype(float).tolist()
    for arrow_from in (0, 10**9):
        monkeypatch.setattr(at, "_ARROW_FROM", arrow_from)
        for aggregate in (False, True):
            got = at.encode(paths, conv, None, nulls, aggregate=aggregate)
            _assert_same(got, _plain_encode(paths, conv, nulls, ">", aggregate))


def test_encode_text_arrow_cannot_take(monkeypatch: pytest.MonkeyPatch) -> None:
    # a lone surrogate is a valid Python string but not UTF-8: Arrow refuses it and the Python route takes over
    paths = ["A > \ud800", "A", "\ud800 > B"]
    assert at._tokenize_arrow(paths, ">") is None
    monkeypatch.setattr(at, "_ARROW_FROM", 0)
    _assert_same(at.encode(paths, [1, 0, 1], None, [0, 1, 0]), _plain_encode(paths, [1, 0, 1], [0, 1, 0], ">", False))


def test_encode_rejects_bad_paths_and_separator() -> None:
    with pytest.raises(Invalid, match="paths"):
        at.encode(["A > B", None], [1, 0])  # type: ignore[list-item]
    with pytest.raises(Invalid, match="paths"):
        at.encode(["A > B", ["A"]], [1, 0])
    with pytest.raises(Invalid, match="sep"):
        at.encode(["A > B"], [1], sep="")


def test_models_merge_text_journeys_without_changing_credits() -> None:
    """Text journeys are merged into distinct paths before the models; credits match the one-row-per-journey
    encoding (which keeps every journey as its own row)."""
    rng = np.random.default_rng(9)
    names = ["Email", "Search", "Social", "Direct"]
    raw = [" > ".join(rng.choice(names, rng.integers(1, 5))) for _ in range(4000)]
    conv = (rng.random(4000) < 0.3).astype(float)
    value = conv * rng.uniform(5, 50, 4000)
    per_journey = at.encode(raw, conv, value, 1 - conv)
    assert per_journey.n_paths == len(raw)
    models: list[Callable[..., at.Attribution]] = [
        at.markov,
        partial(at.markov, order=2, horizon="data"),
        partial(at.heuristic, model="position_based"),
        partial(at.shapley, game="conversion_rate"),
    ]
    for model in models:
        from_text = model(raw, conv, value, 1 - conv)
        from_rows = model(per_journey, None, None, None)
        assert from_text.channels == from_rows.channels
        np.testing.assert_allclose(from_text.conversions, from_rows.conversions, rtol=1e-11)
        np.testing.assert_allclose(from_text.value, from_rows.value, rtol=1e-11)
