"""Marketing hat: Campaigns and Flows pages, the flow editor's step list, and results per message and step."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from storefunnel.contacts.schemas import MAX_ID
from storefunnel.db import SessionDep
from storefunnel.errors import AppError
from storefunnel.messaging import flows, service
from storefunnel.models import Campaign, EmailTemplate, Flow, Segment
from storefunnel.tenancy import scoped
from storefunnel.web.auth import PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router

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


@router.get("/marketing/flows/{flow_id}", response_model=None)
def flow_detail(request: Request, session: SessionDep, user: PageUser, flow_id: FlowId) -> Response:
    """The flow editor's view: each step, its wait, template, condition and results."""
    ws = user.workspace
    try:
        data = flows.results(session, ws.id, flow_id)
    except AppError as exc:
        return render(
            request, "error.html", {"user": user, "title": "Flow not found", "message": exc.detail}, exc.status
        )
    templates = {
        t.id: t
        for t in session.scalars(
            scoped(EmailTemplate, ws.id).where(EmailTemplate.id.in_([s.step.template_id for s in data.steps]))
        )
    }
    return render(
        request, "marketing/flows_detail.html", {"user": user, "workspace": ws, "data": data, "templates": templates}
    )
