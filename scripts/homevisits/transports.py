"""Mail transports: hand built messages to an SMTP server or write them to an outbox folder.

Transports share one small interface (``open_transport``): one connection per run, made on the first
message; ``send`` either returns (the server accepted the message) or raises ``TemporaryFailure`` (try
again next run) or ``PermanentFailure`` (5xx: do not retry, tell the admin). Recipients outside
``allowed_domains`` are refused here too (defence in depth: the messages are built by mail.py, which
checks them first). Logs name visit IDs only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from .errors import HomevisitsError
from .mail import (
    KIND_HEADER,
    SMTP_POLICY,
    VISIT_HEADER,
    Refused,
    addr_spec,
    check_recipients,
    describe,
    envelope_recipients,
)
from .visit_ids import is_header_safe_id

log = logging.getLogger(__name__)

SECURITIES = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_OUTBOX = "state/outbox"
DEFAULT_PASSWORD_ENV = "HOMEVISITS_SMTP_PASSWORD"
DEFAULT_TIMEOUT = 60.0
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9-]+")
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


# ---------------------------------------------------------------- errors


class MailError(HomevisitsError):
    """A message was not accepted. ``code`` is the SMTP reply code (None when there was no reply);
    ``status`` the enhanced status (``5.1.1``) when the server gave one; ``recipients`` the addresses
    concerned, for the admin report only (never in the text, never logged)."""

    def __init__(
        self, message: str, code: int | None = None, status: str = "", recipients: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.recipients = tuple(recipients)


class TemporaryFailure(MailError):
    """Not accepted this time (4xx, connection dropped, server down): the message stays queued."""


class ConnectionFailure(TemporaryFailure):
    """The mail server cannot be used for the rest of this run: nothing more is sent until the next run."""


class InsecureServer(ConnectionFailure):
    """No STARTTLS on offer, or a certificate that does not verify: no login and no message was sent."""


class PermanentFailure(MailError):
    """Refused for good (5xx, or a recipient outside the allowed domains): do not retry, tell the admin."""


def _reply_text(code: int | None, reply: bytes | str | None) -> str:
    """``550 5.1.1``: the code and the enhanced status, never the server's free text (it may hold addresses)."""
    status = _enhanced(reply)
    return " ".join(part for part in (str(code) if code else "", status) if part)


def _enhanced(reply: bytes | str | None) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    found = _ENHANCED.search(reply or "")
    return found[1] if found else ""


def _refusal(code: int, reply: bytes | str | None, what: str, recipients: Sequence[str] = ()) -> MailError:
    """The exception for an SMTP refusal of ``what``: 4xx temporary, 5xx permanent, 421 ends the connection."""
    detail = _reply_text(code, reply)
    if code == 421:
        return ConnectionFailure(
            f"The mail server is closing the connection ({detail}): the messages stay queued for the next run.",
            code,
            _enhanced(reply),
            recipients,
        )
    if 400 <= code < 500:
        return TemporaryFailure(
            f"The mail server refused {what} for now ({detail}): the message stays queued and the next run tries again.",
            code,
            _enhanced(reply),
            recipients,
        )
    return PermanentFailure(
        f"The mail server refused {what} for good ({detail}): the message will not be retried; "
        "check the addresses in the sheet and the [mail] settings.",
        code,
        _enhanced(reply),
        recipients,
    )


# ---------------------------------------------------------------- transports


class Transport:
    """Hands messages over. Use as a context manager: ``with open_transport(cfg, base) as t: t.send(msg)``."""

    name = "transport"

    def __init__(self, allowed_domains: Sequence[str] = ()) -> None:
        self.allowed_domains = list(allowed_domains)

    def send(self, msg: EmailMessage) -> Refused:
        """Hand one message over. Returns the recipients refused while the others accepted it (normally
        empty); raises TemporaryFailure or PermanentFailure when the message was not accepted."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def _guard(self, msg: EmailMessage) -> list[str]:
        """The envelope recipients, after refusing any outside the allowed domains (defence in depth)."""
        recipients = envelope_recipients(msg)
        if not recipients:
            raise PermanentFailure("The message has no recipients: nothing was sent.")
        if self.allowed_domains:
            _, refused = check_recipients(recipients, self.allowed_domains)
            if refused:
                raise PermanentFailure(
                    f"{len(refused)} recipient{'s are' if len(refused) > 1 else ' is'} outside allowed_domains "
                    "in [mail]: the message was not sent.",
                    recipients=refused,
                )
        return recipients

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_part(value: Any, default: str) -> str:
    """A header-safe ID (``visit_ids``) as part of a file name; anything else is ``default``."""
    text = str(value) if value is not None else ""
    if not is_header_safe_id(text):
        return default
    return _UNSAFE_FILE_CHARS.sub("-", text).strip("-") or default


class OutboxTransport(Transport):
    """Writes each message as ``<visit>_<kind>_<hash of Message-ID>.eml`` in a folder.

    The name depends only on the message, so writing the same message again (a retry after a crash)
    replaces the file instead of adding a second one. Files appear whole (written, then renamed).
    """

    name = "outbox"

    def __init__(self, folder: Path, allowed_domains: Sequence[str] = ()) -> None:
        super().__init__(allowed_domains)
        self.folder = folder

    def __str__(self) -> str:
        return f"outbox {self.folder}"

    def file_for(self, msg: EmailMessage) -> Path:
        message_id = msg.get("Message-ID")
        if not message_id:
            raise ValueError("an outbox message needs a Message-ID")
        visit = _file_part(msg.get(VISIT_HEADER), "message")
        kind = _file_part(msg.get(KIND_HEADER), "mail")
        digest = hashlib.sha256(str(message_id).strip().encode()).hexdigest()[:12]
        return self.folder / f"{visit or 'message'}_{kind or 'mail'}_{digest}.eml"

    def send(self, msg: EmailMessage) -> Refused:
        self._guard(msg)
        path = self.file_for(msg)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.part")
            with open(partial, "wb") as handle:
                handle.write(msg.as_bytes(policy=SMTP_POLICY))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        except OSError as exc:
            raise ConnectionFailure(
                f"Could not write to the outbox folder {self.folder} ({exc.strerror}): "
                "check the folder exists and can be written; the messages stay queued."
            ) from exc
        log.info("%s written to the outbox", describe(msg))
        return {}


class SmtpTransport(Transport):
    """One SMTP connection for the run, opened on the first message, verified TLS unless on loopback."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        sender: str,
        username: str | None,
        password: str | None,
        context: ssl.SSLContext | None,
        allowed_domains: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        helo: str | None = None,
    ) -> None:
        super().__init__(allowed_domains)
        self.host, self.port, self.security = host, port, security
        self.sender, self.username, self._password = sender, username, password
        self.context, self.timeout, self.helo = context, timeout, helo
        self._smtp: smtplib.SMTP | None = None
        self._broken: ConnectionFailure | None = None

    def __str__(self) -> str:
        return f"smtp {self.host}:{self.port} ({self.security})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- the connection

    def connect(self) -> None:
        """Connect, start TLS (the certificate verified) and log in, sending nothing: what
        check-setup asks of the server. A failure raises the error a send would."""
        self._connection()

    def _connection(self) -> smtplib.SMTP:
        if self._broken is not None:
            raise self._broken
        if self._smtp is None:
            try:
                self._smtp = self._open()
            except ConnectionFailure as exc:
                self._broken = exc
                raise
            log.info("connected to the mail server (%s)", self.security)
        return self._smtp

    def _open(self) -> smtplib.SMTP:
        context = self.context
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=self.helo, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.helo, timeout=self.timeout)
            if self.security == "starttls":
                self._starttls(smtp, context)
            smtp.ehlo_or_helo_if_needed()
            if self.username:
                self._login(smtp)
            return smtp
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            error = self._connection_error(exc)
            if error is exc:
                raise
            raise error from exc

    def _starttls(self, smtp: smtplib.SMTP, context: ssl.SSLContext) -> None:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise InsecureServer(
                f"The mail server {self.where} does not offer STARTTLS, so homevisits sent no password and "
                'no message: use a server that does, or security = "ssl" for implicit TLS.'
            )
        try:
            smtp.starttls(context=context)
        except smtplib.SMTPResponseException as exc:
            raise InsecureServer(
                f"The mail server {self.where} refused STARTTLS ({_reply_text(exc.smtp_code, exc.smtp_error)}): "
                "homevisits sent no password and no message; the messages stay queued.",
                exc.smtp_code,
                _enhanced(exc.smtp_error),
            ) from exc
        smtp.ehlo()

    def _login(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.login(self.username or "", self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectionFailure(
                f"The mail server {self.where} refused the username or password ({_reply_text(exc.smtp_code, exc.smtp_error)}): "
                "check username in [mail] and the password environment variable; the messages stay queued.",
                exc.smtp_code,
                _enhanced(exc.smtp_error),
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ConnectionFailure(
                f"The mail server {self.where} does not offer a login: remove username from [mail] "
                "or ask IT which server to use; the messages stay queued."
            ) from exc

    def _connection_error(self, exc: Exception) -> Exception:
        """Turn whatever went wrong while connecting into one plain ConnectionFailure."""
        if isinstance(exc, ConnectionFailure):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return InsecureServer(
                f"The mail server {self.where} showed a certificate that does not verify "
                f"({exc.verify_message or 'untrusted'}): no password and no message was sent; if the school "
                "uses its own certificate authority, set ca_file in [mail]."
            )
        if isinstance(exc, ssl.SSLError):
            return InsecureServer(
                f"Could not set up TLS with the mail server {self.where} ({exc.reason or exc}): "
                "no password and no message was sent; check port and security in [mail]."
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return InsecureServer(
                f"The mail server {self.where} does not offer STARTTLS, so homevisits sent no password and "
                "no message."
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return ConnectionFailure(
                f"The mail server {self.where} refused the connection ({_reply_text(exc.smtp_code, exc.smtp_error)}): "
                "the messages stay queued for the next run.",
                exc.smtp_code,
                _enhanced(exc.smtp_error),
            )
        if isinstance(exc, OSError | smtplib.SMTPException):
            reason = getattr(exc, "strerror", None) or exc.__class__.__name__
            return ConnectionFailure(
                f"Could not connect to the mail server {self.where} ({reason}): check host and port in [mail]; "
                "the messages stay queued for the next run."
            )
        return exc

    # -- one message

    def send(self, msg: EmailMessage) -> Refused:
        recipients = self._guard(msg)
        smtp = self._connection()
        data = msg.as_bytes(policy=SMTP_POLICY)
        try:
            refused = self._transaction(smtp, recipients, data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._break()
            self._broken = ConnectionFailure(
                f"The mail server {self.where} dropped the connection before accepting the message: "
                "it stays queued, and the rest wait for the next run."
            )
            log.warning("%s not sent: connection lost", describe(msg))
            raise self._broken from exc
        except ConnectionFailure as exc:
            self._break()
            self._broken = exc
            log.warning("%s not sent: %s", describe(msg), _reply_text(exc.code, exc.status))
            raise
        except MailError as exc:
            log.warning("%s not sent: %s", describe(msg), _reply_text(exc.code, exc.status))
            raise
        if refused:
            log.warning("%s accepted, %d recipient(s) refused", describe(msg), len(refused))
        else:
            log.info("%s accepted by the mail server", describe(msg))
        return refused

    def _transaction(self, smtp: smtplib.SMTP, recipients: list[str], data: bytes) -> Refused:
        """MAIL, RCPT for each, DATA. All-or-nothing on a temporary refusal: if any recipient is refused
        for now, nobody gets it this time, so a retry never reaches someone twice."""
        code, reply = smtp.mail(self.sender)
        if code != 250:
            # A refused sender is a settings problem for every message: stop this run, keep them queued.
            self._reset(smtp)
            raise ConnectionFailure(
                f"The mail server {self.where} refused the sender address ({_reply_text(code, reply)}): "
                "check from and username in [mail]; the messages stay queued.",
                code,
                _enhanced(reply),
            )
        refused: dict[str, tuple[int, bytes]] = {}
        for address in recipients:
            code, reply = smtp.rcpt(address)
            if code not in (250, 251):
                refused[address] = (code, reply)
        temporary = {a: r for a, r in refused.items() if r[0] < 500}
        if temporary or (refused and len(refused) == len(recipients)):
            self._reset(smtp)
            concerned = temporary or refused
            code, reply = next(iter(concerned.values()))
            what = "every recipient" if len(concerned) == len(recipients) else "a recipient"
            raise _refusal(code, reply, what, list(concerned))
        try:
            code, reply = smtp.data(data)
        except smtplib.SMTPDataError as exc:
            self._reset(smtp)
            raise _refusal(exc.smtp_code, exc.smtp_error, "the message") from exc
        if code != 250:
            self._reset(smtp)
            raise _refusal(code, reply, "the message")
        return {address: _reply_text(c, r) for address, (c, r) in refused.items()}

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._break()

    def _break(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


# ---------------------------------------------------------------- configuration


def is_loopback(host: str) -> bool:
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve(base_dir: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying TLS context: the system's authorities, or only the school's own CA file."""
    if ca_file is not None and not ca_file.is_file():
        raise HomevisitsError(f"ca_file in [mail] points to {ca_file}, which does not exist.")
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise HomevisitsError(
            f"ca_file in [mail] ({ca_file}) is not a certificate file in PEM format: ask IT for the school's CA "
            "certificate as a .pem file."
        ) from exc


def open_transport(mail_cfg: Mapping[str, Any] | None, base_dir: Path) -> Transport:
    """The transport the [mail] settings ask for: ``smtp``, or ``outbox`` (the default without [mail]).

    Settings are checked now (a HomevisitsError names what to fix); the SMTP connection itself is
    made on the first message, so a run with nothing to send never touches the server.
    """
    cfg = dict(mail_cfg or {})
    transport = str(cfg.get("transport") or ("smtp" if cfg.get("host") else "outbox")).lower()
    allowed = cfg.get("allowed_domains") or []
    if isinstance(allowed, str):
        allowed = [allowed]
    if transport == "outbox":
        return OutboxTransport(_resolve(base_dir, cfg.get("outbox") or DEFAULT_OUTBOX), allowed)
    if transport != "smtp":
        raise HomevisitsError(f'transport = "{transport}" in [mail] is unknown: use "smtp" or "outbox".')
    return _smtp_transport(cfg, base_dir, list(allowed))


def _smtp_transport(cfg: dict[str, Any], base_dir: Path, allowed: list[str]) -> SmtpTransport:
    host = str(cfg.get("host") or "").strip()
    if not host:
        raise HomevisitsError('[mail] needs host = "smtp.your-school.example" for transport = "smtp".')
    security = str(cfg.get("security") or "starttls").lower()
    if security not in SECURITIES:
        raise HomevisitsError(
            f'security = "{security}" in [mail] is unknown: use "starttls", "ssl" or "none".'
        )
    if security == "none" and not is_loopback(host):
        raise HomevisitsError(
            f'security = "none" is only allowed for a mail relay on this machine, not {host}: '
            'use "starttls" or "ssl".'
        )
    try:
        port = int(cfg.get("port") or SECURITIES[security])
    except (TypeError, ValueError) as exc:
        raise HomevisitsError("port in [mail] must be a number, e.g. port = 587.") from exc
    sender = addr_spec(str(cfg.get("from") or ""))
    if not sender:
        raise HomevisitsError(
            '[mail] needs from = "homevisits@your-school.example", the address mail comes from.'
        )
    if not allowed:
        raise HomevisitsError(
            '[mail] needs allowed_domains = ["your-school.example"]: homevisits only mails addresses in them.'
        )
    username = str(cfg.get("username") or "").strip() or None
    password = None
    if username:
        variable = str(cfg.get("password_env") or DEFAULT_PASSWORD_ENV)
        password = os.environ.get(variable, "")
        if not password:
            raise HomevisitsError(
                f"The mail password is missing: set the environment variable {variable} "
                "(named by password_env in [mail]) before running homevisits."
            )
    ca_file = _resolve(base_dir, cfg["ca_file"]) if cfg.get("ca_file") else None
    # A relay on this machine (security = "none") never uses TLS: its context is not built (loading the
    # system's authorities costs tens of milliseconds a run), unless a ca_file is named, which is checked now.
    context = tls_context(ca_file) if security != "none" or ca_file is not None else None
    try:
        timeout = float(cfg.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError) as exc:
        raise HomevisitsError("timeout in [mail] must be a number of seconds, e.g. timeout = 60.") from exc
    return SmtpTransport(
        host=host,
        port=port,
        security=security,
        sender=sender,
        username=username,
        password=password,
        context=context,
        allowed_domains=allowed,
        timeout=timeout,
        helo=str(cfg["helo"]) if cfg.get("helo") else None,
    )
