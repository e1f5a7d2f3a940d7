"""The weekly digest: the advice for the last 7 whole days against the 7 before, emailed to the store's owners.

An email-safe HTML part (tables, inline styles, 600 px) and a plain-text part: the focus, the summary, the top 3
recommendations, the five stages' numbers and links to the dashboard's advice page (Together, Marketing or
sales?) and the full report. It is a
transactional message to the people who run the store, not marketing to contacts: no consent or unsubscribe
rules apply, and it goes to every user with the ``owner`` role.

The schedule lives in ``workspaces.settings["digest"]``: ``{"enabled": true, "weekday": 0, "hour": 8}`` (Monday,
08:00 in the workspace's display timezone). The worker sends at most one digest per ISO week: the week is
recorded in the same settings (``last_week``) under a lock on the workspace row *before* the message leaves, so
a restart, or a second worker, never sends it twice. If the server surely did not take it (refused before the
body was sent), the claim is given back and a later pass tries again.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from storefunnel.config import get_settings
from storefunnel.db import utcnow
from storefunnel.errors import Invalid, NotFound
from storefunnel.insight.advice import advice_report
from storefunnel.insight.facts import Period
from storefunnel.insight.report import FOCUS_HINTS, FOCUS_WORDS, STATUS_COLORS, TEMPLATES, change, label, metric_value
from storefunnel.messaging.sender import mail_domain
from storefunnel.messaging.settings import messaging_settings
from storefunnel.messaging.smtp import Outcome, SmtpConfig, SmtpConnection
from storefunnel.models import Role, User, Workspace
from storefunnel.web.advice_pages import ADVICE
from storefunnel.workspaces.service import locked_settings, set_setting

log = logging.getLogger(__name__)
SETTINGS_KEY = "digest"
WEEK_DAYS = 7
TOP_RECOMMENDATIONS = 3
FOCUS_COLORS = {"marketing": "#1d4ed8", "sales": "#15803d", "unclear": "#334155"}


class DigestSettings(BaseModel):
    """When the weekly digest goes out, and which week it last went out for."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    weekday: int = Field(default=0, ge=0, le=6, description="0 is Monday, 6 is Sunday.")
    hour: int = Field(default=8, ge=0, le=23, description="Hour of the day in the workspace's display timezone.")
    last_week: str | None = Field(default=None, description="ISO week (e.g. 2026-W48) of the last digest sent.")
    last_sent_at: str | None = None


def digest_settings(settings: dict[str, Any] | None) -> DigestSettings:
    try:
        return DigestSettings.model_validate((settings or {}).get(SETTINGS_KEY) or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or SETTINGS_KEY
        raise Invalid(f"digest.{field}: {err['msg']}") from None


def set_schedule(
    session: Session, workspace_id: int, enabled: bool | None, weekday: int | None = None, hour: int | None = None
) -> DigestSettings:
    """Switch the weekly digest on or off, or move it; what was sent before is kept."""
    changes = {k: v for k, v in (("enabled", enabled), ("weekday", weekday), ("hour", hour)) if v is not None}
    current = digest_settings(locked_settings(session, workspace_id)).model_dump()
    new = digest_settings({SETTINGS_KEY: {**current, **changes}})
    _store(session, workspace_id, new)
    return new


def week_period(today: dt.date) -> Period:
    """The last 7 whole UTC days before ``today``; the advice compares them with the 7 days before."""
    last = today - dt.timedelta(days=1)
    return Period(last - dt.timedelta(days=WEEK_DAYS - 1), last)


# ---- the message ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    store: str
    subject: str
    html: str
    text: str
    advice: dict[str, Any]


def _links(period: Period) -> tuple[str, str]:
    base = get_settings().public_url.rstrip("/")
    query = urlencode({"from": period.first.isoformat(), "to": period.last.isoformat()})
    return f"{base}{ADVICE}?{query}", f"{base}/report?{query}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_digest(store: str, currency: str, advice: dict[str, Any], period: Period) -> Digest:
    """The digest of an advice report (``advice_report``'s dict): subject, HTML and plain text."""
    focus = advice["focus"]
    title = FOCUS_WORDS.get(focus, label(focus))
    days = f"{period.first:%d %b} to {period.last:%d %b %Y}"
    subject = _one_line(f"{store}: {title.lower()} (week of {days})")
    advice_url, report_url = _links(period)
    recommendations = advice["recommendations"][:TOP_RECOMMENDATIONS]
    stages = [
        {
            **s,
            "current_text": metric_value(s["metric"], s["current"], currency),
            "previous_text": metric_value(s["metric"], s["previous"], currency),
            "change_text": change(s["change"]),
            "status_text": label(s["status"]),
            "color": STATUS_COLORS.get(s["status"], "#334155"),
        }
        for s in advice["stages"]
    ]
    html = TEMPLATES.get_template("digest.html").render(
        subject=subject,
        store=store,
        advice=advice,
        period={"from": period.first.isoformat(), "to": period.last.isoformat()},
        focus_title=title,
        focus_hint=FOCUS_HINTS.get(focus, ""),
        focus_color=FOCUS_COLORS.get(focus, "#334155"),
        recommendations=recommendations,
        stages=stages,
        advice_url=advice_url,
        report_url=report_url,
    )
    lines = [
        f"{store}: weekly advice, {period.first} to {period.last} against the 7 days before",
        "",
        title.upper(),
        advice["summary"],
        FOCUS_HINTS.get(focus, ""),
        "",
    ]
    if recommendations:
        lines.append("What to do:")
        for r in recommendations:
            lines += [f"{r['rank']}. {r['title']} ({r['side']}, {r['kind']})", f"   {r['text']}"]
        lines.append("")
    lines.append("Key numbers (this week / before / change / verdict):")
    for s in stages:
        lines.append(
            f"{s['number']}. {s['label']}: {s['current_text']} / {s['previous_text']} / {s['change_text']} / "
            f"{s['status_text']}"
        )
    lines += ["", f"See the advice: {advice_url}", f"The full report: {report_url}", ""]
    return Digest(store, subject, html, "\n".join(lines), advice)


def build_digest(session: Session, workspace_id: int, period: Period) -> Digest:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace: no workspace {workspace_id}")
    return render_digest(ws.name, ws.currency, advice_report(session, workspace_id, period), period)


def owner_emails(session: Session, workspace_id: int) -> list[str]:
    """The addresses of the workspace's owners, oldest account first."""
    stmt = (
        sa.select(User.email).where(User.workspace_id == workspace_id, User.role == Role.owner.value).order_by(User.id)
    )
    return list(session.scalars(stmt))


def sender_address(session: Session, workspace_id: int, store: str) -> str:
    """The workspace's From address (messaging settings), else the store's name at noreply@ this host."""
    ws = session.get(Workspace, workspace_id)
    configured = messaging_settings(ws.settings if ws else None).from_address
    return configured or formataddr((f"{_one_line(store)} (storefunnel)", f"noreply@{mail_domain()}"))


def compose(digest: Digest, sender: str, recipient: str) -> bytes:
    """One multipart/alternative message (text, then HTML) to one owner."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = digest.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid("digest", domain=mail_domain())
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a report
    msg.set_content(digest.text)
    msg.add_alternative(digest.html, subtype="html")
    return msg.as_bytes()


def deliver(digest: Digest, sender: str, recipients: list[str], smtp: SmtpConfig) -> dict[str, Outcome]:
    """Send to each recipient over one SMTP connection; the outcome per address (never raises for SMTP trouble)."""
    envelope = parseaddr(sender)[1] or f"noreply@{mail_domain()}"
    conn = SmtpConnection(smtp)
    try:
        return {to: conn.deliver(envelope, to, compose(digest, sender, to)) for to in recipients}
    finally:
        conn.close()


# ---- the weekly schedule -------------------------------------------------------------------------------------------


def local_time(now: dt.datetime, timezone: str) -> dt.datetime:
    try:
        zone: dt.tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return now.astimezone(zone)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def due_week(cfg: DigestSettings, now_local: dt.datetime) -> str | None:
    """The ISO week whose digest is due at ``now_local`` and not yet sent, or None.

    Due from the configured weekday and hour until the week ends: a worker that was down at 08:00 on Monday
    still sends that week's digest when it comes back on Wednesday, and never a second one that week.
    """
    if not cfg.enabled:
        return None
    monday = now_local.date() - dt.timedelta(days=now_local.weekday())
    slot = dt.datetime.combine(monday + dt.timedelta(days=cfg.weekday), dt.time(cfg.hour), tzinfo=now_local.tzinfo)
    if now_local < slot:
        return None
    week = iso_week(now_local.date())
    return None if cfg.last_week == week else week


def _store(session: Session, workspace_id: int, cfg: DigestSettings) -> None:
    set_setting(session, workspace_id, SETTINGS_KEY, cfg.model_dump())


def claim_week(maker: sessionmaker[Session], workspace_id: int, week: str) -> tuple[bool, str | None]:
    """Record ``week`` as sent, unless it already is; (won, the week recorded before)."""
    with maker() as session, session.begin():
        cfg = digest_settings(locked_settings(session, workspace_id))
        if not cfg.enabled or cfg.last_week == week:
            return False, cfg.last_week
        _store(session, workspace_id, cfg.model_copy(update={"last_week": week}))
        return True, cfg.last_week


def settle_week(
    maker: sessionmaker[Session], workspace_id: int, week: str, previous: str | None, sent_at: dt.datetime | None
) -> None:
    """After delivery: note when it went out, or (``sent_at`` None) give the week back so a later pass retries."""
    with maker() as session, session.begin():
        cfg = digest_settings(locked_settings(session, workspace_id))
        if cfg.last_week != week:
            return
        if sent_at is None:
            update: dict[str, Any] = {"last_week": previous}
        else:
            update = {"last_sent_at": sent_at.isoformat(timespec="seconds")}
        _store(session, workspace_id, cfg.model_copy(update=update))


def send_weekly(maker: sessionmaker[Session], smtp: SmtpConfig, workspace_id: int, week: str, now: dt.datetime) -> int:
    """Build, claim and send one workspace's digest for ``week``; the number of owners it reached."""
    with maker() as session:
        recipients = owner_emails(session, workspace_id)
        if not recipients:
            return 0
        digest = build_digest(session, workspace_id, week_period(now.date()))
        sender = sender_address(session, workspace_id, digest.store)
    won, previous = claim_week(maker, workspace_id, week)
    if not won:
        return 0
    outcomes = deliver(digest, sender, recipients, smtp)
    if all(o.result == "retry" for o in outcomes.values()):
        # The server surely has none of them: give the week back for a later pass.
        settle_week(maker, workspace_id, week, previous, None)
        detail = next(iter(outcomes.values())).detail
        log.warning("digest for workspace %s not sent, will retry: %s", workspace_id, detail)
        return 0
    settle_week(maker, workspace_id, week, previous, now)
    for to, outcome in outcomes.items():
        if outcome.result != "sent":
            log.warning("digest for workspace %s to %s: %s %s", workspace_id, to, outcome.result, outcome.detail)
    return sum(1 for o in outcomes.values() if o.result == "sent")


def send_due_digests(maker: sessionmaker[Session], smtp: SmtpConfig, now: dt.datetime | None = None) -> int:
    """The worker's task: every workspace whose digest is due now gets it; the number of messages sent."""
    now = now or utcnow()
    with maker() as session:
        rows = session.execute(sa.select(Workspace.id, Workspace.settings, Workspace.display_timezone)).all()
    sent = 0
    for workspace_id, settings, timezone in rows:
        try:
            week = due_week(digest_settings(settings), local_time(now, timezone))
        except Invalid as exc:
            log.warning("digest settings of workspace %s: %s", workspace_id, exc.detail)
            continue
        if week is None:
            continue
        try:
            sent += send_weekly(maker, smtp, int(workspace_id), week, now)
        except Exception:
            # One store's failure (its data, its settings) must not hold back the other stores' digests.
            log.exception("digest for workspace %s failed; a later pass tries again", workspace_id)
    return sent
