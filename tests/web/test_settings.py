"""Settings through the real app: keys that work and stop working, webhook secrets, CSV uploads, roles, CSRF."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key, hash_key
from storefunnel.config import get_settings
from storefunnel.ingest.webhooks import sign
from storefunnel.models import ApiKey, Contact, KeyKind, Order, Role, Touch, User, WebhookSecret, Workspace
from storefunnel.workspaces.service import create_user, create_workspace
from tests.web.helpers import PASSWORD, csrf_from, login

WOO_ORDER = Path(__file__).resolve().parent.parent / "ingest" / "data" / "woocommerce_order_created.json"
_TOKEN_SHOWN = re.compile(r'data-testid="new-key-token">([^<]+)<')


@pytest.fixture
def owner(client: TestClient, user: User) -> TestClient:
    assert login(client, user.email)[0] == 303
    return client


def count(session: Session, model: type[Any], workspace: Workspace) -> int:
    return int(
        session.scalar(sa.select(sa.func.count()).select_from(model).where(model.workspace_id == workspace.id)) or 0
    )


def token_of(client: TestClient) -> str:
    return csrf_from(client.get("/settings").text)


def create_via_form(client: TestClient, kind: str, name: str = "") -> tuple[int, str]:
    r = client.post("/settings/keys", data={"kind": kind, "name": name, "csrf_token": token_of(client)})
    match = _TOKEN_SHOWN.search(r.text)
    return r.status_code, match.group(1) if match else ""


def track(client: TestClient, write_key: str, anonymous_id: str = "visitor-1") -> int:
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    body = {"anonymousId": anonymous_id, "event": "Signed Up", "messageId": uuid.uuid4().hex}
    return client.post("/v1/track", json=body, headers={"Authorization": f"Basic {basic}"}).status_code


def test_write_key_created_shown_once_works_then_revoked_gets_401(
    owner: TestClient, session: Session, workspace: Workspace
) -> None:
    status, token = create_via_form(owner, "write", "web shop")
    assert status == 201
    assert token.startswith("sfw_")
    key = session.scalars(sa.select(ApiKey).where(ApiKey.workspace_id == workspace.id)).one()
    assert (key.kind, key.name, key.prefix, key.key_hash) == ("write", "web shop", token[:12], hash_key(token))
    assert key.revoked_at is None

    # Listed by prefix only, never in full again.
    page = owner.get("/settings").text
    assert token[:12] in page
    assert token not in page

    assert track(owner, token) == 200
    assert count(session, Touch, workspace) == 1

    r = owner.post(f"/settings/keys/{key.id}/revoke", data={"csrf_token": token_of(owner)}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/settings#keys-write"
    session.refresh(key)
    assert key.revoked_at is not None
    assert track(owner, token, "visitor-2") == 401
    assert count(session, Touch, workspace) == 1
    assert 'data-revoked="true"' in owner.get("/settings").text


def test_api_key_created_then_revoked(owner: TestClient, session: Session, workspace: Workspace) -> None:
    status, token = create_via_form(owner, "api")
    assert status == 201
    assert token.startswith("sfk_")
    bearer = {"Authorization": f"Bearer {token}"}
    assert owner.get("/api/v1/contacts", headers=bearer).status_code == 200
    key_id = session.scalar(sa.select(ApiKey.id).where(ApiKey.workspace_id == workspace.id, ApiKey.kind == "api"))
    owner.post(f"/settings/keys/{key_id}/revoke", data={"csrf_token": token_of(owner)})
    assert owner.get("/api/v1/contacts", headers=bearer).status_code == 401


def test_bad_key_form_names_the_field(owner: TestClient, session: Session, workspace: Workspace) -> None:
    status, _ = create_via_form(owner, "root")
    assert status == 422
    r = owner.post("/settings/keys", data={"kind": "write", "name": "x" * 101, "csrf_token": token_of(owner)})
    assert r.status_code == 422
    assert "name: at most 100 characters" in r.text
    assert count(session, ApiKey, workspace) == 0


def test_another_workspaces_key_cannot_be_revoked(owner: TestClient, session: Session) -> None:
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    key, _token = create_key(session, other.id, KeyKind.write)
    r = owner.post(f"/settings/keys/{key.id}/revoke", data={"csrf_token": token_of(owner)})
    assert r.status_code == 404
    session.refresh(key)
    assert key.revoked_at is None
    assert key.prefix not in owner.get("/settings").text


def test_csrf_is_required_for_every_action(owner: TestClient, session: Session, workspace: Workspace) -> None:
    key, _ = create_key(session, workspace.id, KeyKind.write)
    attempts = [
        ("/settings/keys", {"kind": "write"}),
        (f"/settings/keys/{key.id}/revoke", {}),
        ("/settings/webhooks/shopify", {"secret": "s3cret"}),
    ]
    for path, data in attempts:
        assert owner.post(path, data=data).status_code == 403
        assert owner.post(path, data={**data, "csrf_token": "forged"}).status_code == 403
    files = {"file": ("c.csv", b"email\na@example.com\n", "text/csv")}
    assert owner.post("/settings/import", data={"kind": "contacts"}, files=files).status_code == 403
    session.refresh(key)
    assert key.revoked_at is None
    assert count(session, ApiKey, workspace) == 1
    assert session.scalar(sa.select(WebhookSecret).where(WebhookSecret.workspace_id == workspace.id)) is None
    assert session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace.id)) is None


@pytest.mark.parametrize("role", [Role.marketer, Role.seller])
def test_other_roles_read_only(client: TestClient, session: Session, workspace: Workspace, role: Role) -> None:
    key, _ = create_key(session, workspace.id, KeyKind.write, name="shop")
    member = create_user(session, workspace.id, f"{role.value}-{uuid.uuid4().hex[:6]}@example.com", PASSWORD, role)
    assert login(client, member.email)[0] == 303
    page = client.get("/settings")
    assert page.status_code == 200
    assert 'data-testid="read-only"' in page.text
    assert key.prefix in page.text  # they can see which keys exist
    assert 'action="/settings/keys"' not in page.text
    assert "/revoke" not in page.text
    assert 'action="/settings/import"' not in page.text
    csrf = csrf_from(page.text)
    refused = [
        client.post("/settings/keys", data={"kind": "api", "csrf_token": csrf}),
        client.post(f"/settings/keys/{key.id}/revoke", data={"csrf_token": csrf}),
        client.post("/settings/webhooks/shopify", data={"secret": "mine", "csrf_token": csrf}),
        client.post(
            "/settings/import",
            data={"kind": "contacts", "csrf_token": csrf},
            files={"file": ("c.csv", b"email\na@example.com\n", "text/csv")},
        ),
        client.get("/settings/import/rejects", params={"file": "x" * 32}),
    ]
    for r in refused:
        assert r.status_code == 403, r.text
        assert r.json()["detail"].startswith("only the workspace's owner")
    session.refresh(key)
    assert key.revoked_at is None
    assert count(session, ApiKey, workspace) == 1
    assert session.scalar(sa.select(WebhookSecret).where(WebhookSecret.workspace_id == workspace.id)) is None
    assert session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace.id)) is None


def test_shopify_secret_set_then_signed_webhook_accepted(
    owner: TestClient, session: Session, workspace: Workspace
) -> None:
    page = owner.get("/settings").text
    url = f"{get_settings().public_url.rstrip('/')}/webhooks/shopify/{workspace.id}"
    assert url in page
    secret = "shpss_" + uuid.uuid4().hex
    r = owner.post("/settings/webhooks/shopify", data={"secret": secret, "csrf_token": csrf_from(page)})
    assert r.status_code == 200
    assert 'data-testid="new-secret" data-platform="shopify"' in r.text
    stored = session.scalar(sa.select(WebhookSecret).where(WebhookSecret.workspace_id == workspace.id))
    assert stored is not None
    assert (stored.platform, stored.secret) == ("shopify", secret)

    body = json.dumps({"id": 9911, "email": "rui@example.com", "first_name": "Rui"}).encode()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "customers/create", "X-Shopify-Webhook-Id": "w1"}
    path = url.removeprefix(get_settings().public_url.rstrip("/"))
    bad = owner.post(path, content=body, headers={**headers, "X-Shopify-Hmac-Sha256": sign("wrong", body)})
    assert bad.status_code == 401
    ok = owner.post(path, content=body, headers={**headers, "X-Shopify-Hmac-Sha256": sign(secret, body)})
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "processed"
    contact = session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace.id))
    assert contact is not None
    assert (contact.email, contact.first_name) == ("rui@example.com", "Rui")

    # Rotating: the old secret stops working at once.
    rotated = "shpss_" + uuid.uuid4().hex
    owner.post("/settings/webhooks/shopify", data={"secret": rotated, "csrf_token": token_of(owner)})
    again = owner.post(
        path,
        content=body,
        headers={**headers, "X-Shopify-Webhook-Id": "w2", "X-Shopify-Hmac-Sha256": sign(secret, body)},
    )
    assert again.status_code == 401


def test_woocommerce_generated_secret_signs_an_order(owner: TestClient, session: Session, workspace: Workspace) -> None:
    r = owner.post("/settings/webhooks/woocommerce", data={"secret": "", "csrf_token": token_of(owner)})
    assert r.status_code == 200
    match = re.search(r'id="new-secret-value">([^<]+)<', r.text)
    assert match
    secret = match.group(1)
    assert len(secret) >= 32
    assert "set ·" in owner.get("/settings").text
    raw = WOO_ORDER.read_bytes()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Signature": sign(secret, raw),
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }
    ok = owner.post(f"/webhooks/woocommerce/{workspace.id}", content=raw, headers=headers)
    assert ok.status_code == 200, ok.text
    assert count(session, Order, workspace) == 1


def test_unknown_platform_and_too_long_secret(owner: TestClient) -> None:
    assert owner.post("/settings/webhooks/magento", data={"csrf_token": token_of(owner)}).status_code == 404
    r = owner.post("/settings/webhooks/shopify", data={"secret": "s" * 201, "csrf_token": token_of(owner)})
    assert r.status_code == 422
    assert "secret: must be 1 to 200 characters" in r.text


CONTACTS_CSV = (
    "email,first_name,country,age_band\n"
    "ana@example.com,Ana,PT,25-29\n"
    "not-an-email,Bad,PT,\n"
    "bo@example.com,Bo,SE,\n"
    "cy@example.com,Cy,XX,\n"
    "dee@example.com,Dee,,\n"
)


def test_csv_upload_counts_and_reject_file(owner: TestClient, session: Session, workspace: Workspace) -> None:
    r = owner.post(
        "/settings/import",
        data={"kind": "contacts", "csrf_token": token_of(owner)},
        files={"file": ("people.csv", CONTACTS_CSV.encode(), "text/csv")},
    )
    assert r.status_code == 200, r.text
    assert 'data-rows="5" data-imported="3" data-rejected="2"' in r.text
    emails = session.scalars(sa.select(Contact.email).where(Contact.workspace_id == workspace.id)).all()
    assert sorted(emails) == ["ana@example.com", "bo@example.com", "dee@example.com"]

    link = re.search(r'href="(/settings/import/rejects\?file=[^"]+)"', r.text)
    assert link
    rejects = owner.get(link.group(1))
    assert rejects.status_code == 200
    assert rejects.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(rejects.text)))
    assert rows[0] == ["line", "reason", "email", "first_name", "country", "age_band"]
    assert [(row[0], row[2]) for row in rows[1:]] == [("3", "not-an-email"), ("5", "cy@example.com")]
    assert rows[1][1].startswith("email")
    assert rows[2][1].startswith("country")

    # Importing the same file again changes nothing.
    again = owner.post(
        "/settings/import",
        data={"kind": "contacts", "csrf_token": token_of(owner)},
        files={"file": ("people.csv", CONTACTS_CSV.encode(), "text/csv")},
    )
    assert 'data-imported="3" data-rejected="2"' in again.text
    assert count(session, Contact, workspace) == 3


def test_reject_files_stay_in_their_workspace(owner: TestClient, client: TestClient, session: Session) -> None:
    r = owner.post(
        "/settings/import",
        data={"kind": "contacts", "csrf_token": token_of(owner)},
        files={"file": ("p.csv", CONTACTS_CSV.encode(), "text/csv")},
    )
    href = re.search(r'href="(/settings/import/rejects\?file=[^"]+)"', r.text)
    assert href
    owner.post("/logout", data={"csrf_token": token_of(owner)})
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    stranger = create_user(session, other.id, f"s-{uuid.uuid4().hex[:6]}@example.com", PASSWORD)
    assert login(client, stranger.email)[0] == 303
    assert client.get(href.group(1)).status_code == 404
    assert client.get("/settings/import/rejects", params={"file": "../../etc/passwd"}).status_code == 422


def test_bad_uploads_name_the_field(owner: TestClient, session: Session, workspace: Workspace) -> None:
    def upload(kind: str, content: bytes) -> tuple[int, str]:
        r = owner.post(
            "/settings/import",
            data={"kind": kind, "csrf_token": token_of(owner)},
            files={"file": ("x.csv", content, "text/csv")},
        )
        return r.status_code, r.text

    status, text = upload("contacts", b"name,phone\nAna,123\n")
    assert status == 422
    assert "file: missing column(s) email" in text
    status, text = upload("contacts", b"")
    assert status == 422
    assert "file: empty" in text
    status, text = upload("products", b"email\na@example.com\n")
    assert status == 422
    assert "kind: expected one of contacts, orders, spend" in text
    assert session.scalar(sa.select(Contact).where(Contact.workspace_id == workspace.id)) is None


def test_snippets_point_at_this_server(owner: TestClient) -> None:
    page = owner.get("/settings").text
    base = get_settings().public_url.rstrip("/")
    assert f"var host = &#34;{base}&#34;" in page or f'var host = "{base}"' in page
    assert "YOUR_WRITE_KEY" in page
    assert "import segment.analytics as analytics" in page
    assert f"analytics.host = &#34;{base}&#34;" in page or f'analytics.host = "{base}"' in page


def test_anonymous_visitors_are_sent_to_login(client: TestClient) -> None:
    r = client.get("/settings", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/settings"
    assert client.post("/settings/keys", data={"kind": "write"}).status_code == 403
