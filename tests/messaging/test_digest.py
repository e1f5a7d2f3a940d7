"""The weekly digest: its content is the advice's, it reaches the owners through a real SMTP server with a text and
an HTML part, and the worker sends it once per week, across restarts."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.cli import app as cli_app
from storefunnel.config import get_settings
from storefunnel.db import get_sessionmaker, utcnow
from storefunnel.errors import Invalid
from storefunnel.insight.advice import advice_report
from storefunnel.insight.digest import (
    DigestSettings,
    build_digest,
    digest_settings,
    due_week,
    render_digest,
    send_due_digests,
    set_schedule,
    week_period,
)
from storefunnel.insight.facts import Period
from storefunnel.insight.report import change
from storefunnel.models import Role, Workspace
from storefunnel.workspaces.service import create_user
from tests.insight.simulated import ANCHOR, simulated_store
from tests.insight.test_report import analyze
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import worker

EVIL = "<script>alert(1)</script>"


def parts(raw: Any) -> dict[str, str]:
    msg = raw.message
    assert msg.get_content_type() == "multipart/alternative"
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}


def test_week_period_is_the_last_seven_whole_days() -> None:
    p = week_period(dt.date(2026, 11, 23))
    assert (p.first, p.last) == (dt.date(2026, 11, 16), dt.date(2026, 11, 22))


def test_digest_carries_the_advice(session: Session, database_url: str, engine: Engine) -> None:
    ws, _ = simulated_store(database_url)
    analyze(engine)
    period = week_period(ANCHOR)
    digest = build_digest(session, ws, period)
    advice = advice_report(session, ws, period)
    assert digest.advice == advice
    assert advice["previous"] == {"from": "2026-10-18", "to": "2026-10-24"}  # the 7 days before
    assert advice["summary"] in digest.text
    assert "week of 25 Oct to 31 Oct 2026" in digest.subject
    for r in advice["recommendations"][:3]:
        assert r["title"] in digest.text
        assert r["title"] in digest.html
    for s in advice["stages"]:
        assert s["label"] in digest.text
        assert change(s["change"]) in digest.text
    base = get_settings().public_url.rstrip("/")
    assert f"{base}/together/advice?from=2026-10-25&to=2026-10-31" in digest.text
    assert f'href="{base}/report?from=2026-10-25&amp;to=2026-10-31"' in digest.html
    assert 'width="600"' in digest.html
    assert "<style" not in digest.html  # inline styles only: mail clients drop style blocks


def test_digest_escapes_the_data() -> None:
    advice = {
        "focus": "sales",
        "reason": "conversion_down",
        "summary": "Fewer buy " + EVIL,
        "stages": [
            {"number": 1, "label": EVIL, "metric": "leads", "current": 5.0, "previous": 9.0, "change": -0.44,
             "status": "worse"},
        ],
        "recommendations": [
            {"rank": i, "side": "sales", "kind": "problem", "title": f"Do {i} {EVIL}", "text": EVIL, "stage": "x"}
            for i in range(1, 6)
        ],
    }  # fmt: skip
    d = render_digest("Shop " + EVIL, "EUR", advice, Period(dt.date(2026, 11, 16), dt.date(2026, 11, 22)))
    assert "<script" not in d.html
    assert "&lt;script&gt;" in d.html
    assert "Do 3" in d.html
    assert "Do 4" not in d.html  # the top 3 only
    assert "Focus on sales" in d.html
    assert "5 / 9 / −44% / Worse" in d.text


@pytest.fixture
def store(committed_session: Session) -> Iterator[Workspace]:
    """A committed store with two owners and a marketer; its digest is switched off again afterwards."""
    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, f"digest-{uuid.uuid4().hex[:8]} {EVIL}")
    for role, name in ((Role.owner, "ann"), (Role.owner, "bob"), (Role.marketer, "max")):
        create_user(committed_session, ws.id, f"{name}-{uuid.uuid4().hex[:6]}@example.com", "password-123", role)
    committed_session.commit()
    yield ws
    committed_session.rollback()
    set_schedule(committed_session, ws.id, False)
    committed_session.commit()


def owners(session: Session, ws: Workspace) -> list[str]:
    from storefunnel.models import User

    stmt = sa.select(User.email).where(User.workspace_id == ws.id, User.role == "owner").order_by(User.id)
    return list(session.scalars(stmt))


@pytest.fixture
def smtp_env(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    monkeypatch.setenv("STOREFUNNEL_SMTP_URL", smtp_server.url)
    get_settings.cache_clear()
    yield smtp_server
    monkeypatch.undo()
    get_settings.cache_clear()


def test_cli_sends_both_parts_to_the_owners_only(
    store: Workspace, committed_session: Session, smtp_env: SmtpServer, tmp_path: Any
) -> None:
    runner = CliRunner()
    out = tmp_path / "digest.html"
    result = runner.invoke(cli_app, ["advise", "digest", "-w", store.name, "--to", "2026-10-31", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert smtp_env.sink.received == []  # no --send: nothing mailed
    assert out.read_text().startswith("<!doctype html>")

    result = runner.invoke(cli_app, ["advise", "digest", "-w", store.name, "--to", "2026-10-31", "--send"])
    assert result.exit_code == 0, result.output
    to = owners(committed_session, store)
    assert sorted(r.rcpt_tos[0] for r in smtp_env.sink.received) == sorted(to)
    for r in smtp_env.sink.received:
        msg = r.message
        assert msg["To"] == r.rcpt_tos[0]
        assert "week of 25 Oct to 31 Oct 2026" in msg["Subject"]
        assert msg["Auto-Submitted"] == "auto-generated"
        body = parts(r)
        assert set(body) == {"text/plain", "text/html"}
        assert "Key numbers" in body["text/plain"]
        assert "/together/advice?from=2026-10-25&to=2026-10-31" in body["text/plain"]
        assert "<table" in body["text/html"]
        assert "&lt;script&gt;" in body["text/html"]  # the store's name, escaped
        assert "<script" not in body["text/html"]
        assert f"{store.name} (storefunnel)" in msg["From"]


def test_cli_send_errors(committed_session: Session, smtp_env: SmtpServer) -> None:
    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, f"no-owner-{uuid.uuid4().hex[:8]}")
    committed_session.commit()
    runner = CliRunner()
    result = runner.invoke(cli_app, ["advise", "digest", "-w", ws.name, "--send"])
    assert result.exit_code == 2
    assert "no owner in workspace" in result.output
    create_user(committed_session, ws.id, f"o-{uuid.uuid4().hex[:6]}@example.com", "password-123", Role.owner)
    committed_session.commit()
    smtp_env.stop()
    result = runner.invoke(cli_app, ["advise", "digest", "-w", ws.name, "--send"])
    assert result.exit_code == 2
    assert "not sent to" in result.output


def test_schedule_command(store: Workspace, committed_session: Session) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli_app, ["advise", "digest-schedule", "-w", store.name, "--on", "--weekday", "wed", "--hour", "7"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "on"
    committed_session.expire_all()
    cfg = digest_settings(committed_session.get(Workspace, store.id).settings)  # type: ignore[union-attr]
    assert (cfg.enabled, cfg.weekday, cfg.hour) == (True, 2, 7)
    bad = runner.invoke(cli_app, ["advise", "digest-schedule", "-w", store.name, "--weekday", "someday"])
    assert bad.exit_code == 2
    assert "--weekday" in bad.output


def test_due_week() -> None:
    cfg = DigestSettings(enabled=True, weekday=0, hour=8)
    monday = dt.datetime(2026, 11, 23, 7, 59, tzinfo=dt.UTC)  # ISO week 48
    assert due_week(cfg, monday) is None
    assert due_week(cfg, monday + dt.timedelta(minutes=1)) == "2026-W48"
    assert due_week(cfg, monday + dt.timedelta(days=2)) == "2026-W48"  # late, still this week's
    assert due_week(cfg.model_copy(update={"last_week": "2026-W48"}), monday + dt.timedelta(days=2)) is None
    assert due_week(cfg.model_copy(update={"enabled": False}), monday + dt.timedelta(hours=2)) is None
    friday = DigestSettings(enabled=True, weekday=4, hour=18)
    assert due_week(friday, monday + dt.timedelta(days=4, hours=10)) is None
    assert due_week(friday, monday + dt.timedelta(days=4, hours=11)) == "2026-W48"
    with pytest.raises(Invalid, match=r"digest\.hour"):
        digest_settings({"digest": {"hour": 24}})


def test_worker_sends_once_per_week(store: Workspace, committed_session: Session, smtp_server: SmtpServer) -> None:
    now = utcnow()
    set_schedule(committed_session, store.id, True, weekday=now.weekday(), hour=0)
    committed_session.commit()
    to = owners(committed_session, store)
    sink = smtp_server.sink

    def mine() -> list[Any]:
        return [r for r in sink.received if r.rcpt_tos[0] in to]

    w = worker(smtp_server.config, digest_s=1e-6)
    w.step()
    w.step()
    assert sorted(r.rcpt_tos[0] for r in mine()) == sorted(to)
    restarted = worker(smtp_server.config, digest_s=1e-6)
    restarted.step()
    assert len(mine()) == 2
    committed_session.expire_all()
    cfg = digest_settings(committed_session.get(Workspace, store.id).settings)  # type: ignore[union-attr]
    assert cfg.last_week == f"{now.isocalendar()[0]}-W{now.isocalendar()[1]:02d}"
    assert cfg.last_sent_at is not None

    maker = get_sessionmaker()
    next_week = now + dt.timedelta(days=7)
    assert send_due_digests(maker, smtp_server.config, next_week) == 2
    assert send_due_digests(maker, smtp_server.config, next_week) == 0
    assert len(mine()) == 4

    # the server is down: nothing can have been delivered, so the week is given back and sent on a later pass
    smtp_server.stop()
    week_after = now + dt.timedelta(days=14)
    assert send_due_digests(maker, smtp_server.config, week_after) == 0
    committed_session.expire_all()
    cfg = digest_settings(committed_session.get(Workspace, store.id).settings)  # type: ignore[union-attr]
    iso = next_week.isocalendar()
    assert cfg.last_week == f"{iso[0]}-W{iso[1]:02d}"
    smtp_server.start()
    assert send_due_digests(maker, smtp_server.config, week_after) == 2
    assert len(mine()) == 6
