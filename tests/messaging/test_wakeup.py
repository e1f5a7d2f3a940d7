"""Redis wake-ups against the real Redis on 127.0.0.1:6379 (a key prefix of its own per test): the channel itself,
the commit hook, and two worker processes that poll only every 30 s yet send at once, each message at most once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.config import get_settings
from storefunnel.db import utcnow
from storefunnel.jobs import wakeup
from storefunnel.messaging import flows, schemas, service
from storefunnel.models import Send, Workspace
from storefunnel.orders.schemas import OrderCreate
from storefunnel.orders.service import create_order
from tests.fixtures.factories import create_contact
from tests.fixtures.server import free_port
from tests.messaging.conftest import SmtpServer
from tests.messaging.helpers import segment, template
from tests.messaging.test_at_most_once import SlowSink

REDIS_URL = "redis://127.0.0.1:6379/0"
N = 200


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"sf-test-{uuid.uuid4().hex[:12]}"
    yield value
    redis.Redis.from_url(REDIS_URL).delete(f"{value}:wakeup")


@pytest.fixture
def redis_env(prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process configured for Redis wake-ups under the test's prefix."""
    monkeypatch.setenv("STOREFUNNEL_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("STOREFUNNEL_REDIS_PREFIX", prefix)
    get_settings.cache_clear()
    yield prefix
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_wakeup_ends_the_wait_and_none_waits_the_full_poll(prefix: str) -> None:
    w = wakeup.Wakeup(REDIS_URL, prefix)
    stop = threading.Event()
    start = time.monotonic()
    assert w.wait(0.3, stop) is False
    assert time.monotonic() - start >= 0.29

    threading.Timer(0.2, w.notify).start()
    start = time.monotonic()
    assert w.wait(10, stop) is True
    assert time.monotonic() - start < 2
    for _ in range(100):
        w.notify()
    assert w.pending() == wakeup.MAX_TOKENS  # bounded: nobody waiting never makes the list grow
    assert 0 < redis.Redis.from_url(REDIS_URL).ttl(w.key) <= wakeup.TOKEN_TTL_S

    threading.Timer(0.2, stop.set).start()  # a stopping worker does not sit out its poll interval
    start = time.monotonic()
    redis.Redis.from_url(REDIS_URL).delete(w.key)
    assert w.wait(30, stop) is False
    assert time.monotonic() - start < wakeup.WAIT_SLICE_S + 1


def test_redis_down_falls_back_to_polling(prefix: str) -> None:
    w = wakeup.Wakeup(f"redis://127.0.0.1:{free_port()}/0", prefix)
    start = time.monotonic()
    assert w.notify() is False
    assert w.notify() is False  # not tried again at once: a request is not slowed down by a dead Redis
    assert time.monotonic() - start < 2
    start = time.monotonic()
    assert w.wait(0.3, threading.Event()) is False
    assert 0.29 <= time.monotonic() - start < 2


def test_an_order_or_a_campaign_wakes_after_commit_only(
    committed_session: Session, fresh_workspace: Workspace, redis_env: str
) -> None:
    s, ws = committed_session, fresh_workspace
    channel = wakeup.get_wakeup()
    assert channel is not None
    assert channel.key == f"{redis_env}:wakeup"
    order = OrderCreate.model_validate(
        {
            "email": "buyer@shop.example",
            "placed_at": utcnow().isoformat(),
            "currency": "EUR",
            "lines": [{"name": "Mug", "quantity": 1, "unit_price": 1500}],
        }
    )
    create_order(s, ws.id, order)
    assert channel.pending() == 0  # not before the commit: a worker would find nothing yet
    s.rollback()
    assert channel.pending() == 0
    create_order(s, ws.id, order)
    s.commit()
    assert channel.pending() == 1
    tpl = template(s, ws.id)
    later = service.create_campaign(s, ws.id, schemas.CampaignCreate(name="later", template_id=tpl.id))
    service.schedule_campaign(s, ws.id, later.id, utcnow() + dt.timedelta(days=1))
    s.commit()
    assert channel.pending() == 1  # due tomorrow: nothing to wake anyone for
    now = service.create_campaign(s, ws.id, schemas.CampaignCreate(name="now", template_id=tpl.id))
    service.schedule_campaign(s, ws.id, now.id)
    s.commit()
    assert channel.pending() == 2


def _worker(database_url: str, smtp_url: str, prefix: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "STOREFUNNEL_DATABASE_URL": database_url,
        "STOREFUNNEL_SMTP_URL": smtp_url,
        "STOREFUNNEL_REDIS_URL": REDIS_URL,
        "STOREFUNNEL_REDIS_PREFIX": prefix,
    }
    args = ["--poll", "30", "--batch", "20", "--connections", "2", "--cycle-tick", "0", "--segments", "0", "--clv", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "storefunnel", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


class Log:
    """A worker's log lines, read in a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))


def _wait(predicate: Callable[[], bool], limit_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def test_two_workers_on_redis_send_at_once_and_at_most_once(
    committed_session: Session,
    fresh_workspace: Workspace,
    smtp_server: SmtpServer,
    database_url: str,
    redis_env: str,
) -> None:
    s, ws = committed_session, fresh_workspace
    sink = SlowSink()
    smtp_server.stop()
    smtp_server.sink = sink
    smtp_server.start()
    flows.install(s, ws.id, "thank_you", enabled=True)
    people = [create_contact(s, ws.id, email=f"r{i}@wake.example", email_consent=True) for i in range(N)]
    seg = segment(s, ws.id, people)
    tpl = template(s, ws.id)
    campaign = service.create_campaign(
        s, ws.id, schemas.CampaignCreate(name="wake", template_id=tpl.id, segment_id=seg.id)
    )
    s.commit()

    procs = [_worker(database_url, smtp_server.url, redis_env) for _ in range(2)]
    logs = [Log(p) for p in procs]
    try:
        _wait(lambda: all(log.has("worker started") for log in logs), 120, "both workers to start")
        channel = wakeup.get_wakeup()
        assert channel is not None
        # Both have made their first pass and sit in BLPOP (their next poll is 30 s away).
        time.sleep(2)
        assert "wake-ups on redis list" in "".join(logs[0].lines)

        order = OrderCreate.model_validate(
            {
                "email": "buyer@wake.example",
                "placed_at": utcnow().isoformat(),
                "currency": "EUR",
                "lines": [{"name": "Mug", "quantity": 1, "unit_price": 1500}],
            }
        )
        create_order(s, ws.id, order)
        s.commit()
        latency = _wait(lambda: bool(sink.to("buyer@wake.example")), 20, "the thank-you")
        assert latency < 10, f"the thank-you took {latency:.1f} s: the workers were not woken"

        service.schedule_campaign(s, ws.id, campaign.id)
        s.commit()
        _wait(lambda: len(sink.received) >= N + 1, 25, "the campaign to go out before the next poll")
        time.sleep(1)  # anything sent twice would arrive now
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        for log in logs:
            log.thread.join(10)

    per_recipient = Counter(r for got in sink.received for r in got.rcpt_tos)
    assert {a: n for a, n in per_recipient.items() if n > 1} == {}
    assert len(per_recipient) == N + 1
    s.expire_all()
    statuses = Counter(s.scalars(sa.select(Send.status).where(Send.workspace_id == ws.id)))
    assert statuses == Counter({"sent": N + 1})
    # Both workers report, and between them every message once. Which of them sent how many is not asserted:
    # the first to wake wakes its peer when a full batch is due, but on a busy machine the peer may get the CPU
    # only after the first has claimed everything (the campaign going out before the 30 s poll, above, is what
    # shows the wake-ups work).
    sent_by = [
        int(line.rsplit("sent ", 1)[1].split(",")[0]) for log in logs for line in log.lines if "worker stopped" in line
    ]
    assert len(sent_by) == 2
    assert sum(sent_by) == N + 1
