"""The /v1 tracking endpoints: auth, limits, validation, partial batches, idempotency, skew, gzip and CORS."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key, revoke_key
from storefunnel.models import Contact, KeyKind, Receipt, Touch, Workspace

ENDPOINTS = ["identify", "track", "page", "screen", "group", "alias"]


@pytest.fixture
def write_key(session: Session, workspace: Workspace) -> str:
    return create_key(session, workspace.id, KeyKind.write)[1]


@pytest.fixture
def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def touches(session: Session, workspace: Workspace) -> list[Touch]:
    return list(session.scalars(sa.select(Touch).where(Touch.workspace_id == workspace.id).order_by(Touch.id)))


def contacts(session: Session, workspace: Workspace) -> list[Contact]:
    return list(session.scalars(sa.select(Contact).where(Contact.workspace_id == workspace.id).order_by(Contact.id)))


def count_rows(session: Session, workspace: Workspace) -> int:
    total = 0
    for model in (Touch, Contact, Receipt):
        total += session.scalar(sa.select(sa.func.count()).select_from(model).where(model.workspace_id == workspace.id))
    return total


def message(kind: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "anonymousId": "anon-1", "messageId": f"m-{kind}"}
    if kind == "track":
        base["event"] = "Product Viewed"
    if kind == "group":
        base["groupId"] = "acme"
    if kind == "alias":
        base.update(userId="user-1", previousId="anon-1")
    return {**base, **extra}


def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["access-control-allow-origin"] == "*"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_every_endpoint_answers_like_segment(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace, kind: str
) -> None:
    response = client.post(f"/v1/{kind}", json=message(kind), headers=basic)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    if kind in ("track", "page", "screen"):
        [touch] = touches(session, workspace)
        assert (touch.kind, touch.anonymous_id, touch.message_id) == (kind, "anon-1", f"m-{kind}")
    else:
        assert (
            session.scalar(
                sa.select(Receipt.key).where(Receipt.workspace_id == workspace.id, Receipt.source == "segment")
            )
            == f"m-{kind}"
        )


def test_track_page_screen_store_event_url_and_channel(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [
        {
            "type": "page",
            "anonymousId": "v1",
            "name": "Home",
            "properties": {"url": "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=may"},
            "messageId": "p1",
        },
        {
            "type": "track",
            "anonymousId": "v1",
            "event": "Added to Cart",
            "properties": {"sku": "A1"},
            "context": {"page": {"url": "https://shop.test/p", "referrer": "https://www.google.com/"}},
            "messageId": "t1",
        },
        {"type": "screen", "anonymousId": "v1", "name": "Checkout", "messageId": "s1"},
    ]
    assert client.post("/v1/batch", json={"batch": batch}, headers=basic).json() == {"success": True}
    page, track, screen = touches(session, workspace)
    assert (page.kind, page.event, page.channel, page.source, page.medium, page.campaign) == (
        "page",
        "Home",
        "Email",
        "newsletter",
        "email",
        "may",
    )
    assert (track.kind, track.event, track.channel, track.properties) == (
        "track",
        "Added to Cart",
        "Organic Search",
        {"sku": "A1"},
    )
    assert (track.url, track.referrer) == ("https://shop.test/p", "https://www.google.com/")
    assert (screen.kind, screen.event, screen.channel) == ("screen", "Checkout", "Direct")


def test_write_key_in_body_is_accepted(
    client: TestClient, write_key: str, session: Session, workspace: Workspace
) -> None:
    response = client.post("/v1/track", json={**message("track"), "writeKey": write_key})
    assert response.status_code == 200
    assert len(touches(session, workspace)) == 1


@pytest.mark.parametrize(
    ("headers", "body_key", "detail"),
    [
        ({}, None, "missing write key"),
        ({"Authorization": "Basic " + base64.b64encode(b"sfw_not-a-real-key:").decode()}, None, "unknown or revoked"),
        ({"Authorization": "Basic !!!notbase64"}, None, "missing write key"),
        ({}, "sfw_wrong", "unknown or revoked"),
    ],
)
def test_bad_write_keys_are_401_and_store_nothing(
    client: TestClient,
    session: Session,
    workspace: Workspace,
    write_key: str,
    headers: dict[str, str],
    body_key: str | None,
    detail: str,
) -> None:
    body = {**message("track"), **({"writeKey": body_key} if body_key else {})}
    for path, payload in (
        ("/v1/track", body),
        ("/v1/batch", {"batch": [message("track")], **({"writeKey": body_key} if body_key else {})}),
    ):
        problem = problem_of(client.post(path, json=payload, headers=headers), 401)
        assert detail in problem["detail"]
    assert count_rows(session, workspace) == 0


def test_api_keys_are_not_write_keys(client: TestClient, api_key: str, session: Session, workspace: Workspace) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()}
    problem_of(client.post("/v1/track", json=message("track"), headers=headers), 401)
    assert count_rows(session, workspace) == 0


def test_revoked_write_key_is_401(client: TestClient, session: Session, workspace: Workspace) -> None:
    key_row, token = create_key(session, workspace.id, KeyKind.write)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}
    assert client.post("/v1/track", json=message("track"), headers=headers).status_code == 200
    assert revoke_key(session, workspace.id, key_row.id)
    problem_of(client.post("/v1/track", json=message("track", messageId="after"), headers=headers), 401)
    assert [t.message_id for t in touches(session, workspace)] == ["m-track"]


def test_single_message_over_32kb_is_413(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    body = message("track", properties={"blob": "x" * (32 * 1024)})
    problem = problem_of(client.post("/v1/track", json=body, headers=basic), 413)
    assert "32 KB" in problem["detail"]
    assert count_rows(session, workspace) == 0


def test_batch_over_500kb_is_413(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [message("track", messageId=f"b{i}", properties={"blob": "x" * 20_000}) for i in range(30)]
    problem = problem_of(client.post("/v1/batch", json={"batch": batch}, headers=basic), 413)
    assert "500 KB" in problem["detail"]
    assert count_rows(session, workspace) == 0


def test_gzip_bomb_is_stopped_at_the_limit(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    # 50 MB of zeros compresses to ~50 KB: under the limit on the wire, far over it inflated.
    payload = b'{"batch": [], "pad": "' + b"0" * (50 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(payload, compresslevel=9)
    assert len(bomb) < 500 * 1024
    headers = {**basic, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    problem = problem_of(client.post("/v1/batch", content=bomb, headers=headers), 413)
    assert "500 KB" in problem["detail"]


def test_gzip_bodies_are_accepted(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [message("track", messageId=f"g{i}") for i in range(3)]
    body = gzip.compress(orjson.dumps({"batch": batch}))
    headers = {**basic, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert client.post("/v1/batch", content=body, headers=headers).json() == {"success": True}
    assert sorted(t.message_id for t in touches(session, workspace)) == ["g0", "g1", "g2"]


def test_broken_gzip_is_400(client: TestClient, basic: dict[str, str]) -> None:
    headers = {**basic, "Content-Encoding": "gzip"}
    problem = problem_of(client.post("/v1/track", content=b"not gzip at all", headers=headers), 400)
    assert "gzip" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"", "body"),
        (orjson.dumps({"event": "x", "messageId": "1"}), "userId"),
        (orjson.dumps({"event": "x", "userId": {"id": 1}}), "userId"),
        (orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": "yesterday"}), "timestamp"),
        (orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": 1700000000}), "timestamp"),
        (
            orjson.dumps({"event": "x", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00Z", "sentAt": "soon"}),
            "sentAt",
        ),
        (orjson.dumps({"event": "x", "anonymousId": "a", "properties": ["not", "an", "object"]}), "properties"),
        (orjson.dumps({"event": "x", "anonymousId": "a", "context": "web"}), "context"),
        (orjson.dumps({"anonymousId": "a"}), "event"),
        (orjson.dumps({"event": 42, "anonymousId": "a"}), "event"),
        (orjson.dumps({"event": "x", "anonymousId": "a" * 129}), "anonymousId"),
        (orjson.dumps({"event": "x", "anonymousId": "a", "messageId": "m" * 129}), "messageId"),
    ],
)
def test_validation_errors_are_400_naming_the_field(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace, body: bytes, field: str
) -> None:
    problem = problem_of(
        client.post("/v1/track", content=body, headers={**basic, "Content-Type": "application/json"}), 400
    )
    assert problem["detail"].startswith(f"{field}:"), problem["detail"]
    assert count_rows(session, workspace) == 0


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("group", {"anonymousId": "a"}, "groupId"),
        ("alias", {"userId": "u"}, "previousId"),
        ("alias", {"anonymousId": "a", "previousId": "p"}, "userId"),
        ("page", {"anonymousId": "a", "name": 5}, "name"),
        ("identify", {"anonymousId": "a", "traits": "vip"}, "traits"),
    ],
)
def test_type_specific_fields_are_checked(
    client: TestClient, basic: dict[str, str], kind: str, body: dict[str, Any], field: str
) -> None:
    problem = problem_of(client.post(f"/v1/{kind}", json=body, headers=basic), 400)
    assert problem["errors"][0]["field"] == field


def test_partial_batch_stores_the_good_and_reports_the_bad(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [
        message("track", messageId="ok-1"),
        {"type": "track", "event": "no id", "messageId": "bad-1"},
        message("page", messageId="ok-2"),
        {"type": "teleport", "anonymousId": "a", "messageId": "bad-2"},
        "not an object",
        message("track", messageId="bad-3", timestamp="31/12/2026"),
        message("track", messageId="bad-4", properties={"blob": "x" * (33 * 1024)}),
    ]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic)
    assert response.status_code == 200
    report = response.json()
    assert (report["success"], report["accepted"]) == (True, 2)
    assert [(r["index"], r["messageId"], r["field"]) for r in report["rejected"]] == [
        (1, "bad-1", "batch[1].userId"),
        (3, "bad-2", "batch[3].type"),
        (4, None, "batch[4]"),
        (5, "bad-3", "batch[5].timestamp"),
        (6, "bad-4", "batch[6]"),
    ]
    assert "32 KB" in report["rejected"][4]["reason"]
    assert sorted(t.message_id for t in touches(session, workspace)) == ["ok-1", "ok-2"]


def test_batch_of_only_bad_messages_is_400(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    problem = problem_of(client.post("/v1/batch", json={"batch": [{"type": "track"}]}, headers=basic), 400)
    assert problem["errors"][0]["field"] == "batch[0].userId"
    problem = problem_of(client.post("/v1/batch", json={"batch": {"type": "track"}}, headers=basic), 400)
    assert problem["detail"].startswith("batch:")
    assert count_rows(session, workspace) == 0


def test_empty_batch_is_fine(client: TestClient, basic: dict[str, str]) -> None:
    assert client.post("/v1/batch", json={"batch": []}, headers=basic).json() == {"success": True}


def test_repeated_message_id_is_stored_once(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    for _ in range(3):
        assert client.post("/v1/track", json=message("track", messageId="same"), headers=basic).status_code == 200
    batch = [
        message("track", messageId="same"),
        message("track", messageId="same"),
        message("track", messageId="other"),
    ]
    assert client.post("/v1/batch", json={"batch": batch}, headers=basic).status_code == 200
    assert sorted(t.message_id for t in touches(session, workspace)) == ["other", "same"]


def test_repeated_identify_is_applied_once(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    body = {"userId": "u-9", "messageId": "id-1", "traits": {"email": "nine@example.com"}}
    for _ in range(2):
        assert client.post("/v1/identify", json=body, headers=basic).status_code == 200
    receipts = session.scalars(sa.select(Receipt.key).where(Receipt.workspace_id == workspace.id)).all()
    assert receipts == ["id-1"]
    assert [c.email for c in contacts(session, workspace)] == ["nine@example.com"]


def test_missing_message_id_is_derived_from_content(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    body = {"anonymousId": "a", "event": "Viewed", "timestamp": "2026-05-01T10:00:00Z"}
    client.post("/v1/track", json={**body, "sentAt": "2026-05-01T10:00:01Z"}, headers=basic)
    client.post("/v1/track", json={**body, "sentAt": "2026-05-01T10:00:09Z"}, headers=basic)
    client.post("/v1/track", json={**body, "event": "Other"}, headers=basic)
    stored = touches(session, workspace)
    assert len(stored) == 2
    assert all(t.message_id and t.message_id.startswith("h-") for t in stored)


def test_clock_skew_is_corrected(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    # The device clock runs 2 hours behind: its sentAt is 2 h before the server's receivedAt.
    now = dt.datetime.now(dt.UTC)
    skew = dt.timedelta(hours=2)
    device_sent = now - skew
    device_event = device_sent - dt.timedelta(minutes=5)
    body = message("track", timestamp=device_event.isoformat(), sentAt=device_sent.isoformat())
    before = dt.datetime.now(dt.UTC)
    client.post("/v1/track", json=body, headers=basic)
    after = dt.datetime.now(dt.UTC)
    [touch] = touches(session, workspace)
    # occurred_at = timestamp + (receivedAt - sentAt), and receivedAt lies between before and after.
    low = device_event + (before - device_sent)
    high = device_event + (after - device_sent)
    assert low - dt.timedelta(milliseconds=1) <= touch.occurred_at <= high + dt.timedelta(milliseconds=1)


def test_batch_level_sent_at_corrects_every_message(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    batch = [message("track", messageId="k1", timestamp="2020-01-01T00:00:00Z")]
    client.post("/v1/batch", json={"batch": batch, "sentAt": "2020-01-01T00:10:00Z"}, headers=basic)
    [touch] = touches(session, workspace)
    assert touch.occurred_at > dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # moved by (now - 2020-01-01T00:10)


def test_timestamp_without_sent_at_is_kept_and_naive_means_utc(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    client.post("/v1/track", json=message("track", timestamp="2026-03-04T05:06:07.123+02:00"), headers=basic)
    client.post("/v1/page", json=message("page", timestamp="2026-03-04T05:06:07"), headers=basic)
    track, page = touches(session, workspace)
    assert track.occurred_at == dt.datetime(2026, 3, 4, 3, 6, 7, 123000, tzinfo=dt.UTC)
    assert page.occurred_at == dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def test_cors_preflight_allows_any_origin(client: TestClient) -> None:
    response = client.options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type, authorization"


def test_cors_headers_on_success(client: TestClient, basic: dict[str, str]) -> None:
    response = client.post("/v1/track", json=message("track"), headers={**basic, "Origin": "https://shop.example"})
    assert response.headers["access-control-allow-origin"] == "*"


def test_workspaces_are_isolated(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    other = Workspace(name="other-" + workspace.name)
    session.add(other)
    session.flush()
    other_key = create_key(session, other.id, KeyKind.write)[1]
    client.post("/v1/track", json=message("track", messageId="shared"), headers=basic)
    client.post("/v1/track", json={**message("track", messageId="shared"), "writeKey": other_key})
    assert len(touches(session, workspace)) == 1
    assert len(touches(session, other)) == 1


def test_stored_times_compare_equal_in_sql(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    # touches are written below the ORM; a filter on the exact time must still find them on every backend
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    batch = [
        message("track", messageId="t-1", timestamp="2026-03-04T05:06:07Z"),
        message("page", messageId="t-2", timestamp="2026-03-04T05:06:07.000001Z"),
    ]
    assert client.post("/v1/batch", json={"batch": batch}, headers=basic).status_code == 200
    found = session.scalars(
        sa.select(Touch.message_id).where(Touch.workspace_id == workspace.id, Touch.occurred_at == when)
    ).all()
    assert found == ["t-1"]
    later = session.scalars(
        sa.select(Touch.message_id).where(Touch.workspace_id == workspace.id, Touch.occurred_at > when)
    ).all()
    assert later == ["t-2"]


def test_touch_columns_are_cut_to_their_width_and_properties_kept_whole(
    client: TestClient, basic: dict[str, str], session: Session, workspace: Workspace
) -> None:
    props = {"nested": {"a": [1, 2.5, None, "é"]}, "flag": True}
    body = message("track", event="E" * 300, properties=props, context={"campaign": {"source": "s" * 250}})
    assert client.post("/v1/track", json=body, headers=basic).status_code == 200
    [touch] = touches(session, workspace)
    assert (touch.event, touch.source) == ("E" * 200, "s" * 200)
    assert touch.properties == props
