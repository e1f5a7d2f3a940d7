"""Attribution over the store's own journeys: every model side by side, with bootstrap intervals.

The journeys come from ``insight.journeys`` (SQL); the math is ``insight.attribution`` (pure functions). The
report shows each channel's (or campaign's) credited conversions and value under first touch, last touch,
linear, time decay, position based, Markov and Shapley, so the owner sees where the rules disagree, and the 95%
bootstrap interval of the Markov and Shapley credits, so they see which differences are noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.insight import attribution as attr
from storefunnel.insight.engine import workspace_currency
from storefunnel.insight.facts import Period
from storefunnel.insight.journeys import By, Journeys, converting_orders, load_journeys

HEURISTICS: tuple[attr.HeuristicModel, ...] = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
MODELS = (*HEURISTICS, "markov", "shapley")
MODEL_LABELS = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "linear": "Linear",
    "time_decay": "Time decay",
    "position_based": "Position (40/20/40)",
    "markov": "Markov",
    "shapley": "Shapley",
}
DEFAULT_BOOTSTRAP = 100
MAX_BOOTSTRAP = 1000


def parse_models(model: str | None) -> tuple[str, ...]:
    """``None``/``all`` or a comma-separated list of model names, in the canonical order."""
    if model is None or model in ("", "all"):
        return MODELS
    asked = [m.strip() for m in model.split(",") if m.strip()]
    unknown = [m for m in asked if m not in MODELS]
    if unknown or not asked:
        raise Invalid(f"model: unknown model {', '.join(unknown) or model!r}; use all or {', '.join(MODELS)}")
    return tuple(m for m in MODELS if m in asked)


def run_model(
    journeys: Journeys, model: str, half_life: float = 7.0, encoded: attr.Encoded | None = None
) -> attr.Attribution:
    """One model over the journeys; credits are indexed like ``journeys.labels``."""
    enc = encoded if encoded is not None else journeys.encoded()
    if model == "time_decay":
        paths, ages, values = journeys.converting_paths()
        if not paths:
            zero = np.zeros(len(journeys.labels))
            return attr.Attribution(journeys.labels, zero, zero)
        res = attr.heuristic(paths, np.ones(len(paths)), values, model="time_decay", half_life=half_life, times=ages)
    elif model in HEURISTICS:
        res = attr.heuristic(enc, model=model)
    elif model == "markov":
        res = attr.markov(enc)
    elif model == "shapley":
        res = attr.shapley(enc)
    else:
        raise Invalid(f"model: unknown model {model!r}")
    return _aligned(res, journeys.labels)


def _aligned(res: attr.Attribution, labels: tuple[str, ...]) -> attr.Attribution:
    """Credits re-indexed to ``labels`` (a model sees only the channels of the paths it was given)."""
    if res.channels == labels:
        return res
    pos = {c: i for i, c in enumerate(labels)}
    conv, val = np.zeros(len(labels)), np.zeros(len(labels))
    for c, n, v in zip(res.channels, res.conversions, res.value, strict=True):
        conv[pos[c]] += n
        val[pos[c]] += v
    return attr.Attribution(labels, conv, val)


def _interval(enc: attr.Encoded, labels: tuple[str, ...], model: str, n: int, seed: int) -> dict[str, list[float]]:
    iv = attr.bootstrap(enc, model=model, n=n, seed=seed)  # type: ignore[arg-type]
    pos = {c: i for i, c in enumerate(iv.channels)}
    low = [float(iv.low[pos[c]]) if c in pos else 0.0 for c in labels]
    high = [float(iv.high[pos[c]]) if c in pos else 0.0 for c in labels]
    return {"low": low, "high": high}


def attribution_report(
    session: Session,
    workspace_id: int,
    period: Period,
    *,
    models: tuple[str, ...] = MODELS,
    by: By = "channel",
    lookback_days: int = 30,
    each_order: bool = False,
    half_life: float = 7.0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Credits per channel (or campaign) under each model, in conversions and in value (minor units)."""
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise Invalid(f"bootstrap: between 0 and {MAX_BOOTSTRAP} resamples")
    if half_life <= 0:
        raise Invalid("half_life: must be positive")
    currency = workspace_currency(session, workspace_id)
    journeys = load_journeys(
        session, workspace_id, period, lookback_days=lookback_days, by=by, each_order=each_order, currency=currency
    )
    n_orders, order_value = converting_orders(session, workspace_id, period, each_order, currency)
    labels = journeys.labels
    enc = journeys.encoded()
    credits: dict[str, attr.Attribution] = {}
    intervals: dict[str, dict[str, list[float]]] = {}
    if journeys.conversions > 0:
        for m in models:
            credits[m] = run_model(journeys, m, half_life, enc)
        if bootstrap > 0:
            for m in ("markov", "shapley"):
                if m in models:
                    intervals[m] = _interval(enc, labels, m, bootstrap, seed)
    touches = np.bincount(journeys.codes, minlength=len(labels))
    conv_rows = np.repeat(journeys.converted, np.diff(journeys.offsets)) > 0
    conv_touches = np.bincount(journeys.codes[conv_rows], minlength=len(labels))
    rows = []
    for i, label in enumerate(labels):
        row: dict[str, Any] = {
            by: label,
            "touches": int(touches[i]),
            "touches_in_converting_journeys": int(conv_touches[i]),
            "conversions": {m: float(credits[m].conversions[i]) for m in credits},
            "value": {m: float(credits[m].value[i]) for m in credits},
        }
        for m, iv in intervals.items():
            row[f"{m}_interval"] = [iv["low"][i], iv["high"][i]]
        rows.append(row)
    key = "markov" if "markov" in credits else next(iter(credits), None)
    if key is not None:
        rows.sort(key=lambda r: -r["conversions"][key])
    return {
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "by": by,
        "lookback_days": lookback_days,
        "each_order": each_order,
        "currency": currency,
        "models": [{"name": m, "label": MODEL_LABELS[m]} for m in models],
        "conversions": n_orders,
        "conversion_value": order_value,
        "journeys": {
            "converting": journeys.conversions,
            "non_converting": journeys.nulls,
            "conversions_without_touches": n_orders - journeys.conversions,
        },
        "bootstrap": {"resamples": bootstrap, "level": 0.95, "seed": seed} if intervals else None,
        "rows": rows,
    }


def credit_shares(report: dict[str, Any], model: str) -> dict[str, float]:
    """Each row's share of the model's credited conversions (sums to 1)."""
    key = report["by"]
    values = {r[key]: r["conversions"].get(model, 0.0) for r in report["rows"]}
    total = sum(values.values())
    return {k: (v / total if total else 0.0) for k, v in values.items()}
