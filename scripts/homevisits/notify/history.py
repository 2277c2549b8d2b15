"""What was sent, as the ledger and the sheet tell it: the history the plan reads (never writes).

- :class:`History`: the ledger's entries, by key and by visit (withdrawn ones count as never planned);
- each row's reference: its Visit ID, else ``unnamed-<fingerprint>``; a Visit ID on two rows is
  tracked per row (``<ID>~<fingerprint>``), so yesterday's alert never stands for today's visit;
- an alert stage's entry (one queued before the visit started belongs to an earlier visit), its key,
  and whether the sheet's own Form sent at / Escalated at show the step done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .options import utc

if TYPE_CHECKING:
    from ..ledger import Entry, Ledger
    from ..visits import Visits
    from .context import Context

UNNAMED = "unnamed-"  # the ledger's reference for a row with no Visit ID yet: unnamed-<fingerprint>


@dataclass(frozen=True)
class History:
    """The ledger's entries as the planner sees them (a snapshot; planning never writes).

    A withdrawn message counts as never planned (``of_visit``, ``current``, ``last_time``), but its key
    stays taken: a message planned again gets a new key (``new_key``) and a new Message-ID."""

    entries: tuple[Entry, ...] = ()

    def __post_init__(self) -> None:
        by_visit: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if entry.status != "withdrawn":
                by_visit.setdefault(entry.visit_id, []).append(entry)
        object.__setattr__(self, "_by_key", {e.key: e for e in self.entries})
        object.__setattr__(self, "_by_visit", by_visit)

    @classmethod
    def of(cls, ledger: Ledger | None) -> History:
        return cls(tuple(ledger.entries())) if ledger is not None else cls()

    def get(self, key: str) -> Entry | None:
        return self._by_key.get(key)  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key  # type: ignore[attr-defined]

    def of_visit(self, visit_id: str, kinds: Iterable[str]) -> list[Entry]:
        """This visit's messages of these kinds, oldest first, leaving out withdrawn ones."""
        wanted = set(kinds)
        return [e for e in self._by_visit.get(visit_id, ()) if e.kind in wanted]  # type: ignore[attr-defined]

    def current(self, visit_id: str, kind: str) -> Entry | None:
        """The latest message of this kind for this visit that was not withdrawn."""
        found = self.of_visit(visit_id, (kind,))
        return found[-1] if found else None

    def new_key(self, key: str) -> str:
        """``key``, or ``key#2``, ``key#3``... when a withdrawn message holds it (never queued again)."""
        candidate, number = key, 1
        while (held := self.get(candidate)) is not None and held.status == "withdrawn":
            number += 1
            candidate = f"{key}#{number}"
        return candidate

    def carried_over(self, visits: Visits) -> History:
        """The history as ``carry_over`` would leave the ledger (for a dry run, which writes nothing)."""
        renames = carry_over_renames(
            {e.visit_id for e in self.entries if e.visit_id.startswith(UNNAMED)}, visits
        )
        if not renames:
            return self
        return History(tuple(replace(e, visit_id=renames.get(e.visit_id, e.visit_id)) for e in self.entries))

    def withdrawn(self, reasons: Mapping[str, str], now: dt.datetime) -> History:
        """The history once the entries keyed in ``reasons`` are withdrawn (what a run records)."""
        if not reasons:
            return self
        return History(
            tuple(
                replace(e, withdrawn_at=now, withdrawn_reason=reasons[e.key]) if e.key in reasons else e
                for e in self.entries
            )
        )

    def last_time(self, visit_id: str, kinds: Iterable[str]) -> dt.datetime | None:
        """The latest moment a message of these kinds was queued or accepted for this visit: a message
        queued by a run that then crashed counts, so the crash never causes a second one."""
        times = [max(e.queued_at, e.sent_at or e.queued_at) for e in self.of_visit(visit_id, kinds)]
        return max(times) if times else None


FINGERPRINT = ("visit_date", "start_time", "lead_staff", "learner_key")


def fingerprints(visits: Visits, positions: Iterable[int]) -> dict[int, str]:
    """A stable reference for each row at ``positions``, whatever its Visit ID: its date, start, lead
    staff and learner, hashed (so the ledger holds no names)."""
    import hashlib

    frame = visits.frame
    columns = [frame[name].to_numpy() for name in FINGERPRINT]
    found = {}
    for i in positions:
        parts = [columns[j][i] for j in range(len(FINGERPRINT))]
        text = "|".join("" if _missing(p) else " ".join(str(p).lower().split()) for p in parts)
        found[i] = UNNAMED + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    return found


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def visit_refs(visits: Visits) -> tuple[str, ...]:
    """Each row's reference in the ledger: its Visit ID, else its fingerprint. A Visit ID on two rows
    (a row copied for a new visit, HV019) is no single visit: each such row gets ``<ID>~<fingerprint>``,
    so yesterday's alert never stands for today's visit."""
    from collections import Counter

    ids = visits.frame["visit_id"].tolist()
    counts = Counter(visit_id for visit_id in ids if visit_id)
    apart = [i for i, visit_id in enumerate(ids) if not visit_id or counts[visit_id] > 1]
    found = fingerprints(visits, apart)
    return tuple(
        (found[i] if not visit_id else f"{visit_id}~{found[i].removeprefix(UNNAMED)}")
        if i in found
        else visit_id
        for i, visit_id in enumerate(ids)
    )


def form_sent(visit: Mapping[str, Any]) -> bool:
    """The sheet shows a form sent (written back by a run, or typed in by hand)."""
    return visit.get("form_sent_at") is not None


def escalated(visit: Mapping[str, Any], ctx: Context) -> bool:
    """The sheet shows the first stage done (written back by a run, or typed in by staff): an Escalated
    at from the visit's start up to now. A time still to come, or one before the visit began, is a
    doubt, and a doubt never stands for an alert that went."""
    when = utc(visit.get("escalated_at"))
    if when is None or when > ctx.now:
        return False
    start = utc(visit.get("start_at"))
    return start is None or when >= start


def stage_entry(visit: Mapping[str, Any], ctx: Context, kind: str) -> Entry | None:
    """This visit's latest message of an alert stage. One queued before the visit started was about an
    earlier visit under the same Visit ID (a row reused for the next visit): it does not count."""
    entry = ctx.history.current(str(visit["visit_id"]), kind)
    start = utc(visit.get("start_at"))
    if entry is not None and start is not None and entry.queued_at < start:
        return None
    return entry


def stage_key(visit: Mapping[str, Any], ctx: Context, kind: str) -> str:
    """``overdue_alert:V1``; when an earlier visit under the same ID holds that key, one of this visit's
    own (``overdue_alert:V1@2026-11-30T09:00``), so the ledger never takes it for the old one."""
    key = ctx.history.new_key(f"{kind}:{visit['visit_id']}")
    held = ctx.history.get(key)
    start = utc(visit.get("start_at"))
    if held is not None and start is not None and held.queued_at < start:
        key = ctx.history.new_key(f"{kind}:{visit['visit_id']}@{start:%Y-%m-%dT%H:%M}")
    return key


def alert_time(visit: Mapping[str, Any], ctx: Context) -> dt.datetime | None:
    """When the line manager's alert went (or was first queued, if it is still being retried: the SMT
    stage never waits on a mail server), else the sheet's Escalated at."""
    alert = stage_entry(visit, ctx, "overdue_alert")
    if alert is not None:
        return alert.sent_at or alert.queued_at
    return utc(visit.get("escalated_at")) if escalated(visit, ctx) else None


VISIT_KINDS = ("form", "reminder", "final_reminder", "deadline_missed", "overdue_alert", "smt_alert")
ALERTS = ("overdue_alert", "smt_alert")
TEXTS = {"overdue_text": "overdue_alert", "smt_text": "smt_alert"}  # an alert stage's texts (sms.py)
# Entries sms.py / checkin.py keep: never rebuilt by ``rebuild`` (a pending duress alert comes back with
# its text, which is processed again; a pending safe notice is not sent again).
TEXT_ENTRIES = (*TEXTS, "duress_text", "inbound_text", "reply_text", "duress_alert", "safe_notice")


def texted(ctx: Context, visit_id: str, stage: str) -> bool:
    """A text of this alert stage was accepted: the stage reached someone even if its email did not."""
    kinds = [kind for kind, of in TEXTS.items() if of == stage]
    return any(e.status == "sent" for e in ctx.history.of_visit(visit_id, kinds))


def carry_over_renames(kept: Iterable[str], visits: Visits) -> dict[str, str]:
    """Fingerprint -> Visit ID for the rows that now have an ID and whose alerts the ledger ``kept``
    under their fingerprint (sent before the row had an ID)."""
    kept = set(kept)
    if not kept:
        return {}
    ids = visits.frame["visit_id"].tolist()
    named = fingerprints(visits, [i for i, visit_id in enumerate(ids) if visit_id])
    return {fp: ids[i] for i, fp in named.items() if fp in kept}


def carry_over(ledger: Ledger, visits: Visits) -> None:
    """Alerts sent for a row before it had a Visit ID now belong to that ID (in the ledger)."""
    kept = ledger.visit_ids(UNNAMED)
    if kept:
        ledger.carry_over(carry_over_renames(kept, visits))
