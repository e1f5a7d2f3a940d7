from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from tests.scoring.helpers import SimStore, drop, simulated_store

ANCHOR = dt.date(2026, 11, 1)


@pytest.fixture(scope="session")
def sim(engine: Engine) -> Iterator[SimStore]:
    """6,000 simulated contacts over 120 days, seed 5, trained as of the anchor (shared, read-only)."""
    store = simulated_store(engine, contacts=6000, days=120, seed=5, anchor=ANCHOR)
    yield store
    drop(engine, store.workspace_id)
