"""Email: build messages safely, keep recipients inside the school, hand them to SMTP or an outbox folder.

Messages are built with the standard ``email`` package, but nothing relies on it to stop header
injection: this Python (3.11.7) lacks the CVE-2024-6923 fix, and the package decodes encoded words
(``=?utf-8?q?=0D=0A...?=``) in any header value it is given, then writes the decoded line breaks
out raw. So every header is built from whitelisted text only: visit IDs that pass
``visit_ids.is_header_safe_id`` (any other is named by its sheet row), subjects from our own
templates, display names and file names reduced to a whitelist of characters, addresses that match
a strict address pattern (no ``%`` or ``!`` routing, no ``?``). Each header is then folded as it
will go on the wire and checked to be exactly one header line of the expected name, or the message
is not built. Bodies are cleaned of control characters and lone surrogates, so any cell can be
sent. Recipients outside ``allowed_domains`` are never mailed. Transports share one small
interface (``open_transport``): one connection per run, made on the first message; ``send`` either
returns (the server accepted the message) or raises ``TemporaryFailure`` (try again next run) or
``PermanentFailure`` (5xx: do not retry, tell the admin). Logs name visit IDs only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from . import cleaning
from .config import DEFAULT_TIMEZONE
from .errors import HomevisitsError
from .visit_ids import is_header_safe_id, visit_ref
from .wording import clock_time, long_day, long_moment, on_clock

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
EMAIL_TEMPLATE_DIR = ROOT / "templates" / "emails"

TEXT_TEMPLATES = {
    "form": "form_sent.txt.j2",
    "reminder": "reminder.txt.j2",
    "final_reminder": "final_reminder.txt.j2",
    "deadline_missed": "deadline_missed.txt.j2",
    "overdue_alert": "overdue_alert.txt.j2",
    "smt_alert": "smt_alert.txt.j2",
    "admin_report": "admin_report.txt.j2",
}
KINDS = tuple(TEXT_TEMPLATES)
SUBJECTS = {
    "form": "Home visit {visit} on {day}: risk assessment form",
    "reminder": "Action needed: home visit {visit} on {day}, the form cannot be sent yet",
    "final_reminder": "Final reminder: home visit {visit} on {day}, the form deadline is close",
    "deadline_missed": "Home visit {visit} on {day} must not go ahead as planned",
    "overdue_alert": "URGENT: no safe return confirmed for home visit {visit} on {day}",
    "smt_alert": "URGENT for SMT: still no safe return for home visit {visit} on {day}",
    "admin_report": "homevisits could not deliver {count} message{s}",
}

# Optional template variables: a template may leave them out without failing; every other one is required.
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "school": "",
    "staff_name": None,
    "clause": None,
    "row": None,
    "sheet": None,
    "problems": (),
    "staff_phone": None,
    "address": None,
    "location": None,
    "learner_phone": None,
    "parent_phone": None,
    "not_mailed": (),
}

VISIT_HEADER = "X-Homevisits-Visit"
KIND_HEADER = "X-Homevisits-Kind"
SECURITIES = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_OUTBOX = "state/outbox"
DEFAULT_PASSWORD_ENV = "HOMEVISITS_SMTP_PASSWORD"
DEFAULT_TIMEOUT = 60.0

# RFC 5322 dot-atoms, less ``%`` and ``!`` (source routing: ``x%evil.example@school.example`` can be
# relayed outside the school) and ``?`` (which, after ``=``, starts an encoded word the email
# package would decode inside a header).
_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9#$&'*+/=^_`{|}~-]+(?:\.[A-Za-z0-9#$&'*+/=^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_BRACKETED = re.compile(r"(?P<name>[^<>]*)<(?P<addr>[^<>]+)>")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9._/+-]+@[A-Za-z0-9.-]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What a display name or subject may hold: letters and digits of any script, spaces and plain
# punctuation. Never ``=`` or ``?`` (an encoded word), ``<>`` or ``"`` (address syntax), ``\``.
_HEADER_PUNCTUATION = frozenset(" .,:;()'/&+_-@#%*!’‘–—")
_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# The header names build_message writes, in a message and in its MIME parts.
MESSAGE_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "x-auto-response-suppress",
        "x-homevisits-visit",
        "x-homevisits-kind",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "mime-version",
    }
)
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9-]+")

Refused = dict[str, str]  # address -> "550 5.1.1": recipients the server refused while accepting the message

# Lines up to RFC 5322's limit of 998 characters: a subject is never folded straight after
# "Subject:", which some mail programs show as a leading space.
SMTP_POLICY = SMTP.clone(max_line_length=998)


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


# ---------------------------------------------------------------- addresses (pure)


def clean_text(value: Any) -> str:
    """One line of text: line breaks, tabs and control characters become single spaces; a lone
    surrogate becomes U+FFFD (so any cell can go into a message)."""
    return cleaning.one_line(value)


def header_text(value: Any) -> str:
    """Text fit for a header (a subject, a display name): one line of letters, digits, spaces and
    plain punctuation; anything else is dropped. It can hold no encoded word and no address."""
    text = "".join(c if c.isalnum() or c in _HEADER_PUNCTUATION else " " for c in clean_text(value))
    return " ".join(text.split())


def visit_text(visit_id: Any, row: int | None = None) -> str:
    """How a message's body names the visit: its ID when safe; otherwise the row, with the cell's text
    quoted as text (cleaned, cut short), never as structure."""
    if is_header_safe_id(visit_id):
        return str(visit_id)
    ref = visit_ref(visit_id, row, " ")
    if visit_id is None or visit_id == "":
        return ref
    return f'{ref} (its Visit ID cell reads "{cleaning.shown(visit_id, 40)}", which is not a usable Visit ID)'


def split_address(value: str) -> tuple[str, str] | None:
    """``(name, address)`` from ``a@b.org``, ``Name <a@b.org>`` or ``mailto:a@b.org``; None if not one.

    Strict on purpose (``email.utils.parseaddr`` reads ``Jane Bcc: x@evil.example <jane@school.example>``
    as ``x@evil.example``): the address is the one pair of angle brackets at the end, or the whole text.
    """
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].strip()
    name = ""
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        name, text = bracketed["name"].strip().strip('"').strip(), bracketed["addr"].strip()
    if not _ADDR_SPEC.fullmatch(text):
        return None
    local, domain = text.rsplit("@", 1)
    return name, f"{local}@{domain.lower()}"


def addr_spec(value: str | None) -> str | None:
    """The bare address (domain lower-cased) from any form ``split_address`` reads; None if not one."""
    if not isinstance(value, str) or _CONTROL.search(value) or not value.isascii():
        return None
    found = split_address(value)
    return found[1] if found else None


def _domain_allowed(domain: str, allowed: Iterable[str]) -> bool:
    domain = domain.lower().rstrip(".")
    for entry in allowed:
        wanted = str(entry).strip().lower().lstrip("@").rstrip(".")
        if wanted and (domain == wanted or domain.endswith("." + wanted)):
            return True
    return False


def check_recipients(
    addresses: Iterable[str | None], allowed_domains: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Split addresses into (allowed, refused): allowed ones are bare, deduplicated addresses in an
    allowed domain or one of its subdomains (case-insensitive); refused ones are returned as given
    (outside the domains, or not an email address at all). Blank entries are skipped."""
    domains = [d for d in allowed_domains if d]
    allowed: list[str] = []
    refused: list[str] = []
    seen: set[str] = set()
    for raw in addresses:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        address = addr_spec(raw)
        if address is None or not _domain_allowed(address.rsplit("@", 1)[1], domains):
            refused.append(raw)
            continue
        if address.lower() not in seen:
            seen.add(address.lower())
            allowed.append(address)
    return allowed, refused


def _address(value: str | tuple[str, str] | Address) -> Address:
    """An ``Address`` from ``a@b.org``, ``Name <a@b.org>`` or ``(name, address)``; names are cleaned."""
    if isinstance(value, Address):
        value = (value.display_name, value.addr_spec)
    if isinstance(value, tuple):
        name, raw = value
        spec = addr_spec(clean_text(raw))
    else:
        found = split_address(clean_text(value))
        name, spec = found if found else ("", None)
    if spec is None:
        raise ValueError("not an email address (check the sheet or the [mail] settings)")
    return Address(display_name=header_text(name or ""), addr_spec=spec)


def envelope_recipients(msg: EmailMessage) -> list[str]:
    """Every address in To, Cc and Bcc, bare and deduplicated."""
    found: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for header in msg.get_all(name, []):
            specs = (
                [a.addr_spec for a in header.addresses]
                if hasattr(header, "addresses")
                else [addr_spec(part) for part in str(header).split(",")]
            )
            for spec in specs:
                if spec and spec.lower() not in {f.lower() for f in found}:
                    found.append(spec)
    return found


# ---------------------------------------------------------------- messages (pure)


def subject(
    kind: str,
    visit_id: str | None = None,
    day: dt.date | dt.datetime | None = None,
    count: int = 1,
    row: int | None = None,
    timezone: str | None = None,
) -> str:
    """The subject for a kind of message: the visit ID and the date, never anybody's name. An ID that
    is not header-safe (``visit_ids``) never appears: the subject names its sheet row (``row 14``).
    The date is the visit's day on the school's clock (``timezone``, the config's)."""
    if isinstance(day, dt.datetime):
        tz = ZoneInfo(timezone or DEFAULT_TIMEZONE)
        day = day.astimezone(tz).date() if day.tzinfo else day.date()
    ref = visit_ref(visit_id, row, " ") if (visit_id or row) else "(no visit ID)"
    if ref == "unnamed" or ref.startswith("id-"):
        ref = "(Visit ID not usable)"
    return header_text(
        SUBJECTS[kind].format(
            visit=ref,
            day=f"{day:%a} {day.day} {day:%b %Y}" if day else "(no date)",
            count=count,
            s="" if count == 1 else "s",
        )
    )


def _cte(text: str) -> str | None:
    """Keep bodies 7-bit clean: quoted-printable for anything that is not plain ASCII."""
    return None if text.isascii() else "quoted-printable"


def build_message(
    *,
    sender: str | tuple[str, str],
    to: Sequence[str | tuple[str, str]],
    cc: Sequence[str | tuple[str, str]] = (),
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    message_id: str,
    visit_id: str | None = None,
    kind: str | None = None,
    date: dt.datetime | None = None,
    reply_to: str | tuple[str, str] | None = None,
) -> EmailMessage:
    """One message: text (and an HTML alternative), attachments ``(filename, bytes, "type/subtype")``.

    ``message_id`` comes from the ledger so a retry carries the same ID. ``visit_id`` and ``kind``
    go in X-Homevisits headers for ``describe`` and the outbox file name: a visit ID that is not
    header-safe is replaced by a digest of it (callers pass ``visit_ids.visit_ref``, which names the
    row). The subject and display names keep only ``header_text``; attachment names only letters,
    digits and ``._-``; text and HTML are cleaned of control characters and lone surrogates.
    Raises ValueError for an address that is not an email address, a Message-ID that is not
    ``<letters-digits._/+-@domain>`` (a bug in the caller), or any header that would not fold to one
    line of its own name (``check_headers``).
    """
    if not to and not cc:
        raise ValueError("a message needs at least one recipient")
    if not _MESSAGE_ID.fullmatch(message_id or ""):
        raise ValueError("the Message-ID must look like <id@domain>")
    text = cleaning.body(text)
    html = cleaning.body(html) if html is not None else None
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = _address(sender)
    if to:
        msg["To"] = [_address(a) for a in to]
    if cc:
        msg["Cc"] = [_address(a) for a in cc]
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    msg["Subject"] = header_text(subject)
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    if visit_id:
        msg[VISIT_HEADER] = visit_ref(visit_id)  # the ID when header-safe, else a digest of it
    if kind:
        msg[KIND_HEADER] = kind if kind in KINDS else visit_ref(kind)
    msg.set_content(text, cte=_cte(text))
    if html is not None:
        msg.add_alternative(html, subtype="html", cte=_cte(html))
    for filename, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(
            data,
            maintype=_SAFE_FILE_NAME.sub("", maintype) or "application",
            subtype=_SAFE_FILE_NAME.sub("", subtype) or "octet-stream",
            filename=safe_file_name(filename),
        )
    check_headers(msg)
    return msg


def safe_file_name(name: Any) -> str:
    """An attachment's name as it may go into a header: letters, digits and ``._-`` only."""
    return _SAFE_FILE_NAME.sub("_", clean_text(name)).strip("._") or "attachment"


def check_headers(msg: EmailMessage) -> None:
    """Fold every header of the message and its parts as it will go on the wire, and refuse (ValueError)
    any that is not exactly one header line of its own name, in printable ASCII, or whose name is
    not one this module writes. The last line of defence: it does not trust the email package.
    """
    for part in msg.walk():
        for name, value in part.raw_items():
            if name.lower() not in MESSAGE_HEADERS or not _one_header(
                name, SMTP_POLICY.fold_binary(name, value)
            ):
                raise ValueError(f"the {name} header would not be one line of its own: message not built")


_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")


def _one_header(name: str, folded: bytes) -> bool:
    """``folded`` is ``Name: value`` on one line, or on several joined by CRLF and whitespace."""
    lines = folded.split(b"\r\n")
    return (
        lines[-1] == b""
        and lines[0].lower().startswith(name.lower().encode("ascii") + b":")
        and all(line[:1] in (b" ", b"\t") for line in lines[1:-1])
        and all(_PRINTABLE.fullmatch(line) for line in lines[:-1])
    )


def describe(msg: EmailMessage) -> str:
    """``HV-0042 form to 3 recipients``: for --dry-run and logs, no personal data."""
    visit = visit_ref(str(msg.get(VISIT_HEADER, "") or "")) if msg.get(VISIT_HEADER) else "(no visit)"
    kind = visit_ref(str(msg.get(KIND_HEADER, "") or "")) if msg.get(KIND_HEADER) else "message"
    count = len(envelope_recipients(msg))
    return f"{visit} {kind} to {count} recipient{'' if count == 1 else 's'}"


def render_text(
    kind: str, context: Mapping[str, Any], template_dir: Path | None = None, timezone: str | None = None
) -> str:
    """The plain-text body for a kind of message from ``templates/emails`` (a school's folder first).

    Filters: ``day`` (Friday 3 April 2026), ``hhmm`` (14:30), ``when`` (Friday 3 April 2026 at 14:30),
    all on the school's clock. A variable the template needs and the caller did not give is an error.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    tz = ZoneInfo(timezone or DEFAULT_TIMEZONE)
    folders = [str(p) for p in (template_dir, EMAIL_TEMPLATE_DIR) if p]
    env = Environment(
        loader=FileSystemLoader(folders),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(day=lambda v: _uk_day(v, tz), hhmm=lambda v: _hhmm(v, tz), when=lambda v: _when(v, tz))
    return env.get_template(TEXT_TEMPLATES[kind]).render(**{**TEMPLATE_DEFAULTS, **context})


def _uk_day(value: Any, tz: ZoneInfo) -> str:
    value = on_clock(value, tz)
    if isinstance(value, dt.date):
        return long_day(value)
    return "(not given)" if value in (None, "") else str(value)


def _hhmm(value: Any, tz: ZoneInfo) -> str:
    value = on_clock(value, tz)
    if isinstance(value, dt.datetime | dt.time):
        return clock_time(value)
    return "(not given)" if value in (None, "") else str(value)


def _when(value: Any, tz: ZoneInfo) -> str:
    value = on_clock(value, tz)
    if isinstance(value, dt.datetime):
        return long_moment(value)
    return _uk_day(value, tz)


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
        context: ssl.SSLContext,
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
    context = tls_context(_resolve(base_dir, cfg["ca_file"]) if cfg.get("ca_file") else None)
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
