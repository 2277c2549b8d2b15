"""The plan: one pure function of (visits, history, settings, now, policy) that says everything a run
will do, each with its reason. The real run executes it; ``--dry-run`` prints it. One path.

:class:`RunPlan` lists what to withdraw (queued messages the sheet no longer calls for), what to send
again (pending or failed-to-send ledger entries), what to send new, and the rows looked at and left
alone, with why; also what the safe-return loop could not read (``doubts``). Nothing here touches the
network, the ledger file or the sheet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .. import mail
from ..state import Condition, form_conditions
from ..visit_ids import visit_ref
from .context import context_for, visit_record
from .history import ALERTS, TEXT_ENTRIES, UNNAMED, texted
from .messages import REFUSED, Planned, build, compose, compose_admin_report, describe, nobody
from .options import utc
from .steps import (
    Decision,
    Send,
    form_step,
    local,
    return_candidates,
    return_conditions,
    return_step,
    withdrawals,
)

if TYPE_CHECKING:
    from ..findings import Finding
    from ..ledger import Entry
    from ..policy import Policy
    from ..visits import Visits
    from .context import Context
    from .history import History
    from .options import Settings

JOBS = ("forms", "returns")
DRY_RUN_ID = "<dry-run@homevisits.invalid>"  # the Message-ID a dry run builds its messages with


@dataclass(frozen=True)
class Withdrawal:
    """A queued message the sheet no longer calls for (a safe return, a cancelled visit...): never sent."""

    entry: Entry
    reason: str


@dataclass(frozen=True)
class Resend:
    """A message the ledger still holds as pending, rebuilt from the sheet as it is now; ``planned`` is
    None when it cannot be (``reason`` says why: it is then refused for good and reported)."""

    entry: Entry
    planned: Planned | None
    reason: str


@dataclass(frozen=True)
class Skip:
    """A row a job looked at and left alone, and why (``where``: ``V1 (row 5)`` or ``row 5``)."""

    where: str
    job: str
    reason: str


@dataclass(frozen=True)
class RunPlan:
    """Everything one run will do, each with its reason; ``context``: the planning context after the
    withdrawals (the run's follow-ups start from it). ``broken``: a message that could not be composed
    (a broken form template): the run raises it once the alerts have gone."""

    context: Context
    jobs: tuple[str, ...]
    withdraw: tuple[Withdrawal, ...] = ()
    resend: tuple[Resend, ...] = ()
    send: tuple[Send, ...] = ()
    skipped: tuple[Skip, ...] = ()
    doubts: tuple[str, ...] = ()
    unnamed: int = 0  # rows with no Visit ID: given one by this run's write
    broken: Exception | None = None

    def work(self) -> list[tuple[Planned, Entry | None]]:
        """What to deliver, most urgent first: retries (with their ledger entry) before new messages."""
        work = [(r.planned, r.entry) for r in self.resend if r.planned is not None]
        work += [(s.planned, None) for s in self.send]
        return sorted(work, key=lambda item: item[0].priority)

    def describe(self, settings: Settings, *, explain: bool = False) -> list[str]:
        """The lines ``--dry-run`` prints (visit IDs and counts only); ``explain``: each with its reason,
        then the rows left alone and why."""
        lines = [
            f"would withdraw: {visit_ref(w.entry.visit_id)} {w.entry.kind} ({w.reason})"
            for w in self.withdraw
        ]
        for again in self.resend:
            entry = again.entry
            if again.planned is None:
                lines.append(f"would report: {visit_ref(entry.visit_id)} {entry.kind} ({again.reason})")
                continue
            lines.append(f"would send again: {describe(again.planned)}")
            lines += [f"  why: {again.reason}"] if explain else []
        for send in self.send:
            lines += _send_lines(send.planned, settings, self.context.now)
            lines += [f"  why: {send.reason}"] if explain else []
        lines += [f"cannot tell: {line}" for line in self.doubts]
        if self.unnamed:
            lines.append(
                f"{self.unnamed} row(s) have no Visit ID: a run gives them one (their alerts go meanwhile, "
                "by sheet row), and the run after handles their forms"
            )
        lines = lines or ["Nothing would be sent."]
        return lines + (_left_alone(self.skipped) if explain else [])


def _left_alone(skipped: Sequence[Skip], listed: int = 5) -> list[str]:
    """One line per row left alone; a reason shared by many rows (a sheet's past visits) is one line
    with the count and the first few rows."""
    groups: dict[tuple[str, str], list[str]] = {}
    for skip in skipped:
        groups.setdefault((skip.job, skip.reason), []).append(skip.where)
    lines = []
    for (job, reason), places in groups.items():
        if len(places) <= listed:
            lines += [f"left alone: {where} {job}: {reason}" for where in places]
        else:
            lines.append(f"left alone: {len(places)} rows {job}: {reason} ({', '.join(places[:3])}, ...)")
    return lines


def _send_lines(planned: Planned, settings: Settings, now: dt.datetime) -> list[str]:
    if not planned.recipients:
        return [f"would not send: {planned.label} {planned.kind} ({nobody(planned)})"]
    message = build(planned, DRY_RUN_ID, settings, now, None)
    lines = [f"would send: {mail.describe(message)}"]
    if planned.texts and settings.sms is not None:
        lines.append(f"would text: {planned.visit_id} {planned.kind} to {len(planned.texts)} mobile(s)")
    if planned.not_mailed:
        lines.append(
            f"would not mail: {len(planned.not_mailed)} address(es) of {planned.label} {planned.kind} "
            "(outside allowed_domains or not an email address)"
        )
    return lines


def plan(
    visits: Visits,
    history: History,
    settings: Settings,
    now: dt.datetime,
    policy: Policy,
    findings: Sequence[Finding] = (),
    jobs: Sequence[str] = JOBS,
) -> RunPlan:
    """What a run of these jobs (``forms``, ``returns``) does now, and why: pure.

    Pending messages first: withdrawn when the sheet no longer calls for them, else rebuilt to send
    again. Then the new messages, planned as if the withdrawn ones had never been (a message planned
    again gets a new key). A form that cannot be composed never holds up an alert: it is kept in
    ``broken`` and the rest is planned."""
    ctx = context_for(visits, findings, policy, settings, history, now)
    pending = [e for e in history.entries if e.status == "pending" and e.kind not in TEXT_ENTRIES]
    withdrawn = withdrawals(pending, visits, ctx)
    broken: Exception | None = None
    resend = []
    for entry in pending:
        if entry.key in withdrawn:
            continue
        try:
            again = rebuild(entry, visits, ctx)
        except Exception as exc:  # stays pending; raised once the rest has gone
            broken = broken or exc
            continue
        if isinstance(again, str):
            resend.append(Resend(entry, None, again))
        else:
            resend.append(Resend(entry, again, _retry_reason(entry, ctx)))
    if withdrawn:  # what was withdrawn may be planned anew (under a new key)
        ctx = replace(ctx, history=history.withdrawn(withdrawn, ctx.now))
    sends, skipped = [], []
    for job in [j for j in JOBS if j in jobs]:  # returns first: a broken form never stops an alert
        try:
            found, left = _job(job, visits, ctx)
        except Exception as exc:
            if job == "returns":
                raise
            broken = broken or exc
            continue
        sends += found
        skipped += left
    return RunPlan(
        context=ctx,
        jobs=tuple(jobs),
        withdraw=tuple(Withdrawal(e, withdrawn[e.key]) for e in pending if e.key in withdrawn),
        resend=tuple(resend),
        send=tuple(_unique([*sends, *not_mailed_reports([s.planned for s in sends], ctx)])),
        skipped=tuple(skipped),
        doubts=tuple(doubts(visits, ctx)) if "returns" in jobs else (),
        unnamed=int(visits.frame["visit_id"].isna().sum()),
        broken=broken,
    )


def _retry_reason(entry: Entry, ctx: Context) -> str:
    tried = f", {entry.attempts} attempt(s)" if entry.attempts else ""
    error = f" (last: {entry.error})" if entry.error else ""
    return f"retry: queued {local(entry.queued_at, ctx)}, not yet accepted{tried}{error}"


def _job(job: str, visits: Visits, ctx: Context) -> tuple[list[Send], list[Skip]]:
    """One job's new messages (with why) and the rows it left alone (with why): a row that passes every
    condition gets its step; any other is left alone with the first condition it fails."""
    if job == "forms":
        if not ctx.policy.forms:
            return [], []
        conditions, step = form_conditions(visits, ctx.now, ctx.settings.window_days), form_step
    else:
        conditions, step = return_conditions(visits, ctx), return_step
    sends: list[Send] = []
    skipped: list[Skip] = []
    rows = visits.frame["row"].tolist()
    for position, reason in enumerate(_first_failures(conditions, len(rows)) if conditions else []):
        if reason is None:
            decision: Decision = step(visit_record(visits, ctx, position), ctx)
            sends += decision.sends
            reason = None if decision.sends else decision.reason
        if reason is not None:
            skipped.append(Skip(_place(rows[position], ctx.refs[position]), job, reason))
    return sends, skipped


def _first_failures(conditions: Sequence[Condition], count: int) -> list[str | None]:
    """Each row's first failed condition, the clock's included (vectorised: a sheet has many rows)."""
    import numpy as np

    found = np.full(count, None, dtype=object)
    for condition in reversed(conditions):  # the first condition a row fails is the one it shows
        found[~condition.rows.fillna(False).to_numpy(dtype=bool)] = condition.reason
    return found.tolist()


def _unique(sends: Iterable[Send]) -> list[Send]:
    """One per key (a repeated Visit ID: the first row), most urgent first."""
    unique: dict[str, tuple[int, Send]] = {}
    for order, send in enumerate(sends):
        unique.setdefault(send.planned.key, (order, send))
    return [s for _, s in sorted(unique.values(), key=lambda item: (item[1].planned.priority, item[0]))]


def new_messages(ctx: Context, visits: Visits, jobs: Sequence[str] = JOBS) -> list[Planned]:
    """The new messages alone, from a history the run has just updated (its follow-up passes)."""
    sends: list[Send] = []
    for job in [j for j in JOBS if j in jobs]:
        sends += _job(job, visits, ctx)[0]
    return [s.planned for s in _unique([*sends, *not_mailed_reports([s.planned for s in sends], ctx)])]


def not_mailed_reports(planned: Iterable[Planned], ctx: Context) -> list[Send]:
    """One admin report per new message that left out an address typed into the sheet."""
    if not ctx.settings.admin:
        return []
    reports = []
    for message in planned:
        key = f"admin_report:not_mailed:{message.key}"
        if message.not_mailed and key not in ctx.history:
            report = compose_admin_report(key, message.visit_id, ctx, not_mailed=message.not_mailed)
            why = f"admin_report: {len(message.not_mailed)} address(es) of {message.label} {message.kind} not mailed"
            reports.append(Send(report, why))
    return reports


def failure_reports(ctx: Context) -> list[Planned]:
    """One admin report per message refused for good, and per message accepted with some recipients
    refused for good, that the admin has not been told about."""
    if not ctx.settings.admin:
        return []
    reports = []
    for e in ctx.history.entries:
        if e.kind == "admin_report":
            continue
        if e.status == "failed" and f"admin_report:{e.key}" not in ctx.history:
            reports.append(compose_admin_report(f"admin_report:{e.key}", e.visit_id, ctx, failures=[e]))
        key = f"admin_report:{REFUSED}{e.key}"
        if e.status == "sent" and e.refused and key not in ctx.history:
            reports.append(compose_admin_report(key, e.visit_id, ctx, partly_refused=[e]))
    return reports


def rebuild(entry: Entry, visits: Visits, ctx: Context) -> Planned | str:
    """The pending message again, from the sheet as it is now, to the recipients the ledger holds;
    or why it cannot be rebuilt (the visit is no longer in the sheet)."""
    if entry.kind == "admin_report":
        base_key = entry.key.removeprefix("admin_report:")
        if base_key.startswith("not_mailed:"):
            base = ctx.history.get(base_key.removeprefix("not_mailed:"))
            position = ctx.position(entry.visit_id)
            if base is None or position is None:
                return "the visit is no longer in the sheet"
            again = compose(base.kind, visit_record(visits, ctx, position), ctx, base.key)
            planned = compose_admin_report(entry.key, entry.visit_id, ctx, not_mailed=again.not_mailed)
        elif base_key.startswith(REFUSED):
            sent = ctx.history.get(base_key.removeprefix(REFUSED))
            planned = compose_admin_report(
                entry.key, entry.visit_id, ctx, partly_refused=[sent] if sent else []
            )
        else:
            failed = ctx.history.get(base_key)
            planned = compose_admin_report(
                entry.key, entry.visit_id, ctx, failures=[failed] if failed else []
            )
    else:
        position = ctx.position(entry.visit_id)
        if position is None:
            return "the visit is no longer in the sheet"
        planned = compose(entry.kind, visit_record(visits, ctx, position), ctx, entry.key)
    held = {a.lower() for a in entry.recipients}
    to = tuple(a for a in planned.to if a.lower() in held)
    cc = tuple(a for a in planned.cc if a.lower() in held)
    placed = {a.lower() for a in (*to, *cc)}
    to += tuple(a for a in entry.recipients if a.lower() not in placed)
    return replace(planned, to=to, cc=cc, not_mailed=())


def doubts(visits: Visits, ctx: Context) -> list[str]:
    """What the safe-return loop could not read for visits it watches now or soon: a fallback due time
    (each said, and the run exits 1 so cron's MAILTO sees it), or no visit date to place it in time."""
    import numpy as np

    from ..safe_return import FALLBACKS, MINUTE, NAT, Cells

    if ctx.overdue is None:
        return []
    overdue, moment = ctx.overdue, ctx.overdue.back.now
    window = int(ctx.settings.window_days * 1440 * MINUTE)
    since = moment - int(ctx.alert_hours * 60 * MINUTE)
    at = overdue.due.at
    soon = (at != NAT) & (at > since) & (at < moment + window)
    fallback = overdue.live & ~overdue.back.confirmed & np.isin(overdue.due.basis, FALLBACKS) & soon
    cells, lines = Cells(visits), []
    for i in np.flatnonzero(fallback).tolist():
        lines.append(f"{where(visits, ctx, i)}: {overdue.due.why(i, cells)}")
    for i in np.flatnonzero(overdue.unplaced).tolist():
        date = visits.header("visit_date")
        how = "is not a date" if visits.unreadable("visit_date")[i] else "is blank"
        lines.append(f"{where(visits, ctx, i)}: {date} {how}, so its safe return cannot be watched.")
    return lines


def where(visits: Visits, ctx: Context, position: int) -> str:
    """``V1 (row 5)``, or ``row 5`` for a row with no Visit ID (its fingerprint is never shown)."""
    return _place(int(visits.frame["row"].iat[position]), ctx.refs[position])


def _place(row: int, ref: str) -> str:
    return f"row {row}" if ref.startswith(UNNAMED) else f"{ref} (row {row})"


STAGES = {"overdue_alert": "the line manager's alert", "smt_alert": "the SMT alert"}


def undelivered(ctx: Context, visits: Visits) -> list[str]:
    """Overdue visits with an alert stage that has reached nobody: refused for good, or still queued."""
    lines = []
    for i in return_candidates(visits, ctx):
        start = utc(visits.record(i).get("start_at"))
        for entry in ctx.history.of_visit(ctx.refs[i], ALERTS):
            if start is not None and entry.queued_at < start:
                continue  # about an earlier visit under the same Visit ID
            if texted(ctx, ctx.refs[i], entry.kind):
                continue  # its text went: the stage reached someone
            if entry.status == "failed":
                why = f"reached nobody ({entry.error or 'refused'})"
            elif entry.status == "pending":
                why = "has not been accepted by the mail server yet"
            else:
                continue
            lines.append(f"{where(visits, ctx, i)}: {STAGES[entry.kind]} {why}.")
    return lines
