"""Multi-touch attribution: which channels bring the buyers, as pure functions over arrays.

A sale is usually preceded by several touches, so last-click credit is wrong. This module gives the owner
the classic rules (first, last, linear, time decay, position based), the Markov-chain removal effect of
Anderl et al. (2016) solved exactly as an absorbing chain, and Shapley values over channel sets
(Zhao et al. 2018's simplified form, or Dalessandro et al. 2012's conversion-rate game).

Inputs are journeys, as ``" > "``-joined strings or sequences of channel names, with per-path counts:
``conversions`` (journeys of that path that converted), ``nulls`` (that did not) and ``values`` (their total
conversion value). One row per journey and one row per aggregated path are both accepted; identical paths are
merged first. Credits always add up to the total conversions and the total value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, count, repeat
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from storefunnel.errors import Invalid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Paths = Sequence[str] | Sequence[Sequence[str]]
HeuristicModel = Literal["first_touch", "last_touch", "linear", "time_decay", "position_based"]
Repeats = Literal["collapse", "keep"]

# Below this many paths the Python tokeniser is as fast as Arrow and avoids its import and start-up cost.
_ARROW_FROM = 2000

__all__ = [
    "Attribution",
    "Encoded",
    "Interval",
    "bootstrap",
    "encode",
    "heuristic",
    "markov",
    "shapley",
]


@dataclass(frozen=True)
class Encoded:
    """Journeys as integer channel codes: path ``i`` is ``codes[offsets[i]:offsets[i + 1]]``.

    Rows are unique paths when built with ``aggregate=True``; the counts are floats so that bootstrap
    resamples and weighted data use the same code.
    """

    channels: tuple[str, ...]
    codes: IntArray
    offsets: IntArray
    conversions: FloatArray
    nulls: FloatArray
    values: FloatArray

    @property
    def n_paths(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> IntArray:
        return np.diff(self.offsets)

    def path_of_touch(self) -> IntArray:
        """Row index of every touch, aligned with ``codes``."""
        return np.repeat(np.arange(self.n_paths, dtype=np.int64), self.lengths)


@dataclass(frozen=True)
class Attribution:
    """Credits per channel; ``conversions`` sums to the total conversions, ``value`` to the total value."""

    channels: tuple[str, ...]
    conversions: FloatArray
    value: FloatArray
    removal_effects: FloatArray | None = None

    def as_dict(self) -> dict[str, tuple[float, float]]:
        return {c: (float(n), float(v)) for c, n, v in zip(self.channels, self.conversions, self.value, strict=True)}


@dataclass(frozen=True)
class Interval:
    """Bootstrap percentile interval of the conversion credits, per channel."""

    channels: tuple[str, ...]
    estimate: FloatArray
    low: FloatArray
    high: FloatArray
    samples: FloatArray


def _wbincount(x: npt.ArrayLike, weights: npt.ArrayLike, minlength: int = 0) -> FloatArray:
    """np.bincount with weights, typed as the float array it returns."""
    return np.bincount(np.asarray(x), weights=np.asarray(weights), minlength=minlength).astype(np.float64)


def _counts(x: npt.ArrayLike | None, n: int, field: str) -> FloatArray:
    if x is None:
        return np.zeros(n)
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise Invalid(f"{field}: expected {n} values, one per path, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise Invalid(f"{field}: counts and values must be finite and non-negative")
    return arr


def _factorize(keys: list[str]) -> tuple[list[str], IntArray]:
    """Distinct keys in order of first appearance, and each key's position among them.

    ``setdefault`` with a running counter keeps the loop in C: every key gets the position of its first
    occurrence, and these sparse positions are then renumbered 0, 1, 2, ... with one array lookup.
    """
    first_seen: dict[str, int] = {}
    first = np.fromiter(map(first_seen.setdefault, keys, count()), dtype=np.int64, count=len(keys))
    positions = np.fromiter(first_seen.values(), dtype=np.int64, count=len(first_seen))
    renumber = np.empty(len(keys), dtype=np.int64)
    renumber[positions] = np.arange(positions.size, dtype=np.int64)
    return list(first_seen), renumber[first]


def _name_codes(raw_tokens: Iterable[str]) -> tuple[list[str], IntArray]:
    """Channel names from distinct raw tokens (given in order of first appearance), and each token's code.

    Tokens are stripped of surrounding spaces here, on the few distinct ones; an empty name gets -1 (dropped).
    """
    names: dict[str, int] = {}
    codes = [names.setdefault(name, len(names)) if (name := tok.strip()) else -1 for tok in raw_tokens]
    return list(names), np.asarray(codes, dtype=np.int64)


def _drop_empty(codes: IntArray, lengths: IntArray) -> tuple[IntArray, IntArray]:
    """Codes and offsets without the empty names (code -1); ``lengths`` are the tokens per path."""
    if np.any(codes < 0):
        keep = codes >= 0
        row = np.repeat(np.arange(lengths.size), lengths)
        lengths = np.bincount(row[keep], minlength=lengths.size).astype(np.int64)
        codes = codes[keep]
    return codes, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


def _tokenize_split(keys: list[str], sep: str) -> tuple[list[str], IntArray, IntArray]:
    """Channel codes by splitting every token, stripping spaces and dropping empty names.

    The text is split once as a whole (one C call) and only the distinct raw tokens are stripped in Python. A
    separator of several characters could match across the joins (``"A>" + ">>" + ">B"``), so such a separator
    splits path by path.
    """
    if len(sep) == 1:
        raw_tokens = sep.join(keys).split(sep) if keys else []
    else:
        raw_tokens = list(chain.from_iterable(map(str.split, keys, repeat(sep))))
    lengths = np.fromiter(map(str.count, keys, repeat(sep)), dtype=np.int64, count=len(keys)) + 1
    raw_code = dict.fromkeys(raw_tokens, 0)
    names, vocab_codes = _name_codes(raw_code)
    for tok, code in zip(raw_code, vocab_codes.tolist(), strict=True):
        raw_code[tok] = code
    codes = np.fromiter(map(raw_code.__getitem__, raw_tokens), dtype=np.int64, count=len(raw_tokens))
    codes, offsets = _drop_empty(codes, lengths)
    return names, codes, offsets


def _tokenize_python(keys: list[str], sep: str) -> tuple[IntArray, list[str], IntArray, IntArray]:
    """Row -> distinct path numbers, channel names, and the distinct paths' codes and offsets, in Python."""
    distinct, inverse = _factorize(keys)
    names, codes, offsets = _tokenize_split(distinct, sep)
    return inverse, names, codes, offsets


def _tokenize_arrow(keys: list[str], sep: str) -> tuple[IntArray, list[str], IntArray, IntArray] | None:
    """The same as ``_tokenize_python`` with Arrow's C++ kernels (hash dictionary encoding and splitting).

    Arrow numbers dictionary entries in order of first appearance and splits as ``str.split`` does, so the
    result is identical. Returns None when Arrow is missing or cannot take the text (lone surrogates are not
    UTF-8); the caller then uses the Python route.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = pc.dictionary_encode(pa.array(keys, type=pa.large_string()))
    except (ImportError, UnicodeError, ValueError, TypeError):  # pa.ArrowInvalid is a ValueError
        return None
    parts = pc.split_pattern(rows.dictionary, pattern=sep)
    tokens = pc.dictionary_encode(parts.flatten())
    names, vocab_codes = _name_codes(tokens.dictionary.to_pylist())
    codes = vocab_codes[tokens.indices.to_numpy(zero_copy_only=False)]
    lengths = np.diff(parts.offsets.to_numpy(zero_copy_only=False)).astype(np.int64)
    codes, offsets = _drop_empty(codes, lengths)
    inverse = rows.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return inverse, names, codes, offsets


def _expand(codes: IntArray, offsets: IntArray, inverse: IntArray) -> tuple[IntArray, IntArray]:
    """Codes and offsets of the rows ``inverse`` picks from distinct paths (``codes``, ``offsets``)."""
    lengths = np.diff(offsets)[inverse]
    out_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    shift = np.repeat(offsets[:-1][inverse] - out_offsets[:-1], lengths)
    return codes[shift + np.arange(int(out_offsets[-1]), dtype=np.int64)], out_offsets


def encode(
    paths: Paths,
    conversions: npt.ArrayLike,
    values: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    *,
    sep: str = ">",
    aggregate: bool = False,
) -> Encoded:
    """Turn journeys into integer channel codes (the data preparation every model shares).

    Channel names are stripped of surrounding spaces and empty names are dropped, as ChannelAttribution does;
    channels are numbered in order of first appearance. ``aggregate=True`` merges identical paths (counts,
    nulls and values summed), as the models do with text input; ``False`` keeps one row per input path.

    Identical path strings are found first and each distinct one is tokenised once: raw journeys repeat popular
    paths (a million journeys hold about 160,000 distinct paths), so this does a fraction of the string work;
    with ``aggregate=False`` rows are then copied from their distinct path by array indexing. Arrow's C++ hash
    and split kernels do the string work when the input is large enough to repay them.
    """
    n = len(paths)
    conv = _counts(conversions, n, "conversions")
    val = _counts(values, n, "values")
    nul = _counts(nulls, n, "nulls")
    if not sep:
        raise Invalid("sep: the separator between channel names must not be empty")
    keys: list[str]
    if n and not isinstance(paths[0], str):
        keys = [sep.join(p) for p in paths]
    else:
        keys = list(paths)  # type: ignore[arg-type]
    if not all(map(isinstance, keys, repeat(str))):
        raise Invalid("paths: every path must be a string or a sequence of channel names")
    tokenized = _tokenize_arrow(keys, sep) if n >= _ARROW_FROM else None
    inverse, names, codes, offsets = tokenized or _tokenize_python(keys, sep)
    m = len(offsets) - 1
    if aggregate:
        conv = _wbincount(inverse, weights=conv, minlength=m)
        val = _wbincount(inverse, weights=val, minlength=m)
        nul = _wbincount(inverse, weights=nul, minlength=m)
    elif m < n:
        codes, offsets = _expand(codes, offsets, inverse)
    return Encoded(tuple(names), codes, offsets, conv, nul, val)


def _as_encoded(
    paths: Paths | Encoded,
    conversions: npt.ArrayLike | None,
    values: npt.ArrayLike | None,
    nulls: npt.ArrayLike | None,
    aggregate: bool = True,
) -> Encoded:
    """The models' input as ``Encoded``; journeys given as text are merged into distinct paths by default.

    Every model weighs a path by its counts, so merging leaves the credits unchanged (up to the order of float
    sums) while the models work on the distinct paths (about 160,000 for a million journeys) instead of one row
    per journey. Per-touch times (time decay) need one row per journey and pass ``aggregate=False``.
    """
    if isinstance(paths, Encoded):
        return paths
    if conversions is None:
        raise Invalid("conversions: required, one count per path")
    return encode(paths, conversions, values, nulls, aggregate=aggregate)


def _collapse(enc: Encoded) -> Encoded:
    """Merge consecutive repeated touches of one channel into one touch."""
    if enc.codes.size == 0:
        return enc
    row = enc.path_of_touch()
    keep = np.ones(enc.codes.size, dtype=bool)
    keep[1:] = (enc.codes[1:] != enc.codes[:-1]) | (row[1:] != row[:-1])
    lengths = np.bincount(row[keep], minlength=enc.n_paths).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return Encoded(enc.channels, enc.codes[keep], offsets, enc.conversions, enc.nulls, enc.values)


# --------------------------------------------------------------------------------------------------------------
# Heuristic rules
# --------------------------------------------------------------------------------------------------------------


def _touch_weights(
    enc: Encoded,
    model: HeuristicModel,
    half_life: float,
    times: FloatArray | None,
    position_weights: tuple[float, float, float],
) -> FloatArray:
    """Share of its path's credit that each touch receives (each non-empty path's shares sum to 1)."""
    lengths = enc.lengths
    row = enc.path_of_touch()
    pos = np.arange(enc.codes.size, dtype=np.int64) - enc.offsets[:-1][row]
    length = lengths[row]
    if model == "first_touch":
        return (pos == 0).astype(np.float64)
    if model == "last_touch":
        return (pos == length - 1).astype(np.float64)
    if model == "linear":
        return 1.0 / length
    if model == "time_decay":
        if times is None:
            raise Invalid("times: time_decay needs the age of every touch (days before the conversion)")
        if half_life <= 0:
            raise Invalid("half_life: must be positive")
        raw = np.exp2(-times / half_life)
        total = _wbincount(row, weights=raw, minlength=enc.n_paths)
        return np.asarray(raw / total[row], dtype=np.float64)
    if model == "position_based":
        first, middle, last = position_weights
        if min(position_weights) < 0 or not np.isclose(first + middle + last, 1.0):
            raise Invalid("position_weights: three non-negative shares (first, middle, last) summing to 1")
        w = np.zeros(enc.codes.size)
        one = length == 1
        two = length == 2
        many = length > 2
        w[one] = 1.0
        w[two] = 0.5
        is_first = pos == 0
        is_last = pos == length - 1
        w[many & is_first] = first
        w[many & is_last] = last
        mid = many & ~is_first & ~is_last
        w[mid] = middle / (length[mid] - 2)
        return w
    raise Invalid(f"model: unknown heuristic model {model!r}")


def heuristic(
    paths: Paths | Encoded,
    conversions: npt.ArrayLike | None = None,
    values: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    model: HeuristicModel = "linear",
    half_life: float = 7.0,
    times: Sequence[Sequence[float]] | npt.ArrayLike | None = None,
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    repeats: Repeats = "keep",
) -> Attribution:
    """Rule-based attribution: each converting path's conversions and value are split over its touches.

    Parameters
    ----------
    paths, conversions, values, nulls
        Journeys and their counts (see the module docstring); ``nulls`` do not change rule-based credit.
    model
        ``first_touch`` and ``last_touch`` give everything to one touch; ``linear`` splits equally over the
        touches (a channel touched twice gets two shares, as in ChannelAttribution); ``time_decay`` weighs a
        touch by ``2 ** (-age / half_life)``; ``position_based`` gives ``position_weights`` (40/20/40) to the
        first touch, the middle ones together and the last touch; one touch takes all, two touches 50/50.
    half_life
        Days after which a touch's weight halves (``time_decay``).
    times
        For ``time_decay`` only: per journey, the age in days of each touch at the conversion, aligned with
        the path's touches. Journeys are then not merged, since equal paths may have different ages.
    repeats
        ``keep`` (default) counts repeated consecutive touches of one channel; ``collapse`` merges them.
    """
    flat_times: FloatArray | None = None
    if model == "time_decay" and times is not None and not isinstance(paths, Encoded):
        enc = _as_encoded(paths, conversions, values, nulls, aggregate=False)
        parts = [np.asarray(t, dtype=np.float64).reshape(-1) for t in times]  # type: ignore[union-attr]
        flat_times = np.concatenate(parts) if parts else np.zeros(0)
        if len(parts) != enc.n_paths or flat_times.size != enc.codes.size:
            raise Invalid("times: one age per touch of every journey is required")
        if np.any(flat_times < 0) or not np.all(np.isfinite(flat_times)):
            raise Invalid("times: ages must be finite and non-negative")
    else:
        enc = _as_encoded(paths, conversions, values, nulls)
    if repeats == "collapse":
        if flat_times is not None:
            raise Invalid("repeats: collapse cannot be combined with per-touch times")
        enc = _collapse(enc)
    w = _touch_weights(enc, model, half_life, flat_times, position_weights)
    row = enc.path_of_touch()
    k = len(enc.channels)
    conv = _wbincount(enc.codes, weights=w * enc.conversions[row], minlength=k)
    val = _wbincount(enc.codes, weights=w * enc.values[row], minlength=k)
    return Attribution(enc.channels, conv, val)


# --------------------------------------------------------------------------------------------------------------
# Markov chain removal effects, solved exactly
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chain:
    """Transition structure of the order-k chain, kept separate from the counts so that resamples reuse it."""

    n_states: int  # transient states; state 0 is (start)
    src: IntArray  # per distinct transition
    dst: IntArray  # -1 conversion, -2 null
    inner_row: IntArray  # per inner transition occurrence: its path ...
    inner_col: IntArray  # ... and its distinct transition
    end_col_conv: IntArray  # per path with states: the ->conversion transition
    end_col_null: IntArray  # per path with states: the ->null transition
    end_row: IntArray  # the paths with states
    state_channels: sp.csr_matrix  # states x channels: 1 if the state's tuple holds the channel
    last_state: IntArray  # per path, its last state (the one that leads to the outcome)
    path_states: IntArray  # per path, how many states it visits

    @property
    def is_conv(self) -> npt.NDArray[np.bool_]:
        return self.dst == -1

    def counts(self, conv: FloatArray, nul: FloatArray) -> FloatArray:
        """Journeys making each distinct transition, for per-path conversion and null counts."""
        m = self.src.size
        total = conv + nul
        out = _wbincount(self.inner_col, weights=total[self.inner_row], minlength=m)
        out += _wbincount(self.end_col_conv, weights=conv[self.end_row], minlength=m)
        out += _wbincount(self.end_col_null, weights=nul[self.end_row], minlength=m)
        return out


def _compact(keys: IntArray, space: int) -> tuple[IntArray, IntArray]:
    """Distinct keys (sorted) and the index of each key among them: a dense table when the key space is small
    (the usual case, few channels), else a sort."""
    if space <= 1 << 25:
        seen = np.zeros(space, dtype=bool)
        seen[keys] = True
        ids = np.cumsum(seen) - 1
        return np.flatnonzero(seen), ids[keys]
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, inverse.astype(np.int64)


def _chain(enc: Encoded, order: int, repeats: Repeats) -> _Chain:
    """Build the order-k chain: a state is ``order`` consecutive channels (the whole path if it is shorter);
    consecutive identical states merge when ``repeats == "collapse"``, as in ChannelAttribution."""
    k = len(enc.channels)
    n = enc.n_paths
    lengths = enc.lengths
    row = enc.path_of_touch()
    pos = np.arange(enc.codes.size, dtype=np.int64) - enc.offsets[:-1][row]
    n_win = np.maximum(lengths - order + 1, 1)
    n_win[lengths == 0] = 0
    starts_mask = pos < n_win[row]
    win_row = row[starts_mask]
    win_start = np.flatnonzero(starts_mask)
    base = k + 1
    state_key = np.zeros(win_start.size, dtype=np.int64)
    end = enc.offsets[1:][win_row]
    for j in range(order):
        idx = win_start + j
        c = np.where(idx < end, enc.codes[np.minimum(idx, max(enc.codes.size - 1, 0))], -1)
        state_key += (c + 1) * base**j
    if repeats == "collapse" and state_key.size:
        keep = np.ones(state_key.size, dtype=bool)
        keep[1:] = (state_key[1:] != state_key[:-1]) | (win_row[1:] != win_row[:-1])
        state_key, win_row = state_key[keep], win_row[keep]
    uniq, state = _compact(state_key, base**order)
    state = state + 1  # 0 is (start)
    n_states = uniq.size + 1
    win_counts = np.bincount(win_row, minlength=n).astype(np.int64)
    win_off = np.concatenate(([0], np.cumsum(win_counts)))
    has = win_counts > 0
    end_row = np.flatnonzero(has)
    prev = np.concatenate(([0], state[:-1])) if state.size else state.copy()
    prev[win_off[:-1][has]] = 0  # each path's first state comes from (start)
    last_state = np.zeros(n, dtype=np.int64)
    last_state[has] = state[win_off[1:][has] - 1]
    width = n_states + 2
    src_all = np.concatenate((prev, last_state[has], last_state[has]))
    dst_all = np.concatenate((state, np.full(end_row.size, -1), np.full(end_row.size, -2)))
    tuniq, tcol = _compact(src_all * width + (dst_all + 2), n_states * width)
    m = state.size
    members = np.zeros((uniq.size, order), dtype=np.int64)
    rest = uniq.copy()
    for j in range(order):
        members[:, j] = rest % base - 1
        rest //= base
    srows = np.repeat(np.arange(1, n_states), order)
    scols = members.reshape(-1)
    ok = scols >= 0
    state_channels = sp.csr_matrix((np.ones(int(ok.sum())), (srows[ok], scols[ok])), shape=(n_states, k))
    state_channels.sum_duplicates()
    state_channels.data[:] = 1.0
    return _Chain(
        n_states=n_states,
        src=tuniq // width,
        dst=tuniq % width - 2,
        inner_row=win_row,
        inner_col=tcol[:m],
        end_col_conv=tcol[m : m + end_row.size],
        end_col_null=tcol[m + end_row.size :],
        end_row=end_row,
        state_channels=state_channels,
        last_state=last_state,
        path_states=win_counts,
    )


def _removal_effects(
    chain: _Chain, counts: FloatArray, value_per_conv: FloatArray, horizon: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """Exact removal effects for conversions and value.

    ``counts`` are the journeys making each distinct transition; ``value_per_conv`` is, per transient state, the
    mean value of the conversions that follow it. The probability of converting from (start) is
    ``x[0]`` where ``(I - Q) x = r``; removing a channel deletes every state holding it (its incoming
    probability flows to null). Removal effect = P(convert) - P(convert | channel removed) = P(convert and
    visit the channel); normalising gives the same shares as Anderl et al.'s ``1 - P_removed / P``.
    With a ``horizon`` (most states a journey may visit) the finite-horizon probabilities are iterated exactly.
    """
    s = chain.n_states
    totals = _wbincount(chain.src, weights=counts, minlength=s)
    prob = np.divide(counts, totals[chain.src], out=np.zeros_like(counts), where=totals[chain.src] > 0)
    inner = chain.dst >= 0
    q = sp.csc_matrix((prob[inner], (chain.src[inner], chain.dst[inner])), shape=(s, s))
    to_conv = _wbincount(chain.src[chain.is_conv], weights=prob[chain.is_conv], minlength=s)
    rhs = np.column_stack((to_conv, to_conv * value_per_conv))
    a = (sp.identity(s, format="csc") - q).tocsc()
    qr = q.tocsr()

    def p_convert(idx: IntArray) -> FloatArray:
        """Conversion probability and expected value from (start), on the states ``idx`` (0 first)."""
        if horizon is None:
            return np.asarray(splu(a[idx][:, idx].tocsc()).solve(rhs[idx])[0])
        sub, r = qr[idx][:, idx], rhs[idx]
        f = r.copy()
        for _ in range(horizon - 1):
            f = r + sub @ f
        return np.asarray(sub[0] @ f).reshape(-1)

    base = p_convert(np.arange(s))
    k = chain.state_channels.shape[1]
    sc = chain.state_channels.tocsc()
    re = np.zeros((k, 2))
    for c in range(k):
        removed = sc.indices[sc.indptr[c] : sc.indptr[c + 1]]
        if removed.size == 0:
            continue
        keep = np.ones(s, dtype=bool)
        keep[removed] = False
        re[c] = base - p_convert(np.flatnonzero(keep))
    return re[:, 0], re[:, 1]


def _value_per_state(chain: _Chain, enc_conv: FloatArray, enc_val: FloatArray) -> FloatArray:
    conv = _wbincount(chain.last_state, weights=enc_conv, minlength=chain.n_states)
    val = _wbincount(chain.last_state, weights=enc_val, minlength=chain.n_states)
    return np.divide(val, conv, out=np.zeros_like(val), where=conv > 0)


def _markov_credits(
    chain: _Chain,
    channels: tuple[str, ...],
    conv: FloatArray,
    nul: FloatArray,
    val: FloatArray,
    horizon: int | None = None,
) -> Attribution:
    counts = chain.counts(conv, nul)
    re_n, re_v = _removal_effects(chain, counts, _value_per_state(chain, conv, val), horizon)
    total_n, total_v = conv.sum(), val.sum()
    credit_n = re_n / re_n.sum() * total_n if re_n.sum() > 0 else np.zeros_like(re_n)
    credit_v = re_v / re_v.sum() * total_v if re_v.sum() > 0 else np.zeros_like(re_v)
    p = re_n.max(initial=0.0)
    return Attribution(channels, credit_n, credit_v, removal_effects=re_n / p if p > 0 else re_n)


def markov(
    paths: Paths | Encoded,
    conversions: npt.ArrayLike | None = None,
    values: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    order: int = 1,
    repeats: Repeats = "collapse",
    horizon: int | Literal["data"] | None = None,
) -> Attribution:
    """Markov-chain attribution by removal effects (Anderl, Becker, von Wangenheim & Schumann 2016).

    Journeys become an absorbing chain: (start) -> states -> (conversion) | (null), a state being the last
    ``order`` channels (1 to 3). The conversion probability from (start) solves the sparse linear system
    ``(I - Q) x = r``; each channel's removal effect is the drop in that probability when every state holding
    the channel is removed (its traffic goes to null). Credits are the normalised removal effects times the
    total conversions; value credits use the same system with each conversion's reward being the mean value
    of the conversions that followed that last state. With ``horizon="data"`` this is the exact value that
    ChannelAttribution's ``markov_model`` approaches by simulation.

    ``repeats="collapse"`` (default) merges consecutive identical states, as ChannelAttribution does; for order
    1 it changes nothing, since self-loops do not change absorption probabilities. ``removal_effects`` in the
    result are scaled so that the largest is 1.

    ``horizon=None`` (default) is the chain itself: journeys may loop for any number of steps. A whole number
    caps the states a journey may visit before it counts as lost; ``"data"`` uses ChannelAttribution's cap
    (the longest observed path, in states, plus 2), which reproduces its results to Monte-Carlo precision.
    """
    if order not in (1, 2, 3):
        raise Invalid("order: must be 1, 2 or 3")
    enc = _as_encoded(paths, conversions, values, nulls)
    chain = _chain(enc, order, repeats)
    cap: int | None
    if horizon == "data":
        cap = int(chain.path_states.max(initial=0)) + 2
    elif horizon is None or (isinstance(horizon, int) and horizon >= 1):
        cap = horizon
    else:
        raise Invalid("horizon: None, 'data' or a whole number of at least 1")
    return _markov_credits(chain, enc.channels, enc.conversions, enc.nulls, enc.values, cap)


# --------------------------------------------------------------------------------------------------------------
# Shapley values over channel sets
# --------------------------------------------------------------------------------------------------------------


def _channel_sets(enc: Encoded) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Unique channel sets as bitmasks, with their conversions, nulls and values."""
    k = len(enc.channels)
    if k > 62:
        raise Invalid("paths: Shapley attribution supports at most 62 channels")
    nonempty = enc.lengths > 0
    bits = np.left_shift(np.int64(1), enc.codes)
    masks = np.zeros(enc.n_paths, dtype=np.int64)
    if enc.codes.size:
        masks[nonempty] = np.bitwise_or.reduceat(bits, enc.offsets[:-1][nonempty])
    sel = nonempty
    uniq, inv = np.unique(masks[sel], return_inverse=True)
    conv = _wbincount(inv, weights=enc.conversions[sel], minlength=uniq.size)
    nul = _wbincount(inv, weights=enc.nulls[sel], minlength=uniq.size)
    val = _wbincount(inv, weights=enc.values[sel], minlength=uniq.size)
    return uniq, conv, nul, val


def _bits(masks: IntArray, k: int) -> npt.NDArray[np.bool_]:
    return ((masks[:, None] >> np.arange(k, dtype=np.int64)[None, :]) & 1).astype(bool)


def _subset_sum(a: FloatArray, k: int, sign: float = 1.0) -> FloatArray:
    """Zeta (sign=1) or Moebius (sign=-1) transform over the subsets of k bits, in place on a copy."""
    out = a.copy()
    for j in range(k):
        view = out.reshape(-1, 2, 1 << j)
        view[:, 1, :] += sign * view[:, 0, :]
    return out


def _rate_shares(masks: IntArray, conv: FloatArray, nul: FloatArray, k: int) -> FloatArray:
    """Per converting set C, each channel's Shapley share of the game v(S) = conversion rate of journeys whose
    channel set is exactly S (0 if none), restricted to the subsets of C; rows sum to 1."""
    if k > 20:
        raise Invalid("paths: the conversion-rate Shapley game supports at most 20 channels")
    size = 1 << k
    total = conv + nul
    v = np.zeros(size)
    v[masks] = np.divide(conv, total, out=np.zeros_like(conv), where=total > 0)
    d = _subset_sum(v, k, -1.0)  # Harsanyi dividends
    popcount = _bits(np.arange(size, dtype=np.int64), k).sum(axis=1)
    per = np.divide(d, popcount, out=np.zeros_like(d), where=popcount > 0)
    shares = np.zeros((masks.size, k))
    all_masks = np.arange(size, dtype=np.int64)
    for i in range(k):
        g = np.where((all_masks >> i) & 1 == 1, per, 0.0)
        shares[:, i] = _subset_sum(g, k)[masks]
    vc = v[masks]
    return np.divide(shares, vc[:, None], out=np.zeros_like(shares), where=vc[:, None] > 0)


def shapley(
    paths: Paths | Encoded,
    conversions: npt.ArrayLike | None = None,
    values: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    game: Literal["simplified", "conversion_rate"] = "simplified",
) -> Attribution:
    """Shapley-value attribution over the set of channels each journey touched (order and repeats ignored).

    ``game="simplified"`` (default) uses the characteristic function v(S) = conversions of the journeys whose
    channel set is a subset of S. Its Shapley values have the closed form of Zhao, Mahboobi & Bagheri (2018,
    "Shapley value methods for attribution modeling in online advertising"): every converting journey's credit
    is split equally among its distinct channels. It is exact and needs no null journeys.

    ``game="conversion_rate"`` follows Dalessandro, Perlich, Stitelman & Provost (2012, "Causally motivated
    attribution for online advertising"): v(S) = conversion rate of journeys whose channel set is exactly S.
    Each converting set C shares its conversions in proportion to the Shapley values of v restricted to the
    subsets of C (computed exactly with Harsanyi dividends and subset-sum transforms over bitmasks; up to 20
    channels). Shares may be negative when adding a channel lowers the observed rate.
    """
    enc = _as_encoded(paths, conversions, values, nulls)
    k = len(enc.channels)
    masks, conv, nul, val = _channel_sets(enc)
    if game == "simplified":
        bits = _bits(masks, k)
        shares = bits / np.maximum(bits.sum(axis=1, keepdims=True), 1)
    elif game == "conversion_rate":
        shares = _rate_shares(masks, conv, nul, k)
    else:
        raise Invalid(f"game: unknown Shapley game {game!r}")
    return Attribution(enc.channels, shares.T @ conv, shares.T @ val)


# --------------------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------------------


def bootstrap(
    paths: Paths | Encoded,
    conversions: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    model: Literal["markov", "shapley"] = "markov",
    n: int = 200,
    seed: int = 0,
    *,
    order: int = 1,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap of the conversion credits, resampling journeys.

    The journeys are resampled with replacement by one multinomial draw over the (path, converted) cells of the
    aggregated data, which is the same as resampling raw journeys and is fast. The chain's structure is built
    once; each resample only re-counts transitions (a sparse product) and re-solves.
    """
    if n < 1:
        raise Invalid("n: at least one bootstrap resample")
    enc = _as_encoded(paths, conversions, None, nulls, aggregate=True)
    rng = np.random.default_rng(seed)
    cells = np.concatenate((enc.conversions, enc.nulls))
    total = cells.sum()
    if total <= 0:
        raise Invalid("conversions: no journeys to resample")
    p = cells / total
    m = enc.n_paths
    journeys = round(float(total))
    samples = np.zeros((n, len(enc.channels)))
    if model == "markov":
        chain = _chain(enc, order, "collapse")
        point = _markov_credits(chain, enc.channels, enc.conversions, enc.nulls, enc.values).conversions
        for b in range(n):
            draw = rng.multinomial(journeys, p).astype(np.float64)
            c, z = draw[:m], draw[m:]
            samples[b] = _markov_credits(chain, enc.channels, c, z, c).conversions
    elif model == "shapley":
        point = shapley(enc).conversions
        for b in range(n):
            draw = rng.multinomial(journeys, p).astype(np.float64)
            c, z = draw[:m], draw[m:]
            samples[b] = shapley(Encoded(enc.channels, enc.codes, enc.offsets, c, z, c)).conversions
    else:
        raise Invalid(f"model: bootstrap supports markov and shapley, not {model!r}")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return Interval(enc.channels, point, low, high, samples)
