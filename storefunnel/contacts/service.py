"""Contact operations; takes the session, never commits."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.contacts import repository
from storefunnel.contacts.schemas import ContactCreate, ContactUpdate
from storefunnel.db import utcnow
from storefunnel.errors import Conflict, Invalid
from storefunnel.models import Contact
from storefunnel.tenancy import get_scoped

_NOT_NULL = ("traits", "email_consent")


def _check_unique(session: Session, workspace_id: int, email: str | None, external_id: str | None, own_id: int) -> None:
    if email is not None and repository.id_by_email(session, workspace_id, email) not in (None, own_id):
        raise Conflict(f"email: a contact with email {email!r} already exists", errors=[{"field": "email"}])
    if external_id is not None and repository.id_by_external_id(session, workspace_id, external_id) not in (
        None,
        own_id,
    ):
        raise Conflict(
            f"external_id: a contact with external_id {external_id!r} already exists", errors=[{"field": "external_id"}]
        )


def _flush(session: Session, contact: Contact) -> None:
    """Flush inside a savepoint: a concurrent insert of the same email becomes a 409, not a 500."""
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(
            "email: a contact with this email or external_id was created concurrently", errors=[{"field": "email"}]
        ) from None


def create_contact(session: Session, workspace_id: int, data: ContactCreate) -> Contact:
    _check_unique(session, workspace_id, data.email, data.external_id, own_id=-1)
    values = data.model_dump()
    contact = Contact(workspace_id=workspace_id, **values)
    if data.email_consent:
        contact.consent_at = utcnow()
    _flush(session, contact)
    return contact


def update_contact(session: Session, workspace_id: int, contact_id: int, data: ContactUpdate) -> Contact:
    contact = get_scoped(session, Contact, workspace_id, contact_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for field in _NOT_NULL:
        if field in changes and changes[field] is None:
            raise Invalid(f"{field}: may not be null", errors=[{"field": field, "message": "may not be null"}])
    email = changes.get("email", contact.email)
    external_id = changes.get("external_id", contact.external_id)
    if email is None and external_id is None:
        raise Invalid("email: a contact needs an email or an external_id", errors=[{"field": "email"}])
    _check_unique(session, workspace_id, changes.get("email"), changes.get("external_id"), own_id=contact.id)

    consent = changes.pop("email_consent", None)
    for field, value in changes.items():
        setattr(contact, field, value)
    if consent is True and not contact.email_consent:
        if contact.consent_source is None:
            raise Invalid(
                "consent_source: required when email_consent becomes true", errors=[{"field": "consent_source"}]
            )
        contact.email_consent = True
        contact.consent_at = utcnow()
        contact.unsubscribed_at = None
    elif consent is False and contact.email_consent:
        contact.email_consent = False
        if contact.unsubscribed_at is None:
            contact.unsubscribed_at = utcnow()
    contact.updated_at = utcnow()
    _flush(session, contact)
    return contact
