"""SMTP delivery from ``STOREFUNNEL_SMTP_URL``, with reused connections and an honest account of each failure.

``smtp://user:pass@host:587`` upgrades with STARTTLS when the server offers it (``?starttls=require`` refuses
to go on in clear), ``smtps://host:465`` is implicit TLS; user and password, when given, log in. ``?cafile=``
names a CA bundle to trust (a private relay); ``?timeout=`` is the socket timeout in seconds.

What matters for at-most-once is *where* a delivery failed. Before the message body is on the wire (connect,
MAIL, RCPT, or the DATA command answered with an error) the server cannot have it: safe to try again. Once the
body was sent, a lost connection or timeout before the server's reply is ambiguous: the server may have queued
it. :func:`SmtpConnection.deliver` says which (``Outcome.phase``), and the worker never resends an ambiguous one.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from storefunnel.errors import Invalid

Result = Literal["sent", "retry", "rejected", "ambiguous"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: Literal["auto", "require", "never"] = "auto"
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``smtp://`` / ``smtps://`` URLs; anything else is refused naming the setting."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise Invalid(f"STOREFUNNEL_SMTP_URL: expected smtp://host:port or smtps://host:port, got {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        mode = query.get("starttls", "auto")
        if mode not in ("auto", "require", "never"):
            raise Invalid("STOREFUNNEL_SMTP_URL: starttls must be auto, require or never")
        try:
            port = parts.port or (465 if implicit else 25)
            timeout = float(query.get("timeout", "30"))
        except ValueError as exc:
            raise Invalid(f"STOREFUNNEL_SMTP_URL: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            implicit_tls=implicit,
            starttls=mode,  # type: ignore[arg-type]
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query.get("cafile"),
            timeout=timeout,
        )

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


@dataclass(frozen=True)
class Outcome:
    """``sent``: accepted. ``retry``: not delivered, try later. ``rejected``: refused for good (a 5xx).
    ``ambiguous``: the body went out but no answer came back."""

    result: Result
    code: int = 0
    detail: str = ""

    @property
    def permanent_recipient_failure(self) -> bool:
        return self.result == "rejected" and 550 <= self.code <= 553


class SmtpConnection:
    """One SMTP session, reused for many messages; reconnects on demand."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        smtp: smtplib.SMTP
        if cfg.implicit_tls:
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=cfg.tls_context())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            smtp.ehlo()
            if not cfg.implicit_tls and cfg.starttls != "never":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=cfg.tls_context())
                    smtp.ehlo()
                elif cfg.starttls == "require":
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def deliver(self, sender: str, recipient: str, message: bytes) -> Outcome:
        """One message over this connection, opening it if needed; never raises for SMTP or network trouble.

        A reused connection the server has since closed fails before the body: that is retried at once on a
        fresh connection.
        """
        reused = self._smtp is not None
        outcome = self._deliver_once(sender, recipient, message)
        if reused and outcome.result == "retry" and outcome.code == 0 and self._smtp is None:
            outcome = self._deliver_once(sender, recipient, message)
        return outcome

    def _deliver_once(self, sender: str, recipient: str, message: bytes) -> Outcome:
        phase = "connect"
        try:
            if self._smtp is None:
                self._smtp = self._open()
            smtp = self._smtp
            phase = "envelope"
            code, reply = smtp.mail(sender)
            if code != 250:
                return self._refused(smtp, code, reply)
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(smtp, code, reply)
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return self._refused(smtp, code, reply)
            phase = "body"  # from here on the server may have the message even if we hear nothing back
            smtp.send(_dot_stuff(message))
            code, reply = smtp.getreply()
            if code == 250:
                return Outcome("sent", code, reply.decode(errors="replace"))
            # An explicit error reply after the body means the server did not take it.
            return self._refused(smtp, code, reply)
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            return Outcome("retry", exc.smtp_code, f"authentication failed: {exc.smtp_error!r}")
        except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            self._drop()
            if phase == "body":
                return Outcome("ambiguous", 0, f"connection lost after the body was sent: {exc!r}")
            return Outcome("retry", 0, f"{phase}: {exc!r}")

    def _refused(self, smtp: smtplib.SMTP, code: int, reply: bytes) -> Outcome:
        text = reply.decode(errors="replace")
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
        if code == -1:  # smtplib's "connection closed" before a reply
            self._drop()
            return Outcome("retry", code, text)
        return Outcome("rejected" if 500 <= code < 600 else "retry", code, text)


def _dot_stuff(message: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, and the terminating ``.`` line (RFC 5321 §4.5.2)."""
    data = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpPool:
    """A fixed number of reusable connections shared by the worker's sending threads."""

    def __init__(self, config: SmtpConfig, size: int = 4) -> None:
        self.config = config
        self.size = max(1, size)
        self._free = [SmtpConnection(config) for _ in range(self.size)]
        self._lock = threading.Condition()

    @contextmanager
    def connection(self) -> Iterator[SmtpConnection]:
        with self._lock:
            while not self._free:
                self._lock.wait()
            conn = self._free.pop()
        try:
            yield conn
        finally:
            with self._lock:
                self._free.append(conn)
                self._lock.notify()

    def close(self) -> None:
        with self._lock:
            for conn in self._free:
                conn.close()
