"""Real SMTP servers on 127.0.0.1 for the tests (aiosmtpd in a thread), never a mock of smtplib.

``smtp_server()`` starts one and yields a ``Server`` whose ``handler`` records every message it
accepted and can be told to misbehave: refuse a recipient or the Nth message with any reply,
refuse the sender, close the connection after the Nth message arrives (before replying) or in the
middle of its DATA, refuse STARTTLS although it advertises it. TLS comes from a throwaway CA
(``trustme``); ``dead_port()`` is a port where nothing answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

HOST = "127.0.0.1"


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default_policy)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Records accepted messages; the fault settings say when to refuse or drop instead.

    Messages are counted from 1 at each DATA command that has recipients, across connections.
    """

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address (any case) -> "450 4.2.1 ..."
    data_replies: dict[int, str] = field(default_factory=dict)  # Nth message -> "451 4.3.0 ..."
    drop_after_data: set[int] = field(default_factory=set)  # Nth message: hang up instead of replying
    cut_during_data: set[int] = field(default_factory=set)  # Nth message: hang up after its first line
    mail_reply: str | None = None  # reply to every MAIL FROM, e.g. "553 5.7.1 not yours"
    users: dict[str, str] = field(default_factory=dict)  # login -> password for AUTH
    # (mechanism, login, ok). Careful: aiosmtpd takes any handler attribute named auth_* for a mechanism.
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    connections: int = 0  # client connections that said EHLO/HELO
    data_count: int = 0

    # -- hooks aiosmtpd calls

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ):
        reply = {a.lower(): r for a, r in self.rcpt_replies.items()}.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        number = self.data_count
        if number in self.drop_after_data:
            server.transport.abort()  # the message arrived whole; the client never hears back
            await asyncio.sleep(3600)  # cancelled at once by connection_lost
        if number in self.data_replies:
            return self.data_replies[number]
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data if session.authenticated else None
        self.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                tls=tls,
                login=login,
            )
        )
        return "250 2.0.0 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ):
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else str(auth_data.login)
        password = (
            auth_data.password.decode() if isinstance(auth_data.password, bytes) else str(auth_data.password)
        )
        ok = self.users.get(login) == password
        self.logins.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    # -- helpers

    @property
    def recipients(self) -> list[list[str]]:
        return [m.rcpt_tos for m in self.messages]

    def message_ids(self) -> list[str]:
        return [str(m.message["Message-ID"]) for m in self.messages]


class FaultySMTP(SMTP):
    """aiosmtpd's SMTP with the two faults a handler hook cannot make: a refused STARTTLS, a cut DATA."""

    refuse_starttls = False
    _greeted = False

    async def smtp_EHLO(self, hostname: str) -> None:
        self._count_connection()
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._count_connection()
        await super().smtp_HELO(hostname)

    def _count_connection(self) -> None:
        """One per client connection that said hello (so the controller's start-up probe does not count)."""
        if not self._greeted:
            self._greeted = True
            self.event_handler.connections += 1

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.refuse_starttls:
            await self.push("454 4.7.0 TLS not available due to temporary reason")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg: str) -> None:
        handler: RecordingHandler = self.event_handler
        if self.envelope is not None and self.envelope.rcpt_tos and not arg:
            handler.data_count += 1
            if handler.data_count in handler.cut_during_data:
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                await self._reader.readuntil(b"\r\n")
                self.transport.abort()
                return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    """Controller on a free port chosen by the OS (port 0), serving FaultySMTP."""

    def __init__(self, handler: RecordingHandler, *, refuse_starttls: bool = False, **kwargs: Any) -> None:
        self.refuse_starttls = refuse_starttls
        super().__init__(handler, hostname=HOST, port=0, **kwargs)

    def factory(self) -> SMTP:
        server = FaultySMTP(self.handler, **self.SMTP_kwargs)
        server.refuse_starttls = self.refuse_starttls
        return server

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Server:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


# ---------------------------------------------------------------- TLS


def make_ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


def server_context(ca: trustme.CA, *hostnames: str) -> ssl.SSLContext:
    """A server TLS context with a certificate from ``ca`` for ``hostnames`` (default 127.0.0.1)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hostnames or (HOST,))).configure_cert(context)
    return context


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """The CA's certificate as a PEM file, for ``ca_file`` in [mail]."""
    ca.cert_pem.write_to_path(str(path))
    return path


# ---------------------------------------------------------------- servers


@contextlib.contextmanager
def smtp_server(
    *,
    handler: RecordingHandler | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    refuse_starttls: bool = False,
    auth: bool = False,
    auth_require_tls: bool = True,
) -> Iterator[Server]:
    """A real SMTP server on 127.0.0.1 for the duration of the block.

    ``starttls``: offer STARTTLS with this context and require it before mail. ``implicit_tls``:
    TLS from the first byte (port 465 style). ``auth``: offer AUTH checked against
    ``handler.users``. ``refuse_starttls``: advertise STARTTLS, then answer 454 to it.
    """
    handler = handler or RecordingHandler()
    kwargs: dict[str, Any] = {"ident": "homevisits-test", "auth_require_tls": auth_require_tls}
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if implicit_tls is not None:
        kwargs["ssl_context"] = implicit_tls
    if auth:
        kwargs["authenticator"] = handler.authenticate
    controller = _Controller(handler, refuse_starttls=refuse_starttls, **kwargs)
    controller.start()
    try:
        yield Server(HOST, controller.port, handler)
    finally:
        controller.stop()


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, for the block's duration."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def header_lines(raw: bytes) -> list[str]:
    """The unfolded header lines of a raw message, exactly as a mail server reads them (undecoded)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines: list[str] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line
        else:
            lines.append(line)
    return lines
