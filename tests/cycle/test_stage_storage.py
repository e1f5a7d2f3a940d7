"""The current stage lives in ``contact_stages``; a contact's stage rows go with it however it is deleted."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.db import make_engine
from storefunnel.migrate import alembic_config, upgrade
from storefunnel.models import Contact, ContactStage, StageChange, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import day
from tests.fixtures.factories import create_contact, create_order

AS_OF = day(400)


def stage_rows(session: Session, contact_ids: list[int]) -> tuple[int, int]:
    """(history rows, current-stage rows) of these contacts."""
    history = session.scalar(sa.select(sa.func.count()).where(StageChange.contact_id.in_(contact_ids)))
    current = session.scalar(sa.select(sa.func.count()).where(ContactStage.contact_id.in_(contact_ids)))
    return int(history or 0), int(current or 0)


def buyers(session: Session, workspace_id: int, n: int) -> list[int]:
    ids = []
    for i in range(n):
        c = create_contact(session, workspace_id, created_at=day(i))
        create_order(session, workspace_id, c, placed_at=day(i + 5))
        ids.append(c.id)
    service.recompute(session, workspace_id, AS_OF)
    return ids


def test_deleting_a_contact_deletes_its_history_and_current_stage(session: Session, workspace: Workspace) -> None:
    gone, kept = buyers(session, workspace.id, 2)
    assert stage_rows(session, [gone])[0] >= 2
    assert stage_rows(session, [gone])[1] == 1
    session.execute(sa.delete(Contact).where(Contact.id == gone))
    assert stage_rows(session, [gone]) == (0, 0)
    assert stage_rows(session, [kept])[1] == 1


def test_deleting_a_workspace_deletes_every_stage_row_of_it(session: Session) -> None:
    doomed = create_workspace(session, f"ws-{uuid.uuid4().hex[:10]}")
    other = create_workspace(session, f"ws-{uuid.uuid4().hex[:10]}")
    doomed_ids, other_ids = buyers(session, doomed.id, 3), buyers(session, other.id, 2)
    session.execute(sa.delete(Workspace).where(Workspace.id == doomed.id))
    assert stage_rows(session, doomed_ids) == (0, 0)
    history, current = stage_rows(session, other_ids)
    assert history >= 4
    assert current == 2


def test_the_stage_reads_and_writes_through_the_contact(session: Session, workspace: Workspace) -> None:
    c = Contact(stage="buying", stage_at=day(3), workspace_id=workspace.id, email="ana@example.com")
    session.add(c)
    session.flush()
    row = session.get(ContactStage, c.id)
    assert row is not None
    assert (row.workspace_id, row.stage, row.stage_at) == (workspace.id, "buying", day(3))
    assert session.scalar(sa.select(Contact.id).where(Contact.stage == "buying", Contact.id == c.id)) == c.id
    c.stage = "thanked"
    session.flush()
    assert session.scalar(sa.select(Contact.stage).where(Contact.id == c.id)) == "thanked"
    c.stage = None
    session.flush()
    assert session.get(ContactStage, c.id) is None
    assert session.scalar(sa.select(Contact.stage).where(Contact.id == c.id)) is None


@pytest.fixture
def scratch_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty database of this suite's backend, for running the migrations step by step."""
    base = os.environ.get("STOREFUNNEL_DATABASE_URL", "")
    if not base.startswith("postgres"):
        eng = make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield eng
        eng.dispose()
        return
    admin_url = sa.make_url(base).set(database="postgres")
    name = f"sf_migr_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url.render_as_string(hide_password=False)).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(admin_url.set(database=name).render_as_string(hide_password=False))
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_migration_moves_stages_out_of_contacts_and_back(scratch_engine: Engine) -> None:
    upgrade(scratch_engine, "0016childrowsfk")
    at = day(7).replace(tzinfo=None) if scratch_engine.dialect.name == "sqlite" else day(7)
    with scratch_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workspaces (id, name, display_timezone, currency, settings, created_at) "
                "VALUES (1, 'w', 'UTC', 'EUR', '{}', :at)"
            ),
            {"at": at},
        )
        for cid, stage in ((1, "buying"), (2, None)):
            conn.execute(
                sa.text(
                    "INSERT INTO contacts (id, workspace_id, traits, email_consent, created_at, updated_at, stage, "
                    "stage_at) VALUES (:id, 1, '{}', false, :at, :at, :stage, :stage_at)"
                ),
                {"id": cid, "at": at, "stage": stage, "stage_at": at if stage else None},
            )
    upgrade(scratch_engine)
    with scratch_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT contact_id, workspace_id, stage FROM contact_stages")).all()
        assert [tuple(r) for r in rows] == [(1, 1, "buying")]
    cfg = alembic_config()
    with scratch_engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0016childrowsfk")
    with scratch_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, stage FROM contacts ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "buying"), (2, None)]
