"""The SMTP client against real aiosmtpd servers: STARTTLS when offered, implicit TLS, login, and how it reports
failures before and after the message body (the line at-most-once depends on)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from storefunnel.errors import Invalid
from storefunnel.messaging.smtp import SmtpConfig, SmtpConnection
from tests.fixtures.server import free_port
from tests.messaging.conftest import Sink

MESSAGE = b"From: a@shop.example\r\nTo: b@shop.example\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "cert.pem", d / "key.pem"


def _server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"shop" and data.password == b"s3cret"
    return AuthResult(success=ok)


@pytest.fixture
def tls_servers(cert: tuple[Path, Path]) -> Iterator[dict[str, Any]]:
    sink = Sink()
    starttls_port, implicit_port = free_port(), free_port()
    starttls = Controller(
        sink,
        hostname="127.0.0.1",
        port=starttls_port,
        tls_context=_server_context(cert),
        require_starttls=True,
        authenticator=_auth,
        auth_required=True,
    )
    implicit = Controller(
        sink,
        hostname="127.0.0.1",
        port=implicit_port,
        ssl_context=_server_context(cert),
        authenticator=_auth,
        auth_required=True,
        # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH; this socket is TLS from the start.
        auth_require_tls=False,
        server_hostname="127.0.0.1",
    )
    starttls.start()
    implicit.start()
    yield {"sink": sink, "starttls": starttls_port, "implicit": implicit_port, "ca": cert[0]}
    starttls.stop()
    implicit.stop()


def test_starttls_and_login(tls_servers: dict[str, Any]) -> None:
    url = f"smtp://shop:s3cret@127.0.0.1:{tls_servers['starttls']}?cafile={tls_servers['ca']}&starttls=require"
    conn = SmtpConnection(SmtpConfig.from_url(url))
    for _ in range(3):  # one connection, reused
        assert conn.deliver("a@shop.example", "b@shop.example", MESSAGE).result == "sent"
    conn.close()
    got = tls_servers["sink"].received
    assert len(got) == 3
    assert b"\r\n.leading dot\r\n" in got[0].raw  # dot-stuffing undone by the server: the body arrives intact


def test_implicit_tls_and_wrong_password(tls_servers: dict[str, Any]) -> None:
    good = f"smtps://shop:s3cret@127.0.0.1:{tls_servers['implicit']}?cafile={tls_servers['ca']}"
    conn = SmtpConnection(SmtpConfig.from_url(good))
    assert conn.deliver("a@shop.example", "b@shop.example", MESSAGE).result == "sent"
    conn.close()
    bad = SmtpConnection(SmtpConfig.from_url(good.replace("s3cret", "nope") + "&timeout=3"))
    outcome = bad.deliver("a@shop.example", "b@shop.example", MESSAGE)
    assert outcome.result == "retry"  # refused at login: nothing was sent, a later attempt may succeed
    assert outcome.detail.startswith("connect")
    assert len(tls_servers["sink"].received) == 1


def test_untrusted_certificate_is_refused(tls_servers: dict[str, Any]) -> None:
    url = f"smtps://shop:s3cret@127.0.0.1:{tls_servers['implicit']}"
    outcome = SmtpConnection(SmtpConfig.from_url(url)).deliver("a@shop.example", "b@shop.example", MESSAGE)
    assert outcome.result == "retry"
    assert tls_servers["sink"].received == []


def test_refusals_and_a_closed_port_are_reported_as_such() -> None:
    sink = Sink(refuse={"gone@shop.example": (550, "5.1.1 no such user"), "full@shop.example": (452, "4.2.2 full")})
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        conn = SmtpConnection(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"))
        hard = conn.deliver("a@shop.example", "gone@shop.example", MESSAGE)
        assert (hard.result, hard.code, hard.permanent_recipient_failure) == ("rejected", 550, True)
        soft = conn.deliver("a@shop.example", "full@shop.example", MESSAGE)
        assert (soft.result, soft.code) == ("retry", 452)
        assert conn.deliver("a@shop.example", "ok@shop.example", MESSAGE).result == "sent"  # the connection goes on
        conn.close()
    finally:
        controller.stop()
    closed = SmtpConnection(SmtpConfig.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    assert closed.deliver("a@shop.example", "ok@shop.example", MESSAGE).result == "retry"


def test_bad_urls_name_the_setting() -> None:
    for url in ("http://mail", "smtp://", "smtp://h:99999", "smtp://h?starttls=maybe"):
        with pytest.raises(Invalid, match="STOREFUNNEL_SMTP_URL"):
            SmtpConfig.from_url(url)
