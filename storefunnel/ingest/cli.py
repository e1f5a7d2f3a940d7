"""``storefunnel import contacts|orders|spend FILE`` and ``storefunnel webhook-secret set|show``.

The import commits after every chunk, so a long import that stops part-way keeps what it did and a re-run
completes it; the last line printed is the JSON summary a script can read.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from storefunnel.cli_support import fail
from storefunnel.config import get_settings
from storefunnel.db import get_engine, get_sessionmaker
from storefunnel.errors import AppError
from storefunnel.ingest.csv_import import CHUNK_ROWS, ORDER_CHUNK_ROWS, ImportResult, import_csv
from storefunnel.ingest.webhooks import get_secret, set_secret
from storefunnel.migrate import upgrade
from storefunnel.workspaces.service import get_workspace_by_name

import_app = typer.Typer(
    help="Import CSV files: contacts, orders (Shopify's order export) and marketing spend.", no_args_is_help=True
)
webhook_app = typer.Typer(help="Secrets Shopify and WooCommerce sign their webhooks with.", no_args_is_help=True)

err = Console(stderr=True)
out = Console()
WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file (UTF-8).")]
RejectsOpt = Annotated[
    Path | None, typer.Option("--rejects", help="Write refused rows here as CSV: line, reason, original row.")
]
ChunkOpt = Annotated[int, typer.Option("--chunk-rows", min=100, help="Rows merged per transaction.")]


class PlatformName(StrEnum):
    shopify = "shopify"
    woocommerce = "woocommerce"


PlatformOpt = Annotated[PlatformName, typer.Option("--platform", help="shopify or woocommerce.")]


def _run(kind: str, file: Path, workspace: str, rejects: Path | None, chunk_rows: int) -> None:
    upgrade(get_engine())
    with get_sessionmaker()() as session:
        try:
            ws = get_workspace_by_name(session, workspace)
            columns = (
                TextColumn(f"importing {kind}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task(kind, total=file.stat().st_size)
                result: ImportResult = import_csv(
                    session,
                    ws.id,
                    kind,
                    file,
                    rejects_path=rejects,
                    chunk_rows=chunk_rows,
                    after_chunk=session.commit,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            session.commit()
        except AppError as exc:
            session.rollback()
            raise fail(exc.detail) from None
    summary = result.summary()
    for key, value in summary.items():
        if key != "kind":
            out.print(f"{key:>18}  {value}", highlight=False)
    if result.rejected and rejects:
        out.print(f"rejected rows written to {rejects}", highlight=False)
    elif result.rejected:
        out.print("use --rejects PATH to see the refused rows and why", highlight=False)
    print(json.dumps({"file": str(file), **summary}))


@import_app.command("contacts")
def import_contacts(
    file: FileArg,
    workspace: WorkspaceOpt = "default",
    rejects: RejectsOpt = None,
    chunk_rows: ChunkOpt = CHUNK_ROWS,
) -> None:
    """Contacts by email: email, first_name, last_name, phone, country, region, city, age_band, gender,
    email_consent; other columns become traits."""
    _run("contacts", file, workspace, rejects, chunk_rows)


@import_app.command("orders")
def import_orders(
    file: FileArg,
    workspace: WorkspaceOpt = "default",
    rejects: RejectsOpt = None,
    chunk_rows: ChunkOpt = ORDER_CHUNK_ROWS,
) -> None:
    """Orders from Shopify's order export (one row per line item), keyed by the order Name."""
    _run("orders", file, workspace, rejects, chunk_rows)


@import_app.command("spend")
def import_spend(
    file: FileArg,
    workspace: WorkspaceOpt = "default",
    rejects: RejectsOpt = None,
    chunk_rows: ChunkOpt = CHUNK_ROWS,
) -> None:
    """Marketing spend: date, channel, campaign, cost, currency (one row per day, channel and campaign)."""
    _run("spend", file, workspace, rejects, chunk_rows)


def _in_session(fn: Any) -> Any:
    upgrade(get_engine())
    with get_sessionmaker()() as session:
        try:
            value = fn(session)
            session.commit()
            return value
        except AppError as exc:
            session.rollback()
            raise fail(exc.detail) from None


@webhook_app.command("set")
def webhook_secret_set(
    platform: PlatformOpt,
    workspace: WorkspaceOpt = "default",
    secret: Annotated[
        str | None, typer.Option(help="Shopify: the app's client secret. Omit to generate one (WooCommerce).")
    ] = None,
) -> None:
    """Set the secret a platform signs webhooks with; prints the webhook URL, then the secret last."""

    def _set(session: Any) -> tuple[int, str]:
        ws = get_workspace_by_name(session, workspace)
        return ws.id, set_secret(session, ws.id, platform.value, secret)

    ws_id, value = _in_session(_set)
    out.print(f"webhook URL: {get_settings().public_url}/webhooks/{platform.value}/{ws_id}", highlight=False)
    print(value)


@webhook_app.command("show")
def webhook_secret_show(platform: PlatformOpt, workspace: WorkspaceOpt = "default") -> None:
    """Print the webhook URL, then the secret last."""

    def _get(session: Any) -> tuple[int, str | None]:
        ws = get_workspace_by_name(session, workspace)
        return ws.id, get_secret(session, ws.id, platform.value)

    ws_id, value = _in_session(_get)
    if value is None:
        raise fail(f"no {platform.value} webhook secret in workspace {workspace!r}; use 'webhook-secret set'")
    out.print(f"webhook URL: {get_settings().public_url}/webhooks/{platform.value}/{ws_id}", highlight=False)
    print(value)
