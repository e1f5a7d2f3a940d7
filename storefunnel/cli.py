"""The storefunnel command: set up, fill, serve and query a store from the shell.

What a script needs from a command (a new key, an id) is the last line of its standard output.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from storefunnel.auth.keys import create_key, revoke_key
from storefunnel.cli_support import JsonOpt, WorkspaceOpt, fail, out
from storefunnel.config import get_settings
from storefunnel.cycle import service as cycle_service
from storefunnel.cycle.cli import cycle_app
from storefunnel.db import get_engine, get_sessionmaker
from storefunnel.errors import AppError
from storefunnel.ingest.cli import import_app, webhook_app
from storefunnel.insight.advice_cli import advise_app
from storefunnel.insight.cli import insight_app
from storefunnel.insight.digest_cli import digest_command, digest_schedule_command
from storefunnel.insight.model_cli import attribution_command, clv_app, related_app
from storefunnel.insight.report_cli import report_command
from storefunnel.jobs.worker import worker_command
from storefunnel.messaging.cli import campaign_app, flow_app, message_app, messaging_app
from storefunnel.migrate import upgrade
from storefunnel.models import ApiKey, Contact, KeyKind, Role, User, Workspace
from storefunnel.scoring.cli import score_app
from storefunnel.segments.cli import segments_app
from storefunnel.simulate.cli import simulate_command
from storefunnel.workspaces.service import create_user, ensure_workspace, get_workspace_by_name

app = typer.Typer(
    help="storefunnel: leads, the five-stage sales cycle and advice from your store's own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
workspace_app = typer.Typer(help="Workspaces: one per store.", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard users (roles: owner, marketer, seller).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for /api/v1 (Authorization: Bearer ...).", no_args_is_help=True)
writekey_app = typer.Typer(help="Write keys for the Segment-compatible tracking API under /v1.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(writekey_app, name="writekey")
app.add_typer(cycle_app, name="cycle")
app.add_typer(import_app, name="import")
app.add_typer(webhook_app, name="webhook-secret")
app.add_typer(segments_app, name="segment")
app.add_typer(score_app, name="score")
app.add_typer(flow_app, name="flow")
app.add_typer(campaign_app, name="campaign")
app.add_typer(message_app, name="message")
app.add_typer(messaging_app, name="messaging")
app.command("worker")(worker_command)
app.add_typer(insight_app, name="insight")
app.add_typer(advise_app, name="advise")
advise_app.command("digest")(digest_command)
advise_app.command("digest-schedule")(digest_schedule_command)
app.command("attribution")(attribution_command)
app.command("report")(report_command)
app.add_typer(clv_app, name="clv")
app.add_typer(related_app, name="related")

DEMO_EMAIL = "demo@storefunnel.local"
DEMO_PASSWORD = "storefunnel-demo"


def run_in_session(fn: Any) -> Any:
    """Run ``fn(session)`` in one transaction; domain errors become one line and exit code 2."""
    maker = get_sessionmaker()
    with maker() as session:
        try:
            result = fn(session)
            session.commit()
            return result
        except AppError as exc:
            session.rollback()
            raise fail(exc.detail) from None


def ensure_schema() -> None:
    upgrade(get_engine())


@app.command()
def init(workspace: WorkspaceOpt = "default") -> None:
    """Create or upgrade the schema (SQLite file by default) and a first workspace named 'default'."""
    ensure_schema()
    ws = run_in_session(lambda s: ensure_workspace(s, workspace))
    out.print(f"database ready: {get_settings().database_url}")
    print(ws.id)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.")] = 1,
) -> None:
    """Serve the API, the tracking endpoints and the dashboard."""
    import uvicorn

    uvicorn.run(
        "storefunnel.main:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(help="Contacts to simulate when the store is empty.")] = 20000,
    days: Annotated[int, typer.Option(help="Days of history to simulate.")] = 365,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Fill the embedded store with a simulated shop if it is empty, create a demo login, and serve it."""
    from storefunnel.simulate import simulate_store

    ensure_schema()
    ws = run_in_session(lambda s: ensure_workspace(s, "default"))
    maker = get_sessionmaker()
    with maker() as session:
        empty = (
            session.scalar(sa.select(sa.func.count()).select_from(Contact).where(Contact.workspace_id == ws.id)) == 0
        )
        has_demo_user = session.scalar(sa.select(User.id).where(User.email == DEMO_EMAIL)) is not None
    if empty:
        out.print(f"simulating a store: {contacts} contacts over {days} days…")
        simulate_store(get_engine(), ws.id, contacts=contacts, days=days, seed=1, progress=True)
        out.print("computing the sales cycle of every contact…")
        run_in_session(lambda s: cycle_service.recompute(s, ws.id, dt.datetime.now(dt.UTC)))
    if not has_demo_user:
        run_in_session(lambda s: create_user(s, ws.id, DEMO_EMAIL, DEMO_PASSWORD, Role.owner))
    out.print(f"\n  dashboard: http://127.0.0.1:{port}\n  login:     {DEMO_EMAIL}\n  password:  {DEMO_PASSWORD}\n")
    serve(host="127.0.0.1", port=port, workers=1)


app.command("simulate")(simulate_command)


@workspace_app.command("add")
def workspace_add(
    name: Annotated[str, typer.Argument(help="Workspace name (one per store).")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency of the store.")] = "EUR",
    timezone: Annotated[str, typer.Option(help="Display timezone, e.g. Europe/Lisbon.")] = "UTC",
) -> None:
    """Add a workspace; prints its id last."""
    from storefunnel.workspaces.service import create_workspace

    ensure_schema()
    ws = run_in_session(lambda s: create_workspace(s, name, currency.upper(), timezone))
    print(ws.id)


@workspace_app.command("list")
def workspace_list(as_json: JsonOpt = False) -> None:
    """List workspaces."""
    rows = run_in_session(
        lambda s: [
            {"id": w.id, "name": w.name, "currency": w.currency, "timezone": w.display_timezone}
            for w in s.scalars(sa.select(Workspace).order_by(Workspace.id))
        ]
    )
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            out.print(f"{r['id']:>4}  {r['name']}  {r['currency']}  {r['timezone']}")


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="Login email.")],
    workspace: WorkspaceOpt = "default",
    role: Annotated[Role, typer.Option(help="owner, marketer or seller.")] = Role.owner,
    password: Annotated[str | None, typer.Option(help="Password; generated and printed if omitted.")] = None,
) -> None:
    """Add a dashboard user; prints the password last when it was generated."""
    secret = password or secrets.token_urlsafe(12)
    if len(secret) < 8:
        raise fail("--password must be at least 8 characters")

    def _add(s: Any) -> User:
        return create_user(s, get_workspace_by_name(s, workspace).id, email, secret, role)

    user = run_in_session(_add)
    out.print(f"user {user.email} ({user.role}) added")
    if password is None:
        print(secret)


def _create_key(workspace: str, kind: KeyKind, name: str) -> None:
    def _make(s: Any) -> str:
        return create_key(s, get_workspace_by_name(s, workspace).id, kind, name)[1]

    token = run_in_session(_make)
    out.print("store this key now: it is shown only once", style="yellow")
    print(token)


@apikey_app.command("create")
def apikey_create(
    workspace: WorkspaceOpt = "default",
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key; prints it last (shown once, stored hashed)."""
    _create_key(workspace, KeyKind.api, name)


@apikey_app.command("list")
def apikey_list(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """List API and write keys (prefixes only)."""

    def _list(s: Any) -> list[dict[str, Any]]:
        ws = get_workspace_by_name(s, workspace)
        keys = s.scalars(sa.select(ApiKey).where(ApiKey.workspace_id == ws.id).order_by(ApiKey.id))
        return [
            {
                "id": k.id,
                "kind": k.kind,
                "name": k.name,
                "prefix": k.prefix,
                "revoked": k.revoked_at is not None,
            }
            for k in keys
        ]

    rows = run_in_session(_list)
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            out.print(f"{r['id']:>4}  {r['kind']:<5}  {r['prefix']}…  {r['name']}  {'revoked' if r['revoked'] else ''}")


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[int, typer.Argument(help="Key id from 'apikey list'.")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Revoke a key at once."""
    done = run_in_session(lambda s: revoke_key(s, get_workspace_by_name(s, workspace).id, key_id))
    if not done:
        raise fail(f"no live key {key_id} in workspace {workspace!r}")
    print(key_id)


@writekey_app.command("create")
def writekey_create(
    workspace: WorkspaceOpt = "default",
    name: Annotated[str, typer.Option(help="A label, e.g. the site it is pasted into.")] = "",
) -> None:
    """Create a write key for the tracking API; prints it last."""
    _create_key(workspace, KeyKind.write, name)


def main() -> None:
    app()
