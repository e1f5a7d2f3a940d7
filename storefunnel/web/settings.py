"""Settings: write and API keys, store webhook secrets, the tracking snippet, and CSV uploads.

Only the workspace's owner changes anything here; marketers and sellers see the page read-only (key
prefixes, webhook addresses, the snippet) because wiring an integration is often their job, but a key or a
secret can be created, revoked or rotated only by the owner. A new key or secret is shown once, in the
answer to the POST that made it: it is never stored in clear (keys) nor put in the session cookie.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key, revoke_key
from storefunnel.config import get_settings
from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Forbidden, Invalid, NotFound
from storefunnel.ingest import shopify, woocommerce
from storefunnel.ingest.csv_formats import KINDS as IMPORT_KINDS
from storefunnel.ingest.csv_import import ImportResult, import_csv
from storefunnel.ingest.webhooks import PLATFORMS, set_secret
from storefunnel.models import ApiKey, KeyKind, Role, WebhookSecret
from storefunnel.tenancy import get_scoped, scoped
from storefunnel.web.auth import DashboardUser, PageUser
from storefunnel.web.leads import local_time
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

PATH = "/settings"
REJECTS_MAX_AGE = dt.timedelta(days=1)
_REJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
PLATFORM_LABELS = {"shopify": "Shopify", "woocommerce": "WooCommerce"}
PLATFORM_TOPICS = {"shopify": sorted(shopify.TOPICS), "woocommerce": sorted(woocommerce.TOPICS)}
KIND_LABELS = {KeyKind.write.value: "write key", KeyKind.api.value: "API key"}

router = dashboard_router()
register_page(NavEntry("settings", "Settings", PATH, "Keys, store webhooks, tracking snippet, CSV import", 0))


@dataclass(frozen=True)
class WebhookInfo:
    platform: str
    label: str
    url: str
    topics: list[str]
    set_at: dt.datetime | None


def can_manage(user: DashboardUser) -> bool:
    return user.role == Role.owner.value


def require_owner(user: DashboardUser) -> None:
    if not can_manage(user):
        raise Forbidden(f"only the workspace's owner can change settings; you are signed in as {user.role}")


def public_base() -> str:
    return get_settings().public_url.rstrip("/")


def webhook_url(platform: str, workspace_id: int) -> str:
    return f"{public_base()}/webhooks/{platform}/{workspace_id}"


def _keys(session: Session, workspace_id: int) -> dict[str, list[ApiKey]]:
    rows = session.scalars(scoped(ApiKey, workspace_id).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())).all()
    out: dict[str, list[ApiKey]] = {KeyKind.write.value: [], KeyKind.api.value: []}
    for row in rows:
        out.setdefault(row.kind, []).append(row)
    return out


def _webhooks(session: Session, workspace_id: int) -> list[WebhookInfo]:
    rows = {r.platform: r for r in session.scalars(scoped(WebhookSecret, workspace_id))}
    return [
        WebhookInfo(
            p,
            PLATFORM_LABELS[p],
            webhook_url(p, workspace_id),
            PLATFORM_TOPICS[p],
            rows[p].created_at if p in rows else None,
        )
        for p in PLATFORMS
    ]


def browser_snippet(base: str) -> str:
    """A self-contained analytics.js-style tag: page() on load, identify() and track() for the store's code.

    It posts Segment-spec messages to this server's /v1 (the write key travels in the body, as Segment allows),
    keeps the visitor's anonymous id in localStorage, and loads nothing from anywhere else. The body is JSON
    sent as text/plain so that the cross-origin POST needs no preflight and survives page unloads (keepalive).
    """
    return f"""<script>
!function () {{
  var host = "{base}", writeKey = "YOUR_WRITE_KEY";
  var a = window.analytics = window.analytics || {{}};
  if (a.ready) return;
  a.ready = true;
  function uuid() {{
    return crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }}
  function stored(name, value) {{
    try {{
      if (value) localStorage.setItem(name, value);
      return localStorage.getItem(name);
    }} catch (e) {{
      a["_" + name] = value || a["_" + name];
      return a["_" + name] || null;
    }}
  }}
  function send(type, msg) {{
    msg.type = type;
    msg.messageId = uuid();
    msg.timestamp = new Date().toISOString();
    msg.anonymousId = stored("sf_anonymous_id") || stored("sf_anonymous_id", uuid());
    msg.userId = msg.userId || stored("sf_user_id") || undefined;
    msg.context = {{
      page: {{ url: location.href, referrer: document.referrer, path: location.pathname, title: document.title }},
      userAgent: navigator.userAgent, library: {{ name: "storefunnel-snippet", version: "1" }}
    }};
    msg.writeKey = writeKey;
    return fetch(host + "/v1/" + type, {{
      method: "POST", keepalive: true, headers: {{ "Content-Type": "text/plain" }}, body: JSON.stringify(msg)
    }});
  }}
  a.page = function (name, properties) {{
    var page = {{ url: location.href, referrer: document.referrer, path: location.pathname, title: document.title }};
    return send("page", {{ name: name, properties: Object.assign(page, properties || {{}}) }});
  }};
  a.track = function (event, properties) {{
    return send("track", {{ event: event, properties: properties || {{}} }});
  }};
  a.identify = function (userId, traits) {{
    if (userId) stored("sf_user_id", String(userId));
    return send("identify", {{ userId: userId || undefined, traits: traits || {{}} }});
  }};
  a.page();
}}();
</script>
<!-- then, e.g. when a visitor subscribes:  analytics.identify(null, {{ email: "ana@example.com" }}); -->"""


def server_snippet(base: str) -> str:
    """The official Segment Python library, pointed at this server instead of Segment's."""
    return f"""# pip install segment-analytics-python
import segment.analytics as analytics

analytics.write_key = "YOUR_WRITE_KEY"
analytics.host = "{base}"  # the library posts its batches to {base}/v1/batch

analytics.identify("customer-123", {{"email": "ana@example.com", "firstName": "Ana"}})
analytics.track("customer-123", "Order Completed", {{"revenue": 42.50, "currency": "EUR"}})
analytics.flush()  # send what is queued before a short script exits"""


def _page(request: Request, session: Session, user: DashboardUser, status: int = 200, **extra: Any) -> Response:
    ws = user.workspace
    base = public_base()
    context: dict[str, Any] = {
        "user": user,
        "can_manage": can_manage(user),
        "keys": _keys(session, ws.id),
        "kind_labels": KIND_LABELS,
        "webhooks": _webhooks(session, ws.id),
        "tracking_url": f"{base}/v1",
        "browser_snippet": browser_snippet(base),
        "server_snippet": server_snippet(base),
        "import_kinds": IMPORT_KINDS,
        "local_time": local_time(ws.display_timezone),
        "timezone": ws.display_timezone,
        "new_key": None,
        "new_secret": None,
        "import_result": None,
        "rejects_token": None,
        "error": None,
        "error_section": None,
    }
    context.update(extra)
    return render(request, "settings/page.html", context, status)


@router.get(PATH, response_model=None)
def settings_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    return _page(request, session, user)


@router.post(PATH + "/keys", response_model=None)
def create_key_action(
    request: Request,
    session: SessionDep,
    user: PageUser,
    kind: Annotated[str, Form(max_length=16)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Make a key and show it once; only its prefix is listed afterwards."""
    require_owner(user)
    name = name.strip()
    if kind not in KIND_LABELS:
        error = f"kind: expected {' or '.join(KIND_LABELS)}, got {kind!r}"
        return _page(request, session, user, 422, error=error, error_section="keys")
    if len(name) > 100:
        return _page(request, session, user, 422, error="name: at most 100 characters", error_section="keys")
    key, token = create_key(session, user.workspace.id, KeyKind(kind), name=name)
    new_key = {"id": key.id, "kind": kind, "label": KIND_LABELS[kind], "token": token, "name": name}
    return _page(request, session, user, 201, new_key=new_key)


@router.post(PATH + "/keys/{key_id}/revoke", response_model=None)
def revoke_key_action(request: Request, session: SessionDep, user: PageUser, key_id: int) -> RedirectResponse:
    """Revoke at once: the next call with that key gets a 401."""
    require_owner(user)
    key = get_scoped(session, ApiKey, user.workspace.id, key_id)
    revoke_key(session, user.workspace.id, key.id)
    return see_other(f"{PATH}#keys-{key.kind}")


@router.post(PATH + "/webhooks/{platform}", response_model=None)
def set_webhook_secret(
    request: Request,
    session: SessionDep,
    user: PageUser,
    platform: str,
    secret: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Set the secret the platform signs with (pasted from Shopify), or generate one to paste into WooCommerce."""
    require_owner(user)
    if platform not in PLATFORMS:
        raise NotFound(f"platform: no webhooks for {platform!r}; expected one of {', '.join(PLATFORMS)}")
    secret = secret.strip()
    try:
        value = set_secret(session, user.workspace.id, platform, secret or None)
    except AppError as exc:
        return _page(request, session, user, exc.status, error=exc.detail, error_section="webhooks")
    new_secret = {"platform": platform, "label": PLATFORM_LABELS[platform], "secret": value, "generated": not secret}
    return _page(request, session, user, new_secret=new_secret)


def rejects_dir(workspace_id: int) -> Path:
    return get_settings().data_dir / "rejects" / f"workspace-{workspace_id}"


def _forget_old_rejects(folder: Path) -> None:
    cutoff = dt.datetime.now(dt.UTC).timestamp() - REJECTS_MAX_AGE.total_seconds()
    for old in folder.glob("*.csv"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            continue


@router.post(PATH + "/import", response_model=None)
def upload_csv(
    request: Request,
    session: SessionDep,
    user: PageUser,
    kind: Annotated[str, Form(max_length=16)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Import an uploaded CSV in this request's transaction: the counts shown are committed, bad rows listed."""
    require_owner(user)
    if kind not in IMPORT_KINDS:
        error = f"kind: expected one of {', '.join(IMPORT_KINDS)}, got {kind!r}"
        return _page(request, session, user, 422, error=error, error_section="import")
    if file is None or not file.filename:
        return _page(request, session, user, 422, error="file: choose a CSV file to upload", error_section="import")
    folder = rejects_dir(user.workspace.id)
    folder.mkdir(parents=True, exist_ok=True)
    _forget_old_rejects(folder)
    token = secrets.token_urlsafe(24)
    rejects_path = folder / f"{token}.csv"
    fd, path = tempfile.mkstemp(prefix="storefunnel-upload-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(file.file, target, 1024 * 1024)
        result: ImportResult = import_csv(session, user.workspace.id, kind, path, rejects_path=rejects_path)
    except AppError as exc:  # the file was refused before any row was written (no header, missing columns)
        rejects_path.unlink(missing_ok=True)
        return _page(request, session, user, exc.status, error=exc.detail, error_section="import")
    finally:
        os.unlink(path)
    if not result.rejected:
        rejects_path.unlink(missing_ok=True)
    summary = {"filename": file.filename, **result.summary()}
    return _page(
        request,
        session,
        user,
        import_result=result,
        import_summary=summary,
        rejects_token=token if result.rejected else None,
    )


@router.get(PATH + "/import/rejects", response_model=None)
def download_rejects(user: PageUser, file: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The rows an upload refused, with line and reason, as CSV (kept a day, readable only in this workspace)."""
    require_owner(user)
    if not _REJECT_TOKEN.fullmatch(file):
        raise Invalid("file: not a reject file name from this page")
    path = rejects_dir(user.workspace.id) / f"{file}.csv"
    if not path.is_file():
        raise NotFound("file: this reject file is gone (they are kept for a day); upload the CSV again")
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename="rejected_rows.csv",
        headers={"Cache-Control": "no-store"},
    )
