"""The official Segment Python library, pointed at a real storefunnel server, lands rows in the database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import segment.analytics as analytics
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import Contact, Identity, KeyKind, Touch, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(committed_session: Session) -> tuple[Workspace, str]:
    workspace = create_workspace(committed_session, f"segment-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    return workspace, key


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_official_client_identify_track_page(
    live_server: LiveServer, store: tuple[Workspace, str], committed_session: Session, gzip: bool
) -> None:
    workspace, key = store
    errors: list[Any] = []
    client = analytics.Client(
        write_key=key,
        host=live_server.url,
        sync_mode=True,
        gzip=gzip,
        max_retries=0,
        on_error=lambda error, _batch: errors.append(error),
    )
    when = dt.datetime(2026, 4, 2, 9, 30, tzinfo=dt.UTC)
    client.page(
        anonymous_id="browser-1",
        name="Home",
        properties={"url": "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=april"},
        timestamp=when,
    )
    client.identify(
        user_id="cust-1",
        anonymous_id="browser-1",
        traits={"email": "cust1@example.com", "firstName": "Rui", "address": {"country": "PT"}},
        timestamp=when + dt.timedelta(minutes=2),
    )
    client.track(
        user_id="cust-1",
        event="Order Completed",
        properties={"revenue": 42.5, "currency": "EUR"},
        timestamp=when + dt.timedelta(minutes=5),
    )
    client.flush()
    assert errors == []

    committed_session.expire_all()
    person = committed_session.scalars(
        sa.select(Contact).where(Contact.workspace_id == workspace.id, Contact.external_id == "cust-1")
    ).one()
    assert (person.email, person.first_name, person.country) == ("cust1@example.com", "Rui", "PT")
    assert person.lead_channel == "Email"
    # the library sends sentAt a moment after the event time it stamps, so the skew correction is small here
    assert person.lead_at is not None
    assert abs(person.lead_at - (when + dt.timedelta(minutes=2))) < dt.timedelta(seconds=30)
    rows = committed_session.execute(
        sa.select(Touch.kind, Touch.event, Touch.channel, Touch.contact_id, Touch.properties)
        .where(Touch.workspace_id == workspace.id)
        .order_by(Touch.occurred_at)
    ).all()
    assert [(r.kind, r.event, r.channel, r.contact_id) for r in rows] == [
        ("page", "Home", "Email", person.id),
        ("track", "Order Completed", "Direct", person.id),
    ]
    assert rows[1].properties == {"revenue": 42.5, "currency": "EUR"}
    linked = committed_session.scalars(sa.select(Identity.anonymous_id).where(Identity.contact_id == person.id)).all()
    assert linked == ["browser-1"]
