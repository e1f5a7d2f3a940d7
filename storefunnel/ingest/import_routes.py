"""``POST /api/v1/imports/{kind}``: the CSV import over HTTP, as a multipart upload or a raw text/csv body.

The body is streamed to a temporary file (never held in memory), imported in the request's transaction, and
answered with the counts and the refused rows. A 2xx means every accepted row is committed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.errors import Invalid, TooLarge
from storefunnel.ingest.csv_import import import_csv

MAX_UPLOAD = 2 * 1024**3
router = APIRouter(prefix="/imports", tags=["imports"])


class ImportKind(StrEnum):
    contacts = "contacts"
    orders = "orders"
    spend = "spend"


class RejectOut(BaseModel):
    line: int
    reason: str
    row: list[str]


class ImportSummary(BaseModel):
    kind: str
    rows: int
    imported: int
    rejected: int
    counts: dict[str, int]
    rejects: list[RejectOut]
    rejects_truncated: bool


async def _spool(request: Request, fd: int) -> None:
    """Copy the upload (multipart field ``file``, or the raw body) to ``fd`` chunk by chunk."""
    size = 0
    with os.fdopen(fd, "wb") as target:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_part_size=MAX_UPLOAD)
            upload: Any = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Invalid("file: send the CSV as a multipart field named 'file'")
            await run_in_threadpool(shutil.copyfileobj, upload.file, target, 1024 * 1024)
            return
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise TooLarge(f"body: larger than {MAX_UPLOAD} bytes")
            target.write(chunk)


@router.post("/{kind}", response_model=ImportSummary)
async def import_file(
    kind: ImportKind, request: Request, session: SessionDep, workspace_id: CurrentWorkspace
) -> ImportSummary:
    """Import contacts, orders (Shopify's order export) or spend; bad rows come back with line and reason."""
    fd, path = tempfile.mkstemp(prefix="storefunnel-import-", suffix=".csv")
    try:
        await _spool(request, fd)
        result = await run_in_threadpool(import_csv, session, workspace_id, kind.value, path)
    finally:
        os.unlink(path)
    return ImportSummary(
        kind=result.kind,
        rows=result.rows,
        imported=result.imported,
        rejected=result.rejected,
        counts=dict(sorted(result.counts.values.items())),
        rejects=[RejectOut(line=r.line, reason=r.reason, row=r.row) for r in result.rejects],
        rejects_truncated=result.rejects_truncated,
    )
