"""What every command group shares: the workspace and --json options, one-line errors, one transaction per command."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from storefunnel.db import get_sessionmaker
from storefunnel.errors import AppError
from storefunnel.workspaces.service import get_workspace_by_name

T = TypeVar("T")
err = Console(stderr=True)
out = Console()

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str) -> typer.Exit:
    """Print one clear line on stderr; the caller raises the returned Exit (code 2)."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


def run_in_workspace(workspace: str, fn: Callable[[Session, int], T]) -> T:
    """Run ``fn(session, workspace_id)`` in one transaction; a domain error becomes one line and exit code 2."""
    with get_sessionmaker()() as session:
        try:
            result = fn(session, get_workspace_by_name(session, workspace).id)
            session.commit()
            return result
        except AppError as exc:
            session.rollback()
            detail = exc.detail
            if exc.errors and len(exc.errors) > 1:
                detail += "".join(
                    f"\n  {e.get('path') or e.get('field', '')}: {e.get('message', '')}" for e in exc.errors[1:]
                )
            raise fail(detail) from None


def dump_json(data: Any) -> None:
    """Print ``data`` as one JSON document: times in ISO 8601, anything else as its string."""
    print(json.dumps(data, default=lambda v: v.isoformat() if isinstance(v, dt.datetime | dt.date) else str(v)))
