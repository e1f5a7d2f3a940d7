"""`storefunnel segment ...`: create, list, show, refresh, list members, import a CSV of emails.

What a script needs (an id, a count) is the last line of standard output, or the whole output with --json.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from storefunnel.cli_support import JsonOpt, WorkspaceOpt, err, out
from storefunnel.cli_support import fail as _fail
from storefunnel.cli_support import run_in_workspace as _run
from storefunnel.errors import NotFound
from storefunnel.models import Segment
from storefunnel.pagination import MAX_LIMIT
from storefunnel.segments import repository, service
from storefunnel.segments.schemas import SegmentCreate
from storefunnel.tenancy import get_scoped

segments_app = typer.Typer(help="Buying groups (segments): rules or lists of contacts.", no_args_is_help=True)

SegmentArg = Annotated[str, typer.Argument(help="Segment id or name.")]


def _find(session: Session, workspace_id: int, ref: str) -> Segment:
    if ref.isdigit():
        return get_scoped(session, Segment, workspace_id, int(ref))
    segment = repository.segment_by_name(session, workspace_id, ref)
    if segment is None:
        raise NotFound(f"no segment named {ref!r}")
    return segment


def _as_dict(s: Segment) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "kind": s.kind,
        "description": s.description,
        "rules": s.rules,
        "member_count": s.member_count,
        "refreshed_at": s.refreshed_at.isoformat() if s.refreshed_at else None,
    }


def _read_rules(text: str) -> dict[str, Any]:
    try:
        raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    except OSError as exc:
        raise _fail(f"--rules: cannot read {text[1:]!r}: {exc.strerror}") from None
    try:
        rules = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _fail(f"--rules: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(rules, dict):
        raise _fail('--rules: expected a JSON object such as {"all": [...]}')
    return rules


@segments_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Segment name, unique in the workspace.")],
    rules: Annotated[str | None, typer.Option(help="Rules as JSON, or @file.json; omit with --static.")] = None,
    static: Annotated[bool, typer.Option("--static", help="A hand-kept list instead of rules.")] = False,
    description: Annotated[str, typer.Option(help="What this group is for.")] = "",
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Create a segment and evaluate it; prints its id last."""
    if static == (rules is not None):
        raise _fail("give --rules for a dynamic segment, or --static for a list (not both)")
    data = SegmentCreate(
        name=name,
        description=description,
        kind="static" if static else "dynamic",
        rules=_read_rules(rules) if rules is not None else None,
    )
    seg = _run(workspace, lambda s, ws: _as_dict(service.create_segment(s, ws, data)))
    if as_json:
        print(json.dumps(seg))
    else:
        out.print(f"segment {seg['name']!r}: {seg['member_count']} members")
        print(seg["id"])


@segments_app.command("list")
def list_(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """List segments with their member counts."""
    rows = _run(workspace, lambda s, ws: [_as_dict(x) for x in repository.all_segments(s, ws)])
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        out.print(f"{r['id']:>5}  {r['kind']:<7}  {r['member_count']:>9}  {r['name']}", highlight=False)


@segments_app.command("show")
def show(segment: SegmentArg, workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """Show one segment, its rules and member count."""
    row = _run(workspace, lambda s, ws: _as_dict(_find(s, ws, segment)))
    if as_json:
        print(json.dumps(row))
        return
    out.print(f"{row['name']} (id {row['id']}, {row['kind']}): {row['member_count']} members", highlight=False)
    if row["description"]:
        out.print(row["description"], highlight=False)
    if row["rules"]:
        out.print(json.dumps(row["rules"], indent=2), highlight=False)
    out.print(f"refreshed at {row['refreshed_at']}", highlight=False)


@segments_app.command("refresh")
def refresh(
    segment: Annotated[str | None, typer.Argument(help="Segment id or name; omit with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Refresh every dynamic segment.")] = False,
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Re-evaluate dynamic segments and record who entered and left; prints the member count last."""
    if all_ == (segment is not None):
        raise _fail("name one segment, or pass --all")

    def _do(s: Session, ws: int) -> list[dict[str, Any]]:
        results = service.refresh_all(s, ws) if all_ else [service.refresh(s, ws, _find(s, ws, segment or "").id)]
        return [
            {"segment_id": r.segment_id, "entered": r.entered, "left": r.left, "member_count": r.member_count}
            for r in results
        ]

    rows = _run(workspace, _do)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        out.print(
            f"segment {r['segment_id']}: +{r['entered']} entered, -{r['left']} left, {r['member_count']} members",
            highlight=False,
        )
    if not all_ and rows:
        print(rows[0]["member_count"])


@segments_app.command("members")
def members(
    segment: SegmentArg,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="How many (newest first).")] = 50,
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """List current members, newest first."""

    def _do(s: Session, ws: int) -> list[dict[str, Any]]:
        seg = _find(s, ws, segment)
        rows, _ = repository.members_page(s, ws, seg.id, "current", None, limit)
        contacts = repository.contacts_by_ids(s, ws, [r.contact_id for r in rows])
        return [
            {"contact_id": r.contact_id, "email": contacts[r.contact_id].email, "entered_at": r.entered_at.isoformat()}
            for r in rows
        ]

    rows = _run(workspace, _do)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        out.print(f"{r['contact_id']:>9}  {r['email'] or '-':<40}  {r['entered_at']}", highlight=False)


def read_emails(path: Path) -> list[str]:
    """Emails from a CSV: the column headed 'email' if there is one, else the first column."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    col = header.index("email") if "email" in header else 0
    body = rows[1:] if "email" in header or "@" not in rows[0][col] else rows
    return list(dict.fromkeys(r[col].strip() for r in body if len(r) > col and r[col].strip()))


@segments_app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Static segment name (created if missing).")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV with emails.")],
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Add the contacts whose emails are in FILE to a static segment; prints the member count last.

    Emails that are not contacts of the workspace are listed on standard error and not added.
    """
    emails = read_emails(file)

    def _do(s: Session, ws: int) -> dict[str, Any]:
        seg, added, unknown = service.import_emails(s, ws, name, emails)
        return {"segment_id": seg.id, "added": added, "unknown": unknown, "member_count": seg.member_count}

    result = _run(workspace, _do)
    if as_json:
        print(json.dumps(result))
        return
    for email in result["unknown"][:20]:
        err.print(f"not a contact: {email}", highlight=False)
    if len(result["unknown"]) > 20:
        err.print(f"… and {len(result['unknown']) - 20} more emails that are not contacts", highlight=False)
    out.print(
        f"segment {result['segment_id']}: {result['added']} added, {len(result['unknown'])} not contacts",
        highlight=False,
    )
    print(result["member_count"])
