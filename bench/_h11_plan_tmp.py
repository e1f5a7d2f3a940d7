import tempfile, time
from pathlib import Path
import sqlalchemy as sa
from sqlalchemy.orm import Session
from bench.leads import make_rows, load, TZ, NOW
from storefunnel.insight.leads import latest_leads
from storefunnel.insight.overview import LocalRange
c, t = make_rows(20000, 80000)
with tempfile.TemporaryDirectory() as tmp:
    engine, ws = load(f"sqlite:///{Path(tmp)/'b.db'}", c, t)
    rng = LocalRange.last_days(365, TZ, NOW)
    stmts = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: stmts.append((a[2], a[3])))
    with Session(engine) as s:
        t0 = time.perf_counter(); latest_leads(s, ws, rng); print("took", time.perf_counter() - t0)
        sql, params = stmts[-1]
        print(sql)
        with engine.connect() as conn:
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params):
                print(row)
