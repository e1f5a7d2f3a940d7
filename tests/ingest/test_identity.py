"""Identity stitching, alias merges, traits and the lead rule, through the tracking API."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import Contact, Identity, KeyKind, Order, Touch, Workspace

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: float) -> str:
    return (T + dt.timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def send(client: TestClient, session: Session, workspace: Workspace) -> Callable[..., None]:
    key = create_key(session, workspace.id, KeyKind.write)[1]
    headers = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    counter = iter(range(10_000))

    def _send(*messages: dict[str, Any]) -> None:
        batch = [{"messageId": f"msg-{next(counter)}", **m} for m in messages]
        response = client.post("/v1/batch", json={"batch": batch}, headers=headers)
        assert response.json() == {"success": True}, response.text

    return _send


def contact(session: Session, workspace: Workspace, external_id: str) -> Contact:
    session.expire_all()
    return session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace.id, Contact.external_id == external_id)
    ).one()


def touch_owners(session: Session, workspace: Workspace) -> list[tuple[str | None, int | None]]:
    rows = session.execute(
        sa.select(Touch.event, Touch.contact_id).where(Touch.workspace_id == workspace.id).order_by(Touch.occurred_at)
    ).all()
    return [(e, c) for e, c in rows]


def page(
    anon: str, minutes: float, url: str = "https://shop.test/", referrer: str | None = None, **kw: Any
) -> dict[str, Any]:
    props = {"url": url, **({"referrer": referrer} if referrer else {})}
    return {
        "type": "page",
        "anonymousId": anon,
        "name": f"p{minutes}",
        "properties": props,
        "timestamp": at(minutes),
        **kw,
    }


def test_identify_reattributes_earlier_anonymous_touches(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send(page("cookie-1", 0), page("cookie-1", 1), page("cookie-2", 2))
    assert {c for _, c in touch_owners(session, workspace)} == {None}
    send({"type": "identify", "anonymousId": "cookie-1", "userId": "u1", "timestamp": at(3)})
    person = contact(session, workspace, "u1")
    assert touch_owners(session, workspace) == [("p0", person.id), ("p1", person.id), ("p2", None)]
    # later anonymous touches of a stitched cookie go straight to the contact
    send(page("cookie-1", 4))
    assert touch_owners(session, workspace)[-1] == ("p4", person.id)
    assert session.scalars(sa.select(Identity.anonymous_id).where(Identity.contact_id == person.id)).all() == [
        "cookie-1"
    ]


def test_identify_in_the_same_batch_as_the_pages_stitches_them(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send(page("c", 0), {"type": "identify", "anonymousId": "c", "userId": "u2", "timestamp": at(1)}, page("c", 2))
    person = contact(session, workspace, "u2")
    assert [c for _, c in touch_owners(session, workspace)] == [person.id, person.id]


def test_track_with_user_and_anonymous_id_stitches_too(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send(page("c3", 0))
    send({"type": "track", "userId": "u3", "anonymousId": "c3", "event": "Signed Up", "timestamp": at(1)})
    person = contact(session, workspace, "u3")
    assert [c for _, c in touch_owners(session, workspace)] == [person.id, person.id]


def test_a_shared_device_keeps_its_first_owner(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send({"type": "identify", "anonymousId": "family-pc", "userId": "alice", "timestamp": at(0)})
    send({"type": "identify", "anonymousId": "family-pc", "userId": "bob", "timestamp": at(1)})
    alice, bob = contact(session, workspace, "alice"), contact(session, workspace, "bob")
    owner = session.scalar(sa.select(Identity.contact_id).where(Identity.anonymous_id == "family-pc"))
    assert owner == alice.id
    assert alice.id != bob.id


def test_traits_update_the_contact(send: Callable[..., None], session: Session, workspace: Workspace) -> None:
    traits = {
        "email": " Ana@Example.COM ",
        "firstName": "Ana",
        "lastName": "Silva",
        "phone": "+351 912 345 678",
        "address": {"country": "pt", "city": "Lisboa", "state": "Lisboa"},
        "age": 34,
        "gender": "Female",
        "email_consent": True,
        "plan": "gold",
    }
    send({"type": "identify", "userId": "ana", "traits": traits, "timestamp": at(0)})
    ana = contact(session, workspace, "ana")
    assert (ana.email, ana.first_name, ana.last_name, ana.phone) == (
        "ana@example.com",
        "Ana",
        "Silva",
        "+351 912 345 678",
    )
    assert (ana.country, ana.city, ana.region, ana.age_band, ana.gender) == (
        "PT",
        "Lisboa",
        "Lisboa",
        "30-39",
        "female",
    )
    assert ana.email_consent is True
    assert ana.consent_at == T
    assert ana.traits == {"plan": "gold"}
    send(
        {
            "type": "identify",
            "userId": "ana",
            "traits": {"name": "Ana Maria Silva", "age_band": "65+", "plan": "platinum"},
        }
    )
    ana = contact(session, workspace, "ana")
    assert (ana.first_name, ana.last_name, ana.age_band, ana.traits) == ("Ana", "Silva", "65+", {"plan": "platinum"})
    send(
        {
            "type": "identify",
            "userId": "ana",
            "context": {"consent": {"categoryPreferences": {"Email": False}}},
            "timestamp": at(9),
        }
    )
    ana = contact(session, workspace, "ana")
    assert ana.email_consent is False
    assert ana.unsubscribed_at == T + dt.timedelta(minutes=9)


@pytest.mark.parametrize(
    ("age", "band"),
    [(17, "under_18"), (18, "18-24"), (24, "18-24"), (25, "25-29"), (49, "40-49"), (64, "50-64"), (65, "65+")],
)
def test_age_becomes_a_band(
    send: Callable[..., None], session: Session, workspace: Workspace, age: int, band: str
) -> None:
    send({"type": "identify", "userId": f"age-{age}", "traits": {"age": age}})
    assert contact(session, workspace, f"age-{age}").age_band == band


def test_identify_adopts_a_contact_known_by_email(
    send: Callable[..., None], make: Any, session: Session, workspace: Workspace
) -> None:
    buyer = make.contact(session, workspace.id, email="buyer@example.com")
    send({"type": "identify", "userId": "shop-42", "traits": {"email": "BUYER@example.com"}})
    assert contact(session, workspace, "shop-42").id == buyer.id


def test_alias_merges_two_contacts(
    send: Callable[..., None], make: Any, session: Session, workspace: Workspace
) -> None:
    send(page("old-cookie", 0, url="https://shop.test/?utm_source=newsletter&utm_medium=email"))
    send(
        {
            "type": "identify",
            "anonymousId": "old-cookie",
            "userId": "guest-7",
            "traits": {"email": "g@example.com"},
            "timestamp": at(1),
        }
    )
    send({"type": "identify", "userId": "member-7", "traits": {"phone": "+1 555", "city": "x"}, "timestamp": at(50)})
    guest, member = contact(session, workspace, "guest-7"), contact(session, workspace, "member-7")
    order = make.order(session, workspace.id, guest)
    assert guest.lead_at == T + dt.timedelta(minutes=1)
    assert member.lead_at == T + dt.timedelta(minutes=50)

    send({"type": "alias", "previousId": "guest-7", "userId": "member-7", "timestamp": at(60)})
    session.expire_all()
    assert session.get(Contact, guest.id) is None
    member = contact(session, workspace, "member-7")
    assert (member.email, member.phone) == ("g@example.com", "+1 555")
    assert (member.lead_at, member.lead_channel) == (T + dt.timedelta(minutes=1), "Email")  # the earliest lead
    assert [c for _, c in touch_owners(session, workspace)] == [member.id]
    assert session.scalar(sa.select(Order.contact_id).where(Order.id == order.id)) == member.id
    linked = set(session.scalars(sa.select(Identity.anonymous_id).where(Identity.contact_id == member.id)))
    assert linked == {"old-cookie", "guest-7"}
    # the old user id still resolves to the surviving contact
    send({"type": "track", "userId": "guest-7", "event": "Came Back", "timestamp": at(70)})
    assert touch_owners(session, workspace)[-1] == ("Came Back", member.id)
    assert (
        session.scalar(sa.select(sa.func.count()).select_from(Contact).where(Contact.workspace_id == workspace.id)) == 1
    )


def test_alias_of_an_anonymous_id_links_it(send: Callable[..., None], session: Session, workspace: Workspace) -> None:
    send(page("anon-x", 0))
    send({"type": "alias", "previousId": "anon-x", "userId": "u-x", "timestamp": at(1)})
    person = contact(session, workspace, "u-x")
    assert [c for _, c in touch_owners(session, workspace)] == [person.id]


def test_alias_renames_a_contact_when_the_new_id_is_unknown(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send({"type": "identify", "userId": "temp-1", "traits": {"email": "t@example.com"}})
    before = contact(session, workspace, "temp-1").id
    send({"type": "alias", "previousId": "temp-1", "userId": "real-1"})
    assert contact(session, workspace, "real-1").id == before


# ---- leads ----


def test_lead_needs_a_way_to_reach_the_contact(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send({"type": "identify", "userId": "quiet", "traits": {"plan": "free"}, "timestamp": at(0)})
    assert contact(session, workspace, "quiet").lead_at is None
    send({"type": "identify", "userId": "quiet", "traits": {"phone": "+44 20"}, "timestamp": at(5)})
    assert contact(session, workspace, "quiet").lead_at == T + dt.timedelta(minutes=5)


def test_lead_channel_is_the_last_non_direct_touch_before_identify(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send(
        page("v", 0, referrer="https://www.google.com/"),  # Organic Search
        page("v", 10, url="https://shop.test/?utm_source=facebook&utm_medium=paid"),  # Paid Social
        page("v", 20),  # Direct: skipped by the rule
        {
            "type": "identify",
            "anonymousId": "v",
            "userId": "lead-1",
            "traits": {"email": "l1@example.com"},
            "timestamp": at(21),
        },
        page("v", 30, referrer="https://www.bing.com/"),  # after the identify: not counted
    )
    person = contact(session, workspace, "lead-1")
    assert (person.lead_at, person.lead_channel) == (T + dt.timedelta(minutes=21), "Paid Social")


def test_lead_channel_falls_back_to_the_identify_context(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    ctx = {"page": {"url": "https://shop.test/?utm_source=newsletter&utm_medium=email"}}
    send(
        {
            "type": "identify",
            "userId": "lead-2",
            "traits": {"email": "l2@example.com"},
            "context": ctx,
            "timestamp": at(0),
        }
    )
    assert contact(session, workspace, "lead-2").lead_channel == "Email"
    send({"type": "identify", "userId": "lead-3", "traits": {"email": "l3@example.com"}, "timestamp": at(0)})
    assert contact(session, workspace, "lead-3").lead_channel == "Direct"


def test_an_earlier_lead_is_never_overwritten(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send({"type": "identify", "userId": "l4", "traits": {"email": "l4@example.com"}, "timestamp": at(100)})
    send({"type": "identify", "userId": "l4", "traits": {"email": "l4@example.com"}, "timestamp": at(200)})
    assert contact(session, workspace, "l4").lead_at == T + dt.timedelta(minutes=100)
    # delivered late but earlier in time: the earlier identify is the moment it became a lead
    send({"type": "identify", "userId": "l4", "traits": {"email": "l4@example.com"}, "timestamp": at(50)})
    assert contact(session, workspace, "l4").lead_at == T + dt.timedelta(minutes=50)


def test_anonymous_identify_with_an_email_is_a_lead(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    send(page("newsletter-form", 0, referrer="https://www.pinterest.com/"))
    send(
        {
            "type": "identify",
            "anonymousId": "newsletter-form",
            "traits": {"email": "nl@example.com"},
            "timestamp": at(1),
        }
    )
    person = session.scalars(sa.select(Contact).where(Contact.email == "nl@example.com")).one()
    assert (person.external_id, person.lead_channel) == (None, "Organic Social")
    assert [c for _, c in touch_owners(session, workspace)] == [person.id]


def test_group_is_remembered_in_traits(send: Callable[..., None], session: Session, workspace: Workspace) -> None:
    send({"type": "group", "userId": "g1", "groupId": "acme", "traits": {"name": "Acme", "employees": 20}})
    assert contact(session, workspace, "g1").traits == {"groups": {"acme": {"name": "Acme", "employees": 20}}}


def test_a_touch_naming_its_user_stitches_the_anonymous_touches_beside_it(
    send: Callable[..., None], session: Session, workspace: Workspace
) -> None:
    # the anonymous page comes first in the batch, the touch that names the user after it
    send(
        page("c7", 0),
        {"type": "track", "userId": "u7", "anonymousId": "c7", "event": "Signed Up", "timestamp": at(1)},
        page("c7", 2),
        page("c8", 3),
    )
    person = contact(session, workspace, "u7")
    assert touch_owners(session, workspace) == [
        ("p0", person.id),
        ("Signed Up", person.id),
        ("p2", person.id),
        ("p3", None),
    ]
