"""Bounces and complaints: reading real-world DSNs and feedback reports, and what they do to the ledger and the
suppression list (hard, soft in a row, delayed, complaint, replayed, unmatched, another workspace's)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import AppError
from storefunnel.messaging import bounces, dsn, repository
from storefunnel.models import Contact, MessageEvent, Send, Suppression, Workspace
from storefunnel.models.messaging import SuppressionReason
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.factories import create_contact
from tests.messaging import dsn_samples as samples
from tests.messaging.helpers import template


def _sent(session: Session, ws: Workspace, contact: Contact, minutes_ago: int = 0) -> Send:
    """A message that went out: status sent, the Message-ID the sender writes."""
    tpl = template(session, ws.id, name=f"t-{uuid.uuid4().hex[:6]}")
    send = Send(workspace_id=ws.id, contact_id=contact.id, template_id=tpl.id, to_email=contact.email, status="sent")
    session.add(send)
    session.flush()
    attempt = uuid.uuid4().hex
    send.attempt_id = attempt
    send.message_id = f"<sf.{send.id}.{attempt}@shop.example>"
    send.claimed_at = send.sent_at = utcnow() - dt.timedelta(minutes=minutes_ago)
    session.flush()
    return send


def _orig(send: Send) -> bytes:
    assert send.message_id
    assert send.to_email
    return samples.original(send.message_id, send.to_email)


def _suppression(session: Session, ws: Workspace, email: str) -> str | None:
    return session.scalar(
        sa.select(Suppression.reason).where(Suppression.workspace_id == ws.id, Suppression.email == email)
    )


def _events(session: Session, send: Send) -> list[tuple[str, str]]:
    rows = session.execute(
        sa.select(MessageEvent.kind, MessageEvent.status_code)
        .where(MessageEvent.send_id == send.id)
        .order_by(MessageEvent.id)
    )
    return [(k, s) for k, s in rows]


# ---- reading -------------------------------------------------------------------------------------------------------

MID = "<sf.42.0123456789abcdef0123456789abcdef@shop.example>"


@pytest.mark.parametrize(
    ("name", "raw", "status", "recipient"),
    [
        (
            "postfix",
            samples.postfix(samples.original(MID, "gone@example.net"), "gone@example.net"),
            "5.1.1",
            "gone@example.net",
        ),
        (
            "postfix headers only",
            samples.postfix(samples.original(MID, "Gone@Example.net"), "Gone@Example.net", headers_only=True),
            "5.1.1",
            "gone@example.net",
        ),
        (
            "gmail",
            samples.gmail(samples.original(MID, "nobody@example.org"), "nobody@example.org"),
            "5.1.1",
            "nobody@example.org",
        ),
        (
            "exchange",
            samples.exchange(samples.original(MID, "gone@contoso.com"), "gone@contoso.com"),
            "5.1.10",
            "gone@contoso.com",
        ),
    ],
)
def test_real_world_bounces_are_read(name: str, raw: bytes, status: str, recipient: str) -> None:
    report = dsn.parse(raw)
    assert report.kind == "delivery-status"
    assert [(r.send_id, r.attempt_id) for r in report.references] == [(42, "0123456789abcdef0123456789abcdef")]
    [r] = report.recipients
    assert (r.recipient, r.action, r.status, r.permanent) == (recipient, "failed", status, True)
    assert r.diagnostic.startswith("smtp;")
    assert "\n" not in r.diagnostic  # folded Diagnostic-Code lines are joined


def test_a_rewritten_message_id_is_matched_by_our_own_header() -> None:
    orig = samples.original(MID, "x@example.org", rewrite_message_id="<0100018c1f2e3d4c@email.amazonses.com>")
    report = dsn.parse(samples.postfix(orig, "x@example.org"))
    assert [r.send_id for r in report.references] == [42]


def test_feedback_report_is_read() -> None:
    report = dsn.parse(samples.arf(samples.original(MID, "reader@example.com"), "reader@example.com"))
    assert (report.kind, report.feedback_type, report.original_rcpt) == (
        "feedback-report",
        "abuse",
        "reader@example.com",
    )
    assert [r.send_id for r in report.references] == [42]


def _dsn(per_recipient: str, content_type: str = "multipart/report; report-type=delivery-status") -> bytes:
    return (
        f'Content-Type: {content_type}; boundary="b"\r\nMIME-Version: 1.0\r\n\r\n--b\r\n'
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"{per_recipient}\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("raw", "status", "names"),
    [
        (b"", 400, "body"),
        (b"   \r\n", 400, "body"),
        (b"just some words, no headers at all", 400, "body"),
        (b"Subject: hi\r\n\r\nhello", 422, "Content-Type"),
        (
            _dsn("Final-Recipient: rfc822; a@b.c\r\nAction: failed\r\nStatus: 5.1.1", "multipart/report"),
            422,
            "report-type",
        ),
        (_dsn(""), 422, "message/delivery-status"),
        (_dsn("Action: failed\r\nStatus: 5.1.1"), 422, "Final-Recipient"),
        (_dsn("Final-Recipient: rfc822; a@b.c\r\nStatus: 5.1.1"), 422, "Action"),
        (_dsn("Final-Recipient: rfc822; a@b.c\r\nAction: exploded\r\nStatus: 5.1.1"), 422, "Action"),
        (_dsn("Final-Recipient: rfc822; a@b.c\r\nAction: failed\r\nStatus: 550"), 422, "Status"),
        (
            b'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: message/feedback-report\r\n\r\nUser-Agent: x\r\n\r\n--b--\r\n",
            422,
            "Feedback-Type",
        ),
    ],
)
def test_malformed_reports_name_the_problem(raw: bytes, status: int, names: str) -> None:
    with pytest.raises(AppError) as caught:
        dsn.parse(raw)
    assert caught.value.status == status
    assert caught.value.detail.startswith(names), caught.value.detail


# ---- acting --------------------------------------------------------------------------------------------------------


def test_hard_bounce_suppresses_once_and_a_replay_changes_nothing(session: Session, workspace: Workspace) -> None:
    c = create_contact(session, workspace.id, email="Gone@Example.net", email_consent=True)
    send = _sent(session, workspace, c)
    raw = samples.postfix(_orig(send), "gone@example.net")
    [first] = bounces.apply(session, workspace.id, dsn.parse(raw))
    assert (first.kind, first.send_id, first.status, first.suppressed, first.duplicate) == (
        "hard_bounce",
        send.id,
        "5.1.1",
        True,
        False,
    )
    assert _suppression(session, workspace, "gone@example.net") == "hard_bounce"
    assert _events(session, send) == [("bounced", "5.1.1")]
    session.refresh(send)
    assert send.status == "sent"  # the ledger keeps what happened at SMTP time; the bounce is recorded beside it
    assert send.detail.startswith("bounced (hard) 5.1.1: smtp; 550 5.1.1")
    [again] = bounces.apply(session, workspace.id, dsn.parse(raw))
    assert (again.duplicate, again.suppressed) == (True, False)
    assert _events(session, send) == [("bounced", "5.1.1")]
    # Gmail's and Exchange's wording of the same kind of failure do the same.
    for make in (samples.gmail, samples.exchange):
        other = _sent(session, workspace, create_contact(session, workspace.id, email=f"{make.__name__}@example.org"))
        [o] = bounces.apply(session, workspace.id, dsn.parse(make(_orig(other), str(other.to_email))))
        assert (o.kind, o.suppressed) == ("hard_bounce", True)
        assert _suppression(session, workspace, str(other.to_email)) == "hard_bounce"


def test_a_hard_bounce_outranks_an_unsubscribe(session: Session, workspace: Workspace) -> None:
    """An unsubscribed address still gets transactional mail; once it hard-bounces it must get nothing."""
    c = create_contact(session, workspace.id, email="left@example.net")
    repository.suppress(session, workspace.id, "left@example.net", SuppressionReason.unsubscribe)
    send = _sent(session, workspace, c)
    bounces.apply(session, workspace.id, dsn.parse(samples.postfix(_orig(send), "left@example.net")))
    assert _suppression(session, workspace, "left@example.net") == "hard_bounce"


def _soft(send: Send, n: int, status: str = "4.2.2") -> bytes:
    return samples.postfix(
        _orig(send),
        str(send.to_email),
        status=status,
        diagnostic=f"smtp; 452 {status} <{send.to_email}>: Mailbox full",
        queue_id=f"Q{send.id}N{n}",
        headers_only=True,
    )


def test_soft_bounces_suppress_after_the_limit_in_a_row(session: Session, workspace: Workspace) -> None:
    c = create_contact(session, workspace.id, email="full@example.net", email_consent=True)
    sends = [_sent(session, workspace, c, minutes_ago=30 - i) for i in range(3)]
    for i, send in enumerate(sends):
        [o] = bounces.apply(session, workspace.id, dsn.parse(_soft(send, i)))
        assert o.kind == "soft_bounce"
        assert o.suppressed is (i == 2), f"bounce {i + 1} of 3"
        assert _suppression(session, workspace, "full@example.net") == ("soft_bounce" if i == 2 else None)
    # A delay warning is not a bounce and counts for nothing.
    other = create_contact(session, workspace.id, email="slow@example.net", email_consent=True)
    for i in range(4):
        send = _sent(session, workspace, other, minutes_ago=30 - i)
        raw = samples.postfix(
            _orig(send),
            "slow@example.net",
            action="delayed",
            status="4.4.1",
            diagnostic="X-Postfix; connection timed out",
            queue_id=f"D{i}",
        )
        [o] = bounces.apply(session, workspace.id, dsn.parse(raw))
        assert (o.kind, o.suppressed) == ("delayed", False)
        assert _events(session, send) == [("delayed", "4.4.1")]
    assert _suppression(session, workspace, "slow@example.net") is None


def test_an_open_or_a_newer_message_breaks_the_run(session: Session, workspace: Workspace) -> None:
    c = create_contact(session, workspace.id, email="flaky@example.net", email_consent=True)
    sends = [_sent(session, workspace, c, minutes_ago=60 - i) for i in range(5)]
    bounces.apply(session, workspace.id, dsn.parse(_soft(sends[0], 0)))
    session.add(MessageEvent(workspace_id=workspace.id, send_id=sends[1].id, contact_id=c.id, kind="opened"))
    bounces.apply(session, workspace.id, dsn.parse(_soft(sends[1], 1)))  # bounced, yet opened: alive
    bounces.apply(session, workspace.id, dsn.parse(_soft(sends[2], 2)))
    # sends[4] went out after sends[3] and has no bounce (yet): the run of the last three is not complete.
    [o] = bounces.apply(session, workspace.id, dsn.parse(_soft(sends[3], 3)))
    assert o.suppressed is False
    assert bounces.soft_bounce_run(session, sends[3], 3) == 0
    [o] = bounces.apply(session, workspace.id, dsn.parse(_soft(sends[4], 4)))
    assert o.suppressed is True  # sends 2, 3 and 4 bounced in a row
    assert _suppression(session, workspace, "flaky@example.net") == "soft_bounce"


def test_complaint_suppresses_and_withdraws_consent(session: Session, workspace: Workspace) -> None:
    c = create_contact(session, workspace.id, email="angry@example.com", email_consent=True)
    send = _sent(session, workspace, c)
    raw = samples.arf(_orig(send), "angry@example.com")
    [o] = bounces.apply(session, workspace.id, dsn.parse(raw))
    assert (o.kind, o.suppressed, o.email) == ("complaint", True, "angry@example.com")
    assert _suppression(session, workspace, "angry@example.com") == "complaint"
    session.refresh(c)
    assert c.email_consent is False
    assert c.unsubscribed_at is not None
    [again] = bounces.apply(session, workspace.id, dsn.parse(raw))
    assert again.duplicate
    assert _events(session, send) == [("complained", "")]
    calm = _sent(session, workspace, create_contact(session, workspace.id, email="calm@example.com"))
    [n] = bounces.apply(session, workspace.id, dsn.parse(samples.arf(_orig(calm), "calm@example.com", "not-spam")))
    assert (n.kind, n.suppressed) == ("ignored", False)
    assert _suppression(session, workspace, "calm@example.com") is None


def test_unmatched_and_other_workspaces_reports_change_nothing(session: Session, workspace: Workspace) -> None:
    c = create_contact(session, workspace.id, email="gone@example.net")
    send = _sent(session, workspace, c)
    forged = samples.original(f"<sf.{send.id}.{'0' * 32}@shop.example>", "gone@example.net")  # right id, wrong attempt
    other_ws = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    theirs = _sent(session, other_ws, create_contact(session, other_ws.id, email="theirs@example.net"))
    for raw in (
        samples.postfix(forged, "gone@example.net"),
        samples.postfix(_orig(theirs), "theirs@example.net"),
        samples.postfix(b"Subject: typed by hand\r\nMessage-ID: <abc@laptop>\r\n\r\nhi\r\n", "gone@example.net"),
    ):
        [o] = bounces.apply(session, workspace.id, dsn.parse(raw))
        assert (o.kind, o.matched, o.suppressed) == ("ignored", False, False)
        assert "nothing changed" in o.detail
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Suppression)
            .where(Suppression.workspace_id.in_([workspace.id, other_ws.id]))
        )
        == 0
    )
    assert _events(session, send) == []
    assert _events(session, theirs) == []


# ---- the API -------------------------------------------------------------------------------------------------------


def test_api_takes_the_raw_message(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    send = _sent(session, workspace, create_contact(session, workspace.id, email="gone@example.net"))
    raw = samples.exchange(_orig(send), "gone@example.net")
    headers = {**auth, "Content-Type": "message/rfc822"}
    r = client.post("/api/v1/messaging/bounces", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["report_type"] == "delivery-status"
    [o] = r.json()["outcomes"]
    assert (o["kind"], o["send_id"], o["status"], o["suppressed"], o["duplicate"]) == (
        "hard_bounce",
        send.id,
        "5.1.10",
        True,
        False,
    )
    again = client.post("/api/v1/messaging/bounces", content=raw, headers=headers)
    assert again.json()["outcomes"][0]["duplicate"] is True
    assert _events(session, send) == [("bounced", "5.1.10")]


def test_api_refusals_name_the_problem(client: TestClient, auth: dict[str, str]) -> None:
    raw = samples.postfix(samples.original(MID, "a@example.net"), "a@example.net")
    cases = [
        ({"Content-Type": "application/json"}, raw, 415, "Content-Type"),
        ({"Content-Type": "message/rfc822"}, b"", 400, "body"),
        ({"Content-Type": "message/rfc822"}, b"Subject: hi\r\n\r\nthanks!", 422, "Content-Type"),
        ({"Content-Type": "message/rfc822"}, raw.replace(b"Status: 5.1.1", b"Status: soon"), 422, "Status"),
        ({"Content-Type": "message/rfc822"}, b"x" * (bounces.MAX_REPORT_BYTES + 1), 413, "body"),
    ]
    for headers, body, status, field in cases:
        r = client.post("/api/v1/messaging/bounces", content=body, headers={**auth, **headers})
        assert r.status_code == status, (status, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"].startswith(field), r.json()["detail"]
    unmatched = client.post(
        "/api/v1/messaging/bounces", content=raw, headers={**auth, "Content-Type": "message/rfc822"}
    )
    assert unmatched.status_code == 200
    assert unmatched.json()["outcomes"][0]["kind"] == "ignored"


def test_soft_bounce_limit_is_a_setting(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/messages/settings", headers=auth).json()["soft_bounce_limit"] == 3
    r = client.patch("/api/v1/messages/settings", json={"soft_bounce_limit": 1}, headers=auth)
    assert r.json()["soft_bounce_limit"] == 1
    bad = client.patch("/api/v1/messages/settings", json={"soft_bounce_limit": 0}, headers=auth)
    assert bad.status_code == 422
    assert "soft_bounce_limit" in bad.json()["detail"]
