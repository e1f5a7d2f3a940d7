"""`storefunnel flow …`, `storefunnel campaign …`, `storefunnel message …`: email from the shell."""

from __future__ import annotations

import datetime as dt
import mailbox
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from storefunnel.cli_support import JsonOpt, WorkspaceOpt, out
from storefunnel.cli_support import dump_json as _dump
from storefunnel.cli_support import fail as _fail
from storefunnel.cli_support import run_in_workspace as _run
from storefunnel.errors import AppError, NotFound, describe_validation_errors
from storefunnel.messaging import bounces, dsn, flows, schemas, service
from storefunnel.models import Campaign, EmailTemplate, Flow, Segment
from storefunnel.tenancy import scoped

flow_app = typer.Typer(
    help="Flows: welcome, abandoned_cart, thank_you, keep_in_touch, win_back, ...", no_args_is_help=True
)
campaign_app = typer.Typer(help="Campaigns: one message to a segment, now or scheduled.", no_args_is_help=True)
message_app = typer.Typer(help="Messages: test sends and the suppression list.", no_args_is_help=True)
messaging_app = typer.Typer(help="Email housekeeping: bounces and complaints.", no_args_is_help=True)


def _by_name(session: Session, model: Any, workspace_id: int, name: str, what: str) -> Any:
    row = session.scalar(scoped(model, workspace_id).where(model.name == name))
    if row is None:
        raise NotFound(f"{what} {name!r} not found")
    return row


# ---- flows -------------------------------------------------------------------------------------------------------


@flow_app.command("list")
def flow_list(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """The workspace's flows and the ready-made ones not installed yet."""

    def _list(s: Session, ws: int) -> list[dict[str, Any]]:
        installed = {f.name: flows.describe(s, f) for f in s.scalars(scoped(Flow, ws).order_by(Flow.id))}
        rows = [
            {
                "name": f.name,
                "enabled": f.enabled,
                "trigger": f"{f.trigger_kind}:{f.trigger_value}".rstrip(":"),
                "steps": len(f.steps),
                "active": f.active_enrollments,
            }
            for f in installed.values()
        ]
        rows += [
            {
                "name": d.name,
                "enabled": False,
                "trigger": f"{d.trigger_kind}:{d.trigger_value}".rstrip(":"),
                "steps": len(d.steps),
                "active": 0,
            }
            for d in flows.READY_MADE.values()
            if d.name not in installed
        ]
        return rows

    rows = _run(workspace, _list)
    if as_json:
        _dump(rows)
        return
    for r in rows:
        state = "on " if r["enabled"] else "off"
        out.print(f"{state}  {r['name']:<20} {r['trigger']:<40} {r['steps']} steps, {r['active']} in flow")


@flow_app.command("enable")
def flow_enable(name: Annotated[str, typer.Argument(help="Flow name.")], workspace: WorkspaceOpt = "default") -> None:
    """Switch a flow on (installing a ready-made one with its templates the first time); prints its id."""
    flow = _run(workspace, lambda s, ws: flows.install(s, ws, name, enabled=True))
    out.print(f"flow {name} is on: it reacts to what happens from now on")
    print(flow.id)


@flow_app.command("disable")
def flow_disable(name: Annotated[str, typer.Argument(help="Flow name.")], workspace: WorkspaceOpt = "default") -> None:
    """Switch a flow off: contacts in it wait where they are until it is switched on again."""
    flow = _run(workspace, lambda s, ws: flows.set_enabled(s, flows.get_flow_by_name(s, ws, name), False))
    out.print(f"flow {name} is off")
    print(flow.id)


# ---- campaigns ---------------------------------------------------------------------------------------------------


@campaign_app.command("create")
def campaign_create(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    template: Annotated[str, typer.Option(help="Template name.")],
    segment: Annotated[str | None, typer.Option(help="Segment name; omitted: every contact with consent.")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Create a draft campaign; prints its id."""

    def _create(s: Session, ws: int) -> Campaign:
        tpl = _by_name(s, EmailTemplate, ws, template, "template")
        seg = _by_name(s, Segment, ws, segment, "segment") if segment else None
        data = schemas.CampaignCreate(name=name, template_id=tpl.id, segment_id=seg.id if seg else None)
        return service.create_campaign(s, ws, data)

    print(_run(workspace, _create).id)


@campaign_app.command("send")
def campaign_send(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    at: Annotated[
        str | None, typer.Option(help="When, e.g. '2026-12-01 09:00' (workspace timezone unless an offset is given).")
    ] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Schedule a campaign now or at a time; the worker sends it."""
    when: dt.datetime | None = None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"--at: not a date and time: {at!r}") from None

    def _send(s: Session, ws: int) -> Campaign:
        return service.schedule_campaign(s, ws, service.get_campaign_by_name(s, ws, name).id, when)

    row = _run(workspace, _send)
    assert row.scheduled_at is not None
    out.print(f"campaign {name} scheduled for {row.scheduled_at.isoformat()} (UTC)")
    print(row.id)


@campaign_app.command("list")
def campaign_list(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """Campaigns with their results."""

    def _list(s: Session, ws: int) -> list[dict[str, Any]]:
        results = service.all_campaign_results(s, ws)
        rows = []
        for c in s.scalars(scoped(Campaign, ws).order_by(Campaign.id)):
            r = results.get(c.id) or service.result_model(s, ws, None)
            rows.append(
                {"id": c.id, "name": c.name, "status": c.status, "scheduled_at": c.scheduled_at, **r.model_dump()}
            )
        return rows

    rows = _run(workspace, _list)
    if as_json:
        _dump(rows)
        return
    for r in rows:
        out.print(
            f"{r['id']:>4}  {r['name']:<24} {r['status']:<9} sent {r['sent']:>7}  opened {r['opened']:>6}  "
            f"clicked {r['clicked']:>6}  orders {r['orders']:>5}"
        )


# ---- messages ----------------------------------------------------------------------------------------------------


@message_app.command("test-send")
def message_test_send(
    template: Annotated[str, typer.Argument(help="Template name.")],
    to: Annotated[str, typer.Option(help="Address to send the test to.")],
    contact: Annotated[int | None, typer.Option(help="Contact id whose data fills the template.")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Send a template to one address now, through STOREFUNNEL_SMTP_URL; prints the Message-ID."""

    def _send(s: Session, ws: int) -> schemas.TestSendResult:
        data = schemas.TestSendRequest.model_validate({"to": to, "contact_id": contact})
        return service.test_send(s, ws, _by_name(s, EmailTemplate, ws, template, "template").id, str(data.to), contact)

    try:
        result = _run(workspace, _send)
    except ValidationError as exc:
        raise _fail(describe_validation_errors(list(exc.errors()))[0]) from None
    if result.result != "sent":
        raise _fail(f"not sent ({result.result}): {result.detail}")
    out.print(f"sent to {result.to}")
    print(result.message_id)


@message_app.command("suppress")
def message_suppress(
    email: Annotated[str, typer.Argument(help="Address.")],
    reason: Annotated[str, typer.Option(help="hard_bounce, complaint, unsubscribe or manual.")] = "manual",
    workspace: WorkspaceOpt = "default",
) -> None:
    """Put an address on the suppression list."""
    try:
        data = schemas.SuppressionCreate.model_validate({"email": email, "reason": reason})
    except ValidationError as exc:
        raise _fail(describe_validation_errors(list(exc.errors()))[0]) from None
    row = _run(workspace, lambda s, ws: service.add_suppression(s, ws, data))
    print(row.email)


# ---- bounces and complaints --------------------------------------------------------------------------------------


def _messages(path: Path) -> tuple[bool, list[tuple[str, bytes]]]:
    """Whether ``path`` is an mbox (it starts with a ``From `` line), and (label, raw bytes) of each message."""
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    with path.open("rb") as fh:
        head = fh.read(5)
    if head != b"From ":
        data = path.read_bytes()
        if len(data) > bounces.MAX_REPORT_BYTES:
            raise _fail(f"{path}: {len(data):,} bytes; a single report may be at most {bounces.MAX_REPORT_BYTES:,}")
        return False, [(str(path), data)]
    box = mailbox.mbox(str(path), create=False)
    try:
        return True, [(f"{path}#{i + 1}", box.get_bytes(key)) for i, key in enumerate(box.keys())]
    finally:
        box.close()


def _apply_reports(session: Session, workspace_id: int, reports: list[tuple[str, dsn.Report]]) -> list[dict[str, Any]]:
    return [
        {"source": label, **o.as_dict()}
        for label, report in reports
        for o in bounces.apply(session, workspace_id, report)
    ]


@messaging_app.command("bounces")
def messaging_bounces(
    files: Annotated[list[Path], typer.Argument(help=".eml files or mbox mailboxes of bounces and complaints.")],
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Read bounces (RFC 3464) and complaints (RFC 5965): suppress hard bounces and complainers, count soft bounces.

    Messages of an mbox that are not reports (auto-replies, people writing back) are listed and passed over; an
    .eml file that is not a report is an error (exit code 2). Reading the same report again changes nothing.
    """
    rows: list[dict[str, Any]] = []
    not_reports: list[tuple[str, str]] = []
    failed = False
    for path in files:
        is_mbox, messages = _messages(path)
        reports: list[tuple[str, dsn.Report]] = []
        for label, raw in messages:
            try:
                reports.append((label, dsn.parse(raw)))
            except AppError as exc:
                not_reports.append((label, exc.detail))
                failed = failed or not is_mbox
        if reports:
            rows += _run(workspace, partial(_apply_reports, reports=reports))
    if as_json:
        _dump({"outcomes": rows, "not_reports": [{"source": s, "detail": d} for s, d in not_reports]})
    else:
        for r in rows:
            state = "already seen, nothing changed" if r["duplicate"] else ("suppressed" if r["suppressed"] else "")
            send = f"send {r['send_id']}" if r["send_id"] else "no message of ours"
            out.print(
                f"{r['source']}: {r['kind']:<11} {r['status'] or '-':<7} {r['email'] or '-'} ({send}) {state}".rstrip(),
                highlight=False,
                soft_wrap=True,
            )
        for label, detail in not_reports:
            out.print(f"{label}: not a report: {detail}", highlight=False, soft_wrap=True)
        counts = bounces.summarise([bounces.Outcome(**{k: v for k, v in r.items() if k != "source"}) for r in rows])
        out.print(
            f"{len(rows)} outcome(s): {counts['hard_bounce']} hard, {counts['soft_bounce']} soft, "
            f"{counts['delayed']} delayed, {counts['complaint']} complaint(s), {counts['ignored']} ignored; "
            f"{counts['suppressed']} suppressed, {counts['duplicate']} already seen; {len(not_reports)} not a report",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(code=2)
