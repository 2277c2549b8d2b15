"""Check-in by text: staff text ARRIVED / LEFT / SAFE (or IN / OUT / BACK) to the service's number.

Reading a text is pure (``reading``, ``match``); ``process`` is the edge: it reads the texts Notify
received since the last one processed (each processed once, by Notify's id, recorded in the ledger
as ``inbound_text``), writes ``Arrived at`` / ``Departed at`` / ``Returned safely at`` through the
source's normal write-back (located by Visit ID), and answers each text once (``reply_text``).

A text is matched by the phone it came from: the ``Phone taken on visit`` of today's visits. Texts
from numbers that belong to no visit are counted, never stored with their content, and get no
reply. A ``SAFE`` after an alert went out also tells the people the alert texted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger import Ledger
    from .visits import Visits

WORDS = {
    "ARRIVED": "arrived_at",
    "IN": "arrived_at",
    "LEFT": "departed_at",
    "OUT": "departed_at",
    "SAFE": "returned_at",
    "BACK": "returned_at",
}
SAID = {"arrived_at": "arrival", "departed_at": "departure", "returned_at": "safe return"}
HELP = (
    "Text ARRIVED, LEFT or SAFE, with the visit ID if you have more than one visit today (e.g. SAFE V-132)."
)
UNKNOWN = "unknown"  # the ledger's visit reference for a text from a number no visit holds


@dataclass(frozen=True)
class Inbound:
    """One text Notify received: its id, the sender in E.164 (None: not a UK mobile), when."""

    id: str
    number: str | None
    content: str
    received_at: dt.datetime  # UTC


@dataclass(frozen=True)
class Reading:
    """What a text asks: a field to write (or ``duress``), and the visit ID it names, if any."""

    action: str | None
    visit_id: str | None = None


@dataclass
class Outcome:
    """What one text leads to: a cell to write, a reply, and the people to tell."""

    inbound: Inbound
    visit_id: str = UNKNOWN
    field: str | None = None
    reply: str | None = None
    tell: tuple[str, ...] = ()  # mobiles the alert texted: told of a safe return
    duress: bool = False


@dataclass
class CheckinTally:
    read: int = 0
    recorded: int = 0
    unknown: int = 0  # from numbers that belong to no visit
    duress: int = 0
    unread: bool = False  # Notify could not be read this run


def reading(content: str, duress_word: str = "") -> Reading:
    """ARRIVED/IN, LEFT/OUT, SAFE/BACK, optionally a visit ID; case, spaces and punctuation ignored."""
    upper = content.upper()
    tokens = [t.strip(".-/_") for t in re.split(r"[^A-Z0-9/_.-]+", upper)]
    tokens = [t for t in tokens if t]
    squeezed = re.sub(r"[^A-Z]", "", upper)
    word = re.sub(r"[^A-Z]", "", duress_word.upper())
    if word and (word in (re.sub(r"[^A-Z]", "", t) for t in tokens) or squeezed == word):
        return Reading("duress")
    action = next((WORDS[t] for t in tokens if t in WORDS), None)
    if action is None and squeezed in WORDS:
        return Reading(WORDS[squeezed])
    others = [t for t in tokens if t not in WORDS]
    named = next((t for t in others if re.search(r"\d", t)), None)
    return Reading(action, named)


def _key(visit_id: Any) -> str:
    return re.sub(r"\s+", "", str(visit_id or "")).upper()


def todays_visits(visits: Visits, number: str, day: dt.date) -> list[int]:
    """Positions of the visits on ``day`` whose Phone taken on visit is ``number``, not called off."""
    from .sms import e164
    from .state import CANCELLED

    frame = visits.frame
    found = []
    for i, (phone, date, status) in enumerate(
        zip(
            frame["phone_taken"].tolist(), frame["visit_date"].tolist(), frame["status"].tolist(), strict=True
        )
    ):
        if status in CANCELLED or not isinstance(phone, str):
            continue
        if _date(date) == day and e164(phone) == number:
            found.append(i)
    return found


def _date(value: Any) -> dt.date | None:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
        return pd.Timestamp(value).date()
    except (TypeError, ValueError):
        return None


def known_numbers(visits: Visits) -> set[str]:
    from .sms import e164

    return {n for n in (e164(p) for p in visits.frame["phone_taken"].tolist() if isinstance(p, str)) if n}


def match(
    inbound: Inbound,
    visits: Visits,
    confirmed: Sequence[bool],
    timezone: str,
    duress_word: str = "",
    alerted: Callable[[str], tuple[str, ...]] = lambda visit_id: (),
) -> Outcome:
    """What to do with one text (pure): the visit it is about, the cell, the reply."""
    from zoneinfo import ZoneInfo

    outcome = Outcome(inbound)
    if inbound.number is None or inbound.number not in known_numbers(visits):
        return outcome  # nobody's: counted, no reply
    local = inbound.received_at.astimezone(ZoneInfo(timezone))
    asked = reading(inbound.content, duress_word)
    today = todays_visits(visits, inbound.number, local.date())
    ids = visits.frame["visit_id"].tolist()
    if asked.action == "duress":
        outcome.duress = True
        outcome.visit_id = str(ids[today[0]]) if today and ids[today[0]] else UNKNOWN
        outcome.reply = "Thanks, noted."  # ordinary-looking: never says an alarm was raised
        return outcome
    if asked.action is None:
        outcome.visit_id = "-"
        outcome.reply = f"Sorry, not understood. {HELP}"
        return outcome
    field_name = asked.action
    column = visits.frame[field_name].tolist()
    open_ = [
        i
        for i in today
        if ids[i]
        and (not confirmed[i] if field_name == "returned_at" else column[i] is None or _missing(column[i]))
    ]
    if asked.visit_id is not None:
        open_ = [i for i in open_ if _key(ids[i]) == _key(asked.visit_id)]
    if not open_:
        outcome.visit_id = "-"
        outcome.reply = f"No open visit today for this phone{f' with ID {asked.visit_id}' if asked.visit_id else ''}. {HELP}"
        return outcome
    if len(open_) > 1:
        listed = ", ".join(str(ids[i]) for i in open_)
        outcome.visit_id = "-"
        outcome.reply = f"You have {len(open_)} open visits today ({listed}): text {_word(field_name)} and the visit ID, e.g. {_word(field_name)} {ids[open_[0]]}."
        return outcome
    visit_id = str(ids[open_[0]])
    outcome.visit_id, outcome.field = visit_id, field_name
    outcome.reply = f"Recorded: {_safe(visit_id)} {SAID[field_name]} {local:%H:%M}."
    if field_name == "returned_at":
        outcome.tell = alerted(visit_id)
    return outcome


def _word(field_name: str) -> str:
    return {"arrived_at": "ARRIVED", "departed_at": "LEFT", "returned_at": "SAFE"}[field_name]


def _safe(visit_id: str) -> str:
    from .visit_ids import is_header_safe_id

    return visit_id if is_header_safe_id(visit_id) else "your visit"


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# ---------------------------------------------------------------- the edge


def new_texts(channel: Any, ledger: Ledger) -> list[Inbound]:
    """The texts received since the newest one already processed, oldest first (Notify serves them
    newest first, a page at a time), and any older one still waiting (its cell could not be written,
    its duress alert not yet sent: ``record(..., done=False)``). A text read by a run killed before
    its write was never recorded, so it is read again."""
    from .sms import e164

    waiting = {e.key for e in ledger.pending() if e.kind == "inbound_text"}
    found: list[Inbound] = []
    for text in channel.received():
        key = f"inbound:{text['id']}"
        entry = ledger.get(key)
        if entry is not None and entry.status == "sent":
            if not waiting:
                break
            continue
        waiting.discard(key)
        received = dt.datetime.fromisoformat(str(text["created_at"]).replace("Z", "+00:00"))
        number = e164("+" + str(text.get("user_number", "")).lstrip("+"))
        found.append(
            Inbound(str(text["id"]), number, str(text.get("content") or ""), received.astimezone(dt.UTC))
        )
    return list(reversed(found))


def alerted_mobiles(ledger: Ledger) -> Callable[[str], tuple[str, ...]]:
    """For a visit: the mobiles its alert texts reached."""

    def mobiles(visit_id: str) -> tuple[str, ...]:
        found: list[str] = []
        for kind in ("overdue_text", "smt_text"):
            for entry in ledger.entries(visit_id, kind):
                if entry.status == "sent":
                    found += [m for m in entry.recipients if m not in found]
        return tuple(found)

    return mobiles


def reply(
    ledger: Ledger,
    channel: Any,
    key: str,
    visit_id: str,
    number: str,
    body: str,
    now: dt.datetime,
    say: Callable[[str], None],
) -> bool:
    """One text out (a reply, a safe-return notice), once by its key. False: not sent this time."""
    from .sms import TextDelayed, TextRefused, message_id

    entry = ledger.queue(key, visit_id, "reply_text", [number], now, message_id(key, ledger.domain))
    if entry.status != "pending":
        return True
    ledger.attempt(key, now)
    try:
        provider_id = channel.send(number, body, reference=f"reply_text:{visit_id}")
    except TextRefused as exc:
        ledger.mark_failed(key, now, str(exc), permanent=True)
        say(f"reply refused for good: {visit_id} ({exc})")
        return True
    except TextDelayed as exc:
        ledger.mark_failed(key, now, str(exc), permanent=False)
        say(f"reply queued for the next run: {visit_id} ({exc})")
        return False
    ledger.mark_sent(key, now)
    if provider_id:
        ledger.note_provider_id(key, provider_id)
    return True


def describe_staff(visits: Visits, visit_id: str) -> str:
    position = visits.position_of(visit_id)
    if position is None:
        return "The staff member"
    from .sms import _plain

    return _plain(visits.frame["lead_staff"].iat[position]) or "The staff member"


def updates_for(outcomes: Sequence[Outcome]) -> list[Any]:
    from .sheet import CellUpdate

    return [CellUpdate(o.visit_id, o.field, o.inbound.received_at) for o in outcomes if o.field]


def record(ledger: Ledger, outcome: Outcome, now: dt.datetime, done: bool = True) -> None:
    """The text is processed (``done``), or read and still waiting: in the ledger by Notify's id (the
    sender only for a known number, never the content)."""
    key = f"inbound:{outcome.inbound.id}"
    known = outcome.reply is not None
    recipients = [outcome.inbound.number] if known and outcome.inbound.number else []
    ledger.queue(
        key, outcome.visit_id or UNKNOWN, "inbound_text", recipients, now, f"<{key}@inbound.invalid>"
    )
    if done:
        ledger.mark_sent(key, now)


def safe_notice(visits: Visits, outcome: Outcome, timezone: str) -> str:
    from zoneinfo import ZoneInfo

    local = outcome.inbound.received_at.astimezone(ZoneInfo(timezone))
    return f"{describe_staff(visits, outcome.visit_id)} confirmed safe at {local:%H:%M}; no further action."


def process(
    ledger: Ledger,
    channel: Any,
    checked: Any,
    duress_word: str,
    timezone: str,
    now: dt.datetime,
    say: Callable[[str], None],
    warn: Callable[[str], None],
) -> tuple[CheckinTally, list[Outcome], list[Outcome]]:
    """Read, match, write back (one batch), record, reply. Returns the tally, the duress outcomes (the
    caller alerts on them, then ``record``s them: a run that dies first reads the text again) and the
    safe returns recorded (the caller tells the people its alert emailed). Nothing is recorded as
    processed unless its cell was written."""
    from . import safe_return
    from .sms import TextDelayed
    from .visit_ids import id_key

    tally = CheckinTally()
    try:
        texts = new_texts(channel, ledger)
    except TextDelayed as exc:
        warn(f"staff texts could not be read this run: {exc}.")
        tally.unread = True
        return tally, [], []
    if not texts:
        return tally, [], []
    visits = checked.visits
    confirmed = safe_return.overdue(visits, checked.policy.timings, now).back.confirmed.tolist()
    outcomes = [match(t, visits, confirmed, timezone, duress_word, alerted_mobiles(ledger)) for t in texts]
    tally.read = len(outcomes)
    updates = updates_for(outcomes)
    written: set[tuple[str, str]] = set()
    if updates:
        from .errors import HomevisitsError

        try:
            result = checked.write_back(updates)
        except HomevisitsError as exc:
            warn(
                f"check-in texts were read but the sheet could not be updated ({exc}): tried again next run."
            )
            result = None
        if result is not None:
            written = {(id_key(p.update.visit_id), p.update.field) for p in result.written}
            for skipped in result.skipped:
                warn(f"check-in not written to the sheet: {skipped.reason}.")
    duress, safe = [], []
    for outcome in outcomes:
        if outcome.field and (id_key(outcome.visit_id), outcome.field) not in written:
            record(ledger, outcome, now, done=False)  # read again next run
            continue
        if outcome.reply is None:
            tally.unknown += 1
        elif outcome.duress:
            tally.duress += 1
            duress.append(outcome)
        elif outcome.field:
            tally.recorded += 1
            say(f"recorded from a text: {outcome.visit_id} {outcome.field}")
            if outcome.field == "returned_at":
                safe.append(outcome)
        record(ledger, outcome, now, done=not outcome.duress)  # duress: done once its alert is queued
        if outcome.reply is not None and outcome.inbound.number:
            reply(
                ledger,
                channel,
                f"reply:{outcome.inbound.id}",
                outcome.visit_id,
                outcome.inbound.number,
                outcome.reply,
                now,
                say,
            )
        for number in outcome.tell:
            if number != outcome.inbound.number:
                body = safe_notice(visits, outcome, timezone)
                reply(
                    ledger,
                    channel,
                    f"safe_notice:{outcome.inbound.id}:{number}",
                    outcome.visit_id,
                    number,
                    body,
                    now,
                    say,
                )
    if tally.unknown:
        warn(f"{tally.unknown} text(s) from numbers that belong to no visit were ignored (not stored).")
    return tally, duress, safe
