"""analytics.js's one-letter paths, over real HTTP: text/plain bodies, the write key in the body, same answers."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import Contact, KeyKind, Receipt, Touch, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e

SHORT = {"t": "track", "p": "page", "i": "identify", "s": "screen", "g": "group", "a": "alias"}
TEXT_PLAIN = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"}


@pytest.fixture
def store(committed_session: Session) -> tuple[Workspace, str]:
    workspace = create_workspace(committed_session, f"ajs-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    return workspace, key


@pytest.fixture
def http(live_server: LiveServer) -> Any:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def event(kind: str, key: str, **extra: Any) -> dict[str, Any]:
    """A message shaped like analytics.js's: type, ids, context, and the write key in the body."""
    body: dict[str, Any] = {
        "type": kind,
        "anonymousId": "ajs-anon-1",
        "messageId": f"ajs-{kind}-{uuid.uuid4().hex[:8]}",
        "timestamp": "2026-11-20T10:00:00.000Z",
        "sentAt": "2026-11-20T10:00:00.050Z",
        "context": {"page": {"url": "https://shop.test/p/mug?utm_source=newsletter&utm_medium=email"}},
        "integrations": {},
        "writeKey": key,
    }
    if kind == "track":
        body.update(event="Product Viewed", properties={"sku": "MUG"})
    if kind in ("page", "screen"):
        body["name"] = "Mug"
    if kind == "identify":
        body.update(userId="ajs-user-1", traits={"email": "ajs@example.com"})
    if kind == "group":
        body.update(userId="ajs-user-1", groupId="acme", traits={"name": "Acme"})
    if kind == "alias":
        body.update(userId="ajs-user-1", previousId="ajs-anon-1")
    return {**body, **extra}


def plain(body: Any) -> bytes:
    return orjson.dumps(body)


def count(session: Session, model: type, workspace: Workspace, *where: Any) -> int:
    session.expire_all()
    stmt = sa.select(sa.func.count()).select_from(model).where(model.workspace_id == workspace.id, *where)  # type: ignore[attr-defined]
    return int(session.scalar(stmt) or 0)


@pytest.mark.parametrize(("short", "kind"), sorted(SHORT.items()))
def test_each_short_path_stores_a_text_plain_message(
    http: httpx.Client, store: tuple[Workspace, str], committed_session: Session, short: str, kind: str
) -> None:
    workspace, key = store
    body = event(kind, key)
    response = http.post(f"/v1/{short}", content=plain(body), headers=TEXT_PLAIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert response.headers["access-control-allow-origin"] == "*"
    if kind in ("track", "page", "screen"):
        stored = committed_session.execute(
            sa.select(Touch.kind, Touch.channel).where(
                Touch.workspace_id == workspace.id, Touch.message_id == body["messageId"]
            )
        ).one()
        assert tuple(stored) == (kind, "Direct" if kind == "screen" else "Email")  # screens have no URL
    else:
        assert count(committed_session, Receipt, workspace, Receipt.key == body["messageId"]) == 1
    if kind in ("identify", "group", "alias"):
        assert count(committed_session, Contact, workspace, Contact.external_id == "ajs-user-1") == 1


def test_short_batch_stores_the_good_and_reports_the_bad(
    http: httpx.Client, store: tuple[Workspace, str], committed_session: Session
) -> None:
    workspace, key = store
    good = [event(k, key) for k in ("page", "track", "identify")]
    for item in good:
        item.pop("writeKey")  # analytics.js's batching sends the key once, beside the batch
    bad = {"type": "track", "anonymousId": "x", "messageId": "no-event"}
    body = {"batch": [*good, bad], "sentAt": "2026-11-20T10:00:01.000Z", "writeKey": key}
    response = http.post("/v1/b", content=plain(body), headers=TEXT_PLAIN)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["accepted"], [r["field"] for r in report["rejected"]]) == (3, ["batch[3].event"])
    assert count(committed_session, Touch, workspace) == 2
    assert count(committed_session, Receipt, workspace) == 1


def test_short_and_long_paths_give_the_same_errors(http: httpx.Client, store: tuple[Workspace, str]) -> None:
    _, key = store
    cases: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("t", "track", plain(event("track", key, event=None)), TEXT_PLAIN),  # 400 naming `event`
        ("p", "page", plain(event("page", key, name=5)), TEXT_PLAIN),  # 400 naming `name`
        ("i", "identify", plain({"type": "identify", "userId": "u"}), TEXT_PLAIN),  # 401: no key
        ("s", "screen", plain(event("screen", "sfw_nope")), TEXT_PLAIN),  # 401: unknown key
        ("g", "group", b"{not json", TEXT_PLAIN),  # 400 body
        ("a", "alias", plain(event("alias", key, userId=None)), TEXT_PLAIN),  # 400 naming `userId`
        ("b", "batch", plain({"batch": {"type": "track"}, "writeKey": key}), TEXT_PLAIN),  # 400 batch
        ("t", "track", plain(event("track", key, properties={"blob": "x" * 33_000})), TEXT_PLAIN),  # 413
        ("b", "batch", plain({"batch": [], "pad": "x" * 520_000, "writeKey": key}), TEXT_PLAIN),  # 413
        ("t", "track", b"not gzip", {**TEXT_PLAIN, "Content-Encoding": "gzip"}),  # 400 gzip
    ]
    statuses = []
    for short, long, content, headers in cases:
        a = http.post(f"/v1/{short}", content=content, headers=headers)
        b = http.post(f"/v1/{long}", content=content, headers=headers)
        assert a.status_code == b.status_code, (short, a.text, b.text)
        assert a.status_code >= 400
        assert a.headers["content-type"].startswith("application/problem+json")
        assert a.headers["access-control-allow-origin"] == "*"
        first, second = a.json(), b.json()
        assert first.pop("instance") == f"/v1/{short}"
        assert second.pop("instance") == f"/v1/{long}"
        assert first == second
        statuses.append(a.status_code)
    assert statuses == [400, 400, 401, 401, 400, 400, 400, 413, 413, 400]


def test_short_paths_take_gzip_and_basic_auth(
    http: httpx.Client, store: tuple[Workspace, str], committed_session: Session
) -> None:
    workspace, key = store
    body = event("track", key)
    body.pop("writeKey")
    response = http.post(
        "/v1/t",
        content=gzip.compress(plain(body)),
        headers={**TEXT_PLAIN, "Content-Encoding": "gzip"},
        auth=(key, ""),
    )
    assert response.status_code == 200, response.text
    assert count(committed_session, Touch, workspace, Touch.message_id == body["messageId"]) == 1


@pytest.mark.parametrize("short", ["t", "p", "i", "s", "g", "a", "b"])
def test_short_paths_answer_the_cors_preflight(http: httpx.Client, short: str) -> None:
    response = http.options(
        f"/v1/{short}",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"


def test_short_paths_are_listed_in_the_api_description(http: httpx.Client) -> None:
    paths = http.get("/api/v1/openapi.json").json()["paths"]
    for short in ("t", "p", "i", "s", "g", "a", "b"):
        assert "post" in paths[f"/v1/{short}"]
