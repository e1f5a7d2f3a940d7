"""Marketing hat: Campaigns and Flows pages, the flow editor, and results per message and step.

The editor changes a flow through the same code as ``PATCH /api/v1/flows/{id}`` (``flows.update``), so a step the
API would refuse is refused here too, with the message shown next to the step. Each form posts on its own; with
HTMX the editor is swapped in place (a refusal answers 422 with the editor and the error), without it the page
reloads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Invalid, NotFound, describe_validation_errors
from storefunnel.limits import MAX_ID
from storefunnel.messaging import flows, schemas, service
from storefunnel.models import Campaign, EmailTemplate, Flow, Segment
from storefunnel.tenancy import get_scoped, scoped
from storefunnel.web.auth import PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

router = dashboard_router()
register_page(
    NavEntry("marketing", "Campaigns", "/marketing/campaigns", "Messages to a buying group and what each earned", 60)
)
register_page(
    NavEntry("marketing", "Flows", "/marketing/flows", "Automatic emails: welcome, cart, thank-you, keep in touch", 61)
)
FlowId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/marketing/campaigns", response_model=None)
def campaigns_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    ws = user.workspace
    rows = session.scalars(scoped(Campaign, ws.id).order_by(Campaign.id.desc()).limit(200)).all()
    results = service.all_campaign_results(session, ws.id)
    empty = service.result_model(session, ws.id, None)
    names = dict(session.execute(sa.select(Segment.id, Segment.name).where(Segment.workspace_id == ws.id)).all())
    templates = dict(
        session.execute(
            sa.select(EmailTemplate.id, EmailTemplate.name).where(EmailTemplate.workspace_id == ws.id)
        ).all()
    )
    items = [
        {
            "c": c,
            "r": results.get(c.id, empty),
            "segment": names.get(c.segment_id) if c.segment_id else None,
            "template": templates.get(c.template_id, ""),
        }
        for c in rows
    ]
    settings = service.get_settings_for(session, ws.id)
    return render(
        request, "marketing/campaigns.html", {"user": user, "workspace": ws, "items": items, "settings": settings}
    )


def _flows_context(session: SessionDep, user: PageUser) -> dict[str, object]:
    ws = user.workspace
    installed = {f.name: flows.describe(session, f) for f in session.scalars(scoped(Flow, ws.id).order_by(Flow.id))}
    ready = [d for d in flows.READY_MADE.values() if d.name not in installed]
    return {"user": user, "workspace": ws, "installed": list(installed.values()), "ready": ready, "error": None}


@router.get("/marketing/flows", response_model=None)
def flows_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    return render(request, "marketing/flows.html", _flows_context(session, user))


@router.post("/marketing/flows", response_model=None)
def switch_flow(
    request: Request,
    session: SessionDep,
    user: PageUser,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    enabled: Annotated[str, Form(pattern="^(on|off)$")],
) -> Response:
    """Switch a flow on (installing a ready-made one the first time) or off, then back to the list."""
    try:
        if enabled == "on":
            flows.install(session, user.workspace.id, name, enabled=True)
        else:
            flows.set_enabled(session, flows.get_flow_by_name(session, user.workspace.id, name), False)
    except AppError as exc:
        context = {**_flows_context(session, user), "error": exc.detail}
        return render(request, "marketing/flows.html", context, exc.status)
    return RedirectResponse("/marketing/flows", status_code=303)


# ---- the flow editor ---------------------------------------------------------------------------------------------

UNITS = {"minutes": 1, "hours": 60, "days": 24 * 60}
CONDITION_CHOICES = ("", "no_open_of_previous", "no_click_of_previous")
STEP_FIELD = re.compile(r"^steps\.(\d+)\.")
FormText = Annotated[str, Form(max_length=500)]


@dataclass
class StepForm:
    """What one step's form shows: the stored step, or what the owner typed when it was refused."""

    position: int
    delay: str
    unit: str
    template_id: int | None
    subject: str
    condition: str
    stage_in: str


def _split_delay(minutes: int) -> tuple[str, str]:
    for unit in ("days", "hours"):
        if minutes and minutes % UNITS[unit] == 0:
            return str(minutes // UNITS[unit]), unit
    return str(minutes), "minutes"


def _step_form(step: schemas.FlowStep, subject: str) -> StepForm:
    delay, unit = _split_delay(step.delay_minutes)
    cond = step.condition or {}
    flag = next((c for c in CONDITION_CHOICES if c and cond.get(c)), "")
    stages = cond.get("stage_in")
    return StepForm(
        step.position,
        delay,
        unit,
        step.template_id,
        subject,
        flag,
        ", ".join(str(x) for x in stages) if isinstance(stages, list) else "",
    )


def _parse_step(delay: str, unit: str, template_id: str, condition: str, stage_in: str) -> schemas.FlowStepIn:
    """The form's fields as the API's step, checked by the same model; errors name the form's field."""
    if not delay.strip().isdigit():
        raise Invalid("delay: a whole number of minutes, hours or days (0 for at once)")
    if unit not in UNITS:
        raise Invalid("delay: the unit is minutes, hours or days")
    most = schemas.MAX_DELAY_MINUTES
    if int(delay) * UNITS[unit] > most:
        raise Invalid(f"delay: at most {most // UNITS['days']} days ({most:,} minutes)")
    if not template_id.strip().isdigit():
        raise Invalid("template: choose the email this step sends")
    if condition not in CONDITION_CHOICES:
        raise Invalid(f"condition: {condition!r} is not one of no_open_of_previous, no_click_of_previous")
    cond: dict[str, object] = {condition: True} if condition else {}
    stages = [x.strip() for x in stage_in.split(",") if x.strip()]
    if stages:
        cond["stage_in"] = stages
    try:
        return schemas.FlowStepIn(delay_minutes=int(delay) * UNITS[unit], template_id=int(template_id), condition=cond)
    except ValidationError as exc:
        detail = describe_validation_errors(list(exc.errors()))[0]
        raise Invalid(detail.replace("delay_minutes:", "delay:").replace("template_id:", "template:")) from None


def _current(session: Session, flow_id: int) -> list[schemas.FlowStepIn]:
    return [
        schemas.FlowStepIn(delay_minutes=s.delay_minutes, template_id=s.template_id, condition=s.condition)
        for s in flows.steps_of(session, flow_id)
    ]


def _save_steps(session: Session, workspace_id: int, flow_id: int, steps: list[schemas.FlowStepIn]) -> None:
    """The same checks and the same replace as ``PATCH /api/v1/flows/{id}``."""
    if not steps:
        raise Invalid("steps: a flow needs at least one step (switch the flow off instead)")
    try:
        data = schemas.FlowUpdate(steps=steps)
    except ValidationError as exc:
        raise Invalid(describe_validation_errors(list(exc.errors()))[0]) from None
    flows.update(session, workspace_id, flow_id, data)


def _where(detail: str, default: str) -> str:
    """Which form an error belongs to: ``steps.2.template_id: …`` is step 2's."""
    m = STEP_FIELD.match(detail)
    return f"step-{m.group(1)}" if m else default


def _detail_context(
    session: Session,
    user: PageUser,
    flow_id: int,
    errors: dict[str, str] | None = None,
    drafts: dict[str, StepForm] | None = None,
) -> dict[str, object]:
    ws = user.workspace
    data = flows.results(session, ws.id, flow_id)
    choices = list(session.scalars(scoped(EmailTemplate, ws.id).order_by(EmailTemplate.name).limit(500)))
    by_id = {t.id: t for t in choices}
    missing = [s.step.template_id for s in data.steps if s.step.template_id not in by_id]
    if missing:
        by_id.update(
            {t.id: t for t in session.scalars(scoped(EmailTemplate, ws.id).where(EmailTemplate.id.in_(missing)))}
        )
    forms = []
    for item in data.steps:
        tpl = by_id.get(item.step.template_id)
        form = (drafts or {}).get(f"step-{item.step.position}") or _step_form(item.step, tpl.subject if tpl else "")
        forms.append({"form": form, "step": item.step, "results": item.results})
    new = (drafts or {}).get("new") or StepForm(len(data.steps), "1", "days", None, "", "", "")
    return {
        "user": user,
        "workspace": ws,
        "data": data,
        "templates": by_id,
        "choices": choices,
        "forms": forms,
        "new": new,
        "units": list(UNITS),
        "conditions": CONDITION_CHOICES,
        "errors": errors or {},
    }


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _not_found(request: Request, user: PageUser, exc: AppError) -> Response:
    return render(request, "error.html", {"user": user, "title": "Flow not found", "message": exc.detail}, exc.status)


def _after_change(
    request: Request,
    session: Session,
    user: PageUser,
    flow_id: int,
    errors: dict[str, str],
    drafts: dict[str, StepForm] | None = None,
) -> Response:
    """Success: back to the page (or, for HTMX, the editor again). Refused: the editor with the error in place."""
    if not errors and not _is_htmx(request):
        return see_other(f"/marketing/flows/{flow_id}")
    context = _detail_context(session, user, flow_id, errors, drafts)
    name = "marketing/flows_detail_body.html" if _is_htmx(request) else "marketing/flows_detail.html"
    return render(request, name, context, 422 if errors else 200)


def _change(session: Session, apply: Callable[[], None], where: str) -> dict[str, str]:
    """Run ``apply`` in a savepoint: a refusal undoes every part of it (the template's subject and the steps)."""
    try:
        with session.begin_nested():
            apply()
    except AppError as exc:
        return {_where(exc.detail, where): exc.detail}
    return {}


@router.post("/marketing/flows/{flow_id}/steps", response_model=None)
def save_step(
    request: Request,
    session: SessionDep,
    user: PageUser,
    flow_id: FlowId,
    position: Annotated[int, Form(ge=0, le=100)],
    delay: FormText = "",
    unit: FormText = "minutes",
    template_id: FormText = "",
    subject: FormText = "",
    condition: FormText = "",
    stage_in: FormText = "",
) -> Response:
    """Change one step: its wait, its email (and that email's subject), its condition."""
    ws = user.workspace
    try:
        flow = get_scoped(session, Flow, ws.id, flow_id)
    except AppError as exc:
        return _not_found(request, user, exc)
    draft = StepForm(
        position, delay, unit, int(template_id) if template_id.isdigit() else None, subject, condition, stage_in
    )

    def apply() -> None:
        step = _parse_step(delay, unit, template_id, condition, stage_in)
        steps = _current(session, flow.id)
        if position >= len(steps):
            raise NotFound(f"step: the flow has no step {position + 1} (it was removed meanwhile)")
        # An unknown template is left to the steps' own check, which names the step.
        tpl = session.scalar(scoped(EmailTemplate, ws.id).where(EmailTemplate.id == step.template_id))
        if tpl is not None and subject.strip() and subject != tpl.subject:
            try:
                update = schemas.TemplateUpdate(subject=subject)
            except ValidationError as exc:
                raise Invalid(describe_validation_errors(list(exc.errors()))[0]) from None
            service.update_template(session, ws.id, tpl.id, update)
        steps[position] = step
        _save_steps(session, ws.id, flow.id, steps)

    errors = _change(session, apply, f"step-{position}")
    return _after_change(request, session, user, flow.id, errors, {f"step-{position}": draft} if errors else None)


@router.post("/marketing/flows/{flow_id}/steps/add", response_model=None)
def add_step(
    request: Request,
    session: SessionDep,
    user: PageUser,
    flow_id: FlowId,
    delay: FormText = "",
    unit: FormText = "days",
    template_id: FormText = "",
    condition: FormText = "",
    stage_in: FormText = "",
) -> Response:
    """Add a step at the end of the flow."""
    ws = user.workspace
    try:
        flow = get_scoped(session, Flow, ws.id, flow_id)
    except AppError as exc:
        return _not_found(request, user, exc)

    def apply() -> None:
        step = _parse_step(delay, unit, template_id, condition, stage_in)
        _save_steps(session, ws.id, flow.id, [*_current(session, flow.id), step])

    errors = _change(session, apply, "new")
    if errors and not errors.get("new"):  # an error about the new step's index is still the add form's
        errors = {"new": next(iter(errors.values()))}
    tid = int(template_id) if template_id.isdigit() else None
    drafts = {"new": StepForm(-1, delay, unit, tid, "", condition, stage_in)} if errors else None
    return _after_change(request, session, user, flow.id, errors, drafts)


@router.post("/marketing/flows/{flow_id}/steps/remove", response_model=None)
def remove_step(
    request: Request,
    session: SessionDep,
    user: PageUser,
    flow_id: FlowId,
    position: Annotated[int, Form(ge=0, le=100)],
) -> Response:
    """Remove a step; contacts in the flow go on from the same position of the shorter list."""
    ws = user.workspace
    try:
        flow = get_scoped(session, Flow, ws.id, flow_id)
    except AppError as exc:
        return _not_found(request, user, exc)

    def apply() -> None:
        steps = _current(session, flow.id)
        if position >= len(steps):
            raise NotFound(f"step: the flow has no step {position + 1} (it was removed meanwhile)")
        _save_steps(session, ws.id, flow.id, steps[:position] + steps[position + 1 :])

    errors = _change(session, apply, f"step-{position}")
    if errors:
        errors = {f"step-{position}": next(iter(errors.values()))}
    return _after_change(request, session, user, flow.id, errors)


@router.post("/marketing/flows/{flow_id}/enabled", response_model=None)
def switch_one_flow(
    request: Request,
    session: SessionDep,
    user: PageUser,
    flow_id: FlowId,
    enabled: Annotated[str, Form(pattern="^(on|off)$")],
) -> Response:
    """Switch this flow on (its trigger clock starts now) or off (contacts wait where they are)."""
    try:
        flow = get_scoped(session, Flow, user.workspace.id, flow_id)
    except AppError as exc:
        return _not_found(request, user, exc)
    flows.set_enabled(session, flow, enabled == "on")
    return see_other(f"/marketing/flows/{flow.id}")


@router.get("/marketing/flows/{flow_id}", response_model=None)
def flow_detail(request: Request, session: SessionDep, user: PageUser, flow_id: FlowId) -> Response:
    """The flow editor: each step's wait, email, subject and condition, editable, with its results."""
    try:
        context = _detail_context(session, user, flow_id)
    except AppError as exc:
        return _not_found(request, user, exc)
    return render(request, "marketing/flows_detail.html", context)
