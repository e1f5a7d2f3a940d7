"""Email operations: templates (preview, test send), campaigns, suppressions, events, settings, results.

Never commits; the caller's unit of work does. Flows live in ``flows.py``, delivery in ``sender.py``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from threading import Lock
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storefunnel.config import get_settings
from storefunnel.db import utcnow
from storefunnel.errors import Conflict, Invalid, NotFound
from storefunnel.jobs import wakeup
from storefunnel.messaging import links, repository, schemas, templates
from storefunnel.messaging.settings import SETTINGS_KEY, MessagingSettings, messaging_settings
from storefunnel.models import (
    Campaign,
    Contact,
    EmailTemplate,
    MessageEvent,
    Order,
    OrderLine,
    Product,
    Segment,
    SegmentMember,
    Send,
    Suppression,
    Workspace,
)
from storefunnel.models.messaging import EventKind, MessageKind, SendStatus, SuppressionReason
from storefunnel.tenancy import get_scoped, scoped
from storefunnel.workspaces.service import locked_settings, set_setting

SAMPLE_CONTACT = {
    "first_name": "Alex",
    "last_name": "Sample",
    "email": "alex@example.com",
    "city": "Lisbon",
    "region": None,
    "country": "PT",
}


def workspace(session: Session, workspace_id: int) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    return ws


# ---- settings ----------------------------------------------------------------------------------------------------


def get_settings_for(session: Session, workspace_id: int) -> MessagingSettings:
    return messaging_settings(workspace(session, workspace_id).settings)


def update_settings(session: Session, workspace_id: int, data: schemas.SettingsUpdate) -> MessagingSettings:
    workspace(session, workspace_id)
    current = messaging_settings(locked_settings(session, workspace_id)).model_dump()
    merged = MessagingSettings.model_validate({**current, **data.model_dump(exclude_unset=True, exclude_none=True)})
    set_setting(session, workspace_id, SETTINGS_KEY, merged.model_dump())
    return merged


# ---- templates ---------------------------------------------------------------------------------------------------


def _check_template(subject: str, html: str, text: str) -> None:
    templates.check("subject", subject)
    templates.check("html", html, html=True)
    templates.check("text", text)
    if not html.strip() and not text.strip():
        raise Invalid("text: a template needs an HTML or a text part")
    # A runtime error (a filter on the wrong type) shows up now, not in the middle of a campaign.
    templates.render(subject, html, text, sample_context(0, "Store"))


def create_template(session: Session, workspace_id: int, data: schemas.TemplateCreate) -> EmailTemplate:
    _check_template(data.subject, data.html, data.text)
    row = EmailTemplate(workspace_id=workspace_id, **data.model_dump())
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"name: a template named {data.name!r} already exists") from None
    return row


def update_template(
    session: Session, workspace_id: int, template_id: int, data: schemas.TemplateUpdate
) -> EmailTemplate:
    row = get_scoped(session, EmailTemplate, workspace_id, template_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    merged = {"subject": row.subject, "html": row.html, "text": row.text, **changes}
    _check_template(merged["subject"], merged["html"], merged["text"])
    try:
        with session.begin_nested():
            for key, value in changes.items():
                setattr(row, key, value)
            session.flush()
    except IntegrityError:
        raise Conflict(f"name: a template named {changes.get('name')!r} already exists") from None
    return row


def sample_context(workspace_id: int, store: str) -> dict[str, Any]:
    return {
        "contact": dict(SAMPLE_CONTACT),
        "segments": ["Sample buying group"],
        "stage": "keeping_in_touch",
        "related_products": [{"name": "Sample product", "sku": "SAMPLE-1", "price": "€19.90"}],
        "store": store,
        "unsubscribe_url": links.unsubscribe_url(workspace_id, 0) if workspace_id else "https://example.com/u/sample",
    }


def contact_context(session: Session, ws: Workspace, contact: Contact) -> dict[str, Any]:
    segments = repository.segment_names(session, [contact.id]).get(contact.id, [])
    return {
        "contact": templates.contact_context(contact),
        "segments": segments,
        "stage": contact.stage or "",
        "related_products": related_products(session, ws.id, [contact.id]).get(contact.id, []),
        "store": ws.name,
        "unsubscribe_url": links.unsubscribe_url(ws.id, contact.id),
    }


def preview(session: Session, workspace_id: int, template_id: int, contact_id: int | None) -> templates.Rendered:
    """The template as this contact (or a sample contact) would get it, tracking links not yet applied."""
    row = get_scoped(session, EmailTemplate, workspace_id, template_id)
    ws = workspace(session, workspace_id)
    if contact_id is None:
        context = sample_context(workspace_id, ws.name)
    else:
        context = contact_context(session, ws, get_scoped(session, Contact, workspace_id, contact_id))
    return templates.render(row.subject, row.html, row.text, context)


def test_send(
    session: Session, workspace_id: int, template_id: int, to: str, contact_id: int | None
) -> schemas.TestSendResult:
    """Send the template to ``to`` now, outside the ledger (no send row, no tracking), subject marked [Test]."""
    from storefunnel.messaging.sender import Prepared, compose, envelope_sender, mail_domain
    from storefunnel.messaging.smtp import SmtpConfig, SmtpConnection

    row = get_scoped(session, EmailTemplate, workspace_id, template_id)
    ws = workspace(session, workspace_id)
    if contact_id is None:
        context = sample_context(workspace_id, ws.name)
    else:
        context = contact_context(session, ws, get_scoped(session, Contact, workspace_id, contact_id))
    domain = mail_domain()
    message_id = f"<sf.test.{uuid.uuid4().hex}@{domain}>"
    prepared = Prepared(
        send_id=0,
        workspace_id=workspace_id,
        contact_id=contact_id or 0,
        kind=row.kind,
        to_email=to,
        message_id=message_id,
        flow_name=None,
        subject="[Test] " + row.subject,
        html=row.html,
        text=row.text,
        context=context,
        ws=messaging_settings(ws.settings),
        store=ws.name,
    )
    raw = compose(prepared, domain)
    conn = SmtpConnection(SmtpConfig.from_url(get_settings().smtp_url))
    try:
        outcome = conn.deliver(envelope_sender(prepared), to, raw)
    finally:
        conn.close()
    return schemas.TestSendResult(to=to, message_id=message_id, result=outcome.result, detail=outcome.detail)


# ---- related products --------------------------------------------------------------------------------------------

_related_cache: dict[int, tuple[float, Any]] = {}
_related_lock = Lock()
RELATED_TTL_S = 600.0
RELATED_MAX_LINES = 200_000


def _item_scores(session: Session, workspace_id: int) -> Any:
    """Item-to-item cosine over the workspace's recent baskets, and its best sellers; cached for ten minutes."""
    from storefunnel.insight.related import item_cosine

    with _related_lock:
        hit = _related_cache.get(workspace_id)
        if hit is not None and time.monotonic() - hit[0] < RELATED_TTL_S:
            return hit[1]
    stmt = (
        sa.select(OrderLine.order_id, OrderLine.product_id)
        .where(OrderLine.workspace_id == workspace_id, OrderLine.product_id.is_not(None))
        .order_by(OrderLine.id.desc())
        .limit(RELATED_MAX_LINES)
    )
    rows = session.execute(stmt).all()
    if not rows:
        value: Any = None
    else:
        baskets = np.asarray([r[0] for r in rows], dtype=np.int64)
        items = np.asarray([r[1] for r in rows], dtype=np.int64)
        matrix, ids = item_cosine((baskets, items))
        uniq, counts = np.unique(items, return_counts=True)
        best = [int(i) for i in uniq[np.argsort(-counts, kind="stable")][:50]]
        value = (matrix, ids, best)
    with _related_lock:
        _related_cache[workspace_id] = (time.monotonic(), value)
    return value


def related_products(
    session: Session, workspace_id: int, contact_ids: Sequence[int], k: int = 3
) -> dict[int, list[dict[str, Any]]]:
    """Up to ``k`` products per contact, by what is bought with what they bought, best sellers to fill."""
    from storefunnel.insight.related import recommend
    from storefunnel.web.render import format_money

    scores = _item_scores(session, workspace_id)
    if scores is None or not contact_ids:
        return {}
    matrix, ids, best = scores
    owned_rows = session.execute(
        sa.select(Order.contact_id, OrderLine.product_id)
        .join(Order, Order.id == OrderLine.order_id)
        .where(
            Order.workspace_id == workspace_id,
            Order.contact_id.in_(list(contact_ids)),
            OrderLine.product_id.is_not(None),
        )
    ).all()
    owned: dict[int, list[int]] = {c: [] for c in contact_ids}
    for cid, pid in owned_rows:
        owned[int(cid or 0)].append(int(pid or 0))
    order = list(owned)
    picks = recommend([owned[c] for c in order], matrix, items=ids, k=k, fallback=best)
    wanted = sorted({p for ps in picks for p in ps})
    products = {
        p.id: p
        for p in session.scalars(sa.select(Product).where(Product.workspace_id == workspace_id, Product.id.in_(wanted)))
    }
    out: dict[int, list[dict[str, Any]]] = {}
    for cid, ps in zip(order, picks, strict=True):
        out[cid] = [
            {
                "name": products[p].name,
                "sku": products[p].sku,
                "price": format_money(products[p].price, products[p].currency),
            }
            for p in ps
            if p in products
        ]
    return out


# ---- campaigns ---------------------------------------------------------------------------------------------------


def to_utc(ws: Workspace, when: dt.datetime) -> dt.datetime:
    """A time without an offset is wall-clock time in the workspace's display timezone."""
    if when.tzinfo is not None:
        return when.astimezone(dt.UTC)
    try:
        zone = ZoneInfo(ws.display_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return when.replace(tzinfo=zone).astimezone(dt.UTC)


def _check_campaign_refs(session: Session, workspace_id: int, template_id: int | None, segment_id: int | None) -> None:
    if (
        template_id is not None
        and session.scalar(scoped(EmailTemplate, workspace_id).where(EmailTemplate.id == template_id)) is None
    ):
        raise Invalid(f"template_id: template {template_id} not found")
    if segment_id is not None and session.scalar(scoped(Segment, workspace_id).where(Segment.id == segment_id)) is None:
        raise Invalid(f"segment_id: segment {segment_id} not found")


def create_campaign(session: Session, workspace_id: int, data: schemas.CampaignCreate) -> Campaign:
    _check_campaign_refs(session, workspace_id, data.template_id, data.segment_id)
    row = Campaign(workspace_id=workspace_id, **data.model_dump())
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"name: a campaign named {data.name!r} already exists") from None
    return row


def get_campaign_by_name(session: Session, workspace_id: int, name: str) -> Campaign:
    row = session.scalar(scoped(Campaign, workspace_id).where(Campaign.name == name))
    if row is None:
        raise NotFound(f"campaign {name!r} not found")
    return row


def update_campaign(session: Session, workspace_id: int, campaign_id: int, data: schemas.CampaignUpdate) -> Campaign:
    row = get_scoped(session, Campaign, workspace_id, campaign_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes and row.status not in ("draft", "scheduled"):
        raise Conflict(f"status: campaign {row.id} is {row.status}; only a draft or scheduled campaign can change")
    _check_campaign_refs(session, workspace_id, changes.get("template_id"), changes.get("segment_id"))
    try:
        with session.begin_nested():
            for key, value in changes.items():
                setattr(row, key, value)
            session.flush()
    except IntegrityError:
        raise Conflict(f"name: a campaign named {changes.get('name')!r} already exists") from None
    return row


def schedule_campaign(
    session: Session, workspace_id: int, campaign_id: int, send_at: dt.datetime | None = None
) -> Campaign:
    """Send now (the worker starts it within its poll interval) or at ``send_at`` (workspace time if naive)."""
    row = get_scoped(session, Campaign, workspace_id, campaign_id)
    if row.status not in ("draft", "scheduled"):
        raise Conflict(f"status: campaign {row.id} is already {row.status}")
    ws = workspace(session, workspace_id)
    row.scheduled_at = to_utc(ws, send_at) if send_at is not None else utcnow()
    row.status = "scheduled"
    session.flush()
    if row.scheduled_at <= utcnow():
        wakeup.request(session)
    return row


def cancel_campaign(session: Session, workspace_id: int, campaign_id: int) -> Campaign:
    """Stop a campaign: what is still queued is skipped; what is being delivered finishes."""
    row = get_scoped(session, Campaign, workspace_id, campaign_id)
    if row.status in ("sent", "cancelled"):
        raise Conflict(f"status: campaign {row.id} is already {row.status}")
    session.execute(
        sa.update(Send)
        .where(Send.workspace_id == workspace_id, Send.campaign_id == row.id, Send.status == SendStatus.queued.value)
        .values(status=SendStatus.skipped.value, detail="campaign cancelled")
        .execution_options(synchronize_session=False)
    )
    row.status = "cancelled"
    row.finished_at = utcnow()
    session.flush()
    return row


def start_campaign(session: Session, campaign: Campaign, now: dt.datetime) -> int:
    """Write one queued send per current member with consent, not unsubscribed, not suppressed; in one statement.

    The sender checks the rules again when it claims each row, so a change in between still counts.
    """
    member = (
        sa.exists()
        .where(
            SegmentMember.workspace_id == campaign.workspace_id,
            SegmentMember.segment_id == campaign.segment_id,
            SegmentMember.contact_id == Contact.id,
            SegmentMember.left_at.is_(None),
        )
        .correlate(Contact)
    )
    not_suppressed = ~(
        sa.exists()
        .where(Suppression.workspace_id == campaign.workspace_id, Suppression.email == sa.func.lower(Contact.email))
        .correlate(Contact)
    )
    select = sa.select(
        sa.literal(campaign.workspace_id),
        Contact.id,
        sa.literal(campaign.template_id),
        sa.literal(campaign.id),
        sa.literal(MessageKind.marketing.value),
        Contact.email,
        sa.literal(SendStatus.queued.value),
        sa.literal(now, type_=Send.__table__.c.due_at.type),
        sa.literal(0),
        sa.literal(""),
        sa.literal(now, type_=Send.__table__.c.created_at.type),
    ).where(
        Contact.workspace_id == campaign.workspace_id,
        Contact.email.is_not(None),
        Contact.email_consent.is_(True),
        Contact.unsubscribed_at.is_(None),
        not_suppressed,
    )
    if campaign.segment_id is not None:
        select = select.where(member)
    columns = [
        "workspace_id",
        "contact_id",
        "template_id",
        "campaign_id",
        "kind",
        "to_email",
        "status",
        "due_at",
        "attempts",
        "detail",
        "created_at",
    ]
    stmt = repository.insert_ignore(session, Send.__table__, ["campaign_id", "contact_id"]).from_select(columns, select)
    session.execute(stmt)
    count = session.scalar(sa.select(sa.func.count()).where(Send.campaign_id == campaign.id)) or 0
    campaign.recipients = int(count)
    campaign.status = "sending"
    campaign.started_at = now
    session.flush()
    return int(count)


def start_due_campaigns(session: Session, now: dt.datetime) -> int:
    """Start every scheduled campaign whose time has come (any workspace); how many were started."""
    stmt = sa.select(Campaign).where(Campaign.status == "scheduled", Campaign.scheduled_at <= now).order_by(Campaign.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = session.scalars(stmt).all()
    for campaign in due:
        start_campaign(session, campaign, now)
    return len(due)


def finish_campaigns(session: Session, now: dt.datetime) -> int:
    """Campaigns with nothing left queued or being sent are sent."""
    pending = (
        sa.exists()
        .where(
            Send.campaign_id == Campaign.id,
            Send.status.in_([SendStatus.queued.value, SendStatus.sending.value]),
        )
        .correlate(Campaign)
    )
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.status == "sending", ~pending)
        .values(status="sent", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def result_model(session: Session, workspace_id: int, counts: dict[str, int] | None) -> schemas.Results:
    ws = workspace(session, workspace_id)
    days = messaging_settings(ws.settings).attribution_days
    return schemas.Results(**(counts or {}), currency=ws.currency, attribution_days=days)


def campaign_results(session: Session, workspace_id: int, campaign_id: int) -> schemas.CampaignResults:
    row = get_scoped(session, Campaign, workspace_id, campaign_id)
    days = get_settings_for(session, workspace_id).attribution_days
    counts = repository.results(session, workspace_id, "campaign_id", days, [Send.campaign_id == row.id])
    base = schemas.Campaign.model_validate(row).model_dump()
    return schemas.CampaignResults(**base, results=result_model(session, workspace_id, counts.get(row.id)))


def all_campaign_results(session: Session, workspace_id: int) -> dict[int, schemas.Results]:
    days = get_settings_for(session, workspace_id).attribution_days
    counts = repository.results(session, workspace_id, "campaign_id", days)
    return {int(k): result_model(session, workspace_id, v) for k, v in counts.items()}


# ---- suppressions and events ---------------------------------------------------------------------------------------


def add_suppression(session: Session, workspace_id: int, data: schemas.SuppressionCreate) -> Suppression:
    email = repository.normalise_email(str(data.email))
    repository.suppress(session, workspace_id, email, SuppressionReason(data.reason), data.detail)
    if data.reason in ("unsubscribe", "complaint"):
        _stop_marketing(session, workspace_id, email)
    row = session.scalar(scoped(Suppression, workspace_id).where(Suppression.email == email))
    assert row is not None
    return row


def remove_suppression(session: Session, workspace_id: int, email: str) -> bool:
    result = session.execute(
        sa.delete(Suppression).where(
            Suppression.workspace_id == workspace_id, Suppression.email == repository.normalise_email(email)
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _stop_marketing(session: Session, workspace_id: int, email: str) -> None:
    session.execute(
        sa.update(Contact)
        .where(
            Contact.workspace_id == workspace_id,
            sa.func.lower(Contact.email) == email,
            Contact.unsubscribed_at.is_(None),
        )
        .values(unsubscribed_at=utcnow(), email_consent=False)
        .execution_options(synchronize_session=False)
    )


def record_event(session: Session, workspace_id: int, data: schemas.EventCreate) -> dict[str, Any]:
    """A bounce or complaint: an event on the send (if known) and, when permanent, the address suppressed."""
    send: Send | None = None
    if data.send_id is not None:
        send = get_scoped(session, Send, workspace_id, data.send_id)
    email = str(data.email) if data.email else (send.to_email if send else None)
    if not email:
        raise Invalid("email: give the address, or a send_id whose message had one")
    email = repository.normalise_email(email)
    if send is not None:
        kind = EventKind.bounced if data.kind == "bounced" else EventKind.complained
        session.add(
            MessageEvent(
                workspace_id=workspace_id,
                send_id=send.id,
                contact_id=send.contact_id,
                kind=kind.value,
                detail=data.detail,
            )
        )
    suppressed = False
    if data.kind == "complained":
        repository.suppress(session, workspace_id, email, SuppressionReason.complaint, data.detail)
        _stop_marketing(session, workspace_id, email)
        suppressed = True
    elif data.hard:
        repository.suppress(session, workspace_id, email, SuppressionReason.hard_bounce, data.detail)
        suppressed = True
    session.flush()
    return {"email": email, "kind": data.kind, "send_id": send.id if send else None, "suppressed": suppressed}
