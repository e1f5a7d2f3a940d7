"""Placeholder replaced by the simulator."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine


def simulate_store(engine: Engine, workspace_id: int, **options: Any) -> dict[str, Any]:
    raise RuntimeError("the simulator is not built yet")
