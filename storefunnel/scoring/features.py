"""The feature matrix of lead scoring: one SQL query, one row per contact, as of a cutoff time.

Fit says who the person is (target groups, location, demographics, the channel that made them a lead);
engagement says what they have been doing (touches by kind and channel, each weighted by
``2 ** -(age / half_life)`` so last week counts more than last quarter, days since the last touch, email
opens and clicks). Everything is computed from facts at or before the cutoff, so a model trained at a past
cutoff never sees the future it is asked to predict.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from storefunnel.cycle.engine import seconds_between
from storefunnel.db import UTCDateTime
from storefunnel.models import Contact, MessageEvent, Order, SegmentMember, Touch
from storefunnel.models.contact import AgeBand

Group = Literal["fit", "engagement"]

# GA4 default channel groups the engagement features count separately; any other channel counts as "Other".
CHANNELS: tuple[str, ...] = (
    "Organic Search",
    "Paid Search",
    "Email",
    "Organic Social",
    "Paid Social",
    "Referral",
    "Direct",
    "Display",
    "Affiliates",
)


def _kinds(kind: Any, event: Any) -> tuple[tuple[str, str, ColumnElement[bool]], ...]:
    """Touch categories: (key, words for an explanation, the condition on a touch's kind and event)."""
    return (
        ("page_views", "page views", sa.and_(kind == "page")),
        ("product_views", "product views", sa.and_(event == "Product Viewed")),
        ("cart_adds", "products added to the cart", sa.and_(event == "Product Added")),
        ("checkouts", "checkouts started", sa.and_(event == "Checkout Started")),
        ("email_opens", "email opens", sa.or_(kind == "email_open", event == "Email Opened")),
        ("email_clicks", "email clicks", sa.or_(kind == "email_click", event == "Email Link Clicked")),
    )


TOUCH_KINDS = _kinds(Touch.kind, Touch.event)
AGE_BANDS: tuple[str, ...] = tuple(a.value for a in AgeBand)
GENDERS: tuple[str, ...] = ("female", "male", "non_binary")
TOP_COUNTRIES = 8
TOP_CITIES = 12
NO_TOUCH_DAYS = 365.0  # what "days since the last touch" says for someone never seen


@dataclass(frozen=True)
class Spec:
    """What the columns are: fixed at training and stored with the model, so scoring builds the same matrix."""

    half_life_days: float = 14.0
    target_segments: dict[int, str] = field(default_factory=dict)
    countries: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    cancelled_statuses: tuple[str, ...] = ("cancelled", "refunded")

    def as_dict(self) -> dict[str, Any]:
        return {
            "half_life_days": self.half_life_days,
            "target_segments": {str(k): v for k, v in self.target_segments.items()},
            "countries": list(self.countries),
            "cities": list(self.cities),
            "cancelled_statuses": list(self.cancelled_statuses),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        return cls(
            half_life_days=float(d["half_life_days"]),
            target_segments={int(k): str(v) for k, v in d.get("target_segments", {}).items()},
            countries=tuple(d.get("countries", ())),
            cities=tuple(d.get("cities", ())),
            cancelled_statuses=tuple(d.get("cancelled_statuses", ("cancelled", "refunded"))),
        )


@dataclass(frozen=True)
class Feature:
    name: str
    group: Group
    label: str  # plain words, e.g. "In target group Porto women 25-29"
    kind: Literal["flag", "weighted", "days", "log_count"]


@dataclass
class Matrix:
    """Model features ``x`` (rows = ``contact_ids``), and the raw counts the explanations quote."""

    contact_ids: np.ndarray
    x: np.ndarray
    features: list[Feature]
    counts: dict[str, np.ndarray]
    days_since_last_touch: np.ndarray
    label: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.contact_ids)


def columns(spec: Spec) -> list[Feature]:
    """The model's features, in matrix column order."""
    out: list[Feature] = [
        Feature(f"segment:{sid}", "fit", f"In target group {name}", "flag")
        for sid, name in spec.target_segments.items()
    ]
    out += [Feature(f"country:{c}", "fit", f"Lives in country {c}", "flag") for c in spec.countries]
    out += [Feature(f"city:{c}", "fit", f"Lives in {c}", "flag") for c in spec.cities]
    out += [Feature(f"age_band:{a}", "fit", f"Age {a}", "flag") for a in AGE_BANDS]
    out += [Feature(f"gender:{g}", "fit", f"Gender {g.replace('_', '-')}", "flag") for g in GENDERS]
    out += [Feature(f"lead_channel:{c}", "fit", f"Became a lead through {c}", "flag") for c in CHANNELS]
    out += [Feature(f"touches:{k}", "engagement", words, "weighted") for k, words, _ in TOUCH_KINDS]
    out += [Feature(f"channel:{c}", "engagement", f"visits from {c}", "weighted") for c in CHANNELS]
    out += [
        Feature("mail:opens", "engagement", "opened campaign emails", "weighted"),
        Feature("mail:clicks", "engagement", "clicked campaign emails", "weighted"),
        Feature("recency", "engagement", "Days since the last touch", "days"),
        Feature("pace", "engagement", "Usual days between touches", "days"),
        Feature("overdue", "engagement", "Quiet time measured in usual gaps", "days"),
        Feature("touches:all", "engagement", "touches in all", "log_count"),
        Feature("tenure", "engagement", "Days since becoming a contact", "days"),
    ]
    return out


def vocabulary(
    session: Session,
    workspace_id: int,
    half_life_days: float,
    target_segments: dict[int, str],
    cancelled: tuple[str, ...],
) -> Spec:
    """Pick the countries and cities common enough to get a column of their own (rare ones share the baseline)."""

    def top(col: Any, n: int) -> tuple[str, ...]:
        stmt = (
            sa.select(col)
            .where(Contact.workspace_id == workspace_id, col.is_not(None), col != "")
            .group_by(col)
            .order_by(sa.func.count().desc(), col)
            .limit(n)
        )
        return tuple(str(v) for v in session.scalars(stmt))

    return Spec(
        half_life_days=half_life_days,
        target_segments=dict(target_segments),
        countries=top(Contact.country, TOP_COUNTRIES),
        cities=top(Contact.city, TOP_CITIES),
        cancelled_statuses=cancelled,
    )


def _flag(cond: ColumnElement[bool]) -> ColumnElement[Any]:
    return sa.case((cond, 1.0), else_=0.0)


def feature_select(
    dialect: str,
    workspace_id: int,
    spec: Spec,
    as_of: dt.datetime,
    *,
    horizon_days: int | None = None,
    contact_ids: list[int] | None = None,
) -> sa.Select[Any]:
    """The one query: a row per contact not yet a customer at ``as_of`` (and created by then).

    With ``horizon_days`` the last column is the label: a first valid order in ``(as_of, as_of + horizon]``.
    """
    at = sa.literal(as_of, UTCDateTime())
    decay = math.log(2.0) / (spec.half_life_days * 86400.0)

    def weight(time_col: Any) -> ColumnElement[float]:
        return sa.func.exp(-decay * seconds_between(time_col, at, dialect))

    # Each (contact, kind, event, channel) first, so the decay is computed once per touch, not once per column.
    own_contacts = sa.select(Contact.id).where(Contact.workspace_id == workspace_id)
    touch_filter = [Touch.workspace_id == workspace_id, Touch.occurred_at <= at]
    if dialect == "sqlite":
        # Without statistics SQLite walks (workspace_id, occurred_at) and then sorts every touch by contact; "+ 0"
        # takes that index out of the running so it reads each contact's touches from (contact_id, occurred_at),
        # in place on disk: 2-3x faster on a 20k-contact store. The workspace condition itself stays.
        touch_filter[0] = (Touch.workspace_id + 0) == workspace_id
    touch_filter.append(Touch.contact_id.in_(contact_ids if contact_ids is not None else own_contacts))
    keys = (Touch.contact_id, Touch.kind, Touch.event, Touch.channel)
    per_kind = (
        sa.select(
            *keys,
            sa.func.sum(weight(Touch.occurred_at)).label("w"),
            sa.func.count().label("n"),
            sa.func.max(Touch.occurred_at).label("last_at"),
            sa.func.min(Touch.occurred_at).label("first_at"),
        )
        .where(*touch_filter)
        .group_by(*keys)
        .subquery("tk")
    )
    tk = per_kind.c
    touch_cols: list[Any] = [tk.contact_id.label("contact_id")]
    for key, _, cond in _kinds(tk.kind, tk.event):
        touch_cols.append(sa.func.sum(sa.case((cond, tk.w), else_=0.0)).label(f"w_{key}"))
        touch_cols.append(sa.func.sum(sa.case((cond, tk.n), else_=0)).label(f"n_{key}"))
    for i, ch in enumerate(CHANNELS):
        touch_cols.append(sa.func.sum(sa.case((tk.channel == ch, tk.w), else_=0.0)).label(f"c_{i}"))
    touch_cols += [
        sa.func.sum(tk.n).label("n_all"),
        sa.func.max(tk.last_at).label("last_touch"),
        sa.func.min(tk.first_at).label("first_touch"),
    ]
    touches = sa.select(*touch_cols).group_by(tk.contact_id).subquery("t")

    wm = weight(MessageEvent.occurred_at)
    mail_filter = [
        MessageEvent.workspace_id == workspace_id,
        MessageEvent.occurred_at <= at,
        MessageEvent.kind.in_(("opened", "clicked")),
    ]
    if contact_ids is not None:
        mail_filter.append(MessageEvent.contact_id.in_(contact_ids))
    mail = (
        sa.select(
            MessageEvent.contact_id.label("contact_id"),
            sa.func.sum(sa.case((MessageEvent.kind == "opened", wm), else_=0.0)).label("w_open"),
            sa.func.sum(sa.case((MessageEvent.kind == "clicked", wm), else_=0.0)).label("w_click"),
            sa.func.sum(_flag(MessageEvent.kind == "opened")).label("n_open"),
            sa.func.sum(_flag(MessageEvent.kind == "clicked")).label("n_click"),
        )
        .where(*mail_filter)
        .group_by(MessageEvent.contact_id)
        .subquery("m")
    )

    seg_ids = list(spec.target_segments)
    segs = None
    if seg_ids:
        segs = (
            sa.select(
                SegmentMember.contact_id.label("contact_id"),
                *[sa.func.max(_flag(SegmentMember.segment_id == s)).label(f"s_{s}") for s in seg_ids],
            )
            .where(
                SegmentMember.workspace_id == workspace_id,
                SegmentMember.segment_id.in_(seg_ids),
                SegmentMember.left_at.is_(None),
            )
            .group_by(SegmentMember.contact_id)
            .subquery("s")
        )

    valid_order = sa.and_(
        Order.workspace_id == workspace_id,
        Order.contact_id == Contact.id,
        Order.status.not_in(spec.cancelled_statuses),
    )
    customer_before = sa.exists().where(valid_order, Order.placed_at <= at).correlate(Contact)

    def z(col: Any) -> ColumnElement[float]:
        return sa.func.coalesce(col, 0.0)

    cols: list[Any] = [Contact.id]
    cols += [z(getattr(segs.c, f"s_{s}")) for s in seg_ids] if segs is not None else []
    cols += [_flag(Contact.country == c) for c in spec.countries]
    cols += [_flag(Contact.city == c) for c in spec.cities]
    cols += [_flag(Contact.age_band == a) for a in AGE_BANDS]
    cols += [_flag(Contact.gender == g) for g in GENDERS]
    cols += [_flag(Contact.lead_channel == c) for c in CHANNELS]
    cols += [z(touches.c[f"w_{k}"]) for k, _, _ in TOUCH_KINDS]
    cols += [z(touches.c[f"c_{i}"]) for i in range(len(CHANNELS))]
    cols += [z(mail.c.w_open), z(mail.c.w_click)]
    seconds_idle = seconds_between(sa.func.coalesce(touches.c.last_touch, Contact.created_at), at, dialect)
    span = seconds_between(touches.c.first_touch, touches.c.last_touch, dialect) / 86400.0
    cols += [
        seconds_idle / 86400.0,
        z(span),
        z(span),
        z(touches.c.n_all),
        seconds_between(Contact.__table__.c.created_at, at, dialect) / 86400.0,
    ]
    # Raw counts, quoted by explanations ("opened 3 emails"), not model inputs.
    cols += [z(touches.c[f"n_{k}"]) for k, _, _ in TOUCH_KINDS]
    cols += [z(mail.c.n_open), z(mail.c.n_click), touches.c.last_touch.is_not(None)]
    if horizon_days is not None:
        until = sa.literal(as_of + dt.timedelta(days=horizon_days), UTCDateTime())
        label = sa.exists().where(valid_order, Order.placed_at > at, Order.placed_at <= until).correlate(Contact)
        cols.append(_flag(label))

    stmt = (
        sa.select(*cols)
        .select_from(Contact)
        .outerjoin(touches, touches.c.contact_id == Contact.id)
        .outerjoin(mail, mail.c.contact_id == Contact.id)
    )
    if segs is not None:
        stmt = stmt.outerjoin(segs, segs.c.contact_id == Contact.id)
    stmt = stmt.where(Contact.workspace_id == workspace_id, Contact.created_at <= at, ~customer_before)
    if contact_ids is not None:
        stmt = stmt.where(Contact.id.in_(contact_ids))
    return stmt.order_by(Contact.id)


def build(
    session: Session,
    workspace_id: int,
    spec: Spec,
    as_of: dt.datetime,
    *,
    horizon_days: int | None = None,
    contact_ids: list[int] | None = None,
) -> Matrix:
    """Run the query and shape it: raw model inputs (counts log-scaled, days capped), counts for the words."""
    dialect = session.get_bind().dialect.name
    stmt = feature_select(dialect, workspace_id, spec, as_of, horizon_days=horizon_days, contact_ids=contact_ids)
    rows = session.execute(stmt).all()
    feats = columns(spec)
    nf = len(feats)
    nk = len(TOUCH_KINDS)
    width = 1 + nf + nk + 3 + (1 if horizon_days is not None else 0)
    data = np.array(rows, dtype=float).reshape(len(rows), width) if rows else np.zeros((0, width))
    ids = data[:, 0].astype(np.int64)
    x = data[:, 1 : 1 + nf].copy()
    raw = data[:, 1 + nf :]
    names = [f.name for f in feats]
    idle = x[:, names.index("recency")].copy()
    seen = raw[:, nk + 2] > 0
    idle = np.where(seen, idle, NO_TOUCH_DAYS)
    # Days and counts enter on a log scale: the 2nd touch says more than the 40th, a day idle more than the 200th.
    x[:, names.index("recency")] = np.log1p(np.clip(idle, 0.0, None))
    # Pace: the contact's own rhythm; someone who visits monthly is not gone after two quiet weeks.
    gaps = np.maximum(x[:, names.index("touches:all")] - 1.0, 1.0)
    pace = np.where(seen, np.clip(x[:, names.index("pace")], 0.0, None) / gaps, NO_TOUCH_DAYS)
    x[:, names.index("pace")] = np.log1p(pace)
    x[:, names.index("overdue")] = np.log1p(np.clip(idle, 0.0, None) / np.maximum(pace, 0.5))
    x[:, names.index("touches:all")] = np.log1p(x[:, names.index("touches:all")])
    x[:, names.index("tenure")] = np.log1p(np.clip(x[:, names.index("tenure")], 0.0, None))
    counts = {key: raw[:, i] for i, (key, _, _) in enumerate(TOUCH_KINDS)}
    counts["mail:opens"] = raw[:, nk]
    counts["mail:clicks"] = raw[:, nk + 1]
    label = raw[:, nk + 3] if horizon_days is not None else None
    return Matrix(ids, x, feats, counts, idle, label)
