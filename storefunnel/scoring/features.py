"""The feature matrix of lead scoring: one row per contact, as of a cutoff time, for several cutoffs at once.

Fit says who the person is (target groups, location, demographics, the channel that made them a lead);
engagement says what they have been doing (touches by kind and channel, each weighted by
``2 ** -(age / half_life)`` so last week counts more than last quarter, days since the last touch, email
opens and clicks). Everything is computed from facts at or before the cutoff, so a model trained at a past
cutoff never sees the future it is asked to predict. The database filters and classifies the facts; the sums
per contact are numpy's, so training reads the touches once for its three cutoffs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

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


# Touch categories: (key, words for an explanation, the touch kinds and the track events that count). A touch
# may fall in several (an "Email Opened" track of kind "email_open" is one open, not two).
TOUCH_KINDS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("page_views", "page views", ("page",), ()),
    ("product_views", "product views", (), ("Product Viewed",)),
    ("cart_adds", "products added to the cart", (), ("Product Added",)),
    ("checkouts", "checkouts started", (), ("Checkout Started",)),
    ("email_opens", "email opens", ("email_open",), ("Email Opened",)),
    ("email_clicks", "email clicks", ("email_click",), ("Email Link Clicked",)),
)
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
    out += [Feature(f"touches:{k}", "engagement", words, "weighted") for k, words, _, _ in TOUCH_KINDS]
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


Cutoff = tuple[dt.datetime, int | None]  # an as-of time, and the horizon of its label in days (None: no label)
# A touch crosses over as two integers: its time (below), and its contact, the first cutoff it is not after and
# its categories packed as ``((contact_id * BUCKETS + cutoff) * CODES + categories)``, where the categories are
# a bit per touch category plus CHANNEL_SHIFT times the channel's code.
CHANNEL_SHIFT = 1 << len(TOUCH_KINDS)
CODES = 1 << 12
BUCKETS = 16  # at most this many cutoffs per read
ID_SPAN = 1_000_000  # touches are read in ranges of this many ids, so memory stays flat however long the history
# Times cross over as whole ticks from the latest cutoff: SQLite's julianday() keeps milliseconds, PostgreSQL
# microseconds, so the integers are exact and equal to what each database's own date arithmetic would give.
TICKS_PER_SECOND = {"sqlite": 1000, "postgresql": 1_000_000}


def _ticks(col: Any, ref: dt.datetime, dialect: str) -> ColumnElement[int]:
    """``col - ref`` in whole ticks of ``TICKS_PER_SECOND[dialect]``."""
    at = sa.literal(ref, UTCDateTime())
    if dialect == "sqlite":
        return sa.cast(sa.func.round((sa.func.julianday(col) - sa.func.julianday(at)) * 86_400_000.0), sa.BigInteger)
    return sa.cast(sa.extract("epoch", col - at) * 1_000_000, sa.BigInteger)


def _bucket(col: Any, times: Sequence[dt.datetime]) -> ColumnElement[int]:
    """The index of the first of the ascending ``times`` that ``col`` is at or before (``len(times)``: none, or NULL).

    The comparison is the database's own on the stored timestamps, so a fact exactly at a cutoff falls on the
    side a plain ``<=`` puts it.
    """
    return sa.case(*[(col <= sa.literal(t, UTCDateTime()), i) for i, t in enumerate(times)], else_=len(times))


def _code(col: Any, values: Sequence[str]) -> ColumnElement[int]:
    """1 + the position of ``col`` in ``values``; 0 for anything else, NULL included."""
    return sa.case({v: i + 1 for i, v in enumerate(values)}, value=col, else_=0) if values else sa.literal(0)


def _touch_code(kind: Any, event: Any, channel: Any) -> ColumnElement[int]:
    """One integer per touch: a bit per category it counts in, plus ``CHANNEL_SHIFT`` times its channel's code.

    ``CASE value WHEN …`` looks each column up once; a condition per category cost SQLite twice as much.
    """
    by_kind: dict[str, int] = {}
    by_event: dict[str, int] = {}
    for i, (_, _, kinds, events) in enumerate(TOUCH_KINDS):
        for k in kinds:
            by_kind[k] = by_kind.get(k, 0) | (1 << i)
        for e in events:
            by_event[e] = by_event.get(e, 0) | (1 << i)
    bits = sa.case(by_kind, value=kind, else_=0).bitwise_or(sa.case(by_event, value=event, else_=0))
    return bits + _code(channel, CHANNELS) * CHANNEL_SHIFT


def _integers(session: Session, stmt: sa.Select[*tuple[Any, ...]]) -> np.ndarray:
    """The rows of ``stmt`` (integer columns, no NULLs) as an int64 array of shape (rows, columns).

    A driver row per touch cost more than the database's own work of finding and classifying the touches, so all
    rows cross as one aggregated value that numpy parses in C: big-endian int8 bytes on PostgreSQL
    (``int8send``), comma-separated text on SQLite (``group_concat``).
    """
    width = len(stmt.selected_columns)
    r = stmt.subquery("r")
    if session.get_bind().dialect.name == "postgresql":
        packed: ColumnElement[bytes] = sa.func.int8send(sa.cast(r.c[0], sa.BigInteger), type_=sa.LargeBinary)
        for col in list(r.c)[1:]:
            packed = packed.op("||", return_type=sa.LargeBinary)(
                sa.func.int8send(sa.cast(col, sa.BigInteger), type_=sa.LargeBinary)
            )
        blob = session.scalar(sa.select(sa.func.string_agg(packed, sa.literal(b"", sa.LargeBinary))))
        flat = np.frombuffer(blob or b"", dtype=">i8").astype(np.int64)
    else:
        line: ColumnElement[str] = sa.cast(r.c[0], sa.String)
        for col in list(r.c)[1:]:
            line = line + "," + sa.cast(col, sa.String)
        text = session.scalar(sa.select(sa.func.group_concat(line, ",")))
        flat = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, dtype=np.int64)
    return flat.reshape(-1, width)


@dataclass
class _Window:
    """Per-contact sums for one cutoff (columns = contacts), added up range by range."""

    n: int
    w_kind: np.ndarray = field(init=False)
    n_kind: np.ndarray = field(init=False)
    w_channel: np.ndarray = field(init=False)  # row 0: channels outside CHANNELS
    n_all: np.ndarray = field(init=False)
    last: np.ndarray = field(init=False)  # seconds from the latest cutoff; -inf: no touch
    w_mail: np.ndarray = field(init=False)  # rows: opened, clicked
    n_mail: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        nk = len(TOUCH_KINDS)
        self.w_kind = np.zeros((nk, self.n))
        self.n_kind = np.zeros((nk, self.n))
        self.w_channel = np.zeros((len(CHANNELS) + 1, self.n))
        self.n_all = np.zeros(self.n)
        self.last = np.full(self.n, -np.inf)
        self.w_mail = np.zeros((2, self.n))
        self.n_mail = np.zeros((2, self.n))


def _positions(ids: np.ndarray, contact_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each fact's contact among the sorted ``ids``, and whether that contact is in the matrix at all."""
    if len(ids) == 0:
        return np.zeros(len(contact_col), dtype=np.int64), np.zeros(len(contact_col), dtype=bool)
    pos = np.minimum(np.searchsorted(ids, contact_col), len(ids) - 1)
    return pos, ids[pos] == contact_col


def build_many(
    session: Session,
    workspace_id: int,
    spec: Spec,
    cutoffs: Sequence[Cutoff],
    *,
    contact_ids: list[int] | None = None,
) -> list[Matrix]:
    """One matrix per ``(as_of, horizon_days)``, from a single read of the touches for all of them.

    The database filters the facts and hands over, per touch, its contact, its time from the latest cutoff, the
    first cutoff it is not after and a code of its categories; numpy adds up the decayed weights per contact for
    every cutoff. Each touch is thus read and its timestamp parsed once per training instead of once per window,
    and each weight is the ``exp(-ln 2 * age / half_life)`` of the definition.
    """
    dialect = session.get_bind().dialect.name
    tick = float(TICKS_PER_SECOND[dialect])
    times = sorted({a for a, _ in cutoffs})
    if len(times) >= BUCKETS:
        raise ValueError(f"at most {BUCKETS - 1} cutoffs per read")
    ref = times[-1]
    at = sa.literal(ref, UTCDateTime())
    offsets = np.array([(t - ref).total_seconds() for t in times])  # each cutoff in seconds from the latest
    decay = math.log(2.0) / (spec.half_life_days * 86400.0)
    labelled = [(a, h) for a, h in dict.fromkeys(cutoffs) if h is not None]

    valid = [
        Order.workspace_id == workspace_id,
        Order.contact_id.is_not(None),
        Order.status.not_in(spec.cancelled_statuses),
    ]
    if contact_ids is not None:
        valid.append(Order.contact_id.in_(contact_ids))
    first = sa.select(Order.contact_id, sa.func.min(Order.placed_at).label("at")).where(*valid)
    first_order = first.group_by(Order.contact_id).subquery("o")
    early = sa.literal(times[0], UTCDateTime())  # customers by then are in no matrix
    # Per contact: id, creation time, the attributes' codes in mixed radix, and the cutoffs' flags packed alike.
    attributes = [
        (Contact.country, spec.countries),
        (Contact.city, spec.cities),
        (Contact.age_band, AGE_BANDS),
        (Contact.gender, GENDERS),
        (Contact.lead_channel, CHANNELS),
    ]
    radix = [len(values) + 1 for _, values in attributes]
    attrs_packed: ColumnElement[int] = sa.literal(0)
    for (col, values), base in zip(reversed(attributes), reversed(radix), strict=True):
        attrs_packed = attrs_packed * base + _code(col, values)
    flags: ColumnElement[int] = _bucket(Contact.created_at, times) + BUCKETS * _bucket(first_order.c.at, times)
    for j, (a, h) in enumerate(labelled):
        until = sa.literal(a + dt.timedelta(days=h), UTCDateTime())
        flags = flags + sa.case((first_order.c.at <= until, BUCKETS * BUCKETS << j), else_=0)
    people = (
        sa.select(Contact.id, _ticks(Contact.created_at, ref, dialect), attrs_packed, flags)
        .outerjoin(first_order, first_order.c.contact_id == Contact.id)
        .where(
            Contact.workspace_id == workspace_id,
            Contact.created_at <= at,
            sa.or_(first_order.c.at.is_(None), first_order.c.at > early),
        )
    )
    if contact_ids is not None:
        people = people.where(Contact.id.in_(contact_ids))
    table = _integers(session, people)
    table = table[np.argsort(table[:, 0], kind="stable")]
    n = len(table)
    ids = table[:, 0]
    created = table[:, 1] / tick
    codes = table[:, 2]
    attrs = np.empty((n, len(radix)), dtype=np.int64)
    for j, base in enumerate(radix):
        codes, attrs[:, j] = np.divmod(codes, base)
    # First cutoff the contact exists at, and first cutoff it is a customer at.
    created_by, bought_by = table[:, 3] % BUCKETS, table[:, 3] // BUCKETS % BUCKETS
    labels = {cut: (table[:, 3] // (BUCKETS * BUCKETS) >> j & 1).astype(float) for j, cut in enumerate(labelled)}

    seg_ids = list(spec.target_segments)
    in_segment = np.zeros((len(seg_ids), n))
    if seg_ids and n:
        members = sa.select(SegmentMember.contact_id, SegmentMember.segment_id).where(
            SegmentMember.workspace_id == workspace_id,
            SegmentMember.segment_id.in_(seg_ids),
            SegmentMember.left_at.is_(None),
        )
        if contact_ids is not None:
            members = members.where(SegmentMember.contact_id.in_(contact_ids))
        pairs = _integers(session, members)
        pos, ok = _positions(ids, pairs[:, 0])
        for j, sid in enumerate(seg_ids):
            in_segment[j, pos[ok & (pairs[:, 1] == sid)]] = 1.0

    windows = [_Window(n) for _ in times]
    first_touch = np.full(n, np.inf)
    touch_filter = [
        Touch.workspace_id == workspace_id,
        Touch.occurred_at <= at,
        Touch.contact_id.is_not(None),
    ]
    if dialect == "sqlite":
        # "+ 0" keeps SQLite off (workspace_id, occurred_at): a range of that index, then a row lookup per touch,
        # took 4-6x longer than reading the table straight through. With contact ids it uses (contact_id, time).
        touch_filter[0] = (Touch.workspace_id + 0) == workspace_id
    key = (Touch.contact_id * BUCKETS + _bucket(Touch.occurred_at, times)) * CODES
    touches = sa.select(
        key + _touch_code(Touch.kind, Touch.event, Touch.channel), _ticks(Touch.occurred_at, ref, dialect)
    ).where(*touch_filter)
    if contact_ids is not None:
        ranges: list[sa.Select[*tuple[Any, ...]]] = [touches.where(Touch.contact_id.in_(contact_ids))]
    else:
        # Ranges of the primary key of the whole table: both ends are index lookups, and each range is read once.
        low, high = session.execute(sa.select(sa.func.min(Touch.id), sa.func.max(Touch.id))).one()
        starts = range(int(low or 0) - 1, int(high or 0), ID_SPAN) if n else range(0)
        ranges = [touches.where(Touch.id > a, Touch.id <= a + ID_SPAN) for a in starts]
    for stmt in ranges:
        rows = _integers(session, stmt)
        rest, code = np.divmod(rows[:, 0], CODES)
        contact, bucket = np.divmod(rest, BUCKETS)
        pos, ok = _positions(ids, contact)
        pos, s, bucket, code = pos[ok], rows[ok, 1] / tick, bucket[ok], code[ok]
        np.minimum.at(first_touch, pos, s)
        for i, win in enumerate(windows):
            inside = bucket <= i
            p, c = pos[inside], code[inside]
            weight = np.exp(-decay * (offsets[i] - s[inside]))
            for k in range(len(TOUCH_KINDS)):
                hit = (c & (1 << k)) != 0
                win.w_kind[k] += np.bincount(p[hit], weight[hit], minlength=n)
                win.n_kind[k] += np.bincount(p[hit], minlength=n)
            cell = (c // CHANNEL_SHIFT) * n + p
            win.w_channel += np.bincount(cell, weight, minlength=(len(CHANNELS) + 1) * n).reshape(-1, n)
            win.n_all += np.bincount(p, minlength=n)
            np.maximum.at(win.last, p, s[inside])

    mail_filter = [
        MessageEvent.workspace_id == workspace_id,
        MessageEvent.occurred_at <= at,
        MessageEvent.kind.in_(("opened", "clicked")),
    ]
    if contact_ids is not None:
        mail_filter.append(MessageEvent.contact_id.in_(contact_ids))
    mail = sa.select(
        MessageEvent.contact_id,
        _ticks(MessageEvent.occurred_at, ref, dialect),
        _bucket(MessageEvent.occurred_at, times),
        sa.case((MessageEvent.kind == "opened", 0), else_=1),
    ).where(*mail_filter)
    events = _integers(session, mail) if n else np.zeros((0, 4), dtype=np.int64)
    pos, ok = _positions(ids, events[:, 0])
    pos, s, bucket, kind = pos[ok], events[ok, 1] / tick, events[ok, 2], events[ok, 3]
    for i, win in enumerate(windows):
        inside = bucket <= i
        cell = kind[inside] * n + pos[inside]
        weight = np.exp(-decay * (offsets[i] - s[inside]))
        win.w_mail += np.bincount(cell, weight, minlength=2 * n).reshape(2, n)
        win.n_mail += np.bincount(cell, minlength=2 * n).reshape(2, n)

    fit = np.vstack(
        [
            in_segment,
            *[attrs[:, 0] == j + 1 for j in range(len(spec.countries))],
            *[attrs[:, 1] == j + 1 for j in range(len(spec.cities))],
            *[attrs[:, 2] == j + 1 for j in range(len(AGE_BANDS))],
            *[attrs[:, 3] == j + 1 for j in range(len(GENDERS))],
            *[attrs[:, 4] == j + 1 for j in range(len(CHANNELS))],
        ]
    ).astype(float)
    feats = columns(spec)
    out: list[Matrix] = []
    for as_of, horizon in cutoffs:
        i = times.index(as_of)
        win = windows[i]
        keep = (created_by <= i) & (bought_by > i)
        seen = win.n_all > 0
        last = np.where(seen, win.last, 0.0)
        span = np.where(seen, (last - np.where(seen, first_touch, 0.0)) / 86400.0, 0.0)
        idle = np.where(seen, (offsets[i] - last) / 86400.0, NO_TOUCH_DAYS)
        tenure = (offsets[i] - created) / 86400.0
        sums = np.vstack([fit, win.w_kind, win.w_channel[1:], win.w_mail, idle, span, win.n_all, tenure])
        counts = {key: win.n_kind[k][keep] for k, (key, _, _, _) in enumerate(TOUCH_KINDS)}
        counts["mail:opens"] = win.n_mail[0][keep]
        counts["mail:clicks"] = win.n_mail[1][keep]
        label = labels[(as_of, horizon)][keep] if horizon is not None else None
        out.append(_shape(ids[keep], sums.T[keep], feats, counts, seen[keep], label))
    return out


def _shape(
    ids: np.ndarray,
    raw: np.ndarray,
    feats: list[Feature],
    counts: dict[str, np.ndarray],
    seen: np.ndarray,
    label: np.ndarray | None,
) -> Matrix:
    """Model inputs from the sums (columns: fit flags, weighted sums, idle days, span days, touches, tenure days).

    Days and counts enter on a log scale: the 2nd touch says more than the 40th, a day idle more than the 200th.
    """
    nf = len(feats)
    x = np.empty((len(ids), nf))
    head = nf - 5
    x[:, :head] = raw[:, :head]
    idle, span, n_all, tenure = raw[:, head], raw[:, head + 1], raw[:, head + 2], raw[:, head + 3]
    idle = np.where(seen, idle, NO_TOUCH_DAYS)
    x[:, head] = np.log1p(np.clip(idle, 0.0, None))  # recency
    # Pace: the contact's own rhythm; someone who visits monthly is not gone after two quiet weeks.
    pace = np.where(seen, np.clip(span, 0.0, None) / np.maximum(n_all - 1.0, 1.0), NO_TOUCH_DAYS)
    x[:, head + 1] = np.log1p(pace)
    x[:, head + 2] = np.log1p(np.clip(idle, 0.0, None) / np.maximum(pace, 0.5))  # overdue
    x[:, head + 3] = np.log1p(n_all)
    x[:, head + 4] = np.log1p(np.clip(tenure, 0.0, None))
    return Matrix(ids, x, feats, counts, idle, label)


def build(
    session: Session,
    workspace_id: int,
    spec: Spec,
    as_of: dt.datetime,
    *,
    horizon_days: int | None = None,
    contact_ids: list[int] | None = None,
) -> Matrix:
    """The matrix as of one cutoff: a row per contact created by ``as_of`` and not yet a customer then.

    With ``horizon_days`` the label says whether the first valid order came in ``(as_of, as_of + horizon]``.
    """
    return build_many(session, workspace_id, spec, [(as_of, horizon_days)], contact_ids=contact_ids)[0]
