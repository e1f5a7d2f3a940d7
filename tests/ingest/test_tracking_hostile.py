"""NUL characters and unpaired surrogates anywhere in a tracking message: a 400 naming the field, never a 500.

PostgreSQL's text and jsonb refuse NUL, and no UTF-8 encoder takes an unpaired surrogate; SQLite would store
both, but the API answers the same on every backend. In a batch the good messages are kept.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import Contact, KeyKind, Receipt, Touch, Workspace

NUL = "\u0000"
NUL_REASON = "must not contain NUL (\\u0000) characters"


@pytest.fixture
def write_key(session: Session, workspace: Workspace) -> str:
    return create_key(session, workspace.id, KeyKind.write)[1]


@pytest.fixture
def basic(write_key: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        "Content-Type": "application/json",
    }


def stored(session: Session, workspace: Workspace) -> int:
    total = 0
    for model in (Touch, Contact, Receipt):
        total += session.scalar(sa.select(sa.func.count()).select_from(model).where(model.workspace_id == workspace.id))
    return total


def problem(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["access-control-allow-origin"] == "*"
    body: dict[str, Any] = response.json()
    return body


TRACK = {"type": "track", "anonymousId": "a-1", "event": "Viewed", "messageId": "m-1"}

NUL_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("track", {**TRACK, "event": f"View{NUL}ed"}, "event"),
    ("track", {**TRACK, "anonymousId": f"a{NUL}"}, "anonymousId"),
    ("track", {**TRACK, "userId": f"u{NUL}"}, "userId"),
    ("track", {**TRACK, "messageId": f"m{NUL}"}, "messageId"),
    ("track", {**TRACK, "properties": {"sku": f"A{NUL}1"}}, "properties.sku"),
    ("track", {**TRACK, "properties": {"items": [{"sku": "ok"}, {"sku": NUL}]}}, "properties.items[1].sku"),
    ("track", {**TRACK, "properties": {f"k{NUL}": 1}}, "properties"),
    ("track", {**TRACK, "properties": {"deep": {f"{NUL}": 1}}}, "properties.deep"),
    ("page", {**TRACK, "type": "page", "context": {"page": {"url": f"https://x.test/{NUL}"}}}, "context.page.url"),
    ("page", {**TRACK, "type": "page", "name": f"Home{NUL}"}, "name"),
    ("screen", {**TRACK, "type": "screen", "context": {"campaign": {"source": NUL}}}, "context.campaign.source"),
    ("identify", {"userId": "u-1", "traits": {"email": f"a{NUL}@example.com"}}, "traits.email"),
    ("identify", {"userId": "u-1", "traits": {"address": {"city": f"Porto{NUL}"}}}, "traits.address.city"),
    ("identify", {"userId": "u-1", "traits": {"tags": ["a", f"b{NUL}"]}}, "traits.tags[1]"),
    ("group", {"userId": "u-1", "groupId": f"acme{NUL}"}, "groupId"),
    ("group", {"userId": "u-1", "groupId": "acme", "traits": {"name": NUL}}, "traits.name"),
    ("alias", {"userId": "u-1", "previousId": f"p{NUL}"}, "previousId"),
    ("track", {**TRACK, "integrations": {"All": True, f"X{NUL}": False}}, "integrations"),
    ("track", {**TRACK, "timestamp": f"2026-01-01T00:00:00Z{NUL}"}, "timestamp"),
    ("track", {**TRACK, f"extra{NUL}": 1}, ""),
]


@pytest.mark.parametrize(("kind", "body", "field"), NUL_CASES)
def test_nul_anywhere_is_a_400_naming_the_field(
    client: TestClient,
    basic: dict[str, str],
    session: Session,
    workspace: Workspace,
    kind: str,
    body: dict[str, Any],
    field: str,
) -> None:
    found = problem(client.post(f"/v1/{kind}", content=orjson.dumps(body), headers=basic))
    assert found["errors"][0]["field"] == field
    assert "NUL" in found["detail"]
    if field:
        assert found["detail"].startswith(f"{field}:")
    assert stored(session, workspace) == 0


def test_batch_keeps_the_good_messages_and_reports_each_hostile_one(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [
        {**TRACK, "messageId": "good-1"},
        {**TRACK, "messageId": "bad-1", "properties": {"note": f"x{NUL}"}},
        {"type": "identify", "userId": "u-9", "messageId": "good-2", "traits": {"email": "nine@example.com"}},
        {"type": "identify", "userId": "u-8", "messageId": "bad-2", "traits": {f"nick{NUL}": "x"}},
        {**TRACK, "messageId": f"bad-3{NUL}"},
    ]
    response = client.post("/v1/batch", content=orjson.dumps({"batch": batch}), headers=basic)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["accepted"] == 2
    assert [(r["index"], r["messageId"], r["field"]) for r in report["rejected"]] == [
        (1, "bad-1", "batch[1].properties.note"),
        (3, "bad-2", "batch[3].traits"),
        (4, f"bad-3{NUL}", "batch[4].messageId"),
    ]
    assert all(NUL_REASON in r["reason"] for r in report["rejected"])
    assert session.scalars(sa.select(Touch.message_id).where(Touch.workspace_id == workspace.id)).all() == ["good-1"]
    assert session.scalars(sa.select(Contact.external_id).where(Contact.workspace_id == workspace.id)).all() == ["u-9"]


def test_batch_of_only_hostile_messages_is_a_400(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    body = {"batch": [{**TRACK, "event": NUL}]}
    found = problem(client.post("/v1/batch", content=orjson.dumps(body), headers=basic))
    assert found["errors"][0]["field"] == "batch[0].event"
    assert stored(session, workspace) == 0


# An escaped unpaired surrogate: what JSON.stringify writes for a string cut in the middle of an emoji.
LONE = b"\\ud83d"


def raw_batch(*messages: bytes) -> bytes:
    return b'{"batch": [' + b",".join(messages) + b"]}"


def test_lone_surrogate_rejects_only_its_message(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    good = b'{"type": "track", "anonymousId": "a", "event": "Viewed \\ud83d\\ude00", "messageId": "good"}'
    bad = b'{"type": "track", "anonymousId": "a", "event": "Viewed", "messageId": "bad",'
    bad += b' "properties": {"name": "Mug ' + LONE + b'"}}'
    bad_id = b'{"type": "page", "anonymousId": "a", "messageId": "id-' + LONE + b'"}'
    response = client.post("/v1/batch", content=raw_batch(good, bad, bad_id), headers=basic)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["accepted"] == 1
    assert [(r["messageId"], r["field"]) for r in report["rejected"]] == [
        ("bad", "batch[1].properties.name"),
        (None, "batch[2].messageId"),  # its id cannot be written back in JSON
    ]
    assert "unpaired surrogate" in report["rejected"][0]["reason"]
    [touch] = session.scalars(sa.select(Touch).where(Touch.workspace_id == workspace.id)).all()
    assert touch.event == "Viewed \U0001f600"  # a proper pair is an emoji and is kept


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"anonymousId": "a", "event": "E ' + LONE + b'"}', "event"),
        (b'{"anonymousId": "a", "event": "E", "context": {"k\\udc00": 1}}', "context"),
        (b'{"userId": "\\udfff", "event": "E"}', "userId"),
    ],
)
def test_lone_surrogate_in_a_single_message_is_a_400(
    client: TestClient,
    basic: dict[str, str],
    session: Session,
    workspace: Workspace,
    content: bytes,
    field: str,
) -> None:
    found = problem(client.post("/v1/track", content=content, headers=basic))
    assert found["errors"][0]["field"] == field
    assert stored(session, workspace) == 0


def test_lenient_reading_refuses_what_orjson_refuses(client: TestClient, basic: dict[str, str]) -> None:
    for content in (
        b'{"anonymousId": "a", "event": "E \\ud800", "n": NaN}',
        b'{"anonymousId": "a", "event": "E \\ud800", "n": 1e999}',
        b'{"anonymousId": "a", "event": "E \\ud800"',
        b'{"anonymousId": "a", "event": "E \\ud800 \xff"}',  # not UTF-8
        '{"anonymousId": "a", "event": "E \\ud800"}'.encode("utf-16"),
    ):
        found = problem(client.post("/v1/track", content=content, headers=basic))
        assert found["detail"].startswith("body: malformed JSON"), found["detail"]


def test_huge_integers_read_leniently_are_stored_like_orjson_reads_them(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    good = b'{"type": "track", "anonymousId": "a", "event": "E", "messageId": "big",'
    good += b' "properties": {"n": 123456789012345678901234567890, "m": 18446744073709551615}}'
    bad = b'{"type": "track", "anonymousId": "a", "event": "E ' + LONE + b'", "messageId": "bad"}'
    response = client.post("/v1/batch", content=raw_batch(good, bad), headers=basic)
    assert response.status_code == 200, response.text
    [touch] = session.scalars(sa.select(Touch).where(Touch.workspace_id == workspace.id)).all()
    assert touch.properties["n"] == pytest.approx(1.2345678901234568e29)


def test_escaped_backslash_before_u0000_is_ordinary_text(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    # The JSON text \\u0000 is a backslash and "u0000": it looks like a NUL escape to the quick check, but is none.
    content = b'{"anonymousId": "a", "event": "E", "properties": {"path": "C:\\\\u0000"}}'
    assert client.post("/v1/track", content=content, headers=basic).status_code == 200
    [touch] = session.scalars(sa.select(Touch).where(Touch.workspace_id == workspace.id)).all()
    assert touch.properties == {"path": "C:\\u0000"}


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps({**TRACK, "writeKey": f"sfw_{NUL}"}),
        b'{"anonymousId": "a", "event": "E", "writeKey": "sfw_\\ud800"}',
    ],
)
def test_hostile_write_key_is_a_401(client: TestClient, session: Session, workspace: Workspace, content: bytes) -> None:
    response = client.post("/v1/track", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.text
    assert "unknown or revoked" in response.json()["detail"]
    assert stored(session, workspace) == 0
