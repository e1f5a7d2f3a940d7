"""The owner's report: the advice, funnel, channels, who buys and retention in one self-contained HTML page or PDF.

Written for someone who never opened the dashboard, to print or to forward: one file with its CSS inline and its
charts as inline SVG (``report_charts``), no script and nothing fetched, so the browser, the printer and the PDF
show the same thing. Who buys and retention need months of customers to say anything, so they look back at least
``LONG_DAYS`` to the end of the period; the report says so under each of them.

The PDF is the same HTML printed by headless Chromium in a subprocess (``STOREFUNNEL_CHROMIUM`` or the first
``chromium`` on the PATH), with a timeout and a throw-away profile.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import AppError, NotFound
from storefunnel.insight.channels import channels_report
from storefunnel.insight.facts import Period
from storefunnel.insight.funnel import funnel_report
from storefunnel.insight.report_charts import (
    PALETTE,
    Series,
    bar_chart,
    hbar_chart,
    heat_color,
    heat_text_color,
    line_chart,
)
from storefunnel.insight.retention import retention_report
from storefunnel.insight.who_buys import describe, who_buys_report
from storefunnel.models import Workspace
from storefunnel.web.render import HERE as WEB_DIR
from storefunnel.web.render import currency_decimals, format_money, format_percent

LONG_DAYS = 365
CHART_W = 820
DEFAULT_DAYS = 28
PDF_TIMEOUT_S = 120.0
MAX_COHORT_MONTHS = 12
MAX_CAMPAIGNS = 12
MAX_FINDINGS = 8
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# What the report page may load when it is served: its own inline styles and data: images, nothing else.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
FOCUS_WORDS = {
    "marketing": "Focus on marketing",
    "sales": "Focus on sales",
    "unclear": "No clear focus this time",
}
FOCUS_HINTS = {
    "marketing": "The leads you get are the weak point: work on bringing in more (or better) leads.",
    "sales": "The weak point is on the sales side: the step named above, between a lead and a loyal customer.",
    "unclear": "Nothing moved beyond chance (or there is too little data to tell); keep doing what works.",
}
STATUS_COLORS = {
    "worse": "#b91c1c",
    "below_target": "#b91c1c",
    "low": "#b45309",
    "better": "#15803d",
    "steady": "#475569",
    "unknown": "#64748b",
}


class ReportUnavailable(AppError):
    """A PDF was asked for but cannot be made on this machine (no Chromium, or it failed)."""

    status, code, title = 503, "unavailable", "Service unavailable"


# ---- the data ------------------------------------------------------------------------------------------------------


def default_period(first: str | None, last: str | None, today: dt.date | None = None) -> Period:
    """``from``/``to`` as given; a missing end is yesterday (a whole day), a missing start 4 weeks before it."""
    today = today or dt.datetime.now(dt.UTC).date()
    end = last or (today - dt.timedelta(days=1)).isoformat()
    return Period.parse(first, end, DEFAULT_DAYS)


def long_period(period: Period) -> Period:
    """The period, stretched back to at least ``LONG_DAYS`` days ending on its last day."""
    return Period(min(period.first, period.last - dt.timedelta(days=LONG_DAYS - 1)), period.last)


def _advice(session: Session, workspace_id: int, period: Period) -> dict[str, Any]:
    from storefunnel.insight.advice import advice_report

    return advice_report(session, workspace_id, period)


def report_data(session: Session, workspace_id: int, period: Period) -> dict[str, Any]:
    """Every figure the report shows, as the analytics return them (JSON-ready)."""
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"workspace: no workspace {workspace_id}")
    long = long_period(period)
    return {
        "store": ws.name,
        "currency": ws.currency,
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "long_period": {"from": long.first.isoformat(), "to": long.last.isoformat()},
        "generated_at": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "advice": _advice(session, workspace_id, period),
        "funnel": funnel_report(session, workspace_id, period),
        "channels": channels_report(session, workspace_id, period),
        "who_buys": who_buys_report(session, workspace_id, long),
        "retention": retention_report(session, workspace_id, long),
    }


# ---- formatting ----------------------------------------------------------------------------------------------------


def number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}"


def change(value: float | None) -> str:
    """``-0.4`` -> ``−40%``; ``0.123`` -> ``+12%``; an unbounded interval end -> ``+∞``."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "+∞" if value > 0 else "−∞"
    pct = value * 100
    digits = 0 if abs(pct) >= 10 else 1
    text = f"{abs(pct):.{digits}f}%"
    return ("+" if pct > 0 else "−" if pct < 0 else "±") + text


STATUS_COLOR = {"worse": PALETTE[3], "low": PALETTE[3], "below_target": PALETTE[3], "better": PALETTE[1]}


def stage_change_chart(stages: list[dict[str, Any]], width: int = CHART_W) -> Markup:
    """The advice's five stages as changes against the period before, with their 95% intervals (axis ±100%).

    Bars are red where the stage is a problem, green where it improved and blue otherwise, as on the page.
    """
    return hbar_chart(
        [f"{s['number']}. {s['label']}" for s in stages],
        [s["change"] for s in stages],
        title="Change against the period before, per stage",
        width=width,
        fmt=change,
        colors=[STATUS_COLOR.get(s["status"], "#93c5fd") for s in stages],
        intervals=[(s["interval"][0], s["interval"][1]) if s.get("interval") else None for s in stages],
        limit=1.0,
    )


def interval(values: list[float] | None, as_change: bool = False) -> str:
    if not values:
        return ""
    fmt = change if as_change else format_percent
    return f"{fmt(values[0])} to {fmt(values[1])}"


RATE_WORDS = ("rate", "share", "conversion", "completion", "retention")
MONEY_WORDS = ("revenue", "spend", "order_value", "cost", "cac", "aov")
# Evidence that repeats what the report shows elsewhere (the stage's own row) or speaks to software (segment rules).
EVIDENCE_SKIP = ("stage", "rules")
MAX_EVIDENCE_ITEMS = 5


def metric_value(metric: str, value: float | None, currency: str) -> str:
    """A stage's figure as the owner reads it: rates as %, money in the store's currency, counts as counts."""
    if value is None:
        return "–"
    name = metric.lower()
    if any(w in name for w in RATE_WORDS) and 0 <= value <= 1:
        return format_percent(value)
    if any(w in name for w in MONEY_WORDS):
        return format_money(round(value), currency)
    return number(value, 0 if float(value).is_integer() or abs(value) >= 10 else 1)


def _scalar(key: str, value: Any, currency: str) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, float) and any(w in key for w in RATE_WORDS) and 0 <= value <= 1:
        return format_percent(value)
    if isinstance(value, int | float) and any(w in key for w in MONEY_WORDS):
        return format_money(round(value), currency)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "∞" if value > 0 else "−∞"
        if value == 0 or 1e-3 <= abs(value) < 1000:
            return f"{value:.3g}"
        return f"{value:,.0f}" if 1000 <= abs(value) < 1e7 else f"{value:.2g}"
    return str(value)


def evidence_value(key: str, value: Any, currency: str) -> str:
    """One entry of a recommendation's evidence, short: money in the store's currency, shares as %, other numbers
    to 3 significant digits, a dict as ``k: v`` pairs, a list of rows as its first few rows."""
    key = key.lower()
    if isinstance(value, dict):
        return ", ".join(
            f"{label(str(k)).lower()}: {_scalar(str(k).lower(), v, currency)}"
            for k, v in value.items()
            if not isinstance(v, dict | list)
        )
    if isinstance(value, list | tuple):
        items = [evidence_value(key, v, currency) for v in value[:MAX_EVIDENCE_ITEMS]]
        more = f"; and {len(value) - MAX_EVIDENCE_ITEMS} more" if len(value) > MAX_EVIDENCE_ITEMS else ""
        return "; ".join(items) + more
    return _scalar(key, value, currency)


def evidence(items: dict[str, Any], currency: str) -> list[tuple[str, str]]:
    """The evidence rows worth showing an owner, labelled and formatted."""
    return [(label(k), evidence_value(k, v, currency)) for k, v in items.items() if k not in EVIDENCE_SKIP]


def label(key: str) -> str:
    """``lead_volume_down`` -> ``Lead volume down``."""
    return key.replace("_", " ").strip().capitalize()


def finding(cell: dict[str, Any]) -> str:
    """A who-buys cell as a sentence, both directions."""
    who = describe(cell["attributes"])
    text = f"{cell['customer_share']:.0%} of your customers are {who}, against {cell['lead_share']:.0%} of your leads"
    if cell["direction"] == "over":
        return f"{text}: they buy {cell['lift']:.1f} times as readily as your average lead."
    return f"{text}: they buy less than their share."


# ---- the page ------------------------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(WEB_DIR / "templates" / "report"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = format_percent
    env.filters["number"] = number
    env.filters["change"] = change
    env.filters["interval"] = interval
    env.filters["label"] = label
    return env


TEMPLATES = _environment()


def whole_money(minor: float, currency: str) -> str:
    """Minor units as whole currency units: ``123456, "EUR"`` -> ``€1,235`` (for chart axes)."""
    decimals = currency_decimals(currency)
    text = format_money(round(minor / 10**decimals) * 10**decimals, currency)
    return text.replace("." + "0" * decimals, "", 1) if decimals else text


def partial_weeks(weeks: list[dict[str, Any]], period: dict[str, str]) -> bool:
    """Whether the first or last week of the funnel's weekly rows reaches outside the period (so counts less)."""
    if not weeks:
        return False
    first = dt.date.fromisoformat(weeks[0]["key"])
    last = dt.date.fromisoformat(weeks[-1]["key"]) + dt.timedelta(days=6)
    return first < dt.date.fromisoformat(period["from"]) or last > dt.date.fromisoformat(period["to"])


def _charts(data: dict[str, Any]) -> dict[str, Markup]:
    currency = data["currency"]

    def money(v: float) -> str:
        return format_money(round(v), currency)

    def axis_money(v: float) -> str:
        return whole_money(v, currency)

    advice, funnel, channels = data["advice"], data["funnel"], data["channels"]
    stages = advice["stages"]
    weeks = funnel["by_week"]
    ch = channels["channels"][:10]
    cohorts = data["retention"]["cohorts"]
    month1 = [c["retention"][1] if len(c["retention"]) > 1 else None for c in cohorts]
    return {
        "changes": stage_change_chart(stages),
        "steps": bar_chart(
            [s["name"].replace("_", " ").capitalize() for s in funnel["steps"]],
            [Series("People", [s["count"] for s in funnel["steps"]])],
            title="Funnel steps: people at each step",
            width=CHART_W,
        ),
        "weeks": line_chart(
            [w["key"][5:] for w in weeks],
            [
                Series("Leads", [w["leads"] for w in weeks], PALETTE[0]),
                Series("New customers", [w["new_customers"] for w in weeks], PALETTE[1]),
            ],
            title="Leads and new customers per week",
            width=CHART_W,
        ),
        "channels": bar_chart(
            [c["channel"] for c in ch],
            [
                Series("Revenue", [c["revenue"] for c in ch], PALETTE[1]),
                Series("Spend", [c["spend"] for c in ch], PALETTE[3]),
            ],
            title="Revenue and spend per channel",
            width=CHART_W,
            fmt=money,
            axis_fmt=axis_money,
        ),
        "repeat": line_chart(
            [c["month"] for c in cohorts],
            [Series("Ordered again the month after", month1, PALETTE[4])],
            title="Share of each cohort ordering again in its second month",
            width=CHART_W,
            fmt=lambda v: format_percent(v, 0),
        ),
    }


def _heat(cohorts: list[dict[str, Any]]) -> dict[str, Any]:
    """The cohort matrix as rows of (text, background, text colour) cells, scaled to its largest later month."""
    width = min(max((len(c["retention"]) for c in cohorts), default=0), MAX_COHORT_MONTHS)
    later = [v for c in cohorts for v in c["retention"][1:width] if v is not None]
    high = max(later, default=0.0) or 1.0
    rows = []
    for c in cohorts:
        cells = []
        for k in range(width):
            v = c["retention"][k] if k < len(c["retention"]) else None
            cells.append(
                {
                    "text": format_percent(v, 0) if v is not None and k < len(c["retention"]) else "",
                    "bg": heat_color(v, high) if k > 0 else "#f8fafc",
                    "fg": heat_text_color(v, high) if k > 0 else "#0f172a",
                }
            )
        rows.append({"month": c["month"], "customers": c["customers"], "cells": cells})
    return {"months": list(range(width)), "rows": rows, "high": high}


def render_report(data: dict[str, Any]) -> str:
    """The report as one HTML document; everything from ``data`` is escaped."""
    currency = data["currency"]
    who = data["who_buys"]
    findings = [{**c, "sentence": finding(c)} for c in who["significant"][:MAX_FINDINGS]]
    context = {
        "data": data,
        "advice": data["advice"],
        "funnel": data["funnel"],
        "channels": data["channels"],
        "who": who,
        "retention": data["retention"],
        "findings": findings,
        "campaigns": data["channels"]["campaigns"][:MAX_CAMPAIGNS],
        "heat": _heat(data["retention"]["cohorts"]),
        "partial_weeks": partial_weeks(data["funnel"]["by_week"], data["period"]),
        "charts": _charts(data),
        "focus_words": FOCUS_WORDS,
        "focus_hints": FOCUS_HINTS,
        "status_colors": STATUS_COLORS,
        "csp": REPORT_CSP,
        "money": lambda v: "–" if v is None else format_money(round(v), currency),
        "metric": lambda metric, v: metric_value(metric, v, currency),
        "evidence": lambda items: evidence(items, currency),
    }
    return TEMPLATES.get_template("report.html").render(context)


def build_report(session: Session, workspace_id: int, period: Period) -> str:
    return render_report(report_data(session, workspace_id, period))


# ---- the PDF -------------------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """``STOREFUNNEL_CHROMIUM`` (a path or a command name) if set, else the first Chromium on the PATH."""
    configured = os.environ.get("STOREFUNNEL_CHROMIUM", "").strip()
    if configured:
        if os.sep in configured:
            return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
        return shutil.which(configured)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html: str, timeout: float = PDF_TIMEOUT_S, chromium: Callable[[], str | None] = find_chromium) -> bytes:
    """Print ``html`` to PDF with headless Chromium; ``ReportUnavailable`` (one clear line) when it cannot."""
    binary = chromium()
    if binary is None:
        raise ReportUnavailable("pdf: no Chromium found (install chromium or set STOREFUNNEL_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="storefunnel-report-") as tmp:
        source, target = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        source.write_text(html, encoding="utf-8")
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing in the report may come from the network
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            source.as_uri(),
        ]
        env = {**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": tmp, "XDG_CACHE_HOME": tmp}
        # A session of its own, so a timeout can end Chromium's helper processes too, not only the launcher.
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ReportUnavailable(f"pdf: Chromium did not finish printing within {timeout:.0f} s") from None
        pdf = target.read_bytes() if target.exists() else b""
        if not pdf.startswith(b"%PDF"):
            lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
            why = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            raise ReportUnavailable(f"pdf: Chromium did not write a PDF ({why})")
        return pdf
