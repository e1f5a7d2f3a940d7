"""Segment operations: validate, evaluate, refresh membership, keep static lists; never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import Conflict, Invalid, NotFound
from storefunnel.models import Contact, Segment
from storefunnel.segments import repository
from storefunnel.segments.compiler import Resolved, compile_rules
from storefunnel.segments.rules import MAX_DEPTH, Node, RuleErrors, parse_rules, referenced_segments
from storefunnel.segments.schemas import GrowthPoint, MembersChange, SegmentCreate, SegmentUpdate
from storefunnel.tenancy import get_scoped

MAX_GROWTH_POINTS = 3660


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    entered: int
    left: int
    member_count: int
    refreshed_at: dt.datetime


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def resolve_references(
    session: Session, workspace_id: int, node: Node, self_id: int | None = None
) -> dict[int, Resolved]:
    """Load every segment the rule refers to, directly or through others; unknown ids and cycles are 422.

    An error is reported at the membership node of *this* rule that leads to it, since that is the
    node its author can change.
    """
    errors = RuleErrors()
    resolved: dict[int, Resolved] = {}

    def visit(tree: Node, stack: tuple[int, ...], top: str | None) -> None:
        for ref in referenced_segments(tree):
            path = top or ref.path
            if ref.segment == self_id or ref.segment in stack:
                chain = " -> ".join(str(s) for s in (*stack, ref.segment))
                errors.add(path, f"segment {ref.segment} would include itself (cycle: {chain})")
                continue
            if ref.segment in resolved:
                continue
            row = session.scalars(
                sa.select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == ref.segment)
            ).first()
            if row is None:
                errors.add(path, f"unknown segment {ref.segment}")
                continue
            rules = parse_rules(row.rules, f"segment {row.id} rules") if row.kind == "dynamic" and row.rules else None
            resolved[row.id] = Resolved(kind=row.kind, rules=rules)
            if rules is not None:
                if len(stack) + 1 >= MAX_DEPTH:
                    errors.add(path, f"segments may refer to each other at most {MAX_DEPTH} levels deep")
                    continue
                visit(rules, (*stack, row.id), path)

    visit(node, (self_id,) if self_id is not None else (), None)
    errors.raise_if_any()
    return resolved


def compile_for(
    session: Session, workspace_id: int, node: Node, now: dt.datetime, self_id: int | None = None
) -> sa.Select[Any]:
    refs = resolve_references(session, workspace_id, node, self_id)
    return compile_rules(node, workspace_id, dialect=_dialect(session), now=now, segments=refs)


def preview(
    session: Session, workspace_id: int, rules: dict[str, Any], sample_size: int, now: dt.datetime | None = None
) -> tuple[int, Sequence[Contact]]:
    """How many contacts the rules select now, and the newest few of them; nothing is saved."""
    ids = compile_for(session, workspace_id, parse_rules(rules), now or utcnow())
    return repository.count_ids(session, ids), repository.sample_contacts(session, workspace_id, ids, sample_size)


def create_segment(session: Session, workspace_id: int, data: SegmentCreate, now: dt.datetime | None = None) -> Segment:
    if repository.segment_by_name(session, workspace_id, data.name) is not None:
        raise Conflict(f"name: a segment named {data.name!r} already exists")
    if data.kind == "dynamic":
        if data.rules is None:
            raise Invalid("rules: a dynamic segment needs rules", errors=[{"path": "rules", "message": "required"}])
        resolve_references(session, workspace_id, parse_rules(data.rules))
    elif data.rules is not None:
        raise Invalid(
            "rules: a static segment is a list and has no rules",
            errors=[{"path": "rules", "message": "not allowed for a static segment"}],
        )
    segment = Segment(
        workspace_id=workspace_id, name=data.name, description=data.description, kind=data.kind, rules=data.rules
    )
    session.add(segment)
    session.flush()
    if segment.kind == "dynamic":
        refresh(session, workspace_id, segment.id, now)
    return segment


def update_segment(
    session: Session, workspace_id: int, segment_id: int, data: SegmentUpdate, now: dt.datetime | None = None
) -> Segment:
    segment = get_scoped(session, Segment, workspace_id, segment_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") not in (None, segment.name):
        other = repository.segment_by_name(session, workspace_id, changes["name"])
        if other is not None:
            raise Conflict(f"name: a segment named {changes['name']!r} already exists")
    if "rules" in changes:
        if segment.kind == "static":
            raise Invalid(
                "rules: a static segment is a list and has no rules",
                errors=[{"path": "rules", "message": "not allowed for a static segment"}],
            )
        if changes["rules"] is None:
            raise Invalid("rules: a dynamic segment needs rules", errors=[{"path": "rules", "message": "required"}])
        resolve_references(session, workspace_id, parse_rules(changes["rules"]), self_id=segment.id)
    for key in ("name", "description"):
        if changes.get(key) is not None:
            setattr(segment, key, changes[key])
    if "rules" in changes:
        segment.rules = changes["rules"]
        session.flush()
        refresh(session, workspace_id, segment.id, now)
        refresh_dependents(session, workspace_id, segment.id, now)
    session.flush()
    return segment


def dependents(session: Session, workspace_id: int, segment_id: int) -> list[int]:
    """Dynamic segments whose rules refer to ``segment_id``, directly or through others."""
    refs: dict[int, set[int]] = {}
    for sid, _name, rules in repository.referencing(session, workspace_id):
        if rules:
            refs[sid] = {m.segment for m in referenced_segments(parse_rules(rules, f"segment {sid} rules"))}
    found: list[int] = []
    frontier = [segment_id]
    while frontier:
        target = frontier.pop()
        for sid, targets in refs.items():
            if target in targets and sid not in found and sid != segment_id:
                found.append(sid)
                frontier.append(sid)
    return found


def refresh_dependents(session: Session, workspace_id: int, segment_id: int, now: dt.datetime | None = None) -> None:
    for sid in dependents(session, workspace_id, segment_id):
        refresh(session, workspace_id, sid, now)


def delete_segment(session: Session, workspace_id: int, segment_id: int) -> None:
    segment = get_scoped(session, Segment, workspace_id, segment_id)
    users = [
        sid
        for sid, _n, rules in repository.referencing(session, workspace_id)
        if rules and any(m.segment == segment_id for m in referenced_segments(parse_rules(rules)))
    ]
    if users:
        raise Conflict(f"segment {segment_id} is used by the rules of segment(s) {', '.join(map(str, users))}")
    session.delete(segment)
    session.flush()


def refresh(session: Session, workspace_id: int, segment_id: int, now: dt.datetime | None = None) -> RefreshResult:
    """Re-evaluate a dynamic segment and record who entered and who left; a static one is only recounted."""
    now = now or utcnow()
    segment = repository.lock_segment(session, workspace_id, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    entered = left = 0
    if segment.kind == "dynamic" and segment.rules:
        ids = compile_for(session, workspace_id, parse_rules(segment.rules), now, self_id=segment.id)
        entered, left = repository.sync(session, workspace_id, segment.id, ids, now)
    segment.member_count = repository.count_current(session, workspace_id, segment.id)
    segment.refreshed_at = now
    session.flush()
    return RefreshResult(segment.id, entered, left, segment.member_count, now)


def refresh_all(session: Session, workspace_id: int, now: dt.datetime | None = None) -> list[RefreshResult]:
    return [refresh(session, workspace_id, s.id, now) for s in repository.dynamic_segments(session, workspace_id)]


def _contact_ids(session: Session, workspace_id: int, change: MembersChange) -> list[int]:
    """The ids named by id or email; any that is not a contact of this workspace makes the whole change 422."""
    errors = RuleErrors()
    known = set(repository.contacts_by_ids(session, workspace_id, sorted(set(change.contact_ids))))
    for i, cid in enumerate(change.contact_ids):
        if cid not in known:
            errors.add(f"contact_ids[{i}]", f"no contact {cid}")
    by_email = repository.contact_ids_by_email(session, workspace_id, change.emails)
    for i, email in enumerate(change.emails):
        if email.lower() not in by_email:
            errors.add(f"emails[{i}]", f"no contact with email {email!r}")
    errors.raise_if_any()
    return sorted(known | set(by_email.values()))


def _static(session: Session, workspace_id: int, segment_id: int) -> Segment:
    segment = repository.lock_segment(session, workspace_id, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    if segment.kind != "static":
        raise Conflict(f"segment {segment_id} is dynamic: its members come from its rules")
    return segment


def _ids_select(workspace_id: int, ids: Sequence[int]) -> sa.Select[Any]:
    return sa.select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.id.in_(ids))


def add_members(
    session: Session, workspace_id: int, segment_id: int, change: MembersChange, now: dt.datetime | None = None
) -> tuple[int, int]:
    """Add contacts to a static segment; returns (added, member_count). Adding a member again is a no-op."""
    now = now or utcnow()
    segment = _static(session, workspace_id, segment_id)
    ids = _contact_ids(session, workspace_id, change)
    added = 0
    for start in range(0, len(ids), 500):
        added += repository.enter(
            session, workspace_id, segment.id, _ids_select(workspace_id, ids[start : start + 500]), now
        )
    return added, _recount(session, workspace_id, segment, now)


def remove_members(
    session: Session, workspace_id: int, segment_id: int, change: MembersChange, now: dt.datetime | None = None
) -> tuple[int, int]:
    now = now or utcnow()
    segment = _static(session, workspace_id, segment_id)
    ids = _contact_ids(session, workspace_id, change)
    removed = 0
    for start in range(0, len(ids), 500):
        removed += repository.leave(
            session, workspace_id, segment.id, _ids_select(workspace_id, ids[start : start + 500]), now
        )
    return removed, _recount(session, workspace_id, segment, now)


def _recount(session: Session, workspace_id: int, segment: Segment, now: dt.datetime) -> int:
    segment.member_count = repository.count_current(session, workspace_id, segment.id)
    segment.refreshed_at = now
    session.flush()
    refresh_dependents(session, workspace_id, segment.id, now)
    return segment.member_count


def import_emails(
    session: Session, workspace_id: int, name: str, emails: Sequence[str], now: dt.datetime | None = None
) -> tuple[Segment, int, list[str]]:
    """Add the contacts with these emails to the static segment ``name`` (created if missing).

    Returns the segment, how many were added, and the emails that are not contacts (reported, not added).
    """
    segment = repository.segment_by_name(session, workspace_id, name)
    if segment is None:
        segment = create_segment(session, workspace_id, SegmentCreate(name=name, kind="static"), now)
    known = repository.contact_ids_by_email(session, workspace_id, emails)
    unknown = [e for e in emails if e.lower() not in known]
    present = [e for e in emails if e.lower() in known]
    added = 0
    for start in range(0, len(present), 5000):
        added += add_members(
            session, workspace_id, segment.id, MembersChange(emails=present[start : start + 5000]), now
        )[0]
    return segment, added, unknown


Interval = Literal["day", "week", "month"]


def _period(day: dt.date, interval: Interval) -> dt.date:
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next(period: dt.date, interval: Interval) -> dt.date:
    if interval == "day":
        return period + dt.timedelta(days=1)
    if interval == "week":
        return period + dt.timedelta(days=7)
    return (period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def growth(
    session: Session,
    workspace_id: int,
    segment_id: int,
    interval: Interval = "day",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[GrowthPoint]:
    """Members at the end of each period (UTC), with entries and exits, from the segment's first stay."""
    segment = get_scoped(session, Segment, workspace_id, segment_id)
    entered, left = repository.daily_moves(session, workspace_id, segment.id)
    first = min([*entered, *left], default=segment.created_at.date())
    start = _period(since or first, interval)
    end = _period(until or utcnow().date(), interval)
    if end < start:
        raise Invalid("until: must not be before since", errors=[{"path": "until", "message": "before since"}])
    members = sum(n for d, n in entered.items() if d < start) - sum(n for d, n in left.items() if d < start)
    entered_by: dict[dt.date, int] = {}
    left_by: dict[dt.date, int] = {}
    for moves, into in ((entered, entered_by), (left, left_by)):
        for day, n in moves.items():
            key = _period(day, interval)
            into[key] = into.get(key, 0) + n
    points: list[GrowthPoint] = []
    period = start
    while period <= end:
        if len(points) >= MAX_GROWTH_POINTS:
            raise Invalid(
                f"since: more than {MAX_GROWTH_POINTS} {interval}s asked for; narrow the range or widen the interval",
                errors=[{"path": "since", "message": "range too long"}],
            )
        e, lft = entered_by.get(period, 0), left_by.get(period, 0)
        members += e - lft
        points.append(GrowthPoint(period=period, members=members, entered=e, left=lft))
        period = _next(period, interval)
    return points
