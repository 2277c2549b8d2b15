"""Texts beside email: the [sms] settings, the alert texts (pure), and the channel that sends them.

Two providers: ``notify`` (GOV.UK Notify through its official client, ``notifications-python-client``,
one text template whose whole content is ``((message))``) and ``outbox`` (one file per text in a
folder: the demo's, and for trying a setup). Phone numbers go out in E.164. A text never names a
learner; a Visit ID appears only when it passes the strict pattern below, else the sheet row does.

Every text is in the ledger like an email: one entry per alert stage and mobile (``overdue_text``,
``smt_text``), queued before sending, Notify's id recorded after, so each is sent once. 429 and 5xx
answers are retried with the project's bounded backoff; a text refused for good (400: an invalid
number...) is recorded as failed, reported to the admin like a refused email, and never blocks the
email or the next stage.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HomevisitsError
from .visit_ids import is_header_safe_id

if TYPE_CHECKING:
    from .config import Config
    from .ledger import Ledger

PROVIDERS = ("notify", "outbox")
NOTIFY_URL = "https://api.notifications.service.gov.uk"
DEFAULT_KEY_ENV = "HOMEVISITS_NOTIFY_API_KEY"
TEXT_KINDS = {"overdue_alert": "overdue_text", "smt_alert": "smt_text", "duress_alert": "duress_text"}
TEXT_LIMIT = 612  # four SMS fragments: Notify's limit is 918 characters, a school pays per fragment


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class SmsSettings:
    """[sms] in homevisits.toml. ``api_key``: read from the environment variable ``api_key_env``."""

    provider: str = "outbox"
    api_key_env: str = DEFAULT_KEY_ENV
    template_id: str = ""
    base_url: str = NOTIFY_URL
    outbox: Path = Path("state/texts")
    inbound: bool = False
    duress_word: str = ""
    smt: tuple[str, ...] = ()  # SMT mobiles, in E.164
    api_key: str = field(default="", repr=False)


def sms_settings(config: Config) -> SmsSettings | None:
    """The [sms] settings, or None without an [sms] table. Every mistake is one sentence (exit 2)."""
    table = dict(getattr(config, "sms", None) or {})
    if not table:
        return None
    # Unknown keys and wrong types are caught when the config loads (settings.TABLES["sms"]).
    for key in ("provider", "api_key_env", "template_id", "base_url", "outbox", "duress_word"):
        if key in table and not isinstance(table[key], str):
            raise HomevisitsError(f'In [sms], {key} must be text in quotes, e.g. {key} = "...".')
    provider = table.get("provider", "notify")
    if provider not in PROVIDERS:
        raise HomevisitsError(f'In [sms], provider must be "notify" or "outbox", not "{provider}".')
    inbound = table.get("inbound", False)
    if not isinstance(inbound, bool):
        raise HomevisitsError("In [sms], inbound must be true or false.")
    raw_smt = table.get("smt", [])
    raw_smt = [raw_smt] if isinstance(raw_smt, str) else raw_smt
    if not isinstance(raw_smt, list) or not all(isinstance(v, str) for v in raw_smt):
        raise HomevisitsError('In [sms], smt must be a list of mobiles, e.g. smt = ["+447700900001"].')
    smt = []
    for raw in raw_smt:
        number = e164(raw)
        if number is None:
            raise HomevisitsError(f"In [sms], smt holds {raw!r}, which is not a UK mobile number.")
        smt.append(number)
    key_env = table.get("api_key_env", DEFAULT_KEY_ENV)
    api_key = ""
    if provider == "notify":
        if not table.get("template_id"):
            raise HomevisitsError(
                "[sms] needs template_id: the id of the Notify text template whose whole content is ((message))."
            )
        api_key = os.environ.get(key_env, "").strip()
        if not api_key:
            raise HomevisitsError(
                f"[sms] provider is notify but the environment variable {key_env} is not set: put the "
                "Notify API key there (never in the config file)."
            )
        if len(api_key) < 74:
            raise HomevisitsError(
                f"{key_env} does not hold a GOV.UK Notify API key (copy the whole key from Notify's "
                "API integration page)."
            )
    return SmsSettings(
        provider=provider,
        api_key_env=key_env,
        template_id=table.get("template_id", ""),
        base_url=table.get("base_url", NOTIFY_URL),
        outbox=config.resolve(table.get("outbox", "state/texts")),
        inbound=inbound,
        duress_word=table.get("duress_word", ""),
        smt=tuple(smt),
        api_key=api_key,
    )


# ---------------------------------------------------------------- numbers and bodies (pure)


def e164(raw: Any) -> str | None:
    """A UK mobile as ``+447700900503``, or None when the text is not one."""
    return None if raw is None else _e164(str(raw))


@functools.lru_cache(maxsize=65536)  # a log holds the same few phones many times
def _e164(raw: str) -> str | None:
    import phonenumbers

    text = raw.strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, "GB")
    except phonenumbers.NumberParseException:
        return None
    national = str(number.national_number)
    if number.country_code == 44 and re.fullmatch(r"7[1-57-9]\d{8}", national):
        pass  # a UK mobile (07xxx xxxxxx), Ofcom's drama range included, as cells/phones.py reads them
    elif not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def safe_label(visit: Mapping[str, Any]) -> str:
    """The visit as a text names it: its Visit ID when header-safe, else its sheet row."""
    visit_id = str(visit.get("visit_id") or "")
    label = str(visit.get("label") or visit_id)
    if visit_id and is_header_safe_id(label) and not label.startswith("unnamed-"):
        return label
    return f"row {visit.get('row')}"


def _plain(value: Any) -> str:
    """One line of text: no control characters, spaces collapsed."""
    text = "".join(c if c.isprintable() else " " for c in str(value or ""))
    return " ".join(text.split())


def alert_body(kind: str, visit: Mapping[str, Any], now: dt.datetime, timezone: str) -> str:
    """The alert as a text: who is not back, due when, how late, the phone to call. No learner."""
    from zoneinfo import ZoneInfo

    staff = _plain(visit.get("lead_staff")) or "The staff member"
    first = staff.split()[0] if visit.get("lead_staff") else "them"
    due = visit.get("due_back_at") or visit.get("return_due_at")
    when = ""
    if due is not None:
        local = due.astimezone(ZoneInfo(timezone))
        minutes = max(0, int((now - due).total_seconds() // 60))
        when = f" (due {local:%H:%M}, {minutes} min overdue)"
    phone = _plain(visit.get("phone_taken"))
    call = f" Call {first} on {phone}." if phone else " No phone was recorded for the visit."
    stage = "URGENT home visit" if kind == "overdue_alert" else "URGENT (SMT) home visit"
    body = f"{stage} {safe_label(visit)}: {staff} not back{when}.{call} Steps and address in your email."
    return body[:TEXT_LIMIT]


def alert_texts(
    kind: str, visit: Mapping[str, Any], sms: SmsSettings | None, now: dt.datetime, timezone: str
) -> tuple[tuple[str, str], ...]:
    """(mobile in E.164, body) for each person of this alert stage who has a mobile: the line manager
    (the sheet's Line manager mobile) for the first stage, [sms] smt for the second."""
    if sms is None or kind not in TEXT_KINDS:
        return ()
    first_stage = kind == "overdue_alert"
    numbers = [e164(visit.get("line_manager_mobile"))] if first_stage else list(sms.smt)
    body = alert_body(kind, visit, now, timezone)
    seen: list[str] = []
    for number in numbers:
        if number and number not in seen:
            seen.append(number)
    return tuple((number, body) for number in seen)


def text_key(alert_key: str, kind: str, number: str) -> str:
    """``overdue_text:V-132:+447700900503`` for the alert ``overdue_alert:V-132`` (``#2`` kept)."""
    return f"{TEXT_KINDS[kind]}{alert_key.removeprefix(kind)}:{number}"


# ---------------------------------------------------------------- channels (the edge)


class TextRefused(Exception):
    """Refused for good (invalid number, bad template, key not allowed): never retried."""


class TextDelayed(Exception):
    """Not accepted this time (rate limit, Notify down, no connection): the next run tries again."""


@dataclass(frozen=True)
class TextRetry:
    """The bounded backoff for one text: at most ``attempts`` tries within ``budget`` seconds."""

    attempts: int = 4
    first_wait: float = 1.0
    max_wait: float = 8.0
    budget: float = 30.0


RETRY = TextRetry()  # read at each send (tests shorten the waits)


class NotifyChannel:
    """GOV.UK Notify through its official client: ``send`` gives Notify's id for the text."""

    def __init__(self, sms: SmsSettings, retry: TextRetry | None = None) -> None:
        from notifications_python_client.notifications import NotificationsAPIClient

        self.sms, self.retry = sms, retry
        self.client = NotificationsAPIClient(sms.api_key, base_url=sms.base_url, timeout=15)

    def send(self, number: str, body: str, reference: str) -> str:
        import time

        from notifications_python_client.errors import HTTPError

        from .sources.http import Backoff, RetryPolicy

        retry = self.retry or RETRY
        policy = RetryPolicy(
            attempts=retry.attempts, first_wait=retry.first_wait, max_wait=retry.max_wait, budget=retry.budget
        )
        backoff = Backoff(policy, sleep=time.sleep)
        while True:
            try:
                answer = self.client.send_sms_notification(
                    phone_number=number,
                    template_id=self.sms.template_id,
                    personalisation={"message": body},
                    reference=reference,
                )
            except HTTPError as exc:
                status = exc.status_code
                why = notify_error(exc)
                if status == 429 or status >= 500 or status is None:
                    if backoff.wait():
                        continue
                    raise TextDelayed(why) from exc
                raise TextRefused(why) from exc
            except Exception as exc:  # the connection itself: the client raises requests' errors raw
                if backoff.wait():
                    continue
                raise TextDelayed(f"GOV.UK Notify could not be reached ({type(exc).__name__})") from exc
            return str(answer.get("id") or "")

    def received(self) -> Iterator[Mapping[str, Any]]:
        """The texts sent to the service's number, newest first, page after page (read lazily: the
        caller stops at the first one it has already processed)."""
        from notifications_python_client.errors import HTTPError

        try:
            yield from self.client.get_received_texts_iterator()
        except HTTPError as exc:
            raise TextDelayed(notify_error(exc)) from exc
        except Exception as exc:
            raise TextDelayed(f"GOV.UK Notify could not be reached ({type(exc).__name__})") from exc


def notify_error(exc: Any) -> str:
    """``GOV.UK Notify 400: phone_number Not a UK mobile number``: status and Notify's own messages."""
    status = getattr(exc, "status_code", None)
    messages = getattr(exc, "message", None)
    if isinstance(messages, list):
        text = "; ".join(_plain(m.get("message", m) if isinstance(m, dict) else m) for m in messages)
    else:
        text = _plain(messages)
    return f"GOV.UK Notify {status or 'error'}: {text or 'no reply'}"


class OutboxChannel:
    """Texts as files in a folder (the demo's provider): one ``<time>-<id>.txt`` per text."""

    def __init__(self, sms: SmsSettings) -> None:
        self.folder = Path(sms.outbox)

    def send(self, number: str, body: str, reference: str) -> str:
        digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            path = self.folder / f"{stamp}-{digest}.txt"
            path.write_text(f"To: {number}\n\n{body}\n", encoding="utf-8")
        except OSError as exc:
            raise TextDelayed(f"the text outbox {self.folder} cannot be written ({exc.strerror})") from exc
        return f"outbox-{digest}"

    def received(self) -> Iterator[Mapping[str, Any]]:
        """Texts "received" as files in the ``inbox`` folder beside the outbox (the demo's), newest
        first: each a JSON object like Notify's (id, user_number, created_at, content)."""
        import json

        inbox = self.folder.parent / "inbox"
        if not inbox.is_dir():
            return
        texts = []
        for path in sorted(inbox.glob("*.json")):
            try:
                texts.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise TextDelayed(f"the text inbox file {path.name} cannot be read ({exc})") from exc
        yield from sorted(texts, key=lambda t: str(t.get("created_at")), reverse=True)


def open_channel(sms: SmsSettings | None) -> NotifyChannel | OutboxChannel | None:
    if sms is None:
        return None
    return NotifyChannel(sms) if sms.provider == "notify" else OutboxChannel(sms)


# ---------------------------------------------------------------- sending an alert's texts


@dataclass
class TextTally:
    sent: int = 0
    queued: int = 0
    refused: int = 0


def message_id(key: str, domain: str) -> str:
    """The ledger's unique id for a text entry (texts have no Message-ID of their own)."""
    return f"<text.{hashlib.sha256(key.encode()).hexdigest()[:24]}@{domain}>"


def send_texts(
    ledger: Ledger,
    channel: Any,
    alert_key: str,
    kind: str,
    visit_id: str,
    texts: Sequence[tuple[str, str]],
    now: dt.datetime,
    tally: TextTally,
    say: Callable[[str], None],
) -> None:
    """Send this alert stage's texts: each once (the ledger's key), the intent recorded before."""
    text_kind = TEXT_KINDS[kind]
    for number, body in texts:
        key = text_key(alert_key, kind, number)
        entry = ledger.queue(key, visit_id, text_kind, [number], now, message_id(key, ledger.domain))
        if entry.status != "pending":
            continue
        ledger.attempt(key, now)
        try:
            provider_id = channel.send(number, body, reference=f"{text_kind}:{visit_id}")
        except TextRefused as exc:
            ledger.mark_failed(key, now, str(exc), permanent=True)
            tally.refused += 1
            say(f"text refused for good: {visit_id} {text_kind} ({exc})")
        except TextDelayed as exc:
            ledger.mark_failed(key, now, str(exc), permanent=False)
            tally.queued += 1
            say(f"text queued for the next run: {visit_id} {text_kind} ({exc})")
        else:
            ledger.mark_sent(key, now)
            if provider_id:
                ledger.note_provider_id(key, provider_id)
            tally.sent += 1
            say(f"text sent: {visit_id} {text_kind}")


def check_setup(sms: SmsSettings) -> list[str]:
    """What is wrong with the Notify setup, one sentence each (empty: all well): the API key works
    (``get_template``), the template's whole content is ``((message))``, and, with ``inbound``, the
    texts sent to the service's number can be read. For a ``check-setup`` command to call."""
    if sms.provider != "notify":
        return []
    from notifications_python_client.errors import HTTPError
    from notifications_python_client.notifications import NotificationsAPIClient

    client = NotificationsAPIClient(sms.api_key, base_url=sms.base_url, timeout=15)
    problems = []
    try:
        template = client.get_template(sms.template_id)
    except HTTPError as exc:
        why = notify_error(exc)
        if exc.status_code == 403:
            return [f"GOV.UK Notify refused the API key in {sms.api_key_env} ({why}): create a new key."]
        return [
            f"GOV.UK Notify has no template {sms.template_id} for this key ({why}): check [sms] template_id."
        ]
    except Exception as exc:
        return [f"GOV.UK Notify could not be reached at {sms.base_url} ({type(exc).__name__})."]
    if str(template.get("body", "")).strip() != "((message))":
        problems.append(
            f"The Notify template {sms.template_id} must hold exactly ((message)) and nothing else: edit it in Notify."
        )
    if sms.inbound:
        try:
            client.get_received_texts()
        except HTTPError as exc:
            problems.append(
                f"Texts sent to the service's number cannot be read ({notify_error(exc)}): turn on "
                "'Receive text messages' in Notify's settings, or set inbound = false."
            )
    return problems
