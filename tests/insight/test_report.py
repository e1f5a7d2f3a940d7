"""The owner's report: every section carries the analytics' own numbers, escapes the data, prints to PDF with the
real Chromium, and is served the same by the CLI, the dashboard and the API."""

from __future__ import annotations

import datetime as dt
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.auth.keys import create_key
from storefunnel.cli import app as cli_app
from storefunnel.insight.advice import advice_report
from storefunnel.insight.channels import channels_report
from storefunnel.insight.facts import Period
from storefunnel.insight.funnel import funnel_report
from storefunnel.insight.report import (
    REPORT_CSP,
    ReportUnavailable,
    default_period,
    html_to_pdf,
    long_period,
    render_report,
    report_data,
)
from storefunnel.insight.retention import retention_report
from storefunnel.insight.who_buys import who_buys_report
from storefunnel.models import KeyKind, Workspace
from storefunnel.web.render import format_money, format_percent
from storefunnel.workspaces.service import create_user, create_workspace
from tests.insight.simulated import simulated_store
from tests.web.helpers import PASSWORD, login

PERIOD = Period(dt.date(2026, 10, 4), dt.date(2026, 10, 31))
QUERY = {"from": "2026-10-04", "to": "2026-10-31"}
EVIL = '<script>alert("x")</script>'
SECTIONS = ("advice", "funnel", "channels", "who-buys", "retention")


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}".*?</section>', html, re.S)
    assert match, f"no section {name}"
    return match.group(0)


def pct_interval(ci: list[float]) -> str:
    return f"{format_percent(ci[0])} to {format_percent(ci[1])}"


def hand_advice(period: Period) -> dict[str, Any]:
    """An advice report of the documented shape, with markup in every string an attacker could influence."""
    stage = {
        "number": 1,
        "stage": "prospecting",
        "side": "marketing",
        "label": "New leads " + EVIL,
        "metric": "leads",
        "current": 953.0,
        "previous": 1589.0,
        "change": -0.40,
        "interval": [-0.45, -0.35],
        "p_value": 1e-20,
        "status": "worse",
        "text": "Fewer leads " + EVIL,
    }
    others = [
        {**stage, "number": n, "stage": s, "side": "sales", "label": s, "metric": "conversion_rate", "current": 0.08,
         "previous": 0.08, "change": 0.0, "interval": None, "p_value": None, "status": "steady", "text": s}
        for n, s in ((2, "conversion"), (3, "buying"), (4, "thanked"), (5, "keeping_in_touch"))
    ]  # fmt: skip
    return {
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "previous": {"from": "2026-09-06", "to": "2026-10-03"},
        "focus": "marketing",
        "reason": "lead_volume_down",
        "summary": "You got 40% fewer leads " + EVIL,
        "stages": [stage, *others],
        "recommendations": [
            {
                "rank": 1,
                "side": "marketing",
                "stage": "prospecting",
                "kind": "problem",
                "title": "Bring in more leads " + EVIL,
                "text": "Paid Search fell " + EVIL,
                "evidence": {"channel": EVIL, "leads": 953, "lead_share": 0.25, "revenue": 123456, "stage": stage},
            }
        ],
    }


# ---- the report on a simulated store --------------------------------------------------------------------------------


def analyze(engine: Engine) -> None:
    """Fresh planner statistics after the bulk load, as autovacuum would give them a minute later."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


@pytest.fixture(scope="module")
def sim(database_url: str, engine: Engine) -> int:
    workspace_id = simulated_store(database_url)[0]
    analyze(engine)
    return workspace_id


def test_every_section_shows_the_numbers_of_the_analytics(session: Session, sim: int) -> None:
    data = report_data(session, sim, PERIOD)
    long = long_period(PERIOD)
    assert long == Period(dt.date(2025, 11, 1), dt.date(2026, 10, 31))
    # the report carries each analytic's own answer, for the periods it says
    assert data["funnel"] == funnel_report(session, sim, PERIOD)
    assert data["channels"] == channels_report(session, sim, PERIOD)
    assert data["who_buys"] == who_buys_report(session, sim, long)
    assert data["retention"] == retention_report(session, sim, long)
    assert data["advice"] == advice_report(session, sim, PERIOD)
    html = render_report(data)
    for name in SECTIONS:
        section(html, name)

    advice = section(html, "advice")
    assert str(escape(data["advice"]["summary"])) in advice
    for r in data["advice"]["recommendations"]:
        assert str(escape(r["title"])) in advice
    assert advice.count("<tr>", advice.index('data-testid="stages"')) >= 5
    for s in data["advice"]["stages"]:
        assert str(escape(s["label"])) in advice

    funnel = section(html, "funnel")
    for step in data["funnel"]["steps"]:
        assert f"{step['count']:,}" in funnel
        if step["from_previous"]:
            assert format_percent(step["from_previous"]["rate"]) in funnel
            assert pct_interval(step["from_previous"]["interval95"]) in funnel
    assert "<svg" in funnel

    channels = section(html, "channels")
    total = data["channels"]["total"]
    assert format_money(total["revenue"], "EUR") in channels
    assert format_money(total["spend"], "EUR") in channels
    for c in data["channels"]["channels"]:
        assert f"<td>{c['channel']}</td>" in channels
        assert format_money(c["revenue"], "EUR") in channels
    assert "<svg" in channels

    who = section(html, "who-buys")
    top = data["who_buys"]["top"]
    assert top is not None
    assert top["sentence"] in who
    assert f"{data['who_buys']['customers']:,} customers" in who

    retention = section(html, "retention")
    rr = data["retention"]["repeat_purchase_rate"]
    assert format_percent(rr["rate"]) in retention
    assert pct_interval(rr["interval95"]) in retention
    cohorts = data["retention"]["cohorts"]
    assert len(re.findall(r"<tr><td style=\"text-align: left\">", retention)) == len(cohorts)
    first = cohorts[0]
    assert format_percent(first["retention"][1], 0) in retention

    # self-contained: no script, nothing fetched from elsewhere
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<style>" in html


def test_report_of_an_empty_store_and_escaping(session: Session, make: Any) -> None:
    ws = create_workspace(session, f"shop {EVIL} {uuid.uuid4().hex[:6]}")
    day = dt.datetime(2026, 10, 10, tzinfo=dt.UTC)
    c = make.contact(session, ws.id, lead_at=day, lead_channel="<b onmouseover=x>Evil</b>")
    make.order(session, ws.id, c, placed_at=day + dt.timedelta(days=1), total=5000)
    html = render_report(report_data(session, ws.id, PERIOD))
    assert "<script" not in html
    assert "<b onmouseover" not in html
    assert "&lt;b onmouseover=x&gt;Evil&lt;/b&gt;" in html
    assert "&lt;script&gt;" in html  # the store's name, escaped
    assert "No group stands out" in html


def test_hand_written_advice_renders_and_escapes(session: Session, workspace: Workspace) -> None:
    data = report_data(session, workspace.id, PERIOD)
    data["advice"] = hand_advice(PERIOD)
    html = render_report(data)
    advice = section(html, "advice")
    assert "<script" not in html
    assert advice.count("&lt;script&gt;") >= 6
    assert "Focus on marketing" in advice
    # the stage's figures: counts as counts, the change and its interval as signed percentages
    for text in ("953", "1,589", "−40%", "−45% to −35%", "Worse", "8.0%"):
        assert text in advice
    # evidence: shares as %, revenue in the store's currency, the stage's own row not repeated
    assert "25.0%" in advice
    assert "€1,234.56" in advice
    assert "Stage</td>" not in advice


# ---- PDF ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_html() -> str:
    data = {
        "store": "A shop",
        "currency": "EUR",
        "period": {"from": "2026-10-04", "to": "2026-10-31"},
        "long_period": {"from": "2025-11-01", "to": "2026-10-31"},
        "generated_at": "2026-11-01 08:00 UTC",
        "advice": hand_advice(PERIOD),
        "funnel": {
            "from": "2026-10-04", "to": "2026-10-31", "window_days": 30,
            "steps": [{"name": "visitors", "count": 10, "from_previous": None},
                      {"name": "leads", "count": 5,
                       "from_previous": {"successes": 5, "trials": 10, "rate": 0.5, "interval95": [0.24, 0.76]}}],
            "converted_in_window": {"successes": 0, "trials": 0, "rate": None, "interval95": None},
            "by_channel": [], "by_campaign": [], "by_segment": [],
            "by_week": [{"key": "2026-10-05", "leads": 3, "new_customers": 1}],
            "time_to_convert_days": {"median": None},
            "touches_before_first_order": {"median": None, "n": 0, "share_5_to_12": {"rate": None}},
        },
        "channels": {"channels": [], "campaigns": [], "total": {
            "channel": "all", "leads": 0, "customers": 0, "conversion": {"rate": None}, "revenue": 0, "spend": 0,
            "cost_per_lead": None, "customer_acquisition_cost": None, "return_on_ad_spend": None}},
        "who_buys": {"leads": 0, "customers": 0, "cells_tested": 0, "fdr": 0.05, "top": None, "significant": []},
        "retention": {"customers": 0, "repeat_purchase_rate": {"rate": None, "interval95": None},
                      "days_between_orders": {"median": None}, "cohorts": []},
    }  # fmt: skip
    return render_report(data)


def test_pdf_is_printed_by_chromium(small_html: str) -> None:
    pdf = html_to_pdf(small_html)
    assert pdf.startswith(b"%PDF")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 1


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-chromium"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_pdf_errors_are_one_clear_line(small_html: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFUNNEL_CHROMIUM", str(tmp_path / "missing"))
    with pytest.raises(ReportUnavailable, match="no Chromium found"):
        html_to_pdf(small_html)
    monkeypatch.setenv("STOREFUNNEL_CHROMIUM", _script(tmp_path, "echo 'cannot open display' >&2; exit 3"))
    with pytest.raises(ReportUnavailable, match=r"did not write a PDF \(cannot open display\)"):
        html_to_pdf(small_html)
    monkeypatch.setenv("STOREFUNNEL_CHROMIUM", _script(tmp_path, "sleep 30"))
    started = dt.datetime.now()
    with pytest.raises(ReportUnavailable, match="did not finish printing within 1 s"):
        html_to_pdf(small_html, timeout=1)
    assert (dt.datetime.now() - started).total_seconds() < 10


# ---- the CLI, the dashboard and the API -----------------------------------------------------------------------------


def _ws_name(session: Session, workspace_id: int) -> str:
    ws = session.get(Workspace, workspace_id)
    assert ws is not None
    return ws.name


def test_cli_writes_the_html_and_the_pdf(session: Session, sim: int, tmp_path: Path) -> None:
    runner = CliRunner()
    name = _ws_name(session, sim)
    out = tmp_path / "out" / "report.html"
    args = ["report", "--workspace", name, "--from", QUERY["from"], "--to", QUERY["to"], "--out", str(out), "--pdf"]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    for name_ in SECTIONS:
        section(html, name_)
    assert f"{funnel_report(session, sim, PERIOD)['steps'][1]['count']:,}" in section(html, "funnel")
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert result.stdout.strip().splitlines()[-1] == str(pdf)

    only_pdf = tmp_path / "only.pdf"
    result = runner.invoke(cli_app, [*args[:7], "--out", str(only_pdf)])
    assert result.exit_code == 0, result.output
    assert only_pdf.read_bytes().startswith(b"%PDF")
    assert not only_pdf.with_suffix(".html").exists()


def test_cli_errors(session: Session, sim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    name = _ws_name(session, sim)
    bad = runner.invoke(cli_app, ["report", "-w", name, "--from", "2026-10-31", "--to", "2026-10-01"])
    assert bad.exit_code == 2
    assert "to: the last day must not be before" in bad.output
    monkeypatch.setenv("STOREFUNNEL_CHROMIUM", str(tmp_path / "none"))
    out = tmp_path / "r.pdf"
    missing = runner.invoke(cli_app, ["report", "-w", name, *_query_args(), "--out", str(out)])
    assert missing.exit_code == 2
    assert "no Chromium found" in missing.output
    assert not out.exists()
    unknown = runner.invoke(cli_app, ["report", "-w", f"nope-{uuid.uuid4().hex[:6]}", "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 2
    assert "no workspace named" in unknown.output


def _query_args() -> list[str]:
    return ["--from", QUERY["from"], "--to", QUERY["to"]]


def test_dashboard_serves_the_report(client: TestClient, session: Session, sim: int) -> None:
    user = create_user(session, sim, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
    anonymous = client.get("/report", params=QUERY, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login")
    status, _ = login(client, user.email)
    assert status == 303
    assert 'href="/report"' in client.get("/overview").text  # in the Together navigation
    page = client.get("/report", params=QUERY)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == REPORT_CSP
    for name in SECTIONS:
        section(page.text, name)
    funnel = funnel_report(session, sim, PERIOD)
    assert f"{funnel['steps'][0]['count']:,}" in section(page.text, "funnel")
    pdf = client.get("/report", params={**QUERY, "format": "pdf"})
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    bad = client.get("/report", params={"from": "2026-10-31", "to": "2026-10-01"})
    assert bad.status_code == 422
    assert "to: the last day must not be before" in bad.text


def test_api_serves_html_and_pdf(
    client: TestClient, session: Session, sim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = create_key(session, sim, KeyKind.api)
    auth = {"Authorization": f"Bearer {key}"}
    r = client.get("/api/v1/report", params=QUERY, headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    for name in SECTIONS:
        section(r.text, name)
    pdf = client.get("/api/v1/report", params={**QUERY, "format": "pdf"}, headers=auth)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
    wrong = client.get("/api/v1/report", params={**QUERY, "format": "docx"}, headers=auth)
    assert wrong.status_code == 422
    assert "format" in wrong.json()["detail"]
    backwards = client.get("/api/v1/report", params={"from": "2026-10-31", "to": "2026-10-01"}, headers=auth)
    assert backwards.status_code == 422
    assert backwards.headers["content-type"].startswith("application/problem+json")
    assert backwards.json()["detail"].startswith("to:")
    monkeypatch.setenv("STOREFUNNEL_CHROMIUM", "/nonexistent/chromium")
    unavailable = client.get("/api/v1/report", params={**QUERY, "format": "pdf"}, headers=auth)
    assert unavailable.status_code == 503
    assert "no Chromium found" in unavailable.json()["detail"]


def test_default_period_is_the_last_four_whole_weeks() -> None:
    p = default_period(None, None, today=dt.date(2026, 11, 23))
    assert (p.first, p.last) == (dt.date(2026, 10, 26), dt.date(2026, 11, 22))
    assert default_period(None, "2026-10-31").first == dt.date(2026, 10, 4)
