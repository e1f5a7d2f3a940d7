"""``storefunnel worker``: the embedded job runner. The rows in the database are the queue; nothing else is needed.

Each pass: recover sends orphaned by a dead worker (after their lease), run the periodic schedules that are due
(the drain of contacts the tracking API marked for the sales cycle, cycle tick, segment refresh, the
lifetime-value keep-in-touch list, the owners' weekly digest), plan email (triggers, flow steps, campaigns),
then deliver due sends batch after batch. Any number of workers may run against one database: sends and
enrollments are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL and with one atomic claiming
UPDATE on SQLite, and every write is idempotent. A failure in one task is logged and retried on a later pass.
Between passes an idle worker sleeps ``--poll`` seconds, or, with ``STOREFUNNEL_REDIS_URL``, blocks on a Redis
wake-up for at most that long (``jobs/wakeup.py``), so an order's thank-you does not wait for the next poll.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from sqlalchemy.orm import Session, sessionmaker

from storefunnel.config import get_settings
from storefunnel.db import get_sessionmaker
from storefunnel.insight.snapshots import refresh_snapshots
from storefunnel.jobs.wakeup import Wakeup, get_wakeup
from storefunnel.messaging import tasks as messaging_tasks
from storefunnel.messaging.sender import BatchStats, Sender, SenderOptions
from storefunnel.messaging.smtp import SmtpConfig
from storefunnel.models import Workspace

log = logging.getLogger("storefunnel.worker")


@dataclass
class WorkerOptions:
    poll_s: float = 0.5
    batch: int = 500
    connections: int = 4
    lease_s: float = 600.0
    max_attempts: int = 8
    base_backoff_s: float = 30.0
    recover_every_s: float = 60.0
    # Periodic schedules (seconds between runs; 0 switches one off).
    cycle_drain_s: float = 5.0
    cycle_tick_s: float = 900.0
    segments_s: float = 3600.0
    clv_s: float = 86400.0
    digest_s: float = 300.0  # how often to look for a weekly digest that is due
    snapshots_s: float = 300.0  # how often to look for a large store whose analytics snapshot is due
    slice_s: float = 5.0  # deliver for at most this long before planning again


@dataclass
class Schedule:
    name: str
    every_s: float
    run: Callable[[], Any]
    last: float = field(default=-1e18)


def _cycle_tick(maker: sessionmaker[Session]) -> int:
    from storefunnel.cycle.service import tick

    with maker() as session:
        ids = list(session.scalars(sa.select(Workspace.id).order_by(Workspace.id)))
    moved = 0
    for ws in ids:
        with maker() as session, session.begin():
            moved += len(tick(session, ws))
    return moved


def _cycle_drain(maker: sessionmaker[Session], budget_s: float) -> int:
    """Bring marked contacts' stages up to date, one committed chunk at a time, for at most ``budget_s``."""
    from storefunnel.cycle.dirty import drain

    deadline = time.monotonic() + budget_s
    updated = 0
    while time.monotonic() < deadline:
        with maker() as session, session.begin():
            step = drain(session)
        updated += step.contacts
        if step.marks == 0:
            break
    return updated


def _digests(maker: sessionmaker[Session], smtp: SmtpConfig) -> int:
    from storefunnel.insight.digest import send_due_digests

    return send_due_digests(maker, smtp)


def _segments() -> int:
    from storefunnel.segments.tasks import refresh_all

    return refresh_all()


class Worker:
    def __init__(
        self,
        maker: sessionmaker[Session] | None = None,
        smtp: SmtpConfig | None = None,
        options: WorkerOptions | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.maker = maker or get_sessionmaker()
        # Redis wake-ups when configured: an idle worker blocks on them instead of sleeping (jobs/wakeup.py).
        self.wakeup = wakeup or get_wakeup()
        self.options = options or WorkerOptions()
        o = self.options
        self.sender = Sender(
            self.maker,
            smtp or SmtpConfig.from_url(get_settings().smtp_url),
            SenderOptions(
                batch=o.batch,
                connections=o.connections,
                max_attempts=o.max_attempts,
                base_backoff_s=o.base_backoff_s,
                lease_s=o.lease_s,
            ),
        )
        self.stopping = threading.Event()
        self._last_recover = -1e18
        self.schedules = [
            s
            for s in (
                Schedule("cycle.drain", o.cycle_drain_s, lambda: _cycle_drain(self.maker, o.slice_s)),
                Schedule("cycle.tick", o.cycle_tick_s, lambda: _cycle_tick(self.maker)),
                Schedule("segments.refresh_all", o.segments_s, _segments),
                Schedule("messaging.clv", o.clv_s, lambda: messaging_tasks.clv_keep_in_touch(self.maker)),
                Schedule("insight.digest", o.digest_s, lambda: _digests(self.maker, self.sender.smtp)),
                Schedule("insight.snapshots", o.snapshots_s, lambda: refresh_snapshots(self.maker)),
            )
            if s.every_s > 0
        ]
        self.totals = BatchStats()

    def _guard(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:
            log.exception("task %s failed; it runs again on a later pass", name)
            return None

    def step(self, now: dt.datetime | None = None) -> BatchStats:
        """One pass of everything; returns what was delivered."""
        clock = time.monotonic()
        if clock - self._last_recover >= self.options.recover_every_s:
            self._last_recover = clock
            self._guard("messaging.recover", self.sender.recover)
        for sched in self.schedules:
            if clock - sched.last >= sched.every_s:
                sched.last = clock
                self._guard(sched.name, sched.run)
        self._guard("messaging.plan", lambda: messaging_tasks.plan(self.maker, now))
        stats = BatchStats()
        deadline = time.monotonic() + self.options.slice_s
        while not self.stopping.is_set():
            batch = self._guard("messaging.send", lambda: self.sender.run_once(now))
            if batch is None or batch.claimed == 0:
                break
            if batch.claimed >= self.options.batch and stats.claimed == 0 and self.wakeup is not None:
                self.wakeup.notify()  # more is due than one batch: wake a peer to share it
            stats.add(batch)
            if time.monotonic() >= deadline:
                break
        self.totals.add(stats)
        return stats

    def idle(self) -> bool:
        """Wait for the poll interval, or less when a wake-up arrives; True when woken."""
        if self.wakeup is not None:
            return self.wakeup.wait(self.options.poll_s, self.stopping)
        self.stopping.wait(self.options.poll_s)
        return False

    def run(self, once: bool = False) -> None:
        """Pass after pass until SIGTERM/SIGINT; a pass that delivered something is followed at once by another."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
        try:
            while not self.stopping.is_set():
                stats = self.step()
                if once:
                    break
                if stats.claimed == 0:
                    self.idle()
        finally:
            self.sender.close()


def worker_command(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit (for cron or tests).")] = False,
    poll: Annotated[float, typer.Option(help="Seconds to wait when there is nothing to do.")] = 0.5,
    connections: Annotated[int, typer.Option(help="SMTP connections in parallel.")] = 4,
    batch: Annotated[int, typer.Option(help="Sends claimed per batch.")] = 500,
    lease: Annotated[
        float, typer.Option(help="Seconds after which a send left 'sending' by a dead worker is marked unknown.")
    ] = 600.0,
    cycle_drain: Annotated[
        float, typer.Option(help="Seconds between updates of contacts the tracking API marked (0: off).")
    ] = 5.0,
    cycle_tick: Annotated[float, typer.Option(help="Seconds between sales-cycle ticks (0: off).")] = 900.0,
    segments: Annotated[float, typer.Option(help="Seconds between segment refreshes (0: off).")] = 3600.0,
    clv: Annotated[float, typer.Option(help="Seconds between keep-in-touch list runs (0: off).")] = 86400.0,
    digest: Annotated[float, typer.Option(help="Seconds between checks for a due weekly digest (0: off).")] = 300.0,
    backoff: Annotated[float, typer.Option(help="First retry delay in seconds after a temporary failure.")] = 30.0,
) -> None:
    """Run the background worker: flows, campaigns, email delivery and the periodic recomputes."""
    from storefunnel.errors import AppError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = WorkerOptions(
        poll_s=poll,
        batch=batch,
        connections=connections,
        lease_s=lease,
        base_backoff_s=backoff,
        recover_every_s=min(60.0, lease),
        cycle_drain_s=cycle_drain,
        cycle_tick_s=cycle_tick,
        segments_s=segments,
        clv_s=clv,
        digest_s=digest,
    )
    try:
        worker = Worker(options=options)
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    log.info(
        "worker started: %s, smtp %s:%s, %s",
        get_settings().database_url.split("@")[-1],
        worker.sender.smtp.host,
        worker.sender.smtp.port,
        f"wake-ups on redis list {worker.wakeup.key}" if worker.wakeup else "polling",
    )
    worker.run(once=once)
    t = worker.totals
    log.info(
        "worker stopped: sent %s, skipped %s, retried %s, failed %s, unknown %s",
        t.sent,
        t.skipped,
        t.retried,
        t.failed,
        t.unknown,
    )
