"""Per row, what each job owes it now, and why: pure decisions the plan collects.

``form_step``: the form, a reminder, a final reminder, the missed deadline, or why nothing.
``return_step``: the line manager's overdue alert, then SMT's, each once, or why nothing; the chain never
dead-ends (a first stage that can reach nobody brings SMT in at once). ``withdrawals``: which queued
messages the sheet no longer calls for, judged by the same tests, never by the clock alone.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..state import Condition, first_failed, form_conditions, not_called_off, passing
from ..timings import form_deadline
from .context import ready, visit_record
from .history import ALERTS, VISIT_KINDS, alert_time, escalated, form_sent, stage_entry, stage_key, texted
from .messages import Planned, compose_alert, compose_chase, compose_form, nobody

if TYPE_CHECKING:
    from ..ledger import Entry
    from ..visits import Visits
    from .context import Context


@dataclass(frozen=True)
class Send:
    """One new message the plan sends, and why (in words an admin reads in ``--dry-run --explain``)."""

    planned: Planned
    reason: str


@dataclass(frozen=True)
class Decision:
    """What one row needs from a job now: messages, each with why; or, when none, why nothing."""

    sends: tuple[Send, ...] = ()
    reason: str = ""


def _skip(reason: str) -> Decision:
    return Decision(reason=reason)


def _send(planned: Planned, reason: str, *more: Send) -> Decision:
    return Decision((Send(planned, reason), *more))


def local(moment: dt.datetime, ctx: Context) -> str:
    """``Tue 01 Dec 14:30`` on the school's clock."""
    return f"{moment.astimezone(ZoneInfo(ctx.settings.timezone)):%a %d %b %H:%M}"


def span(delta: dt.timedelta) -> str:
    """``20 h``, ``1 h 15 min``, ``40 min``: a stretch of time, rounded down to the minute."""
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h" if not rest else f"{hours} h {rest} min"


# ---------------------------------------------------------------- which rows each job looks at


def return_conditions(visits: Visits, ctx: Context) -> list[Condition]:
    """Not called off, no readable safe return (an unreadable, future or too-early one is none), due back
    plus grace passed (a fallback due time when none can be read), started, not too old. Rows without a
    Visit ID count too (by fingerprint). Empty without the safe-return rule (HV022)."""
    import pandas as pd

    if ctx.overdue is None:
        return []
    overdue = ctx.overdue
    limit = overdue.limit_series
    instant = pd.Timestamp(ctx.now)
    series = functools.partial(pd.Series, index=visits.frame.index)
    return [
        Condition("returned safely", series(~overdue.back.confirmed)),
        *not_called_off(visits.frame["status"]),
        Condition("no visit date", limit.notna()),
        Condition("not overdue", (limit < instant).fillna(False)),  # only a later due time fails it
        Condition("not started", series(overdue.started), True),
        Condition("overdue for too long", limit > instant - pd.Timedelta(hours=ctx.alert_hours), True),
    ]


def return_candidates(visits: Visits, ctx: Context) -> list[int]:
    """The rows check-returns looks at (``return_conditions``)."""
    conditions = return_conditions(visits, ctx)
    return passing(conditions) if conditions else []


# ---------------------------------------------------------------- one row's step


def form_step(visit: Mapping[str, Any], ctx: Context) -> Decision:
    """What one visit needs from send-forms now: its form, a reminder, a final reminder, the missed
    deadline, or nothing (and why)."""
    visit_id = str(visit["visit_id"])
    deadline = form_deadline(visit.get("start_at"), ctx.deadline_hours)
    if deadline is None:
        return _skip("no start time to count the deadline from")
    at = f"deadline {local(deadline, ctx)}"
    form = ctx.history.current(visit_id, "form")
    if form_sent(visit):
        return _skip("form already sent (Form sent at filled in)")
    if form is not None and form.status == "pending":
        return _skip(f"form queued {local(form.queued_at, ctx)}: retried first")
    if form is not None and form.status == "sent":
        return _skip(f"form already sent {local(form.sent_at or form.queued_at, ctx)}")
    if ctx.now > deadline:
        if ctx.history.current(visit_id, "deadline_missed") is not None:
            return _skip(f"{at} passed; the line manager was already told")
        key = ctx.history.new_key(f"deadline_missed:{visit_id}")
        reason = f"deadline_missed: {at} passed {span(ctx.now - deadline)} ago with no form sent"
        return _send(compose_chase("deadline_missed", visit, ctx, key), reason)
    if form is not None:
        return _skip("form refused for good (the admin was told): the line manager hears at the deadline")
    if ready(visit, ctx):
        if not ctx.settings.forms_to:
            return _skip("row ready, but [mail] forms_to is not set: nobody to send the form to")
        key = ctx.history.new_key(f"form:{visit_id}")
        return _send(
            compose_form(visit, ctx, key), f"form: row ready, due in {span(deadline - ctx.now)}, {at}"
        )
    what = f"{len(ctx.problems.get(visit.get('row') or 0, ()))} problem(s) in the row stop the form, {at}"
    chases = ctx.history.of_visit(visit_id, ("reminder", "final_reminder"))
    if any(e.status == "pending" for e in chases):
        return _skip("a reminder is queued: retried first")
    final = ctx.policy.timings.final_reminder_hours
    if deadline - ctx.now < dt.timedelta(hours=final):
        if ctx.history.current(visit_id, "final_reminder") is not None:
            return _skip(f"final reminder already sent; {what}")
        key = ctx.history.new_key(f"final_reminder:{visit_id}")
        reason = f"final_reminder: {what}, under {final:g} h away"
        return _send(compose_chase("final_reminder", visit, ctx, key), reason)
    last = ctx.history.last_time(visit_id, ("reminder", "final_reminder"))
    if last is not None and ctx.now - last < dt.timedelta(hours=ctx.policy.timings.reminder_hours):
        return _skip(
            f"reminded {local(last, ctx)}; the next one {ctx.policy.timings.reminder_hours:g} h after that"
        )
    key = ctx.history.new_key(f"reminder:{visit_id}:{ctx.now:%Y-%m-%dT%H:%M}")
    return _send(compose_chase("reminder", visit, ctx, key), f"reminder: {what}")


def overdue_reason(visit: Mapping[str, Any], ctx: Context) -> str:
    """``due back Mon 23 Nov 15:30 + 30 min grace, no readable return (...)``, with any fallback's why."""
    due = visit.get("due_back_at") or visit.get("return_due_at")
    when = f"due back {local(due, ctx)} + {ctx.grace_minutes:g} min grace" if due else "no due-back time"
    doubt = visit.get("return_doubt")
    text = f"{when}, {f'no readable return ({doubt})' if doubt else 'no safe return recorded'}"
    return f"{text}; {visit['due_why']}" if visit.get("due_why") else text


def return_step(visit: Mapping[str, Any], ctx: Context) -> Decision:
    """The overdue-return stage one visit is due: the alert to the line manager, then SMT, each once.

    The chain never dead-ends: when the line manager's alert reached nobody (refused for good, or no
    usable address), SMT is alerted at once, in the same plan, and told why."""
    visit_id = str(visit["visit_id"])
    why = overdue_reason(visit, ctx)
    alert = stage_entry(visit, ctx, "overdue_alert")
    if alert is None and not escalated(visit, ctx):
        first = compose_alert("overdue_alert", visit, ctx, stage_key(visit, ctx, "overdue_alert"))
        if first.recipients or first.texts:
            return _send(first, f"overdue_alert: {why}")
        unreachable = nobody(first)  # what the run records when it refuses the first stage
        smt = compose_alert(
            "smt_alert", visit, ctx, stage_key(visit, ctx, "smt_alert"), unreachable=unreachable
        )
        then = Send(smt, f"smt_alert: {why}; the line manager's alert can reach nobody ({unreachable})")
        return _send(first, f"overdue_alert: {why}", then)
    held = stage_entry(visit, ctx, "smt_alert")
    if held is not None:
        done = {"pending": "queued: retried first", "failed": "refused for good (the admin is told)"}
        return _skip(f"SMT alert {done.get(held.status, held.status)}")
    key = stage_key(visit, ctx, "smt_alert")
    if alert is not None and alert.status == "failed" and not texted(ctx, visit_id, "overdue_alert"):
        error = alert.error or "refused"
        reason = f"smt_alert: {why}; the line manager's alert was refused ({error})"
        return _send(compose_alert("smt_alert", visit, ctx, key, unreachable=error), reason)
    alerted = alert_time(visit, ctx)
    if alerted is None:
        return _skip("no time the line manager's alert went")  # not reached: alert or Escalated at gives one
    delay = dt.timedelta(minutes=ctx.policy.timings.smt_after_minutes)
    if ctx.now - alerted <= delay:
        return _skip(f"line manager alerted {local(alerted, ctx)}; SMT from {local(alerted + delay, ctx)}")
    reason = f"smt_alert: {why}; line manager alerted {local(alerted, ctx)}, {span(ctx.now - alerted)} ago"
    return _send(compose_alert("smt_alert", visit, ctx, key, alerted), reason)


# ---------------------------------------------------------------- what no longer applies


def withdrawals(entries: Iterable[Entry], visits: Visits, ctx: Context) -> dict[str, str]:
    """The pending messages that no longer apply to their visit as the sheet shows it now: key -> why.

    Judged by the planner's own tests (``form_conditions``, ``return_conditions``, ``form_sent``,
    ``ready``, ``escalated``, the deadline); only a change in the sheet withdraws a message, never
    the clock alone. A visit no longer in the sheet is left to ``rebuild`` (reported, not sent)."""
    forms = functools.cache(lambda: form_conditions(visits, ctx.now, ctx.settings.window_days))
    returns = functools.cache(lambda: return_conditions(visits, ctx))
    found = {}
    for entry in entries:
        position = ctx.position(entry.visit_id)
        if entry.kind not in VISIT_KINDS or position is None:
            continue
        conditions = returns() if entry.kind in ALERTS else forms()
        if not conditions:
            continue
        reason = first_failed(conditions, position) or _no_longer_due(
            entry.kind, visit_record(visits, ctx, position), ctx
        )
        if reason is not None:
            found[entry.key] = reason
    return found


def _no_longer_due(kind: str, visit: Mapping[str, Any], ctx: Context) -> str | None:
    """Why form_step or return_step would not plan this kind for a candidate row, by the sheet alone."""
    if kind in ALERTS:
        return "Escalated at filled in" if kind == "overdue_alert" and escalated(visit, ctx) else None
    if form_sent(visit):
        return "Form sent at filled in"
    # A form stays due when the row stops being ready: findings also appear as the clock runs
    # (the visit has begun, the return is overdue), and the clock alone never withdraws a message.
    if kind in ("reminder", "final_reminder") and ready(visit, ctx):
        return "row ready"
    deadline = form_deadline(visit.get("start_at"), ctx.deadline_hours)
    if kind == "deadline_missed" and deadline is not None and ctx.now <= deadline:
        return "deadline not passed"  # the visit moved later
    return None
