"""What happens when a reader opens, clicks or unsubscribes: events, touches on the Email channel, suppression."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import AppError, NotFound
from storefunnel.messaging import repository
from storefunnel.models import Campaign, Contact, Flow, MessageEvent, Send, Touch, Workspace
from storefunnel.models.messaging import EventKind, SuppressionReason

log = logging.getLogger(__name__)
OPENED, CLICKED, SENT_THANKS = "Email Opened", "Email Link Clicked", "Thank You Sent"
TEXT_LIMIT = 200


def _send(session: Session, send_id: int) -> Send:
    send = session.get(Send, send_id)
    if send is None:
        raise NotFound("this link is not valid")
    return send


def touch_properties(session: Session, send: Send) -> dict[str, Any]:
    """The campaign or flow a send belongs to, as the touch properties attribution and the cycle rules read."""
    props: dict[str, Any] = {"send_id": send.id, "template_id": send.template_id}
    if send.campaign_id is not None:
        name = session.scalar(sa.select(Campaign.name).where(Campaign.id == send.campaign_id))
        props.update(campaign_id=send.campaign_id, campaign=name)
    if send.flow_id is not None:
        name = session.scalar(sa.select(Flow.name).where(Flow.id == send.flow_id))
        props.update(flow_id=send.flow_id, flow=name, flow_step_id=send.flow_step_id)
    return props


def write_touch(
    session: Session, send: Send, event: str, properties: dict[str, Any], url: str | None, key: str
) -> None:
    """A touch of kind ``track`` on the Email channel; ``key`` (its message id) makes a repeat harmless."""
    campaign = properties.get("campaign") or properties.get("flow")
    values = {
        "workspace_id": send.workspace_id,
        "contact_id": send.contact_id,
        "occurred_at": utcnow(),
        "kind": "track",
        "event": event,
        "channel": "Email",
        "source": "storefunnel",
        "medium": "email",
        "campaign": str(campaign)[:TEXT_LIMIT] if campaign else None,
        "content": f"template-{send.template_id}",
        "url": url,
        "properties": properties,
        "message_id": key,
    }
    stmt = repository.insert_ignore(session, Touch.__table__, ["workspace_id", "message_id"]).values(**values)
    session.execute(stmt)
    refresh_stage(session, send.workspace_id, send.contact_id)


def refresh_stage(session: Session, workspace_id: int, contact_id: int) -> None:
    """Let the cycle engine see the new touch now; a failure there must not lose the recorded event."""
    from storefunnel.cycle.service import on_facts_changed

    try:
        with session.begin_nested():
            on_facts_changed(session, workspace_id, [contact_id])
    except (AppError, sa.exc.SQLAlchemyError):
        log.exception("stage update after an email event failed for contact %s", contact_id)


def record_open(session: Session, send_id: int) -> None:
    """The first open of a message is an event and a touch; later opens (and image proxies) change nothing."""
    send = _send(session, send_id)
    seen = session.scalar(
        sa.select(MessageEvent.id).where(MessageEvent.send_id == send.id, MessageEvent.kind == EventKind.opened.value)
    )
    if seen is not None:
        return
    session.add(
        MessageEvent(
            workspace_id=send.workspace_id, send_id=send.id, contact_id=send.contact_id, kind=EventKind.opened.value
        )
    )
    write_touch(session, send, OPENED, touch_properties(session, send), None, f"email-open:{send.id}")


def record_click(session: Session, send_id: int, url: str) -> None:
    send = _send(session, send_id)
    session.add(
        MessageEvent(
            workspace_id=send.workspace_id,
            send_id=send.id,
            contact_id=send.contact_id,
            kind=EventKind.clicked.value,
            url=url,
        )
    )
    props = {**touch_properties(session, send), "url": url}
    write_touch(session, send, CLICKED, props, url, f"email-click:{send.id}:{uuid.uuid4().hex}")


def unsubscribe_target(session: Session, workspace_id: int, contact_id: int) -> tuple[str, str, bool]:
    """Store name, address and whether the contact is already unsubscribed."""
    contact = session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id))
    workspace = session.get(Workspace, workspace_id)
    if contact is None or workspace is None:
        raise NotFound("this link is not valid")
    return workspace.name, contact.email or "this address", contact.unsubscribed_at is not None


def unsubscribe(session: Session, workspace_id: int, contact_id: int, send_id: int = 0) -> tuple[str, str]:
    """Stop marketing email at once: the contact loses consent, the address is suppressed, the event recorded."""
    contact = session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id))
    workspace = session.get(Workspace, workspace_id)
    if contact is None or workspace is None:
        raise NotFound("this link is not valid")
    if contact.unsubscribed_at is None:
        contact.unsubscribed_at = utcnow()
        contact.email_consent = False
        if contact.email:
            repository.suppress(session, workspace_id, contact.email, SuppressionReason.unsubscribe, "unsubscribe link")
        if send_id:
            send = session.scalar(sa.select(Send).where(Send.workspace_id == workspace_id, Send.id == send_id))
            if send is not None and send.contact_id == contact.id:
                session.add(
                    MessageEvent(
                        workspace_id=workspace_id,
                        send_id=send.id,
                        contact_id=contact.id,
                        kind=EventKind.unsubscribed.value,
                    )
                )
        session.flush()
    return workspace.name, contact.email or "this address"
