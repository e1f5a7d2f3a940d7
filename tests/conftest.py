"""Test databases are built by the migrations, on SQLite or on PostgreSQL (STOREFUNNEL_DATABASE_URL).

Each test worker gets a database of its own; each test runs in a transaction that is rolled back.
Tests that need committed data (a real server, a worker) use ``committed_session`` and a fresh workspace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel import db as dbmod
from storefunnel.auth.keys import create_key
from storefunnel.config import get_settings
from storefunnel.migrate import upgrade
from storefunnel.models import KeyKind, Workspace
from storefunnel.workspaces.service import create_workspace

pytest_plugins = ["tests.fixtures.factories", "tests.fixtures.server"]


def _admin_url(url: str) -> sa.URL:
    parsed = sa.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    return parsed.set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database for this test process, left behind for nobody."""
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if base.startswith("postgres"):
        admin = _admin_url(base)
        name = f"sf_test_{worker}_{uuid.uuid4().hex[:8]}"
        admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = admin.set(database=name).render_as_string(hide_password=False)
        yield from _activate(url)
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
    else:
        path: Path = tmp_path_factory.mktemp("db") / "storefunnel.db"
        yield from _activate(f"sqlite:///{path}")


def _activate(url: str) -> Iterator[str]:
    os.environ["STOREFUNNEL_DATABASE_URL"] = url
    os.environ.setdefault("STOREFUNNEL_ENV", "test")
    get_settings.cache_clear()
    dbmod.get_engine.cache_clear()
    dbmod.get_sessionmaker.cache_clear()
    upgrade(dbmod.get_engine())
    yield url
    dbmod.get_engine().dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    return dbmod.get_engine()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose every commit is a savepoint inside one transaction rolled back at the end."""
    connection = engine.connect()
    outer = connection.begin()
    sess = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def committed_session(engine: Engine) -> Iterator[Session]:
    """A plain session that commits for real: for data a separate server or worker process must see."""
    sess = dbmod.get_sessionmaker()()
    try:
        yield sess
    finally:
        sess.close()


@pytest.fixture
def app(session: Session) -> FastAPI:
    from storefunnel.main import create_app

    application = create_app()

    def _test_session() -> Iterator[Session]:
        yield session
        session.flush()

    application.dependency_overrides[dbmod.session_scope] = _test_session
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def workspace(session: Session) -> Workspace:
    return create_workspace(session, f"ws-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def api_key(session: Session, workspace: Workspace) -> str:
    return create_key(session, workspace.id, KeyKind.api)[1]


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
