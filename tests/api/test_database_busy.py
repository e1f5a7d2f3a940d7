"""A busy SQLite (its one writer taken) answers 503 problem+json with Retry-After, never a 500."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from storefunnel.errors import install_error_handlers


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    def write() -> None:
        raise error

    return app


def test_a_locked_database_is_a_503_to_send_again() -> None:
    locked = OperationalError("INSERT INTO contacts ...", {}, sqlite3.OperationalError("database is locked"))
    r = TestClient(app_raising(locked)).post("/write")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert body["type"].endswith("/database-busy")
    assert "nothing was saved" in body["detail"]


@pytest.mark.parametrize("message", ["no such table: contacts", "disk I/O error"])
def test_other_database_errors_stay_server_errors(message: str) -> None:
    broken = OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    r = TestClient(app_raising(broken), raise_server_exceptions=False).post("/write")
    assert r.status_code == 500
