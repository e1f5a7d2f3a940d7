"""Scoring operations: train on the workspace's own history, score every contact, explain one; never commits.

Training is out-of-time: features as of ``as_of - 2h`` and first orders in the following ``h`` days train a
model that is then judged on features as of ``as_of - h`` and first orders in ``(as_of - h, as_of]``, beside
a ranking by recency alone. The model kept for scoring is refitted on that most recent window, the same way,
so the metrics describe the procedure on data it had not seen.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle.rules import rules_from_settings
from storefunnel.db import utcnow
from storefunnel.errors import Invalid, NotFound
from storefunnel.models import Contact, ContactScore, Order, ScoringModel, Segment, Touch, Workspace
from storefunnel.scoring import features as F
from storefunnel.scoring import model as M
from storefunnel.workspaces.service import locked_settings, set_setting

SETTINGS_KEY = "scoring"
MIN_BUYERS = 5
SCORE_TABLE = ContactScore.__tablename__
SCORE_COLUMNS = ("workspace_id", "contact_id", "model_id", "score", "logit", "fit", "engagement", "scored_at")
TOP_FACTORS = 3


# ---- settings: the target groups ---------------------------------------------------------------------------
def _workspace(session: Session, workspace_id: int) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    return ws


def target_segments(session: Session, workspace_id: int) -> dict[int, str]:
    """The segments marked as targets, by id, that still exist in this workspace."""
    ids = (_workspace(session, workspace_id).settings or {}).get(SETTINGS_KEY, {}).get("target_segments", [])
    ids = [int(i) for i in ids if isinstance(i, int)]
    if not ids:
        return {}
    rows = session.execute(
        sa.select(Segment.id, Segment.name).where(Segment.workspace_id == workspace_id, Segment.id.in_(ids))
    )
    names = {int(r[0]): str(r[1]) for r in rows}
    return {i: names[i] for i in ids if i in names}


def set_target_segments(session: Session, workspace_id: int, ids: Sequence[int]) -> dict[int, str]:
    ids = list(dict.fromkeys(ids))
    found = {
        int(r[0]): str(r[1])
        for r in session.execute(
            sa.select(Segment.id, Segment.name).where(Segment.workspace_id == workspace_id, Segment.id.in_(ids))
        )
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(
            f"target_segments: no segment {missing[0]} in this workspace",
            errors=[{"field": "target_segments", "message": f"unknown segment {missing[0]}"}],
        )
    _workspace(session, workspace_id)
    current = locked_settings(session, workspace_id).get(SETTINGS_KEY, {})
    set_setting(session, workspace_id, SETTINGS_KEY, {**current, "target_segments": ids})
    return {i: found[i] for i in ids}


def _cancelled(session: Session, workspace_id: int) -> tuple[str, ...]:
    try:
        return tuple(rules_from_settings(_workspace(session, workspace_id).settings).cancelled_statuses)
    except ValueError:
        return ("cancelled", "refunded")


# ---- training ----------------------------------------------------------------------------------------------
def _require_buyers(m: F.Matrix, what: str, cutoff: dt.datetime, horizon: int) -> None:
    assert m.label is not None
    buyers = int(m.label.sum())
    if buyers < MIN_BUYERS or len(m) - buyers < MIN_BUYERS:
        raise Invalid(
            f"as_of: not enough history to {what}: {buyers} of {len(m)} contacts placed a first order in the "
            f"{horizon} days after {cutoff:%Y-%m-%d}; at least {MIN_BUYERS} buyers and non-buyers are needed",
            errors=[{"field": "as_of", "message": "not enough history"}],
        )


def train(
    session: Session,
    workspace_id: int,
    *,
    horizon_days: int = 30,
    half_life_days: float = 14.0,
    as_of: dt.datetime | None = None,
) -> ScoringModel:
    """Train, judge on the holdout window, refit on the latest window, store the model and score everyone."""
    as_of = as_of or utcnow()
    hold_cut = as_of - dt.timedelta(days=horizon_days)
    train_cut = hold_cut - dt.timedelta(days=horizon_days)
    spec = F.vocabulary(
        session, workspace_id, half_life_days, target_segments(session, workspace_id), _cancelled(session, workspace_id)
    )
    train_m, hold_m, now_m = F.build_many(
        session, workspace_id, spec, [(train_cut, horizon_days), (hold_cut, horizon_days), (as_of, None)]
    )
    _require_buyers(train_m, "train", train_cut, horizon_days)
    _require_buyers(hold_m, "check the model on recent data", hold_cut, horizon_days)
    assert train_m.label is not None
    assert hold_m.label is not None
    first = M.fit(train_m.x, train_m.label)
    p_hold = first.proba(hold_m.x)
    metrics = {
        "auc": M.auc(hold_m.label, p_hold),
        "recency_auc": M.auc(hold_m.label, -hold_m.days_since_last_touch),
        "train_cutoff": train_cut.isoformat(),
        "holdout_cutoff": hold_cut.isoformat(),
        "n_train": len(train_m),
        "train_buyers": int(train_m.label.sum()),
        "n_holdout": len(hold_m),
        "holdout_buyers": int(hold_m.label.sum()),
        "base_rate": float(hold_m.label.mean()),
        "calibration": M.calibration(hold_m.label, p_hold),
    }
    final = M.fit(hold_m.x, hold_m.label)
    feats = F.columns(spec)
    params = {
        "spec": spec.as_dict(),
        "features": [{"name": f.name, "group": f.group, "label": f.label, "kind": f.kind} for f in feats],
        **final.as_dict(),
    }
    row = ScoringModel(
        workspace_id=workspace_id,
        trained_at=as_of,
        horizon_days=horizon_days,
        half_life_days=half_life_days,
        params=params,
        metrics=metrics,
    )
    session.add(row)
    session.flush()
    _write_scores(session, workspace_id, row, now_m, as_of)
    return row


def _loaded(row: ScoringModel) -> tuple[F.Spec, list[F.Feature], M.Fitted]:
    spec = F.Spec.from_dict(row.params["spec"])
    feats = [F.Feature(f["name"], f["group"], f["label"], f["kind"]) for f in row.params["features"]]
    return spec, feats, M.Fitted.from_dict(row.params)


def _groups(feats: list[F.Feature]) -> np.ndarray:
    return np.array([f.group == "fit" for f in feats], dtype=bool)


def score_all(session: Session, workspace_id: int, row: ScoringModel, as_of: dt.datetime | None = None) -> int:
    """Replace the workspace's scores with this model's, for every contact not yet a customer; returns how many."""
    as_of = as_of or utcnow()
    spec = F.Spec.from_dict(row.params["spec"])
    return _write_scores(session, workspace_id, row, F.build(session, workspace_id, spec, as_of), as_of)


def _write_scores(session: Session, workspace_id: int, row: ScoringModel, m: F.Matrix, as_of: dt.datetime) -> int:
    """Score the matrix and replace the workspace's scores in bulk: binary COPY on PostgreSQL, one executemany of
    plain tuples on SQLite (a dict per row bound through SQLAlchemy took longer than computing the scores).
    """
    _, feats, fitted = _loaded(row)
    is_fit = _groups(feats)
    contrib = fitted.contributions(m.x)
    logit = contrib.sum(axis=1) + fitted.intercept
    values = {
        "workspace_id": np.full(len(m), workspace_id),
        "contact_id": m.contact_ids,
        "model_id": np.full(len(m), row.id),
        "score": M.sigmoid(logit),
        "logit": logit,
        "fit": contrib[:, is_fit].sum(axis=1),
        "engagement": contrib[:, ~is_fit].sum(axis=1),
    }
    session.execute(sa.delete(ContactScore).where(ContactScore.workspace_id == workspace_id))
    conn = session.connection()
    columns = ", ".join(SCORE_COLUMNS)
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection  # psycopg's, inside the session's transaction
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {SCORE_TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(_copy_binary(values, as_of))
    else:
        bind_at = ContactScore.__table__.c.scored_at.type.bind_processor(conn.dialect)
        at = bind_at(as_of) if bind_at is not None else as_of
        rows = zip(*[values[c].tolist() for c in SCORE_COLUMNS[:-1]], [at] * len(m), strict=True)
        marks = ", ".join("?" * len(SCORE_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {SCORE_TABLE} ({columns}) VALUES ({marks})", list(rows))
    return len(m)


PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _copy_binary(values: dict[str, np.ndarray], at: dt.datetime) -> bytes:
    """The rows as PostgreSQL's binary COPY format, built by numpy as fixed-width records (no Python per row).

    Each record: the field count, then per field its byte length and its big-endian value; ids are bigint,
    the numbers double precision, ``scored_at`` microseconds since 2000-01-01 UTC.
    """
    kinds = {"workspace_id": ">i8", "contact_id": ">i8", "model_id": ">i8", "scored_at": ">i8"}
    fields = [("n", ">i2")]
    for c in SCORE_COLUMNS:
        fields += [(f"{c}_len", ">i4"), (c, kinds.get(c, ">f8"))]
    n = len(values["contact_id"])
    rec = np.empty(n, dtype=np.dtype(fields))
    rec["n"] = len(SCORE_COLUMNS)
    for c in SCORE_COLUMNS:
        rec[f"{c}_len"] = 8
        rec[c] = values[c] if c != "scored_at" else (at - PG_EPOCH) // dt.timedelta(microseconds=1)
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no header extension
    return header + rec.tobytes() + b"\xff\xff"


def latest_model(session: Session, workspace_id: int) -> ScoringModel | None:
    return session.scalars(
        sa.select(ScoringModel)
        .where(ScoringModel.workspace_id == workspace_id)
        .order_by(ScoringModel.trained_at.desc(), ScoringModel.id.desc())
        .limit(1)
    ).first()


def require_model(session: Session, workspace_id: int) -> ScoringModel:
    row = latest_model(session, workspace_id)
    if row is None:
        raise NotFound(
            "no scoring model yet: train one first (POST /api/v1/scoring/train or 'storefunnel score train')"
        )
    return row


def scored_count(session: Session, workspace_id: int) -> int:
    return int(session.scalar(sa.select(sa.func.count()).where(ContactScore.workspace_id == workspace_id)) or 0)


def model_summary(session: Session, workspace_id: int) -> dict[str, Any]:
    row = require_model(session, workspace_id)
    _, feats, fitted = _loaded(row)
    coefficients: list[dict[str, Any]] = [
        {"feature": f.name, "group": f.group, "label": f.label, "weight": float(w)}
        for f, w in zip(feats, fitted.coef, strict=True)
    ]
    coefficients.sort(key=lambda c: -abs(float(c["weight"])))
    return {
        "id": row.id,
        "trained_at": row.trained_at,
        "horizon_days": row.horizon_days,
        "half_life_days": row.half_life_days,
        "target_segments": row.params["spec"].get("target_segments", {}),
        "scored": scored_count(session, workspace_id),
        "metrics": row.metrics,
        "coefficients": coefficients,
    }


# ---- explanations ------------------------------------------------------------------------------------------
def _plural(n: float, word: str) -> str:
    k = round(float(n))
    return f"{k} {word if k != 1 else word.rstrip('s')}"


def describe(feature: F.Feature, value: float, count: float | None, idle_days: float) -> str:
    """A factor in the words an owner uses: "4 email opens, recent ones counted more" rather than a z-score."""
    name, kind = feature.name, feature.kind
    if kind == "flag":
        if value >= 0.5:
            return feature.label
        prefix, _, rest = name.partition(":")
        return {
            "segment": f"Not in target group {feature.label.removeprefix('In target group ')}",
            "country": f"Lives outside {rest}",
            "city": f"Lives outside {rest}",
            "age_band": f"Age other than {rest}",
            "gender": f"Gender other than {rest.replace('_', '-')}",
            "lead_channel": f"Became a lead through a channel other than {rest}",
        }.get(prefix, f"Not: {feature.label}")
    if name == "recency":
        if idle_days >= F.NO_TOUCH_DAYS:
            return "No touch recorded yet"
        return f"Last touch {_plural(idle_days, 'days')} ago" if idle_days >= 1 else "Last touch less than a day ago"
    if name == "tenure":
        return f"A contact for {_plural(np.expm1(value), 'days')}"
    if name == "touches:all":
        return f"{_plural(np.expm1(value), 'touches')} in all"
    if count is not None:
        if count == 0:
            return f"No {feature.label}"
        return f"{_plural(count, feature.label)}, {value:.1f} counting recent ones more"
    return f"{feature.label[0].upper()}{feature.label[1:]}: {value:.1f}, counting recent ones more"


def factors_for(feats: list[F.Feature], m: F.Matrix, row_index: int, contrib: np.ndarray) -> list[dict[str, Any]]:
    """Every factor of one contact, the largest effect first."""
    out: list[dict[str, Any]] = []
    idle = float(m.days_since_last_touch[row_index])
    for j, f in enumerate(feats):
        key = f.name.removeprefix("touches:")
        count = m.counts.get(key) if f.name.startswith("touches:") else m.counts.get(f.name)
        value = float(m.x[row_index, j])
        text = describe(f, value, None if count is None else float(count[row_index]), idle)
        out.append(
            {
                "feature": f.name,
                "group": f.group,
                "text": text,
                "value": value,
                "contribution": float(contrib[j]),
            }
        )
    out.sort(key=lambda d: -abs(float(d["contribution"])))
    return out


def explain(session: Session, workspace_id: int, contact_id: int) -> dict[str, Any]:
    """The contact's score and every factor's share of it, from the facts as they stood when it was scored."""
    contact = session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id)
    ).first()
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    score = session.scalars(
        sa.select(ContactScore).where(ContactScore.workspace_id == workspace_id, ContactScore.contact_id == contact_id)
    ).first()
    if score is None:
        raise NotFound(
            f"contact {contact_id} has no score: customers are not scored, nor contacts newer than the model"
        )
    row = session.get(ScoringModel, score.model_id)
    assert row is not None
    spec, feats, fitted = _loaded(row)
    m = F.build(session, workspace_id, spec, score.scored_at, contact_ids=[contact_id])
    if len(m) == 0:
        raise NotFound(f"contact {contact_id} has no score: it was a customer when scored")
    contrib = fitted.contributions(m.x[:1])[0]
    is_fit = _groups(feats)
    logit = float(contrib.sum() + fitted.intercept)
    return {
        "contact_id": contact_id,
        "model_id": row.id,
        "scored_at": score.scored_at,
        "score": float(M.sigmoid(np.array([logit]))[0]),
        "logit": logit,
        "base": fitted.intercept,
        "fit": float(contrib[is_fit].sum()),
        "engagement": float(contrib[~is_fit].sum()),
        "factors": factors_for(feats, m, 0, contrib),
    }


# ---- lists -------------------------------------------------------------------------------------------------
def _name(c: Any) -> str:
    return " ".join(p for p in (c.first_name, c.last_name) if p) or (c.email or f"contact {c.id}")


def encode_cursor(score: float, contact_id: int) -> str:
    return base64.urlsafe_b64encode(f"sc|{score!r}|{contact_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, score, cid = raw.split("|")
        value, last = float(score), int(cid)
        if tag != "sc" or not 0 < last < 2**63 or not 0.0 <= value <= 1.0:
            raise ValueError(raw)
        return value, last
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise Invalid("cursor: not a cursor this API returned", errors=[{"field": "cursor"}]) from None


def _score_rows(workspace_id: int) -> sa.Select[*tuple[Any, ...]]:
    return (
        sa.select(
            ContactScore.contact_id,
            ContactScore.score,
            ContactScore.fit,
            ContactScore.engagement,
            ContactScore.scored_at,
            Contact.email,
            Contact.first_name,
            Contact.last_name,
            Contact.stage,
            Contact.id,
        )
        .join(Contact, Contact.id == ContactScore.contact_id)
        .where(ContactScore.workspace_id == workspace_id, Contact.workspace_id == workspace_id)
        .order_by(ContactScore.score.desc(), ContactScore.contact_id.desc())
    )


def _item(r: Any) -> dict[str, Any]:
    return {
        "contact_id": r.contact_id,
        "email": r.email,
        "name": _name(r),
        "stage": r.stage,
        "score": r.score,
        "fit": r.fit,
        "engagement": r.engagement,
        "scored_at": r.scored_at,
    }


def list_scores(
    session: Session, workspace_id: int, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Scores, highest first, keyset-paginated on (score, contact id)."""
    stmt = _score_rows(workspace_id)
    if cursor:
        s, cid = decode_cursor(cursor)
        stmt = stmt.where(
            sa.or_(ContactScore.score < s, sa.and_(ContactScore.score == s, ContactScore.contact_id < cid))
        )
    rows = session.execute(stmt.limit(limit + 1)).all()
    items = [_item(r) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].score, rows[limit - 1].contact_id) if len(rows) > limit else None
    return items, nxt


def last_touches(session: Session, workspace_id: int, contact_ids: Sequence[int], n: int = 3) -> dict[int, list[Any]]:
    """The ``n`` latest touches of each contact in one query (ROW_NUMBER over each contact's touches)."""
    if not contact_ids:
        return {}
    rn = (
        sa.func.row_number()
        .over(partition_by=Touch.contact_id, order_by=(Touch.occurred_at.desc(), Touch.id.desc()))
        .label("rn")
    )
    ranked = (
        sa.select(Touch.contact_id, Touch.occurred_at, Touch.kind, Touch.event, Touch.channel, rn)
        .where(Touch.workspace_id == workspace_id, Touch.contact_id.in_(list(contact_ids)))
        .subquery("ranked")
    )
    rows = session.execute(sa.select(ranked).where(ranked.c.rn <= n).order_by(ranked.c.contact_id, ranked.c.rn)).all()
    out: dict[int, list[Any]] = {int(c): [] for c in contact_ids}
    for r in rows:
        out[int(r.contact_id)].append(
            {"occurred_at": r.occurred_at, "kind": r.kind, "event": r.event, "channel": r.channel}
        )
    return out


def leads_to_follow_up(session: Session, workspace_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The best-scored contacts who have not bought yet, with their top reasons and their last 3 touches."""
    row = require_model(session, workspace_id)
    spec, feats, fitted = _loaded(row)
    bought = (
        sa.exists()
        .where(
            Order.workspace_id == workspace_id,
            Order.contact_id == ContactScore.contact_id,
            Order.status.not_in(spec.cancelled_statuses),
        )
        .correlate(ContactScore)
    )
    rows = session.execute(_score_rows(workspace_id).where(~bought).limit(limit)).all()
    ids = [int(r.contact_id) for r in rows]
    touches = last_touches(session, workspace_id, ids)
    # Reasons are computed as of each score's time; scores of one run share it, so one query serves them all.
    by_time: dict[dt.datetime, list[int]] = {}
    for r in rows:
        by_time.setdefault(r.scored_at, []).append(int(r.contact_id))
    reasons: dict[int, list[dict[str, Any]]] = {}
    for at, group in by_time.items():
        m = F.build(session, workspace_id, spec, at, contact_ids=group)
        contrib = fitted.contributions(m.x)
        for i, cid in enumerate(m.contact_ids):
            top = [f for f in factors_for(feats, m, i, contrib[i]) if f["contribution"] > 0][:TOP_FACTORS]
            reasons[int(cid)] = top
    return [
        {**_item(r), "top_factors": reasons.get(int(r.contact_id), []), "last_touches": touches[int(r.contact_id)]}
        for r in rows
    ]
