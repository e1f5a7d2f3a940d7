"""Lead-scoring benchmark: train + score 100,000 simulated contacts, beside pandas get_dummies + scikit-learn.

Ours: ``scoring.service.train`` on the store (one read of the touches for the three cutoffs, two fits, the scores
written back), then ``score_all`` alone (re-score: features as of now, the scores replaced). Reference: the same
features built with pandas (groupby + ``get_dummies``) from the contacts, touches, orders and segment members
already loaded in memory (loading is timed apart), the same scikit-learn LogisticRegression, scores predicted in
memory (not written); its re-score is the "now" features and the prediction alone. Both report the out-of-time
holdout AUC, beside ranking by recency alone. A 20,000-contact store is trained too, for the AUC alone.
Run: ``.venv/bin/python -m bench.scoring`` (embedded SQLite, a few minutes); ``--database-url
postgresql+psycopg://…`` builds the stores in that database instead; ``--sizes 100000`` picks the store sizes;
``--workspace N`` (one size) times a store already built there by an earlier run instead of simulating again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sqlalchemy.orm import Session

from storefunnel.db import make_engine
from storefunnel.migrate import upgrade
from storefunnel.models import Workspace
from storefunnel.scoring import features as F
from storefunnel.scoring import model as M
from storefunnel.scoring import service
from storefunnel.segments.schemas import SegmentCreate
from storefunnel.segments.service import create_segment
from storefunnel.simulate import simulate_store

ANCHOR = dt.date(2026, 11, 1)
AS_OF = dt.datetime.combine(ANCHOR, dt.time(), dt.UTC)
HORIZON, HALF_LIFE = 30, 14.0
GROUP = {
    "all": [
        {"field": "city", "op": "eq", "value": "Porto"},
        {"field": "gender", "op": "eq", "value": "female"},
        {"field": "age_band", "op": "eq", "value": "25-29"},
    ]
}


def build_store(url: str, contacts: int) -> tuple[Any, int, int]:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        ws = Workspace(name=f"bench-{contacts}", settings={})
        s.add(ws)
        s.commit()
        wid = ws.id
    simulate_store(engine, wid, contacts=contacts, days=365, seed=1, anchor=ANCHOR)
    with Session(engine) as s:
        seg = create_segment(s, wid, SegmentCreate(name="Porto women 25-29", rules=GROUP))
        service.set_target_segments(s, wid, [seg.id])
        s.commit()
        return engine, wid, seg.id


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- the reference: the same features with pandas -----------------------------------------------------------
def load(engine: Any, wid: int) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        q = {
            "contacts": "SELECT id, country, city, age_band, gender, lead_channel, created_at FROM contacts "
            "WHERE workspace_id = :w",
            "touches": "SELECT contact_id, occurred_at, kind, event, channel FROM touches "
            "WHERE workspace_id = :w AND contact_id IS NOT NULL",
            "orders": "SELECT contact_id, placed_at, status FROM orders WHERE workspace_id = :w",
            "members": "SELECT contact_id, segment_id FROM segment_members WHERE workspace_id = :w AND left_at IS NULL",
        }
        out = {k: pd.read_sql(sa.text(v), conn, params={"w": wid}) for k, v in q.items()}
    for df, col in ((out["contacts"], "created_at"), (out["touches"], "occurred_at"), (out["orders"], "placed_at")):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return out


def pandas_features(d: dict[str, pd.DataFrame], spec: F.Spec, at: dt.datetime, label: bool) -> pd.DataFrame:
    at_ts = pd.Timestamp(at)
    c = d["contacts"]
    o = d["orders"][~d["orders"]["status"].isin(spec.cancelled_statuses)]
    bought = o.loc[o["placed_at"] <= at_ts, "contact_id"].unique()
    c = c[(c["created_at"] <= at_ts) & ~c["id"].isin(bought)].set_index("id").sort_index()
    t = d["touches"][d["touches"]["occurred_at"] <= at_ts]
    age = (at_ts - t["occurred_at"]).dt.total_seconds() / 86400.0
    w = np.exp(-math.log(2.0) / spec.half_life_days * age)
    ev, kind = t["event"].fillna(""), t["kind"]
    kinds = {
        "page_views": kind == "page",
        "product_views": ev == "Product Viewed",
        "cart_adds": ev == "Product Added",
        "checkouts": ev == "Checkout Started",
        "email_opens": (kind == "email_open") | (ev == "Email Opened"),
        "email_clicks": (kind == "email_click") | (ev == "Email Link Clicked"),
    }
    cols = {f"touches:{k}": w.where(m, 0.0) for k, m in kinds.items()}
    cols |= {f"channel:{ch}": w.where(t["channel"] == ch, 0.0) for ch in F.CHANNELS}
    g = pd.DataFrame(cols).assign(contact_id=t["contact_id"].to_numpy()).groupby("contact_id").sum()
    stats = t.groupby("contact_id")["occurred_at"].agg(["min", "max", "count"])
    x = pd.DataFrame(index=c.index)
    members = d["members"]
    for sid in spec.target_segments:
        x[f"segment:{sid}"] = x.index.isin(members.loc[members["segment_id"] == sid, "contact_id"]).astype(float)
    dummies = pd.get_dummies(c[["country", "city", "age_band", "gender", "lead_channel"]], prefix_sep=":", dtype=float)
    wanted = (
        [f"country:{v}" for v in spec.countries]
        + [f"city:{v}" for v in spec.cities]
        + [f"age_band:{v}" for v in F.AGE_BANDS]
        + [f"gender:{v}" for v in F.GENDERS]
        + [f"lead_channel:{v}" for v in F.CHANNELS]
    )
    x = x.join(dummies.reindex(columns=wanted, fill_value=0.0))
    x = x.join(g).fillna(0.0)
    x["mail:opens"] = 0.0
    x["mail:clicks"] = 0.0
    st = stats.reindex(x.index)
    seen = st["count"].notna().to_numpy()
    idle = np.where(seen, (at_ts - st["max"]).dt.total_seconds() / 86400.0, F.NO_TOUCH_DAYS)
    n = st["count"].fillna(0).to_numpy()
    span = np.where(seen, (st["max"] - st["min"]).dt.total_seconds() / 86400.0, 0.0)
    pace = np.where(seen, span / np.maximum(n - 1, 1), F.NO_TOUCH_DAYS)
    x["recency"] = np.log1p(np.clip(idle, 0, None))
    x["pace"] = np.log1p(pace)
    x["overdue"] = np.log1p(np.clip(idle, 0, None) / np.maximum(pace, 0.5))
    x["touches:all"] = np.log1p(n)
    x["tenure"] = np.log1p(np.clip((at_ts - c["created_at"]).dt.total_seconds() / 86400.0, 0, None))
    x = x[[f.name for f in F.columns(spec)]]
    x["_idle"] = idle
    if label:
        until = at_ts + pd.Timedelta(days=HORIZON)
        future = o.loc[(o["placed_at"] > at_ts) & (o["placed_at"] <= until), "contact_id"].unique()
        x["_label"] = x.index.isin(future).astype(float)
    return x


def reference(d: dict[str, pd.DataFrame], spec: F.Spec) -> dict[str, Any]:
    hold_cut = AS_OF - dt.timedelta(days=HORIZON)
    train_cut = hold_cut - dt.timedelta(days=HORIZON)
    tr = pandas_features(d, spec, train_cut, True)
    ho = pandas_features(d, spec, hold_cut, True)
    names = [f.name for f in F.columns(spec)]

    def fit(frame: pd.DataFrame) -> tuple[Any, np.ndarray, np.ndarray]:
        x = frame[names].to_numpy()
        mean, scale = x.mean(0), x.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        clf = LogisticRegression(C=M.REGULARIZATION_C, max_iter=2000, tol=1e-6).fit(
            (x - mean) / scale, frame["_label"].to_numpy().astype(int)
        )
        return clf, mean, scale

    clf, mean, scale = fit(tr)
    p = clf.predict_proba((ho[names].to_numpy() - mean) / scale)[:, 1]
    auc = roc_auc_score(ho["_label"], p)
    rec = roc_auc_score(ho["_label"], -ho["_idle"])
    clf, mean, scale = fit(ho)
    t = time.perf_counter()
    now = pandas_features(d, spec, AS_OF, False)
    scores = clf.predict_proba((now[names].to_numpy() - mean) / scale)[:, 1]
    t_rescore = time.perf_counter() - t
    return {"auc": auc, "recency_auc": rec, "scored": len(scores), "n_holdout": len(ho), "t_rescore": t_rescore}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--database-url", help="a PostgreSQL database to build the stores in (default: SQLite files)")
    ap.add_argument("--sizes", default="20000,100000", help="contacts per store, comma-separated")
    ap.add_argument("--workspace", type=int, help="time this already simulated workspace (one size only)")
    args = ap.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    if args.workspace is not None and len(sizes) != 1:
        ap.error("--workspace needs exactly one size")
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-scoring-"))
    rows: list[tuple[str, str, str, str]] = []
    for contacts in sizes:
        url = args.database_url or f"sqlite:///{tmp / f'store{contacts}.db'}"
        if args.workspace is not None:
            engine, wid = make_engine(url), args.workspace
        else:
            engine, wid, _ = build_store(url, contacts)
        print(f"{contacts:,} contacts on {engine.dialect.name}; load average {_load()}", flush=True)
        with Session(engine) as s:
            t = time.perf_counter()
            row = service.train(s, wid, horizon_days=HORIZON, half_life_days=HALF_LIFE, as_of=AS_OF)
            s.commit()
            t_ours = time.perf_counter() - t
            metrics, spec = row.metrics, F.Spec.from_dict(row.params["spec"])
            t = time.perf_counter()
            n = service.score_all(s, wid, row, AS_OF)
            s.commit()
            t_score = time.perf_counter() - t
        t = time.perf_counter()
        data = load(engine, wid)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        ref = reference(data, spec)
        t_ref = time.perf_counter() - t
        assert ref["scored"] == n, (ref["scored"], n)
        assert ref["n_holdout"] == metrics["n_holdout"]
        k = f"{contacts:,}"
        rows.append((k, "train + score, s", f"{t_ours:.1f}", f"{t_ref:.1f} (+{t_load:.1f} load)"))
        rows.append((k, "rescore only (query + write scores), s", f"{t_score:.1f}", f"{ref['t_rescore']:.1f}"))
        rows.append((k, "holdout AUC", f"{metrics['auc']:.4f}", f"{ref['auc']:.4f}"))
        rows.append((k, "recency-only AUC", f"{metrics['recency_auc']:.4f}", f"{ref['recency_auc']:.4f}"))
        rows.append((k, "holdout buyers / contacts", f"{metrics['holdout_buyers']} / {metrics['n_holdout']}", ""))
        print(
            f"{k}: ours {t_ours:.1f}s, reference {t_ref:.1f}s (+{t_load:.1f}s load), ratio {t_ref / t_ours:.2f}x "
            f"({(t_ref + t_load) / t_ours:.2f}x with load); rescore {t_score:.1f}s, reference {ref['t_rescore']:.1f}s, "
            f"ratio {ref['t_rescore'] / t_score:.2f}x; load average {_load()}",
            flush=True,
        )
        engine.dispose()
    print("| contacts | metric | storefunnel | pandas + sklearn |")
    print("|---:|---|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
