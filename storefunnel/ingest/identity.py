"""Identity stitching and leads: who an anonymous visitor turns out to be, and when a contact became a lead.

Ids: a contact's ``external_id`` is the store's ``userId``; ``identities`` maps every other id known to
belong to it (cookie ``anonymousId``s, and ``previousId``s merged by ``alias``) to the contact. The first
link of an anonymous id wins: a shared device is not allowed to glue two customers together.

Lead rule: a contact becomes a lead the first time it is identified with a way to reach it (an email or a
phone). ``lead_at`` is that identify's (skew-corrected) time, and an earlier time always wins, so
out-of-order delivery gives the same answer. ``lead_channel`` is the channel of the most recent touch that
was not Direct in the 30 days up to ``lead_at`` (last non-direct touch, counting touches of the visitor's
anonymous ids once stitched); without one, the channel of the identify call's own page context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storefunnel.db import Base
from storefunnel.ingest.channels import attribute
from storefunnel.ingest.segment import Message
from storefunnel.models import AgeBand, Contact, Identity, Touch

LEAD_LOOKBACK = dt.timedelta(days=30)
CONSENT_SOURCE = "tracking:identify"
Insert = postgresql.Insert | sqlite.Insert


def insert_for(session: Session, table: sa.Table) -> Insert:
    """INSERT with ``ON CONFLICT DO NOTHING`` available, on PostgreSQL and on SQLite alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@dataclass(frozen=True)
class LeadCandidate:
    contact_id: int
    at: dt.datetime
    context_channel: str


# ---- resolving ids to contacts (set-based) ----


def contacts_by_user_id(session: Session, workspace_id: int, user_ids: Iterable[str], create: bool) -> dict[str, int]:
    """userId -> contact id, through ``external_id`` or an aliased id; optionally creating the missing ones."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    found: dict[str, int] = dict(
        session.execute(  # type: ignore[arg-type]
            sa.select(Contact.external_id, Contact.id).where(
                Contact.workspace_id == workspace_id, Contact.external_id.in_(wanted)
            )
        ).all()
    )
    missing = wanted - found.keys()
    if missing:
        found.update(contacts_by_anonymous_id(session, workspace_id, missing))
        missing = wanted - found.keys()
    if missing and create:
        table = Contact.__table__
        stmt = insert_for(session, table).on_conflict_do_nothing()  # type: ignore[arg-type]
        session.execute(stmt, [{"workspace_id": workspace_id, "external_id": uid} for uid in sorted(missing)])
        found.update(
            session.execute(  # type: ignore[arg-type]
                sa.select(Contact.external_id, Contact.id).where(
                    Contact.workspace_id == workspace_id, Contact.external_id.in_(missing)
                )
            ).all()
        )
    return found


def contacts_by_anonymous_id(session: Session, workspace_id: int, anonymous_ids: Iterable[str]) -> dict[str, int]:
    ids = set(anonymous_ids)
    if not ids:
        return {}
    rows = session.execute(
        sa.select(Identity.anonymous_id, Identity.contact_id).where(
            Identity.workspace_id == workspace_id, Identity.anonymous_id.in_(ids)
        )
    ).all()
    return dict(rows)


def link(session: Session, workspace_id: int, links: Mapping[str, int]) -> None:
    """Record anonymous ids as belonging to contacts; an id already linked keeps its first contact."""
    if not links:
        return
    stmt = insert_for(session, Identity.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]
    session.execute(
        stmt, [{"workspace_id": workspace_id, "anonymous_id": a, "contact_id": c} for a, c in sorted(links.items())]
    )


def reattribute(session: Session, workspace_id: int, anonymous_ids: Iterable[str]) -> set[int]:
    """Give a visitor's earlier anonymous touches to the contact it was stitched to: one UPDATE.

    Returns the contacts that received touches (their facts changed).
    """
    ids = sorted(set(anonymous_ids))
    if not ids:
        return set()
    owner = (
        sa.select(Identity.contact_id)
        .where(Identity.workspace_id == Touch.workspace_id, Identity.anonymous_id == Touch.anonymous_id)
        .scalar_subquery()
    )
    result = session.execute(
        sa.update(Touch)
        .where(Touch.workspace_id == workspace_id, Touch.contact_id.is_(None), Touch.anonymous_id.in_(ids))
        .values(contact_id=owner)
        .returning(Touch.contact_id)
        .execution_options(synchronize_session=False)
    )
    return {c for c in result.scalars() if c is not None}


# ---- identify ----


def _email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254 or " " in email:
        return None
    return email


def _contact_by_email(session: Session, workspace_id: int, email: str) -> Contact | None:
    return session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
    ).first()


def _new_contact(session: Session, workspace_id: int, external_id: str | None, email: str | None) -> Contact:
    """Insert ignoring a concurrent twin, then read whichever row won."""
    stmt = insert_for(session, Contact.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]
    session.execute(stmt, [{"workspace_id": workspace_id, "external_id": external_id, "email": email}])
    cond = Contact.external_id == external_id if external_id is not None else Contact.email == email
    contact = session.scalars(sa.select(Contact).where(Contact.workspace_id == workspace_id, cond)).first()
    if contact is None:  # the email belongs to another user id: keep the person, drop the clashing email
        session.execute(stmt, [{"workspace_id": workspace_id, "external_id": external_id, "email": None}])
        contact = session.scalars(sa.select(Contact).where(Contact.workspace_id == workspace_id, cond)).one()
    return contact


def _resolve_for_identify(session: Session, workspace_id: int, msg: Message, email: str | None) -> Contact:
    if msg.user_id is not None:
        cid = contacts_by_user_id(session, workspace_id, [msg.user_id], create=False).get(msg.user_id)
        if cid is not None:
            return session.get_one(Contact, cid)
    if email is not None:
        contact = _contact_by_email(session, workspace_id, email)
        if contact is not None and (msg.user_id is None or contact.external_id in (None, msg.user_id)):
            if msg.user_id is not None:
                contact.external_id = msg.user_id
            return contact
    if msg.anonymous_id is not None:
        cid = contacts_by_anonymous_id(session, workspace_id, [msg.anonymous_id]).get(msg.anonymous_id)
        if cid is not None:
            contact = session.get_one(Contact, cid)
            if msg.user_id is None or contact.external_id in (None, msg.user_id):
                if msg.user_id is not None:
                    contact.external_id = msg.user_id
                return contact
    clash = email is not None and _contact_by_email(session, workspace_id, email) is not None
    return _new_contact(session, workspace_id, msg.user_id, None if clash else email)


def identify(session: Session, workspace_id: int, msg: Message) -> tuple[Contact, LeadCandidate | None]:
    """Upsert the contact, link the anonymous id, apply the traits; return a lead candidate if reachable."""
    traits = obj(msg.body.get("traits"))
    context = obj(msg.body.get("context"))
    email = _email(traits.get("email"))
    contact = _resolve_for_identify(session, workspace_id, msg, email)
    if email is not None and contact.email != email:
        owner = _contact_by_email(session, workspace_id, email)
        if owner is not None and owner.id != contact.id and owner.external_id is None:
            merge_contacts(session, workspace_id, loser_id=owner.id, survivor_id=contact.id)
    if msg.anonymous_id is not None:
        link(session, workspace_id, {msg.anonymous_id: contact.id})
    apply_traits(session, contact, traits, context, msg.occurred_at)
    if contact.email is None and contact.phone is None:
        return contact, None
    page = obj(context.get("page"))
    ctx = attribute(_str(page.get("url")), _str(page.get("referrer")), obj(context.get("campaign")))
    return contact, LeadCandidate(contact.id, msg.occurred_at, ctx.channel)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def obj(value: Any) -> dict[str, Any]:
    """A JSON object field, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def _age_band(age: Any) -> str | None:
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 < age < 130:
        return None
    for limit, band in (
        (18, AgeBand.under_18),
        (25, AgeBand.a18_24),
        (30, AgeBand.a25_29),
        (40, AgeBand.a30_39),
        (50, AgeBand.a40_49),
        (65, AgeBand.a50_64),
    ):
        if age < limit:
            return band.value
    return AgeBand.a65_plus.value


def _email_consent(traits: Mapping[str, Any], context: Mapping[str, Any]) -> bool | None:
    """``traits.email_consent``/``emailConsent`` (bool), else ``context.consent.categoryPreferences.email``."""
    for key in ("email_consent", "emailConsent"):
        if isinstance(traits.get(key), bool):
            return bool(traits[key])
    consent = context.get("consent")
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if isinstance(prefs, dict):
        for key, value in prefs.items():
            if isinstance(key, str) and key.lower() == "email" and isinstance(value, bool):
                return value
    return None


MAPPED_TRAITS = frozenset(
    {
        "email",
        "firstName",
        "first_name",
        "lastName",
        "last_name",
        "name",
        "phone",
        "address",
        "age",
        "age_band",
        "ageBand",
        "gender",
        "email_consent",
        "emailConsent",
        "unsubscribed",
    }
)


def apply_traits(
    session: Session, contact: Contact, traits: Mapping[str, Any], context: Mapping[str, Any], when: dt.datetime
) -> None:
    """Known traits become columns, the rest is kept in ``traits``; a clashing email never fails the request."""

    def text(*keys: str, limit: int) -> str | None:
        for key in keys:
            value = traits.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()[:limit]
        return None

    email = _email(traits.get("email"))
    if email is not None and email != contact.email:
        owner = _contact_by_email(session, contact.workspace_id, email)
        if owner is None or owner.id == contact.id:
            try:
                with session.begin_nested():
                    contact.email = email
                    session.flush()
            except IntegrityError:
                contact.email = session.scalar(sa.select(Contact.email).where(Contact.id == contact.id))
    first, last = text("firstName", "first_name", limit=100), text("lastName", "last_name", limit=100)
    full = text("name", limit=201)
    if full and not first and not last and contact.first_name is None and contact.last_name is None:
        first, _, remainder = full.partition(" ")
        first, last = first[:100], (remainder.strip()[:100] or None)
    contact.first_name = first or contact.first_name
    contact.last_name = last or contact.last_name
    contact.phone = text("phone", limit=40) or contact.phone
    address = obj(traits.get("address"))
    country = address.get("country")
    if isinstance(country, str) and len(country.strip()) == 2:
        contact.country = country.strip().upper()
    for attr, key in (("city", "city"), ("region", "state")):
        value = address.get(key)
        if isinstance(value, str) and value.strip():
            setattr(contact, attr, value.strip()[:100])
    band = _age_band(traits.get("age"))
    given_band = traits.get("age_band", traits.get("ageBand"))
    if band is None and given_band in {b.value for b in AgeBand}:
        band = given_band
    contact.age_band = band or contact.age_band
    contact.gender = (text("gender", limit=16) or "").lower() or contact.gender
    consent = _email_consent(traits, context)
    if consent is True and not contact.email_consent:
        contact.email_consent, contact.consent_at, contact.consent_source = True, when, CONSENT_SOURCE
        contact.unsubscribed_at = None
    elif consent is False or traits.get("unsubscribed") is True:
        if contact.email_consent or contact.unsubscribed_at is None:
            contact.unsubscribed_at = when
        contact.email_consent = False
    rest = {k: v for k, v in traits.items() if k not in MAPPED_TRAITS}
    if email is None and traits.get("email") is not None:
        rest["email"] = traits["email"]
    if rest:
        contact.traits = {**(contact.traits or {}), **rest}
    session.flush()


def apply_leads(session: Session, workspace_id: int, candidates: Iterable[LeadCandidate]) -> None:
    """Set ``lead_at``/``lead_channel`` unless the contact already became a lead earlier."""
    for cand in candidates:
        channel = session.scalar(
            sa.select(Touch.channel)
            .where(
                Touch.workspace_id == workspace_id,
                Touch.contact_id == cand.contact_id,
                Touch.occurred_at <= cand.at,
                Touch.occurred_at >= cand.at - LEAD_LOOKBACK,
                Touch.channel != "Direct",
            )
            .order_by(Touch.occurred_at.desc(), Touch.id.desc())
            .limit(1)
        )
        session.execute(
            sa.update(Contact)
            .where(
                Contact.workspace_id == workspace_id,
                Contact.id == cand.contact_id,
                sa.or_(Contact.lead_at.is_(None), Contact.lead_at > cand.at),
            )
            .values(lead_at=cand.at, lead_channel=channel or cand.context_channel)
            .execution_options(synchronize_session=False)
        )


# ---- alias and merge ----


def alias(session: Session, workspace_id: int, msg: Message) -> int:
    """``previousId`` and ``userId`` are one person: merge into the userId's contact; returns its id."""
    previous = str(msg.body["previousId"])
    user_id = msg.user_id
    assert user_id is not None  # validated by parse_message
    survivor = contacts_by_user_id(session, workspace_id, [user_id], create=False).get(user_id)
    loser = contacts_by_user_id(session, workspace_id, [previous], create=False).get(previous)
    if survivor is None and loser is None:
        survivor = contacts_by_user_id(session, workspace_id, [user_id], create=True)[user_id]
    elif survivor is None and loser is not None:
        contact = session.get_one(Contact, loser)
        if contact.external_id in (None, previous):
            contact.external_id = user_id
            session.flush()
            survivor = contact.id
        else:
            survivor = contacts_by_user_id(session, workspace_id, [user_id], create=True)[user_id]
            merge_contacts(session, workspace_id, loser_id=loser, survivor_id=survivor)
    elif loser is not None and survivor is not None and loser != survivor:
        merge_contacts(session, workspace_id, loser_id=loser, survivor_id=survivor)
    assert survivor is not None
    links = {previous: survivor}
    if msg.anonymous_id is not None:
        links[msg.anonymous_id] = survivor
    link(session, workspace_id, links)
    reattribute(session, workspace_id, links)
    return survivor


MERGED_FIELDS = ("email", "first_name", "last_name", "phone", "country", "region", "city", "age_band", "gender")


def merge_contacts(session: Session, workspace_id: int, *, loser_id: int, survivor_id: int) -> None:
    """Move everything of ``loser`` to ``survivor`` in set-based statements, keep the earliest lead, delete loser.

    Every table with a foreign key to contacts is moved, so rows other modules attach to contacts survive too;
    a table whose unique constraints refuse the move keeps its rows on the loser and loses them with it.
    """
    loser = session.get_one(Contact, loser_id)
    survivor = session.get_one(Contact, survivor_id)
    session.flush()
    for table in _tables_referencing_contacts():
        for column in _contact_fk_columns(table):
            stmt = (
                sa.update(table)
                .where(table.c.workspace_id == workspace_id, column == loser_id)
                .values({column.name: survivor_id})
            )
            try:
                with session.begin_nested():
                    session.execute(stmt)
            except IntegrityError:
                continue
    kept = {f: getattr(loser, f) for f in MERGED_FIELDS}
    merged_traits = {**(loser.traits or {}), **(survivor.traits or {})}
    earliest_lead = loser.lead_at is not None and (survivor.lead_at is None or loser.lead_at < survivor.lead_at)
    lead = (loser.lead_at, loser.lead_channel) if earliest_lead else (survivor.lead_at, survivor.lead_channel)
    consent = (loser.email_consent, loser.consent_source, loser.consent_at)
    created_at = min(loser.created_at, survivor.created_at)
    loser_external_id = loser.external_id
    session.delete(loser)
    session.flush()
    for field, value in kept.items():
        if getattr(survivor, field) is None and value is not None:
            setattr(survivor, field, value)
    survivor.traits = merged_traits
    survivor.lead_at, survivor.lead_channel = lead
    if survivor.consent_at is None and consent[2] is not None:
        survivor.email_consent, survivor.consent_source, survivor.consent_at = consent
    survivor.created_at = created_at
    session.flush()
    if loser_external_id is not None and loser_external_id != survivor.external_id:
        link(session, workspace_id, {loser_external_id: survivor_id})


def _tables_referencing_contacts() -> list[sa.Table]:
    contacts = Contact.__table__
    return [
        t
        for t in Base.metadata.sorted_tables
        if t is not contacts and "workspace_id" in t.c and any(fk.column.table is contacts for fk in t.foreign_keys)
    ]


def _contact_fk_columns(table: sa.Table) -> list[sa.Column[Any]]:
    contacts = Contact.__table__
    return [fk.parent for fk in table.foreign_keys if fk.column.table is contacts]


# ---- group ----


def group(session: Session, workspace_id: int, msg: Message) -> int | None:
    """Remember the group (company, household) a contact belongs to, with its traits, under ``traits.groups``.

    Returns the contact, or None for an anonymous visitor not stitched to one.
    """
    if msg.user_id is not None:
        cid = contacts_by_user_id(session, workspace_id, [msg.user_id], create=True)[msg.user_id]
    else:
        assert msg.anonymous_id is not None
        found = contacts_by_anonymous_id(session, workspace_id, [msg.anonymous_id]).get(msg.anonymous_id)
        if found is None:
            return None
        cid = found
    contact = session.get_one(Contact, cid)
    groups = dict((contact.traits or {}).get("groups") or {})
    groups[str(msg.body["groupId"])] = msg.body.get("traits") or {}
    contact.traits = {**(contact.traits or {}), "groups": groups}
    session.flush()
    return cid
