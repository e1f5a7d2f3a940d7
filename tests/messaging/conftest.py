"""A real SMTP server (aiosmtpd) on loopback that keeps every message it accepted, and workspace helpers."""

from __future__ import annotations

import email
import email.policy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session

from storefunnel.messaging.smtp import SmtpConfig
from storefunnel.models import Workspace
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.server import free_port


@dataclass
class Received:
    envelope_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Sink:
    """The handler: keeps what it accepted; ``refuse`` makes it answer RCPT with a code for chosen addresses."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            code, text = self.refuse[address]
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


@dataclass
class SmtpServer:
    controller: Controller
    sink: Sink
    port: int

    @property
    def config(self) -> SmtpConfig:
        return SmtpConfig.from_url(self.url)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=10"

    def stop(self) -> None:
        self.controller.stop()

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    server = SmtpServer(controller, sink, port)
    yield server
    try:
        server.controller.stop()
    except (AssertionError, RuntimeError):
        pass


@pytest.fixture
def fresh_workspace(committed_session: Session) -> Workspace:
    """A committed workspace of its own, for tests where the worker (its own sessions) must see the data."""
    ws = create_workspace(committed_session, f"mail-{uuid.uuid4().hex[:10]}")
    committed_session.commit()
    return ws
