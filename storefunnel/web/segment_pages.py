"""Sales → Buying groups: the list, a segment's page (growth, members, static list upkeep) and the rule builder.

The builder runs in the browser (``static/js/segment_builder.js``) and reads the field catalogue this module
builds from the rule language's own tables, so the page offers exactly the fields and operators the
segments service accepts. Its live count goes through ``/dashboard-data/segments/preview``, which calls
the same compiler as a save.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from storefunnel.db import SessionDep, utcnow
from storefunnel.errors import AppError, Invalid, TooLarge
from storefunnel.models import Contact, Segment, SegmentMember, Touch, Workspace
from storefunnel.pagination import decode_cursor, paginate
from storefunnel.segments import repository, rules, service
from storefunnel.segments.schemas import MembersChange, SegmentCreate, SegmentUpdate
from storefunnel.tenancy import get_scoped, scoped
from storefunnel.web.auth import DashboardUser, DataUser, PageUser
from storefunnel.web.leads import local_time
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import currency_decimals, render
from storefunnel.web.routes import dashboard_router, see_other

PATH = "/sales/segments"
DATA = "/dashboard-data/segments"
CONTACT_ROUTE = "/sales/contacts/{contact_id}"
MEMBERS_PAGE = 50
LIST_PAGE = 100
CHANGE_DAYS = 30
GROWTH_DAYS = 365
SEEN_LIMIT = 200
MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_PASTED_EMAILS = 10_000

router = dashboard_router()
register_page(NavEntry("sales", "Buying groups", PATH, "Segments: who is in them, how they grow, and their rules", 30))

FIELD_LABELS: dict[str, str] = {
    "email": "Email",
    "country": "Country",
    "region": "Region",
    "city": "City",
    "age_band": "Age band",
    "gender": "Gender",
    "stage": "Stage",
    "lead_channel": "Lead channel",
    "email_consent": "Email consent",
    "created_at": "Created",
    "lead_at": "Became a lead",
    "order_count": "Number of orders",
    "revenue": "Revenue",
    "first_order_at": "First order",
    "last_order_at": "Last order",
    "days_since_last_order": "Days since last order",
    "rfm.recency": "RFM recency score (1-5)",
    "rfm.frequency": "RFM frequency score (1-5)",
    "rfm.monetary": "RFM monetary score (1-5)",
}
FIELD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Contact", ("email", "email_consent", "created_at", "lead_at", "lead_channel")),
    ("Location", ("country", "region", "city")),
    ("Demographics", ("age_band", "gender")),
    ("Sales cycle", ("stage",)),
    (
        "Orders and value",
        ("order_count", "revenue", "first_order_at", "last_order_at", "days_since_last_order"),
    ),
    ("RFM", ("rfm.recency", "rfm.frequency", "rfm.monetary")),
)
OP_LABELS: dict[str, dict[str, str]] = {
    "string": {
        "eq": "is",
        "neq": "is not",
        "in": "is one of",
        "not_in": "is none of",
        "contains": "contains",
        "starts_with": "starts with",
        "is_set": "is set",
        "is_not_set": "is not set",
    },
    "number": {
        "eq": "equals",
        "neq": "does not equal",
        "gt": "greater than",
        "gte": "at least",
        "lt": "less than",
        "lte": "at most",
        "between": "between",
        "in": "is one of",
    },
    "date": {
        "before": "before",
        "after": "after",
        "between": "between",
        "within_last_days": "in the last … days",
        "not_within_last_days": "not in the last … days",
        "is_set": "is set",
        "is_not_set": "is not set",
    },
    "bool": {"is_true": "is yes", "is_false": "is no"},
}
COUNT_LABELS = {">=": "at least", ">": "more than", "=": "exactly", "<=": "at most", "<": "fewer than", "!=": "not"}
# Contact columns whose values the builder offers from what the store's data holds.
SEEN_COLUMNS = ("country", "region", "city", "gender", "lead_channel")
MONEY_FIELDS = frozenset({"revenue"})


def _route_paths(routes: Sequence[Any]) -> Iterator[str]:
    """Every route path, looking inside included routers (FastAPI may keep them as one entry each)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _route_paths(getattr(inner, "routes", []))


def contact_links(request: Request) -> bool:
    """Whether the Sales contact page is mounted, so member rows can link to it."""
    return any(path == CONTACT_ROUTE for path in _route_paths(request.app.routes))


def _distinct(session: Session, column: Any, workspace_id: int, model: Any) -> list[str]:
    stmt = (
        sa.select(column)
        .where(model.workspace_id == workspace_id, column.is_not(None), column != "")
        .distinct()
        .order_by(column)
        .limit(SEEN_LIMIT + 1)
    )
    return [str(v) for v in session.scalars(stmt)]


def catalogue(session: Session, workspace: Workspace, exclude_segment: int | None = None) -> dict[str, Any]:
    """What the builder may offer: fields with their type, operators and values, events, segments.

    Built from the rule language's tables (``rules.FIELDS``, ``rules.OPS_BY_TYPE``...), so it cannot drift
    from what the service accepts. A column's seen values are offered only while there are few enough to
    list (``SEEN_LIMIT``); past that the builder falls back to typing.
    """
    seen = {c: _distinct(session, getattr(Contact, c), workspace.id, Contact) for c in SEEN_COLUMNS}
    fields = []
    for group, names in FIELD_GROUPS:
        for name in names:
            ftype = rules.FIELDS[name]
            values: list[str] | None = None
            fixed = False
            if name in rules.ENUM_VALUES:
                values = _ordered_enum(name)
                fixed = True
            elif name in seen and len(seen[name]) <= SEEN_LIMIT:
                values = seen[name]
            fields.append(
                {
                    "name": name,
                    "label": FIELD_LABELS[name],
                    "group": group,
                    "type": ftype,
                    "ops": list(rules.OPS_BY_TYPE[ftype]),
                    "values": values,
                    "fixed": fixed,
                    "money": name in MONEY_FIELDS,
                    "min": 1 if name in rules.RFM_FIELDS else (0 if ftype == "number" else None),
                    "max": 5 if name in rules.RFM_FIELDS else None,
                }
            )
    segments = session.execute(
        sa.select(Segment.id, Segment.name, Segment.kind)
        .where(Segment.workspace_id == workspace.id)
        .order_by(Segment.name)
    ).all()
    events = _distinct(session, Touch.event, workspace.id, Touch)
    return {
        "fields": fields,
        "op_labels": OP_LABELS,
        "no_value_ops": sorted(rules.NO_VALUE_OPS),
        "count_ops": [{"op": op, "label": COUNT_LABELS[op]} for op in rules.COUNT_OPS],
        "trait_ops": list(rules.OPS_BY_TYPE["trait"]),
        "events": events[:SEEN_LIMIT],
        "touch_kinds": _distinct(session, Touch.kind, workspace.id, Touch)[:SEEN_LIMIT],
        "channels": _distinct(session, Touch.channel, workspace.id, Touch)[:SEEN_LIMIT],
        "segments": [{"id": i, "name": n, "kind": k} for i, n, k in segments if i != exclude_segment],
        "currency": workspace.currency,
        "decimals": currency_decimals(workspace.currency),
        "max_within_days": rules.MAX_WITHIN_DAYS,
    }


def _ordered_enum(name: str) -> list[str]:
    """Stages in cycle order and age bands youngest first, as the model's enums declare them."""
    from storefunnel.models.contact import AgeBand, Stage

    source = Stage if name == "stage" else AgeBand
    return [m.value for m in source if m.value in rules.ENUM_VALUES[name]]


def member_changes(session: Session, workspace_id: int, since: dt.datetime) -> dict[int, tuple[int, int]]:
    """Per segment: (members now, members at ``since``), from the stays, in one grouped query."""
    m = SegmentMember
    now_open = sa.case((m.left_at.is_(None), 1), else_=0)
    then_open = sa.case((sa.and_(m.entered_at <= since, sa.or_(m.left_at.is_(None), m.left_at > since)), 1), else_=0)
    stmt = (
        sa.select(m.segment_id, sa.func.sum(now_open), sa.func.sum(then_open))
        .where(m.workspace_id == workspace_id)
        .group_by(m.segment_id)
    )
    return {int(sid): (int(a or 0), int(b or 0)) for sid, a, b in session.execute(stmt)}


def _common(request: Request, user: DashboardUser) -> dict[str, Any]:
    return {"user": user, "workspace": user.workspace, "fmt_time": local_time(user.workspace.display_timezone)}


@router.get(PATH, response_model=None)
def segments_page(
    request: Request, session: SessionDep, user: PageUser, cursor: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    """Every segment with its members now, the change over the last 30 days, and when it was last evaluated."""
    ws = user.workspace
    rows, next_cursor = repository.list_segments(session, ws.id, cursor or None, LIST_PAGE, None)
    changes = member_changes(session, ws.id, utcnow() - dt.timedelta(days=CHANGE_DAYS))
    items = []
    for s in rows:
        now_count, then_count = changes.get(s.id, (0, 0))
        items.append({"segment": s, "members": s.member_count, "change": now_count - then_count})
    context = {**_common(request, user), "items": items, "next_cursor": next_cursor, "change_days": CHANGE_DAYS}
    return render(request, "sales/segments.html", context)


def _builder_context(
    session: Session, user: DashboardUser, segment: Segment | None, rules_value: Any, form: dict[str, str]
) -> dict[str, Any]:
    return {
        "catalogue": catalogue(session, user.workspace, segment.id if segment else None),
        "initial_rules": rules_value,
        "form": form,
    }


@router.get(PATH + "/new", response_model=None)
def new_segment_page(
    request: Request,
    session: SessionDep,
    user: PageUser,
    kind: Annotated[str, Query(pattern="^(dynamic|static)$")] = "dynamic",
) -> Response:
    form = {"name": "", "description": "", "kind": kind}
    context = {**_common(request, user), "segment": None, **_builder_context(session, user, None, None, form)}
    context.update(error=None, errors=[])
    return render(request, "sales/segments_edit.html", context)


def _parse_rules_field(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"rules: not valid JSON ({exc.msg} at character {exc.pos})"
        raise Invalid(message, errors=[_err("rules", "bad JSON")]) from None
    if not isinstance(value, dict):
        raise Invalid("rules: expected a JSON object (a group or a condition)", errors=[_err("rules", "not an object")])
    return value


def _err(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


NameF = Annotated[str, Form(max_length=1000)]
DescriptionF = Annotated[str, Form(max_length=5000)]
RulesF = Annotated[str, Form(max_length=1_000_000)]


def _edit_failed(
    request: Request,
    session: Session,
    user: DashboardUser,
    segment: Segment | None,
    exc: AppError,
    form: dict[str, str],
    rules_text: str,
) -> Response:
    """The builder again, as it was sent, with the problem and every bad node's path for the rows to show."""
    try:
        value: Any = json.loads(rules_text) if rules_text.strip() else None
    except ValueError:
        value = None
    context = {**_common(request, user), "segment": segment, **_builder_context(session, user, segment, value, form)}
    context.update(error=exc.detail, errors=exc.errors or [])
    return render(request, "sales/segments_edit.html", context, exc.status)


@router.post(PATH, response_model=None)
def create_segment(
    request: Request,
    session: SessionDep,
    user: PageUser,
    name: NameF = "",
    description: DescriptionF = "",
    kind: Annotated[str, Form(max_length=20)] = "dynamic",
    rules_text: Annotated[str, Form(alias="rules", max_length=1_000_000)] = "",
) -> Response:
    """Create from the builder's form; a dynamic segment is evaluated at once, then its page is shown."""
    form = {"name": name, "description": description, "kind": kind}
    try:
        data = _segment_create(name, description, kind, _parse_rules_field(rules_text) if kind == "dynamic" else None)
        segment = service.create_segment(session, user.workspace.id, data)
    except AppError as exc:
        return _edit_failed(request, session, user, None, exc, form, rules_text)
    return see_other(f"{PATH}/{segment.id}?saved=1")


def _segment_create(name: str, description: str, kind: str, rules_value: dict[str, Any] | None) -> SegmentCreate:
    name, description = name.strip(), description.strip()
    if not name:
        raise Invalid("name: give the buying group a name", errors=[_err("name", "required")])
    if len(name) > 100:
        raise Invalid("name: at most 100 characters", errors=[_err("name", "too long")])
    if len(description) > 500:
        raise Invalid("description: at most 500 characters", errors=[_err("description", "too long")])
    if kind not in ("dynamic", "static"):
        raise Invalid("kind: dynamic or static", errors=[_err("kind", "unknown kind")])
    return SegmentCreate(name=name, description=description, kind=kind, rules=rules_value)


@router.get(PATH + "/{segment_id}", response_model=None)
def segment_page(
    segment_id: int,
    request: Request,
    session: SessionDep,
    user: PageUser,
    saved: Annotated[str, Query(max_length=2)] = "",
    entered: Annotated[int | None, Query(ge=0)] = None,
    left: Annotated[int | None, Query(ge=0)] = None,
    added: Annotated[int | None, Query(ge=0)] = None,
    removed: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """A segment: its figures and growth, its rules in the builder (dynamic) or list upkeep (static), members."""
    segment = _segment_or_none(session, user, segment_id)
    if segment is None:
        return _not_found(request, user, segment_id)
    notice = _notice(saved, entered, left, added, removed)
    return _segment_view(request, session, user, segment, notice=notice)


def _notice(saved: str, entered: int | None, left: int | None, added: int | None, removed: int | None) -> str:
    if entered is not None and left is not None:
        return f"Refreshed: {entered} entered, {left} left."
    if added is not None:
        return f"Added {added} contact{'s' if added != 1 else ''} to the list."
    if removed is not None:
        return f"Removed {removed} contact{'s' if removed != 1 else ''} from the list."
    return "Saved." if saved else ""


def _segment_or_none(session: Session, user: DashboardUser, segment_id: int) -> Segment | None:
    return session.scalars(scoped(Segment, user.workspace.id).where(Segment.id == segment_id)).first()


def _not_found(request: Request, user: DashboardUser, segment_id: int) -> Response:
    context = {"user": user, "title": "Not found", "message": f"No buying group {segment_id} in this workspace."}
    return render(request, "error.html", context, 404)


def _segment_view(
    request: Request,
    session: Session,
    user: DashboardUser,
    segment: Segment,
    status: int = 200,
    notice: str = "",
    error: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    rules_value: Any = None,
    import_result: dict[str, Any] | None = None,
    emails_text: str = "",
) -> Response:
    ws = user.workspace
    rows, next_cursor = repository.members_page(session, ws.id, segment.id, "current", None, MEMBERS_PAGE)
    form = form or {"name": segment.name, "description": segment.description, "kind": segment.kind}
    change = member_changes(session, ws.id, utcnow() - dt.timedelta(days=CHANGE_DAYS)).get(segment.id, (0, 0))
    context = {
        **_common(request, user),
        "segment": segment,
        **_builder_context(session, user, segment, rules_value if rules_value is not None else segment.rules, form),
        "members": _member_rows(session, ws.id, rows),
        "next_cursor": next_cursor,
        "links": contact_links(request),
        "change": change[0] - change[1],
        "change_days": CHANGE_DAYS,
        "notice": notice,
        "error": error,
        "errors": errors or [],
        "import_result": import_result,
        "emails_text": emails_text,
    }
    return render(request, "sales/segments_detail.html", context, status)


def _member_rows(session: Session, workspace_id: int, rows: Sequence[SegmentMember]) -> list[dict[str, Any]]:
    contacts = repository.contacts_by_ids(session, workspace_id, [r.contact_id for r in rows])
    out = []
    for r in rows:
        c = contacts[r.contact_id]
        name = " ".join(p for p in (c.first_name, c.last_name) if p)
        out.append(
            {"id": c.id, "email": c.email, "name": name, "country": c.country, "stage": c.stage, "at": r.entered_at}
        )
    return out


@router.get(PATH + "/{segment_id}/members", response_model=None)
def members_rows(
    segment_id: int,
    request: Request,
    session: SessionDep,
    user: PageUser,
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The next page of current members as table rows, for the "More members" button to append."""
    segment = get_scoped(session, Segment, user.workspace.id, segment_id)
    if cursor:
        decode_cursor(cursor)
    rows, next_cursor = paginate(
        session,
        scoped(SegmentMember, user.workspace.id).where(
            SegmentMember.segment_id == segment.id, SegmentMember.left_at.is_(None)
        ),
        SegmentMember.id,
        cursor or None,
        MEMBERS_PAGE,
    )
    context = {
        **_common(request, user),
        "segment": segment,
        "members": _member_rows(session, user.workspace.id, rows),
        "next_cursor": next_cursor,
        "links": contact_links(request),
    }
    return render(request, "sales/segments_members.html", context)


@router.post(PATH + "/{segment_id}", response_model=None)
def update_segment(
    segment_id: int,
    request: Request,
    session: SessionDep,
    user: PageUser,
    name: NameF = "",
    description: DescriptionF = "",
    rules_text: Annotated[str, Form(alias="rules", max_length=1_000_000)] = "",
) -> Response:
    """Save a rename and, for a dynamic segment, new rules (which re-evaluates it and those built on it)."""
    segment = _segment_or_none(session, user, segment_id)
    if segment is None:
        return _not_found(request, user, segment_id)
    form = {"name": name, "description": description, "kind": segment.kind}
    try:
        base = _segment_create(name, description, segment.kind, None)
        changes: dict[str, Any] = {"name": base.name, "description": base.description}
        if segment.kind == "dynamic":
            parsed = _parse_rules_field(rules_text)
            if parsed is None:
                raise Invalid(
                    "rules: a dynamic segment needs rules; add a condition", errors=[_err("rules", "required")]
                )
            if parsed != segment.rules:
                changes["rules"] = parsed
        service.update_segment(session, user.workspace.id, segment.id, SegmentUpdate(**changes))
    except AppError as exc:
        try:
            shown: Any = json.loads(rules_text) if rules_text.strip() else None
        except ValueError:
            shown = None
        return _segment_view(
            request,
            session,
            user,
            segment,
            exc.status,
            error=exc.detail,
            errors=exc.errors,
            form=form,
            rules_value=shown,
        )
    return see_other(f"{PATH}/{segment.id}?saved=1")


@router.post(PATH + "/{segment_id}/refresh", response_model=None)
def refresh_segment(segment_id: int, request: Request, session: SessionDep, user: PageUser) -> Response:
    """Re-evaluate now; the page then says how many entered and left."""
    if _segment_or_none(session, user, segment_id) is None:
        return _not_found(request, user, segment_id)
    result = service.refresh(session, user.workspace.id, segment_id)
    return see_other(f"{PATH}/{segment_id}?entered={result.entered}&left={result.left}")


def split_emails(text: str) -> list[str]:
    """Emails pasted one per line, or separated by commas, semicolons or spaces; repeats dropped."""
    for sep in ",;\t\r":
        text = text.replace(sep, "\n")
    return list(dict.fromkeys(e.strip() for line in text.split("\n") for e in line.split(" ") if e.strip()))


@router.post(PATH + "/{segment_id}/members", response_model=None)
def change_members(
    segment_id: int,
    request: Request,
    session: SessionDep,
    user: PageUser,
    emails: Annotated[str, Form(max_length=1_000_000)] = "",
    action: Annotated[str, Form(max_length=10)] = "add",
) -> Response:
    """Add or remove contacts of a static list by email; one unknown email refuses the whole change."""
    segment = _segment_or_none(session, user, segment_id)
    if segment is None:
        return _not_found(request, user, segment_id)
    try:
        found = split_emails(emails)
        if action not in ("add", "remove"):
            raise Invalid("action: add or remove", errors=[_err("action", "unknown action")])
        if not found:
            raise Invalid("emails: enter at least one email address", errors=[_err("emails", "required")])
        if len(found) > MAX_PASTED_EMAILS:
            raise Invalid(
                f"emails: at most {MAX_PASTED_EMAILS} at once; import a CSV for more",
                errors=[_err("emails", "too many")],
            )
        change = MembersChange(emails=found)
        if action == "add":
            n, _ = service.add_members(session, user.workspace.id, segment.id, change)
            return see_other(f"{PATH}/{segment.id}?added={n}")
        n, _ = service.remove_members(session, user.workspace.id, segment.id, change)
        return see_other(f"{PATH}/{segment.id}?removed={n}")
    except AppError as exc:
        detail = _name_emails(exc, split_emails(emails))
        return _segment_view(request, session, user, segment, exc.status, error=detail, emails_text=emails)


def _name_emails(exc: AppError, found: list[str]) -> str:
    """The service names unknown emails by index; the owner pasted text, so name them by address."""
    unknown = [found[int(e["path"][7:-1])] for e in exc.errors or [] if str(e.get("path", "")).startswith("emails[")]
    if not unknown:
        return exc.detail
    shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
    return f"emails: not contacts of this store, so nothing was changed: {shown}"


def emails_from_csv(text: str) -> list[str]:
    """Emails from a CSV: the column headed 'email' if there is one, else the first column."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(cell.strip() for cell in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    col = header.index("email") if "email" in header else 0
    body = rows[1:] if "email" in header or "@" not in rows[0][col] else rows
    return list(dict.fromkeys(r[col].strip() for r in body if len(r) > col and r[col].strip()))


@router.post(PATH + "/{segment_id}/import", response_model=None)
async def import_csv(
    segment_id: int,
    request: Request,
    session: SessionDep,
    user: PageUser,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Add the contacts whose emails a CSV lists; emails that are not contacts are listed, not added."""
    segment = _segment_or_none(session, user, segment_id)
    if segment is None:
        return _not_found(request, user, segment_id)
    try:
        if file is None or not file.filename:
            raise Invalid("file: choose a CSV file of emails", errors=[_err("file", "required")])
        raw = await file.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            raise TooLarge(f"file: at most {MAX_CSV_BYTES // (1024 * 1024)} MiB", errors=[_err("file", "too large")])
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid("file: not UTF-8 text; save the CSV as UTF-8", errors=[_err("file", "not UTF-8")]) from None
        try:
            emails = emails_from_csv(text)
        except csv.Error as exc:
            raise Invalid(f"file: not a readable CSV ({exc})", errors=[_err("file", "bad CSV")]) from None
        if not emails:
            raise Invalid("file: no emails found in the CSV", errors=[_err("file", "empty")])
        if segment.kind != "static":
            raise Invalid("file: only a static list takes imported emails", errors=[_err("file", "dynamic segment")])
        seg, added, unknown = service.import_emails(session, user.workspace.id, segment.name, emails)
    except AppError as exc:
        return _segment_view(request, session, user, segment, exc.status, error=exc.detail)
    result = {"added": added, "read": len(emails), "unknown": unknown, "filename": file.filename}
    return _segment_view(request, session, user, seg, import_result=result)


class PreviewBody(BaseModel):
    """What the builder sends for its live count: the rules, how many samples, and the segment being edited."""

    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any]
    sample_size: int = Field(default=5, ge=0, le=20)
    segment_id: int | None = Field(default=None, ge=1)


@router.post(DATA + "/preview")
def preview(data: PreviewBody, request: Request, session: SessionDep, user: DataUser) -> JSONResponse:
    """Count and sample the contacts some rules select, with the service's compiler; nothing is saved.

    With ``segment_id`` the rules are checked as that segment's (a rule naming itself is a cycle, 422).
    """
    ws = user.workspace
    node = rules.parse_rules(data.rules)
    if data.segment_id is not None:
        get_scoped(session, Segment, ws.id, data.segment_id)
    ids = service.compile_for(session, ws.id, node, utcnow(), self_id=data.segment_id)
    count = repository.count_ids(session, ids)
    sample = repository.sample_contacts(session, ws.id, ids, data.sample_size)
    links = contact_links(request)
    body = {
        "count": count,
        "sample": [
            {
                "id": c.id,
                "email": c.email,
                "name": " ".join(p for p in (c.first_name, c.last_name) if p),
                "country": c.country,
                "stage": c.stage,
                "url": CONTACT_ROUTE.format(contact_id=c.id) if links else None,
            }
            for c in sample
        ],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get(DATA + "/{segment_id}/growth.json")
def growth_json(segment_id: int, session: SessionDep, user: DataUser) -> JSONResponse:
    """Members at the end of each UTC day, for the segment page's chart (the last year at most)."""
    segment = get_scoped(session, Segment, user.workspace.id, segment_id)
    today = utcnow().date()
    oldest = today - dt.timedelta(days=GROWTH_DAYS - 1)
    since = oldest if segment.created_at.date() < oldest else None
    # Stays never begin before the segment exists, so this is at most a year of days.
    points = service.growth(session, user.workspace.id, segment.id, "day", since, today)[-GROWTH_DAYS:]
    body = {
        "day": [p.period.isoformat() for p in points],
        "members": [p.members for p in points],
        "entered": [p.entered for p in points],
        "left": [p.left for p in points],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
