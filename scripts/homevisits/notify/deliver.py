"""Delivery: the run's only I/O besides reading the sheet. Sends each planned message through the
transport (SMTP, outbox, ...) and its texts, records intent in the ledger before each send and the
server's answer after, and writes the tool's own columns back to the sheet in one batch.

:class:`Run` holds one run's ledger, transport and :class:`Tally`; a ledger that fails mid-run is
replaced by one in memory so alerts still go (everything else waits).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import mail, transports
from ..errors import HomevisitsError
from ..ledger import LedgerUnavailable
from ..visit_ids import visit_ref
from .history import ALERTS
from .messages import Planned, build, describe, nobody

if TYPE_CHECKING:
    from ..ledger import Entry, Ledger
    from ..pipeline import Checked
    from .options import Settings


def _reply(exc: transports.MailError) -> str:
    return " ".join(part for part in (str(exc.code) if exc.code else "", exc.status) if part) or "no reply"


@dataclass
class Tally:
    """What a run did, for its summary line and exit status."""

    sent: int = 0
    queued: int = 0  # not accepted this time: the next run tries again
    refused: int = 0  # refused for good this run
    not_mailed: int = 0
    partly_refused: int = 0  # accepted, but some recipients refused for good
    withdrawn: int = 0  # queued earlier, no longer applies: not sent (not a failure)
    waiting: int = 0  # forms and reminders held back while the ledger cannot be used
    stopped: str | None = None  # why sending stopped early (the mail server cannot be used)

    @property
    def status(self) -> int:
        failed = self.queued or self.refused or self.not_mailed or self.partly_refused
        return 1 if (failed or self.stopped) else 0

    @property
    def anything(self) -> bool:
        return bool(
            self.sent or self.queued or self.refused or self.not_mailed or self.withdrawn or self.waiting
        )

    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.partly_refused:
            parts.append(f"{self.partly_refused} with recipient(s) refused for good")
        if self.withdrawn:
            parts.append(f"{self.withdrawn} withdrawn (no longer applied)")
        if self.waiting:
            parts.append(f"{self.waiting} form(s) and reminder(s) waiting for the ledger")
        if self.queued:
            parts.append(f"{self.queued} queued for the next run")
        if self.refused:
            parts.append(f"{self.refused} refused for good")
        if self.not_mailed:
            parts.append(f"{self.not_mailed} address(es) from the sheet not mailed")
        return ", ".join(parts) + "."


class Run:
    """One run's sending: a ledger, a transport, and where to say what happened."""

    def __init__(
        self,
        ledger: Ledger,
        transport: transports.Transport,
        settings: Settings,
        now: dt.datetime,
        folder: Path,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.ledger, self.transport, self.settings, self.now = ledger, transport, settings, now
        self.folder, self.out, self.err = folder, out, err
        self.tally = Tally()
        self.problem: str | None = None  # the ledger failed during the run: why (exit 2)
        self.accepted: str | None = None  # the key of the message the server accepted last
        from ..sms import TextTally, open_channel

        self.texter = open_channel(settings.sms)  # None without [sms]
        self.texts = TextTally()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"homevisits: {text}", file=self.err, flush=True)

    def deliver(self, planned: Planned, entry: Entry | None = None) -> None:
        """Queue (unless retrying), send, record. A ConnectionFailure stops the run's sending.

        When the ledger fails, the run goes on with a ledger in memory: alerts still go (an alert the
        server already accepted is not sent again), everything else waits for a working ledger."""
        if self.problem is not None and planned.kind not in (*ALERTS, "duress_alert"):
            self.tally.waiting += 1
            return
        try:
            self._deliver(planned, entry)
            self.text(planned)
        except LedgerUnavailable as exc:
            self.degrade(exc)
            if planned.kind not in (*ALERTS, "duress_alert"):
                self.tally.waiting += 1
                return
            if self.accepted == planned.key:  # the server has it: record it, do not send it again
                held = self.ledger.queue(
                    planned.key,
                    planned.visit_id,
                    planned.kind,
                    planned.recipients,
                    self.now,
                    self.msgid(planned),
                )
                self.ledger.mark_sent(held.key, self.now)
                self.text(planned)  # the in-memory ledger does not know its texts: a repeat, never a loss
                return
            self._deliver(planned, None)
            self.text(planned)

    def text(self, planned: Planned) -> None:
        """An alert's texts, beside its email (each once, by the ledger); never holds up the email."""
        from ..sms import TEXT_KINDS, send_texts

        if self.texter is None or not planned.texts or planned.kind not in TEXT_KINDS:
            return

        send_texts(
            self.ledger,
            self.texter,
            planned.key,
            planned.kind,
            planned.visit_id,
            planned.texts,
            self.now,
            self.texts,
            self.say,
        )

    def degrade(self, exc: LedgerUnavailable) -> None:
        """Carry on without the ledger file (see ``deliver``)."""
        from ..ledger import Ledger

        if self.problem is None:
            self.problem = (
                f"{exc.sentence()} Alerts were still sent; forms and reminders wait until it is fixed."
            )
            self.ledger = Ledger.in_memory(sender=self.settings.sender)
            self.warn(f"the ledger failed during the run ({exc.cause}): sending alerts only.")

    def msgid(self, planned: Planned) -> str | None:
        """Alerts carry a Message-ID derived from their key and due time; other kinds get a new one."""
        from ..ledger import alert_message_id, msgid_domain

        if planned.kind not in ALERTS:
            return None
        return alert_message_id(planned.key, planned.due, msgid_domain(self.settings.sender))

    def _deliver(self, planned: Planned, entry: Entry | None = None) -> None:
        if entry is None:
            if planned.not_mailed:
                self.tally.not_mailed += len(planned.not_mailed)
                told = (
                    "the admin is told" if self.settings.admin else "set admin in [mail] to be told by email"
                )
                self.warn(
                    f"{planned.label} {planned.kind}: {len(planned.not_mailed)} address(es) from the sheet "
                    f"are outside allowed_domains or not email addresses and were not mailed ({told})."
                )
            entry = self.ledger.queue(
                planned.key, planned.visit_id, planned.kind, planned.recipients, self.now, self.msgid(planned)
            )
            if entry.status != "pending":
                return
        if not planned.recipients:
            self.refuse(entry, planned, nobody(planned))
            return
        try:
            message = build(planned, entry.message_id, self.settings, self.now, self.folder)
        except Exception as exc:  # a broken template must not hold up the rest (alerts go first anyway)
            self.ledger.mark_failed(
                entry.key, self.now, f"could not build the message ({type(exc).__name__})", False
            )
            self.tally.queued += 1
            self.say(
                f"queued for the next run: {describe(planned)} (could not build it: {type(exc).__name__})"
            )
            return
        self.ledger.attempt(entry.key, self.now)
        try:
            refused = self.transport.send(message)
            self.accepted = planned.key
        except transports.PermanentFailure as exc:
            self.refuse(entry, planned, str(exc), _reply(exc))
        except transports.TemporaryFailure as exc:
            self.ledger.mark_failed(entry.key, self.now, str(exc), permanent=False)
            self.tally.queued += 1
            self.say(f"queued for the next run: {describe(planned)} ({_reply(exc)})")
            if isinstance(exc, transports.ConnectionFailure):
                self.tally.stopped = str(exc)
        else:
            if refused:  # recorded with the acceptance, in one write, so the admin hears even after a crash
                self.ledger.mark_sent(entry.key, self.now, refused=refused)
            else:
                self.ledger.mark_sent(entry.key, self.now)
            self.tally.sent += 1
            self.say(f"sent: {describe(planned)}")
            if refused:
                self.partial_refusal(planned, refused)

    def partial_refusal(self, planned: Planned, refused: mail.Refused) -> None:
        """Accepted, but some recipients refused for good: counted here, reported to the admin once
        from the ledger (``failure_reports``), or on stderr without an admin. No addresses printed."""
        self.tally.partly_refused += 1
        replies = ", ".join(sorted(set(refused.values())))
        told = "the admin is told" if self.settings.admin else "set admin in [mail] to be told by email"
        self.warn(
            f"{planned.label} {planned.kind}: the mail server refused {len(refused)} of "
            f"{len(planned.recipients)} recipients for good ({replies}); the others received it ({told})."
        )

    def withdraw(self, entry: Entry, reason: str) -> None:
        """A pending message that no longer applies: recorded as withdrawn, never sent."""
        self.ledger.mark_withdrawn(entry.key, self.now, reason)
        self.tally.withdrawn += 1
        self.say(f"withdrawn: {visit_ref(entry.visit_id)} {entry.kind} ({reason})")

    def refuse(self, entry: Entry, planned: Planned, error: str, reply: str = "") -> None:
        self.ledger.mark_failed(entry.key, self.now, error, permanent=True)
        self.tally.refused += 1
        self.say(f"refused for good: {describe(planned)}{f' ({reply})' if reply else ''}")
        if not self.settings.admin and planned.kind != "admin_report":
            self.warn(
                f"{planned.label} {planned.kind} will not be retried: {error} (set admin in [mail] "
                "to be told by email)."
            )


def placeholder(entry: Entry) -> Planned:
    """A pending entry that cannot be rebuilt, for the run's report."""
    return Planned(entry.key, entry.visit_id, entry.kind, tuple(entry.recipients), (), "", "")


def write_back(checked: Checked, ledger: Ledger, now: dt.datetime, err: TextIO, sent: int = 0) -> None:
    """Form sent at / Escalated at from the ledger, and Visit IDs for rows without one: one write.

    Entries whose visit is not in the sheet are left for a later run; a failed write is redone
    next run (the ledger still lists them)."""
    from ..sheet import CellUpdate
    from ..visit_ids import assign_ids, id_key

    frame = checked.visits.frame
    ids = [v for v in frame["visit_id"].tolist() if v]
    present = {id_key(v) for v in ids}
    entries = [e for e in ledger.needs_write_back() if id_key(e.visit_id) in present]
    updates = [CellUpdate(e.visit_id, e.write_back_field or "", e.sent_at) for e in entries]
    missing = [
        int(row)
        for row, vid in zip(frame["row"].tolist(), frame["visit_id"].tolist(), strict=True)
        if not vid
    ]
    updates += assign_ids(missing, ids)
    if not updates:
        return
    try:
        result = checked.write_back(updates)
    except HomevisitsError as exc:
        went = f"{sent} message(s) went, but " if sent else ""
        print(f"homevisits: {went}the sheet was not updated: {exc}", file=err, flush=True)
        return
    done = {(id_key(p.update.visit_id), p.update.field) for p in result.written}
    ledger.mark_written_back(
        [e.key for e in entries if (id_key(e.visit_id), e.write_back_field) in done], now
    )
    given = sum(1 for p in result.written if p.update.field == "visit_id")
    if given:
        print(f"Gave {given} row(s) a Visit ID: they are handled from the next run.", file=err, flush=True)
    for skipped in result.skipped:
        print(f"homevisits: not written to the sheet: {skipped.reason}.", file=err, flush=True)
