"""Flows: automated sequences of messages, the ready-made ones, and the engine that enrolls and advances contacts.

Triggers (``flows.trigger_kind``):

* ``lead``: a contact became a lead (``contacts.lead_at``) — welcome/nurture.
* ``order``: an order that counts as buying (not cancelled or refunded) — the thank-you, transactional.
* ``event``: a track event, e.g. ``Product Added`` (abandoned cart); one enrollment per contact per day at most.
* ``stage``: a sales-cycle transition to ``trigger_value``, read from the durable cycle outbox, so a transition
  made while no worker ran is still seen — keep-in-touch (``keeping_in_touch``) and win-back (``lapsed``).
* ``clv``: the keep-in-touch list of the lifetime-value model (valuable customers slipping away), once a month.

Only facts from the moment a flow is switched on (``flows.cursor``, in epoch microseconds) and within a short
look-back count, so switching a flow on never mails the whole history. An enrollment's ``trigger_key`` (e.g.
``order:42``) is unique per flow and contact, so a trigger seen twice enrolls once. ``enrolled_at`` is the time of
the triggering fact: a flow with ``exit_on_order`` ends as soon as the contact orders after it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storefunnel.cycle.events import StageTransition, drain
from storefunnel.cycle.rules import rules_from_settings
from storefunnel.db import utcnow
from storefunnel.errors import Conflict, Invalid, NotFound
from storefunnel.messaging import repository, schemas, service
from storefunnel.models import (
    Contact,
    EmailTemplate,
    Flow,
    FlowEnrollment,
    FlowStep,
    MessageEvent,
    Order,
    Send,
    Touch,
    Workspace,
)
from storefunnel.models.messaging import EventKind, MessageKind, SendStatus
from storefunnel.tenancy import get_scoped, scoped

DAY = 24 * 60
LOOKBACK = {
    "lead": dt.timedelta(days=2),
    "order": dt.timedelta(days=2),
    "event": dt.timedelta(days=1),
    "stage": dt.timedelta(days=2),
}
EVENT_COOLDOWN = dt.timedelta(days=1)
CONDITIONS = frozenset({"no_open_of_previous", "no_click_of_previous", "stage_in"})


@dataclass(frozen=True)
class StepDef:
    delay_minutes: int
    subject: str
    html: str
    text: str
    condition: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlowDef:
    name: str
    description: str
    kind: str
    trigger_kind: str
    trigger_value: str
    exit_on_order: bool
    steps: tuple[StepDef, ...]


def _html(*paragraphs: str) -> str:
    return "<html><body>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>"


HELLO = "Hi {{ contact.first_name | default_name }},"
RELATED_HTML = (
    "{% if related_products %}You might like:</p><ul>{% for p in related_products %}"
    "<li>{{ p.name }} — {{ p.price }}</li>{% endfor %}</ul><p>{% endif %}"
)
RELATED_TEXT = (
    "{% if related_products %}You might like:\n{% for p in related_products %}- {{ p.name }} ({{ p.price }})\n"
    "{% endfor %}{% endif %}"
)

READY_MADE: dict[str, FlowDef] = {
    "welcome": FlowDef(
        "welcome",
        "New leads get three emails over a week: hello, what the store is about, a first-order nudge.",
        MessageKind.marketing.value,
        "lead",
        "",
        True,
        (
            StepDef(
                0,
                "Welcome to {{ store }}",
                _html(HELLO, "Thanks for joining {{ store }}."),
                f"{HELLO}\n\nThanks for joining {{{{ store }}}}.\n",
            ),
            StepDef(
                2 * DAY,
                "What {{ store }} is about",
                _html(HELLO, "Here is what we make and why."),
                f"{HELLO}\n\nHere is what we make and why.\n",
            ),
            StepDef(
                5 * DAY,
                "Ready for your first order?",
                _html(HELLO, RELATED_HTML, "We would love to see you."),
                f"{HELLO}\n\n{RELATED_TEXT}\nWe would love to see you.\n",
            ),
        ),
    ),
    "abandoned_cart": FlowDef(
        "abandoned_cart",
        "Someone added to the cart and did not buy: a reminder after an hour, a lower barrier the next day.",
        MessageKind.marketing.value,
        "event",
        "Product Added,Checkout Started",
        True,
        (
            StepDef(
                60,
                "You left something in your cart",
                _html(HELLO, "Your cart is waiting for you."),
                f"{HELLO}\n\nYour cart is waiting for you.\n",
            ),
            StepDef(
                DAY,
                "Free returns on your cart",
                _html(HELLO, "Questions? Just reply — returns are free."),
                f"{HELLO}\n\nQuestions? Just reply — returns are free.\n",
                {"no_click_of_previous": True},
            ),
        ),
    ),
    "thank_you": FlowDef(
        "thank_you",
        "Every order is thanked at once (transactional: no consent needed, never to a bounced address).",
        MessageKind.transactional.value,
        "order",
        "",
        False,
        (
            StepDef(
                0,
                "Thank you for your order",
                _html(HELLO, "Thank you for your order from {{ store }}."),
                f"{HELLO}\n\nThank you for your order from {{{{ store }}}}.\n",
            ),
        ),
    ),
    "keep_in_touch": FlowDef(
        "keep_in_touch",
        "Customers whose thank-you window has passed hear from the store a month later, with related products.",
        MessageKind.marketing.value,
        "stage",
        "keeping_in_touch",
        True,
        (StepDef(30 * DAY, "Something new at {{ store }}", _html(HELLO, RELATED_HTML), f"{HELLO}\n\n{RELATED_TEXT}"),),
    ),
    "win_back": FlowDef(
        "win_back",
        "Lapsed customers get a we-miss-you, and a reminder a week later if they did not open it.",
        MessageKind.marketing.value,
        "stage",
        "lapsed",
        True,
        (
            StepDef(
                0,
                "We miss you at {{ store }}",
                _html(HELLO, "It has been a while.", RELATED_HTML),
                f"{HELLO}\n\nIt has been a while.\n{RELATED_TEXT}",
            ),
            StepDef(
                7 * DAY,
                "Still there?",
                _html(HELLO, "One more hello from {{ store }}."),
                f"{HELLO}\n\nOne more hello from {{{{ store }}}}.\n",
                {"no_open_of_previous": True},
            ),
        ),
    ),
    "keep_in_touch_clv": FlowDef(
        "keep_in_touch_clv",
        "Valuable customers the lifetime-value model sees slipping away get a personal note (at most monthly).",
        MessageKind.marketing.value,
        "clv",
        "",
        True,
        (
            StepDef(
                0,
                "A note from {{ store }}",
                _html(HELLO, "Thank you for being a customer.", RELATED_HTML),
                f"{HELLO}\n\nThank you for being a customer.\n{RELATED_TEXT}",
            ),
        ),
    ),
}


def epoch_us(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def from_epoch_us(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1_000_000, dt.UTC)


# ---- managing flows ----------------------------------------------------------------------------------------------


def get_flow_by_name(session: Session, workspace_id: int, name: str) -> Flow:
    row = session.scalar(scoped(Flow, workspace_id).where(Flow.name == name))
    if row is None:
        raise NotFound(f"flow {name!r} not found")
    return row


def _template_for(session: Session, workspace_id: int, name: str, kind: str, step: StepDef) -> EmailTemplate:
    existing = session.scalar(scoped(EmailTemplate, workspace_id).where(EmailTemplate.name == name))
    if existing is not None:
        return existing
    data = schemas.TemplateCreate(name=name, kind=kind, subject=step.subject, html=step.html, text=step.text)
    return service.create_template(session, workspace_id, data)


def install(session: Session, workspace_id: int, name: str, enabled: bool = False) -> Flow:
    """The ready-made flow ``name`` with its templates (created once, then the owner's to edit)."""
    existing = session.scalar(scoped(Flow, workspace_id).where(Flow.name == name))
    if existing is not None:
        return set_enabled(session, existing, enabled) if enabled else existing
    spec = READY_MADE.get(name)
    if spec is None:
        raise Invalid(f"name: {name!r} is not a ready-made flow ({', '.join(READY_MADE)}); give a trigger and steps")
    flow = Flow(
        workspace_id=workspace_id,
        name=spec.name,
        description=spec.description,
        kind=spec.kind,
        trigger_kind=spec.trigger_kind,
        trigger_value=spec.trigger_value,
        exit_on_order=spec.exit_on_order,
        settings={},
    )
    session.add(flow)
    session.flush()
    for i, step in enumerate(spec.steps):
        template = _template_for(session, workspace_id, f"{spec.name}-{i + 1}", spec.kind, step)
        session.add(
            FlowStep(
                workspace_id=workspace_id,
                flow_id=flow.id,
                position=i,
                delay_minutes=step.delay_minutes,
                template_id=template.id,
                condition=dict(step.condition),
            )
        )
    session.flush()
    return set_enabled(session, flow, enabled) if enabled else flow


def create(session: Session, workspace_id: int, data: schemas.FlowCreate) -> Flow:
    if data.trigger_kind is None and data.steps is None:
        return install(session, workspace_id, data.name, data.enabled)
    if data.trigger_kind is None or not data.steps:
        raise Invalid("trigger_kind: a flow of your own needs trigger_kind and at least one step")
    if data.trigger_kind in ("stage", "event") and not data.trigger_value.strip():
        raise Invalid(f"trigger_value: a {data.trigger_kind} trigger needs the stage or event name")
    flow = Flow(
        workspace_id=workspace_id,
        name=data.name,
        description=data.description,
        kind=data.kind or MessageKind.marketing.value,
        trigger_kind=data.trigger_kind,
        trigger_value=data.trigger_value.strip(),
        exit_on_order=True if data.exit_on_order is None else data.exit_on_order,
        settings={},
    )
    try:
        with session.begin_nested():
            session.add(flow)
            session.flush()
    except IntegrityError:
        raise Conflict(f"name: a flow named {data.name!r} already exists") from None
    replace_steps(session, flow, data.steps)
    return set_enabled(session, flow, True) if data.enabled else flow


def replace_steps(session: Session, flow: Flow, steps: Sequence[schemas.FlowStepIn]) -> None:
    """New steps for a flow; contacts already in it continue at the same position of the new list."""
    for i, step in enumerate(steps):
        unknown = set(step.condition) - CONDITIONS
        if unknown:
            raise Invalid(f"steps.{i}.condition: unknown condition {sorted(unknown)[0]!r}")
        stage_in = step.condition.get("stage_in")
        if stage_in is not None and not (isinstance(stage_in, list) and all(isinstance(s, str) for s in stage_in)):
            raise Invalid(f"steps.{i}.condition.stage_in: a list of stage names")
        if session.scalar(scoped(EmailTemplate, flow.workspace_id).where(EmailTemplate.id == step.template_id)) is None:
            raise Invalid(f"steps.{i}.template_id: template {step.template_id} not found")
    old = {s.position: s for s in session.scalars(sa.select(FlowStep).where(FlowStep.flow_id == flow.id))}
    for i, step in enumerate(steps):
        row = old.pop(i, None)
        if row is None:
            row = FlowStep(workspace_id=flow.workspace_id, flow_id=flow.id, position=i)
            session.add(row)
        row.delay_minutes = step.delay_minutes
        row.template_id = step.template_id
        row.condition = dict(step.condition)
    for row in old.values():
        # A removed step keeps its sends (their results stay); only the step row goes when nothing points at it.
        if session.scalar(sa.select(Send.id).where(Send.flow_step_id == row.id).limit(1)) is None:
            session.delete(row)
        else:
            row.position = -row.id  # out of the sequence, kept for its history
    session.flush()


def set_enabled(session: Session, flow: Flow, enabled: bool) -> Flow:
    """Switching on starts the trigger clock now: facts from before do not enroll anyone."""
    if enabled and not flow.enabled:
        flow.cursor = epoch_us(utcnow())
    flow.enabled = enabled
    session.flush()
    return flow


def update(session: Session, workspace_id: int, flow_id: int, data: schemas.FlowUpdate) -> Flow:
    flow = get_scoped(session, Flow, workspace_id, flow_id)
    if data.description is not None:
        flow.description = data.description
    if data.exit_on_order is not None:
        flow.exit_on_order = data.exit_on_order
    if data.steps is not None:
        replace_steps(session, flow, data.steps)
    if data.enabled is not None:
        set_enabled(session, flow, data.enabled)
    session.flush()
    return flow


def steps_of(session: Session, flow_id: int) -> list[FlowStep]:
    stmt = sa.select(FlowStep).where(FlowStep.flow_id == flow_id, FlowStep.position >= 0).order_by(FlowStep.position)
    return list(session.scalars(stmt))


def describe(session: Session, flow: Flow) -> schemas.Flow:
    active = session.scalar(
        sa.select(sa.func.count()).where(FlowEnrollment.flow_id == flow.id, FlowEnrollment.status == "active")
    )
    return schemas.Flow(
        id=flow.id,
        name=flow.name,
        description=flow.description,
        kind=flow.kind,
        trigger_kind=flow.trigger_kind,
        trigger_value=flow.trigger_value,
        exit_on_order=flow.exit_on_order,
        enabled=flow.enabled,
        steps=[schemas.FlowStep.model_validate(s) for s in steps_of(session, flow.id)],
        active_enrollments=int(active or 0),
    )


def results(session: Session, workspace_id: int, flow_id: int) -> schemas.FlowResults:
    flow = get_scoped(session, Flow, workspace_id, flow_id)
    days = service.get_settings_for(session, workspace_id).attribution_days
    counts = repository.results(session, workspace_id, "flow_step_id", days, [Send.flow_id == flow.id])
    info = describe(session, flow)
    return schemas.FlowResults(
        flow=info,
        steps=[
            schemas.FlowStepResults(step=s, results=service.result_model(session, workspace_id, counts.get(s.id)))
            for s in info.steps
        ],
    )


# ---- the engine: enroll from triggers, advance enrollments ------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    contact_id: int
    trigger_key: str
    at: dt.datetime


def _enabled(session: Session, kinds: Sequence[str]) -> list[Flow]:
    stmt = sa.select(Flow).where(Flow.enabled.is_(True), Flow.trigger_kind.in_(list(kinds))).order_by(Flow.id)
    return list(session.scalars(stmt))


def enroll(session: Session, flow: Flow, candidates: Sequence[Candidate], now: dt.datetime) -> int:
    """Enroll each candidate once per trigger key; the first step is due its delay after the triggering fact."""
    steps = steps_of(session, flow.id)
    if not steps or not candidates:
        return 0
    first = dt.timedelta(minutes=steps[0].delay_minutes)
    rows = [
        {
            "workspace_id": flow.workspace_id,
            "flow_id": flow.id,
            "contact_id": c.contact_id,
            "trigger_key": c.trigger_key[:100],
            "next_position": 0,
            "due_at": c.at + first,
            "status": "active",
            "enrolled_at": c.at,
            "exit_reason": "",
        }
        for c in candidates
    ]
    table = FlowEnrollment.__table__
    stmt = repository.insert_ignore(session, table, ["flow_id", "contact_id", "trigger_key"])
    result = session.execute(stmt.returning(table.c.id), rows)
    return len(result.all())


def _since(flow: Flow, now: dt.datetime) -> dt.datetime:
    return max(from_epoch_us(flow.cursor), now - LOOKBACK[flow.trigger_kind])


def _enrolled(flow: Flow, contact_id: Any, key: Any) -> Any:
    """Already enrolled with this trigger key: keeps each poll from re-reading what it has handled."""
    return sa.exists().where(
        FlowEnrollment.flow_id == flow.id, FlowEnrollment.contact_id == contact_id, FlowEnrollment.trigger_key == key
    )


def _lead_candidates(session: Session, flow: Flow, now: dt.datetime) -> list[Candidate]:
    since = _since(flow, now)
    stmt = sa.select(Contact.id, Contact.lead_at).where(
        Contact.workspace_id == flow.workspace_id,
        Contact.lead_at >= since,
        Contact.lead_at <= now,
        Contact.email.is_not(None),
        ~_enrolled(flow, Contact.id, sa.literal("once")),
    )
    found: list[Any] = list(session.execute(stmt))
    return [Candidate(int(cid), "once", at) for cid, at in found]


def _order_candidates(session: Session, flow: Flow, now: dt.datetime) -> list[Candidate]:
    ws = session.get(Workspace, flow.workspace_id)
    cancelled = rules_from_settings(ws.settings if ws else None).cancelled_statuses
    since = _since(flow, now)
    stmt = sa.select(Order.id, Order.contact_id, Order.placed_at).where(
        Order.workspace_id == flow.workspace_id,
        Order.contact_id.is_not(None),
        Order.created_at >= since,
        Order.placed_at >= now - LOOKBACK["order"],
        Order.status.not_in(cancelled),
        ~_enrolled(flow, Order.contact_id, sa.literal("order:") + sa.cast(Order.id, sa.String)),
    )
    found: list[Any] = list(session.execute(stmt))
    return [Candidate(int(cid), f"order:{oid}", min(at, now)) for oid, cid, at in found]


def _event_candidates(session: Session, flow: Flow, now: dt.datetime) -> list[Candidate]:
    names = [n.strip() for n in flow.trigger_value.split(",") if n.strip()]
    if not names:
        return []
    since = _since(flow, now)
    recent = (
        sa.exists()
        .where(
            FlowEnrollment.flow_id == flow.id,
            FlowEnrollment.contact_id == Touch.contact_id,
            FlowEnrollment.enrolled_at >= now - EVENT_COOLDOWN,
        )
        .correlate(Touch)
    )
    stmt = (
        sa.select(Touch.contact_id, sa.func.max(Touch.id), sa.func.max(Touch.occurred_at))
        .where(
            Touch.workspace_id == flow.workspace_id,
            Touch.event.in_(names),
            Touch.contact_id.is_not(None),
            Touch.occurred_at >= since,
            Touch.occurred_at <= now,
            ~recent,
        )
        .group_by(Touch.contact_id)
    )
    found: list[Any] = list(session.execute(stmt))
    return [Candidate(int(cid), f"touch:{tid}", at) for cid, tid, at in found]


def enroll_from_facts(session: Session, now: dt.datetime) -> int:
    """Lead, order and event triggers of every enabled flow; returns how many enrollments were made."""
    made = 0
    finders = {"lead": _lead_candidates, "order": _order_candidates, "event": _event_candidates}
    for flow in _enabled(session, list(finders)):
        made += enroll(session, flow, finders[flow.trigger_kind](session, flow, now), now)
    return made


def enroll_from_outbox(session: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Read stage transitions from the cycle outbox (stamping them) and enroll them in matching stage flows."""
    seen: list[StageTransition] = []
    drained = drain(session, seen.append, limit=limit)
    if not drained:
        return 0
    by_ws: dict[int, list[Flow]] = defaultdict(list)
    for flow in _enabled(session, ["stage"]):
        by_ws[flow.workspace_id].append(flow)
    made = 0
    for flow in (f for flows in by_ws.values() for f in flows):
        since = _since(flow, now)
        picked = [
            Candidate(t.contact_id, f"stage:{t.to_stage}:{t.at:%Y%m%dT%H%M%S%f}", t.at)
            for t in seen
            if t.workspace_id == flow.workspace_id and t.to_stage == flow.trigger_value and since <= t.at <= now
        ]
        made += enroll(session, flow, picked, now)
    return made


def enroll_clv(session: Session, now: dt.datetime) -> int:
    """The lifetime-value keep-in-touch list, for each workspace with the ``clv`` flow on; monthly per contact."""
    from storefunnel.messaging.clv_list import slipping_customers

    made = 0
    for flow in _enabled(session, ["clv"]):
        ids = slipping_customers(session, flow.workspace_id, now)
        month = f"clv:{now:%Y-%m}"
        made += enroll(session, flow, [Candidate(c, month, now) for c in ids], now)
    return made


def _ordered_after(session: Session, pairs: Sequence[tuple[int, int]]) -> dict[int, dt.datetime]:
    """Each contact's last buying order time (workspace by workspace, cancelled ones left out)."""
    by_ws: dict[int, set[int]] = defaultdict(set)
    for ws_id, cid in pairs:
        by_ws[ws_id].add(cid)
    out: dict[int, dt.datetime] = {}
    for ws_id, cids in by_ws.items():
        ws = session.get(Workspace, ws_id)
        cancelled = rules_from_settings(ws.settings if ws else None).cancelled_statuses
        stmt = (
            sa.select(Order.contact_id, sa.func.max(Order.placed_at))
            .where(Order.workspace_id == ws_id, Order.contact_id.in_(sorted(cids)), Order.status.not_in(cancelled))
            .group_by(Order.contact_id)
        )
        found: list[Any] = list(session.execute(stmt))
        out.update({int(c): at for c, at in found})
    return out


def _previous_event(session: Session, enrollment_id: int, step_id: int, kind: EventKind) -> bool:
    stmt = (
        sa.select(MessageEvent.id)
        .join(Send, Send.id == MessageEvent.send_id)
        .where(Send.enrollment_id == enrollment_id, Send.flow_step_id == step_id, MessageEvent.kind == kind.value)
        .limit(1)
    )
    return session.scalar(stmt) is not None


def _condition_holds(session: Session, e: FlowEnrollment, steps: list[FlowStep], pos: int, stage: str | None) -> bool:
    cond = steps[pos].condition or {}
    if (
        pos > 0
        and cond.get("no_open_of_previous")
        and _previous_event(session, e.id, steps[pos - 1].id, EventKind.opened)
    ):
        return False
    if (
        pos > 0
        and cond.get("no_click_of_previous")
        and _previous_event(session, e.id, steps[pos - 1].id, EventKind.clicked)
    ):
        return False
    stage_in = cond.get("stage_in")
    return not (isinstance(stage_in, list) and stage not in stage_in)


def advance(session: Session, now: dt.datetime, limit: int = 500) -> int:
    """Move every due enrollment one step: exit if they ordered, queue the step's send, schedule the next."""
    stmt = (
        sa.select(FlowEnrollment)
        .join(Flow, Flow.id == FlowEnrollment.flow_id)
        .where(FlowEnrollment.status == "active", FlowEnrollment.due_at <= now, Flow.enabled.is_(True))
        .order_by(FlowEnrollment.due_at, FlowEnrollment.id)
        .limit(limit)
    )
    if repository.dialect(session) == "postgresql":
        stmt = stmt.with_for_update(of=FlowEnrollment, skip_locked=True)
    due = list(session.scalars(stmt))
    if not due:
        return 0
    flows = {f.id: f for f in session.scalars(sa.select(Flow).where(Flow.id.in_({e.flow_id for e in due})))}
    steps = {fid: steps_of(session, fid) for fid in flows}
    last_order = _ordered_after(session, [(e.workspace_id, e.contact_id) for e in due])
    stages = dict(
        session.execute(sa.select(Contact.id, Contact.stage).where(Contact.id.in_({e.contact_id for e in due}))).all()
    )
    sends: list[dict[str, Any]] = []
    for e in due:
        flow, seq, pos = flows[e.flow_id], steps[e.flow_id], e.next_position
        ordered = last_order.get(e.contact_id)
        if flow.exit_on_order and ordered is not None and ordered > e.enrolled_at:
            _finish(session, e, pos, "exited", "ordered", now)
            continue
        if pos >= len(seq):
            _finish(session, e, pos, "completed", "", now)
            continue
        if _condition_holds(session, e, seq, pos, stages.get(e.contact_id)):
            sends.append(
                {
                    "workspace_id": e.workspace_id,
                    "contact_id": e.contact_id,
                    "template_id": seq[pos].template_id,
                    "flow_id": flow.id,
                    "flow_step_id": seq[pos].id,
                    "enrollment_id": e.id,
                    "kind": flow.kind,
                    "status": SendStatus.queued.value,
                    "due_at": now,
                    "attempts": 0,
                    "detail": "",
                    "created_at": now,
                }
            )
        if pos + 1 < len(seq):
            _move(session, e, pos, now + dt.timedelta(minutes=seq[pos + 1].delay_minutes))
        else:
            _finish(session, e, pos, "completed", "", now)
    if sends:
        session.execute(repository.insert_ignore(session, Send.__table__, ["enrollment_id", "flow_step_id"]), sends)
    return len(due)


def _move(session: Session, e: FlowEnrollment, pos: int, due: dt.datetime) -> None:
    session.execute(
        sa.update(FlowEnrollment)
        .where(FlowEnrollment.id == e.id, FlowEnrollment.next_position == pos, FlowEnrollment.status == "active")
        .values(next_position=pos + 1, due_at=due)
        .execution_options(synchronize_session=False)
    )


def _finish(session: Session, e: FlowEnrollment, pos: int, status: str, reason: str, now: dt.datetime) -> None:
    session.execute(
        sa.update(FlowEnrollment)
        .where(FlowEnrollment.id == e.id, FlowEnrollment.next_position == pos, FlowEnrollment.status == "active")
        .values(status=status, exit_reason=reason, finished_at=now)
        .execution_options(synchronize_session=False)
    )
