"""Settings writers change one key each: two at the same time both land (no lost update)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storefunnel.errors import NotFound
from storefunnel.insight import digest
from storefunnel.insight.advice import Targets, get_targets, set_targets
from storefunnel.models import Workspace
from storefunnel.workspaces.service import create_workspace, set_setting


def test_two_writers_at_once_both_land(engine: Engine) -> None:
    maker = sessionmaker(engine)
    with maker() as session, session.begin():
        ws = create_workspace(session, f"settings-{uuid.uuid4().hex[:8]}").id
        set_setting(session, ws, "untouched", {"kept": True})
    first_wrote = threading.Event()
    errors: list[BaseException] = []

    def slow_targets() -> None:
        try:
            with maker() as session, session.begin():
                set_targets(session, ws, Targets(leads_per_week=70))
                first_wrote.set()
                time.sleep(0.5)  # hold the transaction open while the other writer runs
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            first_wrote.set()

    writer = threading.Thread(target=slow_targets)
    writer.start()
    assert first_wrote.wait(10)
    with maker() as session, session.begin():
        digest.set_schedule(session, ws, enabled=True, weekday=2, hour=9)
    writer.join()
    assert not errors, errors
    with maker() as session:
        settings = session.get(Workspace, ws).settings  # type: ignore[union-attr]
        assert settings["untouched"] == {"kept": True}
        assert digest.digest_settings(settings).enabled
        assert get_targets(session, ws).leads_per_week == 70


def test_setting_a_missing_workspace_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound, match="workspace"):
        set_setting(session, 2**40, "x", 1)
