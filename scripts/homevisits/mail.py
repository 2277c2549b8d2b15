"""Email: build messages safely and keep recipients inside the school (transports.py hands them over).

Messages are built with the standard ``email`` package, but nothing relies on it to stop header
injection: this Python (3.11.7) lacks the CVE-2024-6923 fix, and the package decodes encoded words
(``=?utf-8?q?=0D=0A...?=``) in any header value it is given, then writes the decoded line breaks
out raw. So every header is built from whitelisted text only: visit IDs that pass
``visit_ids.is_header_safe_id`` (any other is named by its sheet row), subjects from our own
templates, display names and file names reduced to a whitelist of characters, addresses that match
a strict address pattern (no ``%`` or ``!`` routing, no ``?``). Each header is then folded as it
will go on the wire and checked to be exactly one header line of the expected name, or the message
is not built. Bodies are cleaned of control characters and lone surrogates, so any cell can be
sent. Recipients outside ``allowed_domains`` are never mailed. Logs name visit IDs only.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
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
from .visit_ids import is_header_safe_id, visit_ref
from .wording import clock_time, long_day, long_moment, on_clock

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

Refused = dict[str, str]  # address -> "550 5.1.1": recipients the server refused while accepting the message

# Lines up to RFC 5322's limit of 998 characters: a subject is never folded straight after
# "Subject:", which some mail programs show as a leading space.
SMTP_POLICY = SMTP.clone(max_line_length=998)


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
    folders = tuple(str(p) for p in (template_dir, EMAIL_TEMPLATE_DIR) if p)
    env = _text_environment(folders, timezone or DEFAULT_TIMEZONE)
    return env.get_template(TEXT_TEMPLATES[kind]).render(**{**TEMPLATE_DEFAULTS, **context})


@functools.lru_cache(maxsize=16)
def _text_environment(folders: tuple[str, ...], timezone: str) -> Any:
    """One Jinja environment per folder list and clock, so a template is compiled once, not once a message.

    Its loader looks the template up again and re-reads it at every use: the compiled template serves only
    while the file it would find now holds the same text (a school's new or edited file is used at once).
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

    class Reread(FileSystemLoader):
        def get_source(self, environment: Any, template: str) -> Any:
            source, filename, _ = super().get_source(environment, template)

            def uptodate() -> bool:
                try:
                    return FileSystemLoader.get_source(self, environment, template)[:2] == (source, filename)
                except TemplateNotFound:
                    return False

            return source, filename, uptodate

    tz = ZoneInfo(timezone)
    env = Environment(
        loader=Reread(list(folders)),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters.update(day=lambda v: _uk_day(v, tz), hhmm=lambda v: _hhmm(v, tz), when=lambda v: _when(v, tz))
    return env


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
