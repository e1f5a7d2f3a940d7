"""The CSV import streams: peak memory stays flat when the file grows tenfold (a ratio, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.csv_import import write_orders_csv

CHILD = """
import json, resource, sys
import sqlalchemy as sa
from storefunnel.db import make_engine
from storefunnel.ingest.csv_import import import_csv
from storefunnel.workspaces.service import create_workspace
url, path, name = sys.argv[1:4]
engine = make_engine(url)
with sa.orm.Session(engine) as session:
    ws = create_workspace(session, name).id
    session.commit()
    result = import_csv(session, ws, "orders", path, chunk_rows=2000, after_chunk=session.commit)
    session.commit()
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **result.summary()}))
"""


def _peak(database_url: str, path: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, database_url, str(path), f"mem-{uuid.uuid4().hex[:8]}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_peak_memory_is_flat_as_the_file_grows(database_url: str, tmp_path: Path) -> None:
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    write_orders_csv(small, 10_000, seed=2)
    write_orders_csv(big, 100_000, seed=3)
    assert big.stat().st_size > 9 * small.stat().st_size
    first = _peak(database_url, small)
    second = _peak(database_url, big)
    assert (first["imported"], second["imported"]) == (10_000, 100_000)
    # Ten times the rows: a streaming import's peak is its chunk, so it barely moves.
    assert second["rss_kb"] < first["rss_kb"] * 1.25, (first["rss_kb"], second["rss_kb"])
