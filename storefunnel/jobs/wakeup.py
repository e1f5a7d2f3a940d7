"""Waking idle workers through Redis when work is enqueued (optional: ``STOREFUNNEL_REDIS_URL``).

The database stays the queue and the only source of truth. Redis carries nothing but "look now": a token pushed
on one list (``{STOREFUNNEL_REDIS_PREFIX}:wakeup``) after a transaction that enqueued work commits (an order that
may start a flow, a campaign sent now). An idle worker waits on that list with ``BLPOP`` for at most its poll
interval instead of sleeping, then reads the database as it always does. So:

* a lost wake-up (Redis down or restarted, the token taken by a busy worker) only delays work until the next poll;
* one token wakes one worker; a worker whose pass found a full batch pushes another so a peer joins in;
* at most once is the database's claim (``UPDATE … WHERE status = 'queued'``), never Redis'.

Without ``STOREFUNNEL_REDIS_URL`` nothing here runs and the workers poll the database as before.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from storefunnel.config import get_settings

log = logging.getLogger(__name__)
SESSION_FLAG = "storefunnel.wakeup"
MAX_TOKENS = 16  # enough to wake every worker of a deployment; the list never grows past it
WAIT_SLICE_S = 2.0  # a blocked worker looks at its stop flag this often
RETRY_AFTER_S = 30.0  # after a Redis error, requests do not try again (and wait) for this long
TOKEN_TTL_S = 3600


class Wakeup:
    """One Redis list of wake-up tokens; every method swallows Redis errors (the database poll covers them)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.key = f"{prefix}:wakeup"
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=WAIT_SLICE_S + 5.0)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _failed(self, what: str, exc: Exception) -> None:
        with self._lock:
            first = self._down_until <= time.monotonic()
            self._down_until = time.monotonic() + RETRY_AFTER_S
        if first:
            log.warning("redis %s failed (%s); workers fall back to polling the database", what, exc)

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def notify(self, tokens: int = 1) -> bool:
        """Push ``tokens`` wake-ups; False when Redis could not be reached (the work waits for a poll)."""
        if self._is_down():
            return False
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.lpush(self.key, *(["1"] * max(1, min(tokens, MAX_TOKENS))))
            pipe.ltrim(self.key, 0, MAX_TOKENS - 1)
            pipe.expire(self.key, TOKEN_TTL_S)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("wake-up", exc)
            return False
        return True

    def wait(self, timeout_s: float, stopping: threading.Event) -> bool:
        """Block until a wake-up (True), ``timeout_s`` passes or ``stopping`` is set (False)."""
        deadline = time.monotonic() + timeout_s
        while not stopping.is_set():
            left = deadline - time.monotonic()
            if left < 0.01:  # BLPOP with timeout 0 would block for ever
                return False
            if self._is_down():
                stopping.wait(left)
                return False
            try:
                if self._redis.blpop([self.key], timeout=round(min(left, WAIT_SLICE_S), 3)) is not None:
                    return True
            except (redis.RedisError, OSError) as exc:
                self._failed("BLPOP", exc)
        return False

    def pending(self) -> int:
        """Tokens waiting (for tests and diagnostics)."""
        return int(self._redis.llen(self.key))

    def close(self) -> None:
        self._redis.close()


@lru_cache
def _wakeup_for(url: str, prefix: str) -> Wakeup:
    return Wakeup(url, prefix)


def get_wakeup() -> Wakeup | None:
    """The configured wake-up channel, or None when ``STOREFUNNEL_REDIS_URL`` is not set."""
    settings = get_settings()
    if not settings.redis_url:
        return None
    return _wakeup_for(settings.redis_url, settings.redis_prefix)


def request(session: Session) -> None:
    """Wake a worker once this session's transaction commits; nothing happens if it rolls back."""
    if get_settings().redis_url:
        session.info[SESSION_FLAG] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(SESSION_FLAG, False):
        wakeup = get_wakeup()
        if wakeup is not None:
            wakeup.notify()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(SESSION_FLAG, None)
