"""Attribution against ChannelAttribution (Altomare & Loris), the reference Markov implementation.

ChannelAttribution estimates removal effects by simulating journeys, capped at the longest observed path; ours
solves the same chain exactly (``horizon="data"`` applies the same cap), so the two agree within Monte-Carlo
error at a high number of simulations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ChannelAttribution import heuristic_models, markov_model

from storefunnel.insight import attribution as at

CHANNELS = ["Email", "Paid Search", "Organic Search", "Direct", "Referral", "Display"]


@pytest.fixture(scope="module")
def journeys() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(1500):
        p = rng.choice(len(CHANNELS), rng.integers(1, 6), p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
        c = int(rng.binomial(5, 0.1 + 0.1 * (0 in p) + 0.05 * (1 in p)))
        rows.append((" > ".join(CHANNELS[j] for j in p), c, int(rng.integers(0, 5)), c * rng.uniform(10, 100)))
    return pd.DataFrame(rows, columns=["path", "conv", "null", "value"])


def _reference(df: pd.DataFrame, order: int) -> pd.DataFrame:
    out = markov_model(
        df,
        "path",
        "conv",
        var_value="value",
        var_null="null",
        order=order,
        nsim_start=1e6,
        verbose=False,
        flg_pro=False,
    )
    res = out["result"] if isinstance(out, dict) else out
    return res.set_index("channel_name")


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_matches_channelattribution(journeys: pd.DataFrame, order: int) -> None:
    ref = _reference(journeys, order)
    ours = at.markov(
        list(journeys.path), journeys.conv, journeys["value"], journeys["null"], order=order, horizon="data"
    )
    for channel, n, v in zip(ours.channels, ours.conversions, ours.value, strict=True):
        assert n == pytest.approx(ref.loc[channel, "total_conversions"], rel=0.025), channel
        assert v == pytest.approx(ref.loc[channel, "total_conversion_value"], rel=0.025), channel
    assert ours.conversions.sum() == pytest.approx(journeys.conv.sum(), rel=1e-12)


def test_heuristics_match_channelattribution(journeys: pd.DataFrame) -> None:
    ref = heuristic_models(journeys, "path", "conv", var_value="value", flg_pro=False).set_index("channel_name")
    for ours_name, ref_name in (
        ("first_touch", "first_touch"),
        ("last_touch", "last_touch"),
        ("linear", "linear_touch"),
    ):
        ours = at.heuristic(list(journeys.path), journeys.conv, journeys["value"], model=ours_name)  # type: ignore[arg-type]
        for channel, n, v in zip(ours.channels, ours.conversions, ours.value, strict=True):
            assert n == pytest.approx(ref.loc[channel, f"{ref_name}_conversions"], rel=1e-9)
            assert v == pytest.approx(ref.loc[channel, f"{ref_name}_value"], rel=1e-9)
