"""Email: campaign throughput and order-to-thank-you latency, against a real SMTP server (aiosmtpd) on loopback.

* Campaign: ``--contacts`` consenting contacts (100,000 by default) in a segment of a scratch SQLite store; the
  time from "send now" until the SMTP server has accepted every message (the worker's planning, the ledger's
  claims and commits, rendering, tracking links, DKIM-free RFC 5322 composition, SMTP over reused connections in
  parallel). Reference in the same run: a naive loop with ``smtplib`` opening a connection per message, on a
  ``--sample`` (2,000) of the same contacts, composing the same kind of message with ``email.message``.
* Thank-you latency: ``storefunnel serve`` and ``storefunnel worker`` as real processes; an order is POSTed to
  /api/v1/orders and the clock stops when the thank-you reaches the SMTP server. Three set-ups: the embedded
  default (the worker polls the database every 0.5 s), with Redis wake-ups (``STOREFUNNEL_REDIS_URL``, same poll),
  and with Redis and a 5 s poll (what wake-ups allow: less polling, same latency). Reference: one direct
  ``smtplib`` send of a message (the floor).

    .venv/bin/python -m bench.email [--contacts 100000] [--sample 2000] [--connections 4] [--orders 5]
                                    [--redis redis://127.0.0.1:6379/0 | --redis ''] [--latency-only]
"""

from __future__ import annotations

import argparse
import os
import random
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

SMTP_HOST = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((SMTP_HOST, 0))
        return int(s.getsockname()[1])


def start_smtp_process(port: int) -> subprocess.Popen[bytes]:
    """aiosmtpd in its own process, discarding what it accepts (its 250 reply is what we count)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{SMTP_HOST}:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP(SMTP_HOST, port, timeout=2) as s:
                s.noop()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("aiosmtpd did not start")


def setup_store(url: str) -> None:
    os.environ["STOREFUNNEL_DATABASE_URL"] = url
    os.environ.setdefault("STOREFUNNEL_ENV", "dev")
    from storefunnel import db
    from storefunnel.config import get_settings
    from storefunnel.migrate import upgrade

    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    upgrade(db.get_engine())


def fill_campaign(contacts: int) -> tuple[int, int, list[str]]:
    """A workspace, ``contacts`` consenting contacts in one static segment, a template and a campaign."""
    from storefunnel.db import get_engine, get_sessionmaker, utcnow
    from storefunnel.messaging import schemas, service
    from storefunnel.models import Contact, Segment, SegmentMember
    from storefunnel.workspaces.service import create_workspace

    maker = get_sessionmaker()
    with maker() as s:
        ws = create_workspace(s, f"bench-{uuid.uuid4().hex[:8]}")
        seg = Segment(workspace_id=ws.id, name="everyone", kind="static", rules=None)
        s.add(seg)
        html = (
            "<html><body><p>Hi {{ contact.first_name }},</p><p>Our spring collection is here.</p>"
            '<p><a href="https://shop.example/spring">See it</a></p></body></html>'
        )
        tpl = service.create_template(
            s,
            ws.id,
            schemas.TemplateCreate(
                name="spring", subject="Spring at {{ store }}", html=html, text="Hi {{ contact.first_name }}"
            ),
        )
        s.commit()
        ws_id, seg_id, tpl_id = ws.id, seg.id, tpl.id
    now = utcnow()
    emails = [f"reader{i}@bench.example" for i in range(contacts)]
    with get_engine().begin() as conn:
        conn.execute(
            sa.insert(Contact),
            [
                {
                    "workspace_id": ws_id,
                    "email": e,
                    "first_name": f"R{i}",
                    "email_consent": True,
                    "traits": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i, e in enumerate(emails)
            ],
        )
        ids = conn.execute(sa.select(Contact.id).where(Contact.workspace_id == ws_id)).scalars().all()
        conn.execute(
            sa.insert(SegmentMember),
            [{"workspace_id": ws_id, "segment_id": seg_id, "contact_id": c, "entered_at": now} for c in ids],
        )
    with maker() as s:
        camp = service.create_campaign(
            s, ws_id, schemas.CampaignCreate(name="spring", template_id=tpl_id, segment_id=seg_id)
        )
        s.commit()
        return ws_id, camp.id, emails


def run_campaign(ws_id: int, campaign_id: int, port: int, connections: int) -> tuple[float, dict[str, int]]:
    from storefunnel.db import get_sessionmaker
    from storefunnel.jobs.worker import Worker, WorkerOptions
    from storefunnel.messaging import service
    from storefunnel.messaging.smtp import SmtpConfig
    from storefunnel.models import Campaign, Send

    maker = get_sessionmaker()
    worker = Worker(
        maker,
        SmtpConfig.from_url(f"smtp://{SMTP_HOST}:{port}"),
        WorkerOptions(batch=1000, connections=connections, cycle_tick_s=0, segments_s=0, clv_s=0, slice_s=3600),
    )
    start = time.perf_counter()
    with maker() as s:
        service.schedule_campaign(s, ws_id, campaign_id)
        s.commit()
    while True:
        worker.step()
        with maker() as s:
            status = s.scalar(sa.select(Campaign.status).where(Campaign.id == campaign_id))
        if status == "sent":
            break
    elapsed = time.perf_counter() - start
    worker.sender.close()
    with maker() as s:
        counts = dict(
            s.execute(
                sa.select(Send.status, sa.func.count()).where(Send.campaign_id == campaign_id).group_by(Send.status)
            ).all()
        )
    return elapsed, {str(k): int(v) for k, v in counts.items()}


def naive_loop(emails: list[str], port: int) -> float:
    """The reference: one connection per message, as a short script would do it."""
    start = time.perf_counter()
    for i, to in enumerate(emails):
        msg = EmailMessage()
        msg["From"] = "Shop <noreply@shop.example>"
        msg["To"] = to
        msg["Subject"] = "Spring at Shop"
        msg.set_content(f"Hi R{i}")
        msg.add_alternative(
            f"<html><body><p>Hi R{i},</p><p>Our spring collection is here.</p></body></html>", subtype="html"
        )
        with smtplib.SMTP(SMTP_HOST, port) as smtp:
            smtp.send_message(msg)
    return time.perf_counter() - start


# ---- order -> thank-you latency -----------------------------------------------------------------------------------


class ArrivalSink:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrived.setdefault(rcpt, time.perf_counter())
        return "250 OK"


def thank_you_latency(url: str, orders: int, poll: float = 0.5, redis_url: str = "") -> list[float]:
    from aiosmtpd.controller import Controller

    from storefunnel.auth.keys import create_key
    from storefunnel.db import get_sessionmaker
    from storefunnel.messaging import flows
    from storefunnel.models import KeyKind
    from storefunnel.workspaces.service import create_workspace

    sink = ArrivalSink()
    port = free_port()
    controller = Controller(sink, hostname=SMTP_HOST, port=port)
    controller.start()
    with get_sessionmaker()() as s:
        ws = create_workspace(s, f"thanks-{uuid.uuid4().hex[:8]}")
        flows.install(s, ws.id, "thank_you", enabled=True)
        _, key = create_key(s, ws.id, KeyKind.api)
        s.commit()
    env = {**os.environ, "STOREFUNNEL_DATABASE_URL": url, "STOREFUNNEL_SMTP_URL": f"smtp://{SMTP_HOST}:{port}"}
    env["STOREFUNNEL_REDIS_URL"] = redis_url
    env["STOREFUNNEL_REDIS_PREFIX"] = f"sf-bench-{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "storefunnel", "serve", "--port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "storefunnel", "worker", "--poll", str(poll)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://{SMTP_HOST}:{api_port}"
    latencies: list[float] = []
    gaps = random.Random(7)
    try:
        # Start-up is not what is measured: wait for the server's health check and the worker's first log line.
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        assert worker.stderr is not None
        while b"worker started" not in worker.stderr.readline():
            if worker.poll() is not None:
                raise RuntimeError("worker exited")
        time.sleep(1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            for i in range(orders):
                email = f"buyer{i}.{uuid.uuid4().hex[:6]}@bench.example"
                body = {
                    "email": email,
                    "external_id": f"B-{uuid.uuid4().hex[:10]}",
                    "placed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "currency": "EUR",
                    "lines": [{"name": "Mug", "quantity": 1, "unit_price": 1500}],
                }
                start = time.perf_counter()
                r = client.post("/api/v1/orders", json=body)
                r.raise_for_status()
                while email not in sink.arrived:
                    if time.perf_counter() - start > 60:
                        raise RuntimeError("no thank-you within 60 s")
                    time.sleep(0.01)
                latencies.append(sink.arrived[email] - start)
                time.sleep(gaps.uniform(0.2, 0.9))  # orders land at any point of the worker's poll cycle
    finally:
        for proc in (worker, server):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        controller.stop()
    return latencies


def latency_rows(tmp: Path, orders: int, redis_url: str) -> list[tuple[str, list[float]]]:
    """Order -> thank-you in each set-up, each on a store of its own (a fresh SQLite file)."""
    setups = [("embedded, poll 0.5 s", 0.5, "")]
    if redis_url:
        setups += [("Redis wake-up, poll 0.5 s", 0.5, redis_url), ("Redis wake-up, poll 5 s", 5.0, redis_url)]
    rows = []
    for i, (label, poll, redis) in enumerate(setups):
        url = f"sqlite:///{tmp / f'latency{i}.db'}"
        setup_store(url)
        latencies = thank_you_latency(url, orders, poll, redis)
        print(f"{label}: {', '.join(f'{x:.3f}' for x in latencies)} s", flush=True)
        rows.append((label, latencies))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the wake-up runs; '' skips")
    parser.add_argument("--latency-only", action="store_true", help="Only the order -> thank-you latency runs.")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-email-"))
    if args.latency_only:
        print_latency(latency_rows(tmp, args.orders, args.redis), floor_s())
        return
    url = f"sqlite:///{tmp / 'store.db'}"
    setup_store(url)
    port = free_port()
    smtp = start_smtp_process(port)
    try:
        t_fill = time.perf_counter()
        ws_id, campaign_id, emails = fill_campaign(args.contacts)
        print(f"filled {args.contacts:,} contacts in {time.perf_counter() - t_fill:.1f} s", flush=True)
        ours_s, counts = run_campaign(ws_id, campaign_id, port, args.connections)
        assert counts == {"sent": args.contacts}, counts
        naive_s = naive_loop(emails[: args.sample], port)
    finally:
        smtp.terminate()
        smtp.wait(10)
    ours_rate = args.contacts / ours_s
    naive_rate = args.sample / naive_s
    # Stores of their own, so the campaign's 100k contacts do not weigh on the worker's first cycle tick.
    rows = latency_rows(tmp, args.orders, args.redis)

    print()
    print("| metric | storefunnel | reference | ratio (>1 = ours better) |")
    print("|--------|------------:|----------:|------:|")
    print(
        f"| campaign messages/s ({args.contacts:,} recipients; reference: {args.sample:,}) | {ours_rate:,.0f} "
        f"| {naive_rate:,.0f} | {ours_rate / naive_rate:.2f}x |"
    )
    print(
        f"| campaign wall time s | {ours_s:,.1f} | {args.contacts / naive_rate:,.1f} (extrapolated) | "
        f"{(args.contacts / naive_rate) / ours_s:.2f}x |"
    )
    print_latency(rows, floor_s(), header=False)
    print(f"\nledger: {counts}")


def floor_s() -> float:
    """One direct smtplib send to a local aiosmtpd: the floor of any order -> thank-you latency."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(ArrivalSink(), hostname=SMTP_HOST, port=port)
    controller.start()
    try:
        start = time.perf_counter()
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "shop@bench.example", "floor@bench.example", "Thank you"
        msg.set_content("Thank you for your order.")
        with smtplib.SMTP(SMTP_HOST, port) as smtp:
            smtp.send_message(msg)
        return time.perf_counter() - start
    finally:
        controller.stop()


def print_latency(rows: list[tuple[str, list[float]]], floor: float, header: bool = True) -> None:
    if header:
        print()
        print("| metric | storefunnel | reference | ratio (>1 = ours better) |")
        print("|--------|------------:|----------:|------:|")
    for label, latencies in rows:
        med, worst = statistics.median(latencies), max(latencies)
        print(
            f"| order -> thank-you at SMTP, {label}, median s ({len(latencies)} orders) | {med:.3f} "
            f"| {floor:.3f} (one direct send) | {floor / med:.3f}x |"
        )
        print(f"| order -> thank-you at SMTP, {label}, max s | {worst:.3f} | | |")


if __name__ == "__main__":
    main()
