"""``storefunnel advise digest`` and ``advise digest-schedule``: the weekly digest by hand, and its schedule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from storefunnel.cli_support import WorkspaceOpt, fail, out, run_in_workspace
from storefunnel.config import get_settings
from storefunnel.errors import AppError, Invalid
from storefunnel.insight.digest import (
    Digest,
    build_digest,
    deliver,
    owner_emails,
    sender_address,
    set_schedule,
    week_period,
)
from storefunnel.messaging.smtp import SmtpConfig

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _week(last: str | None) -> dt.date:
    """The day after the week's last day (``week_period`` ends the day before it)."""
    if last is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(last) + dt.timedelta(days=1)
    except ValueError:
        raise fail(f"--to: not an ISO date (YYYY-MM-DD): {last!r}") from None


def digest_command(
    workspace: WorkspaceOpt = "default",
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the HTML part to this file.")] = None,
    send: Annotated[bool, typer.Option("--send", help="Email it to the workspace's owners now.")] = False,
    last: Annotated[
        str | None, typer.Option("--to", help="Last day of the week, YYYY-MM-DD (UTC); default yesterday.")
    ] = None,
) -> None:
    """The weekly digest: the last 7 whole days against the 7 before. Prints the text part unless --out or --send."""
    period = week_period(_week(last))

    def build(session: Session, workspace_id: int) -> tuple[Digest, list[str], str]:
        digest = build_digest(session, workspace_id, period)
        return digest, owner_emails(session, workspace_id), sender_address(session, workspace_id, digest.store)

    digest, recipients, sender = run_in_workspace(workspace, build)
    if out_path is not None:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(digest.html, encoding="utf-8")
        except OSError as exc:
            raise fail(f"--out: cannot write {out_path}: {exc.strerror or exc}") from None
        typer.echo(out_path)
    if not send:
        if out_path is None:
            typer.echo(digest.text)
        return
    if not recipients:
        raise fail(f"no owner in workspace {workspace!r}: add one with 'storefunnel user add EMAIL --role owner'")
    try:
        smtp = SmtpConfig.from_url(get_settings().smtp_url)
    except AppError as exc:
        raise fail(exc.detail) from None
    outcomes = deliver(digest, sender, recipients, smtp)
    failed = {to: o for to, o in outcomes.items() if o.result != "sent"}
    for to in recipients:
        if to not in failed:
            out.print(f"sent to {to}", highlight=False)
    if failed:
        to, o = next(iter(failed.items()))
        raise fail(f"not sent to {', '.join(failed)}: {o.result} {o.code or ''} {o.detail}".strip())


def _weekday(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v.isdigit() and int(v) < 7:
        return int(v)
    matches = [i for i, name in enumerate(WEEKDAYS) if len(v) >= 3 and name.startswith(v)]
    if len(matches) != 1:
        raise Invalid(f"--weekday: expected monday..sunday or 0..6 (0 is Monday), got {value!r}")
    return matches[0]


def digest_schedule_command(
    workspace: WorkspaceOpt = "default",
    on: Annotated[bool | None, typer.Option("--on/--off", help="Send the digest every week, or stop.")] = None,
    weekday: Annotated[str | None, typer.Option("--weekday", help="monday..sunday (or 0..6); default monday.")] = None,
    hour: Annotated[
        int | None, typer.Option("--hour", min=0, max=23, help="Hour in the workspace's timezone; default 8.")
    ] = None,
) -> None:
    """Switch the weekly digest to the owners on or off, or move it; prints the schedule."""

    def apply(session: Session, workspace_id: int) -> tuple[bool, int, int, str | None]:
        cfg = set_schedule(session, workspace_id, on, _weekday(weekday), hour)
        return cfg.enabled, cfg.weekday, cfg.hour, cfg.last_week

    enabled, day, at, last_week = run_in_workspace(workspace, apply)
    state = "on" if enabled else "off"
    sent = f"; last sent for {last_week}" if last_week else ""
    out.print(f"weekly digest {state}: {WEEKDAYS[day]} at {at:02d}:00 (workspace timezone){sent}", highlight=False)
    typer.echo(state)
