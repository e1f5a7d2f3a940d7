"""/api/v1/messages (templates, sends, suppressions, events, settings), /api/v1/campaigns and /api/v1/flows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Invalid, TooLarge
from storefunnel.limits import MAX_ID
from storefunnel.messaging import bounces, dsn, flows, schemas, service
from storefunnel.messaging.settings import MessagingSettings
from storefunnel.models import Campaign as CampaignRow
from storefunnel.models import EmailTemplate, Flow, Send, Suppression
from storefunnel.pagination import DEFAULT_LIMIT, CursorParam, LimitParam, Page, paginate
from storefunnel.tenancy import get_scoped, scoped

messages = APIRouter(prefix="/messages", tags=["messages"])
campaigns = APIRouter(prefix="/campaigns", tags=["campaigns"])
flow_routes = APIRouter(prefix="/flows", tags=["flows"])
report_routes = APIRouter(prefix="/messaging", tags=["messages"])
router = APIRouter()
REPORT_TYPES = ("message/rfc822", "message/global")

TemplateId = Annotated[int, Path(ge=1, le=MAX_ID)]
SendId = Annotated[int, Path(ge=1, le=MAX_ID)]
CampaignId = Annotated[int, Path(ge=1, le=MAX_ID)]
FlowId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


# ---- templates ---------------------------------------------------------------------------------------------------


@messages.post("/templates", response_model=schemas.Template, status_code=201)
def create_template(data: schemas.TemplateCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> EmailTemplate:
    return service.create_template(session, workspace_id, data)


@messages.get("/templates", response_model=Page[schemas.Template])
def list_templates(
    session: SessionDep, workspace_id: CurrentWorkspace, cursor: CursorParam = None, limit: LimitParam = DEFAULT_LIMIT
) -> Page[schemas.Template]:
    rows, nxt = paginate(session, scoped(EmailTemplate, workspace_id), EmailTemplate.id, cursor, limit)
    return Page[schemas.Template](data=[schemas.Template.model_validate(r) for r in rows], next_cursor=nxt)


@messages.get("/templates/{template_id}", response_model=schemas.Template)
def get_template(template_id: TemplateId, session: SessionDep, workspace_id: CurrentWorkspace) -> EmailTemplate:
    return get_scoped(session, EmailTemplate, workspace_id, template_id)


@messages.patch("/templates/{template_id}", response_model=schemas.Template)
def update_template(
    template_id: TemplateId, data: schemas.TemplateUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> EmailTemplate:
    return service.update_template(session, workspace_id, template_id, data)


@messages.post("/templates/{template_id}/preview", response_model=schemas.Preview)
def preview_template(
    template_id: TemplateId,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    data: Annotated[schemas.PreviewRequest | None, Body()] = None,
) -> schemas.Preview:
    """The message as a real contact (``contact_id``) or a sample contact would get it."""
    rendered = service.preview(session, workspace_id, template_id, data.contact_id if data else None)
    return schemas.Preview(subject=rendered.subject, html=rendered.html, text=rendered.text)


@messages.post("/templates/{template_id}/test-send", response_model=schemas.TestSendResult)
def test_send(
    template_id: TemplateId, data: schemas.TestSendRequest, session: SessionDep, workspace_id: CurrentWorkspace
) -> schemas.TestSendResult:
    """Send the template to one address now, outside campaigns and flows, subject marked [Test]."""
    get_scoped(session, EmailTemplate, workspace_id, template_id)  # an unknown template is a 404 before the body
    if data.to is None:
        raise Invalid("to: the address to send the test to is required")
    return service.test_send(session, workspace_id, template_id, str(data.to), data.contact_id)


# ---- sends, suppressions, events, settings ---------------------------------------------------------------------


@messages.get("", response_model=Page[schemas.Message])
def list_messages(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    campaign_id: OptionalId = None,
    flow_id: OptionalId = None,
    contact_id: OptionalId = None,
    status: Annotated[str | None, Query(max_length=12)] = None,
) -> Page[schemas.Message]:
    """Every message sent or to be sent, newest first, filtered by campaign, flow, contact or status."""
    stmt = scoped(Send, workspace_id)
    for column, value in ((Send.campaign_id, campaign_id), (Send.flow_id, flow_id), (Send.contact_id, contact_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if status is not None:
        stmt = stmt.where(Send.status == status)
    rows, nxt = paginate(session, stmt, Send.id, cursor, limit)
    return Page[schemas.Message](data=[schemas.Message.model_validate(r) for r in rows], next_cursor=nxt)


@messages.get("/suppressions", response_model=Page[schemas.Suppression])
def list_suppressions(
    session: SessionDep, workspace_id: CurrentWorkspace, cursor: CursorParam = None, limit: LimitParam = DEFAULT_LIMIT
) -> Page[schemas.Suppression]:
    rows, nxt = paginate(session, scoped(Suppression, workspace_id), Suppression.id, cursor, limit)
    return Page[schemas.Suppression](data=[schemas.Suppression.model_validate(r) for r in rows], next_cursor=nxt)


@messages.post("/suppressions", response_model=schemas.Suppression, status_code=201)
def add_suppression(
    data: schemas.SuppressionCreate, session: SessionDep, workspace_id: CurrentWorkspace
) -> Suppression:
    """Never mail this address again (hard bounce, complaint) or no more marketing (unsubscribe, manual)."""
    return service.add_suppression(session, workspace_id, data)


@messages.delete("/suppressions", status_code=200)
def remove_suppression(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    email: Annotated[str, Query(min_length=3, max_length=254)],
) -> dict[str, Any]:
    """Lift a suppression (e.g. the address owner asked to be mailed again); consent is still needed for marketing."""
    return {"email": email, "removed": service.remove_suppression(session, workspace_id, email)}


@messages.post("/events", status_code=201)
def record_event(data: schemas.EventCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> dict[str, Any]:
    """A bounce or complaint from the mail system; hard bounces and complaints suppress the address."""
    return service.record_event(session, workspace_id, data)


@messages.get("/settings", response_model=MessagingSettings)
def get_settings(session: SessionDep, workspace_id: CurrentWorkspace) -> MessagingSettings:
    return service.get_settings_for(session, workspace_id)


@messages.patch("/settings", response_model=MessagingSettings)
def update_settings(
    data: schemas.SettingsUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> MessagingSettings:
    return service.update_settings(session, workspace_id, data)


@messages.get("/{send_id}", response_model=schemas.Message)
def get_message(send_id: SendId, session: SessionDep, workspace_id: CurrentWorkspace) -> Send:
    return get_scoped(session, Send, workspace_id, send_id)


# ---- campaigns ---------------------------------------------------------------------------------------------------


@campaigns.post("", response_model=schemas.Campaign, status_code=201)
def create_campaign(data: schemas.CampaignCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> CampaignRow:
    return service.create_campaign(session, workspace_id, data)


@campaigns.get("", response_model=Page[schemas.Campaign])
def list_campaigns(
    session: SessionDep, workspace_id: CurrentWorkspace, cursor: CursorParam = None, limit: LimitParam = DEFAULT_LIMIT
) -> Page[schemas.Campaign]:
    rows, nxt = paginate(session, scoped(CampaignRow, workspace_id), CampaignRow.id, cursor, limit)
    return Page[schemas.Campaign](data=[schemas.Campaign.model_validate(r) for r in rows], next_cursor=nxt)


@campaigns.get("/{campaign_id}", response_model=schemas.CampaignResults)
def get_campaign(
    campaign_id: CampaignId, session: SessionDep, workspace_id: CurrentWorkspace
) -> schemas.CampaignResults:
    """The campaign and its results: sent, delivered, bounced, opened, clicked, unsubscribed, orders, revenue."""
    return service.campaign_results(session, workspace_id, campaign_id)


@campaigns.patch("/{campaign_id}", response_model=schemas.Campaign)
def update_campaign(
    campaign_id: CampaignId, data: schemas.CampaignUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> CampaignRow:
    return service.update_campaign(session, workspace_id, campaign_id, data)


@campaigns.post("/{campaign_id}/send", response_model=schemas.Campaign)
def send_campaign(
    campaign_id: CampaignId,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    data: Annotated[schemas.CampaignSend | None, Body()] = None,
) -> CampaignRow:
    """Send now, or at ``send_at`` (a time without an offset is in the workspace's timezone)."""
    return service.schedule_campaign(session, workspace_id, campaign_id, data.send_at if data else None)


@campaigns.post("/{campaign_id}/cancel", response_model=schemas.Campaign)
def cancel_campaign(campaign_id: CampaignId, session: SessionDep, workspace_id: CurrentWorkspace) -> CampaignRow:
    return service.cancel_campaign(session, workspace_id, campaign_id)


# ---- flows -------------------------------------------------------------------------------------------------------


@flow_routes.get("", response_model=list[schemas.Flow])
def list_flows(session: SessionDep, workspace_id: CurrentWorkspace) -> list[schemas.Flow]:
    """The workspace's flows (a handful: no pagination), with their steps."""
    rows = session.scalars(scoped(Flow, workspace_id).order_by(Flow.id)).all()
    return [flows.describe(session, f) for f in rows]


@flow_routes.get("/ready-made")
def ready_made() -> list[dict[str, Any]]:
    """The flows that can be switched on by name."""
    return [
        {
            "name": f.name,
            "description": f.description,
            "kind": f.kind,
            "trigger_kind": f.trigger_kind,
            "trigger_value": f.trigger_value,
            "steps": len(f.steps),
        }
        for f in flows.READY_MADE.values()
    ]


@flow_routes.post("", response_model=schemas.Flow, status_code=201)
def create_flow(data: schemas.FlowCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> schemas.Flow:
    """Install a ready-made flow by name (``{"name": "welcome", "enabled": true}``) or define one."""
    return flows.describe(session, flows.create(session, workspace_id, data))


@flow_routes.get("/{flow_id}", response_model=schemas.FlowResults)
def get_flow(flow_id: FlowId, session: SessionDep, workspace_id: CurrentWorkspace) -> schemas.FlowResults:
    """The flow, its steps and each step's results."""
    return flows.results(session, workspace_id, flow_id)


@flow_routes.patch("/{flow_id}", response_model=schemas.Flow)
def update_flow(
    flow_id: FlowId, data: schemas.FlowUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> schemas.Flow:
    return flows.describe(session, flows.update(session, workspace_id, flow_id, data))


# ---- bounces and complaints ----------------------------------------------------------------------------------------


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


async def raw_report(request: Request) -> bytes:
    """The request body as the raw message, refused early when it is not one or is larger than the limit."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in REPORT_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type: {ctype or 'missing'}; send the bounce or complaint as it arrived, as message/rfc822"
        )
    limit = bounces.MAX_REPORT_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body: {int(declared):,} bytes; a report may be at most {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"body: more than {limit:,} bytes; a report may be at most {limit:,} bytes")
    return bytes(body)


@report_routes.post(
    "/bounces",
    response_model=schemas.ReportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def receive_report(
    raw: Annotated[bytes, Depends(raw_report)], session: SessionDep, workspace_id: CurrentWorkspace
) -> schemas.ReportResult:
    """A bounce (RFC 3464 delivery status notification) or complaint (RFC 5965 feedback report), raw.

    Hard bounces and complaints suppress the address; soft bounces do after ``soft_bounce_limit`` in a row. The
    same report sent twice changes nothing the second time.
    """
    report = dsn.parse(raw)
    outcomes = bounces.apply(session, workspace_id, report)
    return schemas.ReportResult(
        report_type=report.kind, outcomes=[schemas.ReportOutcome(**o.as_dict()) for o in outcomes]
    )


router.include_router(messages)
router.include_router(campaigns)
router.include_router(flow_routes)
router.include_router(report_routes)
