"""The rules about the record after a visit: the safe return confirmed (HV022) and confirmed in time
(HV023), a safeguarding concern logged (HV025), the status brought up to date (HV027); and the
earlier contact attempts recorded before a home visit (HV028), which stays beside them so that the
registry keeps the order it has always had (rules/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from .. import safe_return
from ..findings import Text
from ..settings import Setting
from .catalogue import EXEMPT_REASONS, Hit, rule
from .context import Context, exempt, instants_at, plain, positions

SAFE_RETURN = {"escalation": Setting("texts", ())}
# The escalation steps when a profile names none (HV022 words its alert with them; so does the job's email).
DEFAULT_STEPS = ("Call the staff member", "Call the school office", "Call the police")


def _value(ctx: Context, position: int, name: str) -> Any:
    value = ctx.col(name)[position]
    return (
        None if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)) else value
    )


@rule(
    "HV022",
    "Safe return not confirmed",
    "alert",
    needs=("returned_at", "status", "lead_staff", "phone_taken", "expected_return|expected_duration"),
    params=SAFE_RETURN,
    texts={
        "overdue": Text(
            "{staff} (phone {phone}) was due back {due_at:when} and has not confirmed a safe return "
            "{grace_minutes:g} minutes later. Next step: {next_step}.{notes}",
            "Act now: {first_step}{later_steps}. Record the time in {column} once they are safe.",
        ),
        "never recorded": Text(
            "{staff}'s safe return after the visit due back {due_at:when} was never recorded.{notes}",
            "Check with {staff} and record when they returned in {column}.",
        ),
    },
)
def safe_return_not_confirmed(ctx: Context) -> Iterator[Hit]:
    """Due back plus the grace period has passed and nothing readable confirms the staff member is back safe.

    Fail safe (safe_return): an unreadable, future or too-early Returned safely at is not a return, and
    a visit with no readable expected return is still due back at a fallback time; both are said (in
    ``notes``). Within ``alert_hours`` it is an alert naming the next escalation step; later, a record to fix."""
    state_now = ctx.overdue()
    steps = list(ctx.p("escalation", DEFAULT_STEPS))
    first_step = steps[0][0].lower() + steps[0][1:]
    later_steps = (
        "; then " + "; then ".join(s[0].lower() + s[1:] for s in steps[1:]) if len(steps) > 1 else ""
    )
    grace = float(ctx.timings.grace_minutes)
    escalated = ctx.f["escalated_at"].notna().to_numpy()
    cells = safe_return.Cells(ctx.visits)
    overdue = positions(state_now.past_grace)
    due_text = instants_at(state_now.due.at, overdue)
    returned_text = instants_at(ctx.col("returned_at"), overdue)
    for i in overdue:
        notes = " ".join(
            n for n in (state_now.due.why(i, cells), state_now.back.doubt(i, cells)) if n is not None
        )
        values = {
            "due_at": due_text[i],
            "returned_at": returned_text[i],
            "grace_minutes": grace,
            "escalated": bool(escalated[i]),
            "staff": _value(ctx, i, "lead_staff") or "the lead staff member",
            "notes": f" {notes}" if notes else "",
        }
        if state_now.recent[i]:
            values["phone"] = _value(ctx, i, "phone_taken") or "no phone recorded"
            values["next_step"] = steps[1] if escalated[i] and len(steps) > 1 else steps[0]
            values["first_step"], values["later_steps"] = first_step, later_steps
            yield Hit(i, "returned_at", kind="overdue", values=values)
        else:
            yield Hit(i, "returned_at", kind="never recorded", values=values, severity="error")


@rule(
    "HV023",
    "Safe return confirmed late",
    "warning",
    needs=("returned_at",),
    texts={
        "late": Text(
            "Safe return was confirmed {returned_at:when}, {minutes_late} minutes after the expected return.",
            "Review with the staff member and manager why the call was late and whether escalation began.",
        )
    },
)
def safe_return_late(ctx: Context) -> Iterator[Hit]:
    """A return confirmed after due back plus grace: the escalation should have started."""
    state_now = ctx.overdue()
    due = state_now.due.at
    returned = state_now.back.returned
    placed = due != safe_return.NAT
    late = ctx.live() & state_now.back.confirmed & placed & (returned > state_now.limit)
    found = positions(late)
    due_text, returned_text = instants_at(due, found), instants_at(returned, found)
    for i in found:
        minutes = int((returned[i] - due[i]) // safe_return.MINUTE)
        values = {"returned_at": returned_text[i], "due_at": due_text[i], "minutes_late": minutes}
        yield Hit(i, "returned_at", kind="late", values=values)


@rule(
    "HV025",
    "Safeguarding concern not logged",
    "error",
    needs=("safeguarding_concern", "logged_on"),
    params={"systems": Setting("texts", ())},
    texts={
        "not logged": Text(
            "A safeguarding concern was raised but is not recorded as logged.",
            "Log the concern on {systems} today and record where in {header[logged_on]}.",
        ),
        "elsewhere": Text(
            "A safeguarding concern is logged on {logged_on}, but concerns go on {systems}.",
            "Log the concern on {systems} as well and record it in {header[logged_on]}.",
        ),
    },
)
def concern_not_logged(ctx: Context) -> Iterator[Hit]:
    """A safeguarding concern from a visit is logged on the school's safeguarding system."""
    systems = list(ctx.p("systems", []))
    concern = ctx.live() & ctx.yes("safeguarding_concern")
    logged = ctx.f["logged_on"].to_numpy()
    expected = " or ".join(systems) if systems else "the safeguarding system"
    for i in positions(concern):
        values = {"safeguarding_concern": True, "logged_on": logged[i], "systems": expected}
        if logged[i] is None:
            yield Hit(i, "logged_on", kind="not logged", values=values)
        elif systems and logged[i] not in systems:
            yield Hit(i, "logged_on", kind="elsewhere", values=values)


_STALE_FIX = "Update Status to Completed, No answer, Cancelled or Not carried out, and fill in what happened."


@rule(
    "HV027",
    "Stale status",
    "warning",
    needs=("status", "visit_date"),
    params={"stale_days": Setting("integer", 2, low=0, high=366)},
    texts={
        "no status": Text(
            "No status is recorded, but the visit date {visit_date:date} was more than {stale_days} days ago.",
            _STALE_FIX,
        ),
        "still planned": Text(
            "Still Planned, but the visit date {visit_date:date} was more than {stale_days} days ago.",
            _STALE_FIX,
        ),
        "future": Text(
            "Recorded as {status}, but the visit date {visit_date:date} is in the future.",
            "Correct the visit date or the status.",
        ),
    },
)
def stale_status(ctx: Context) -> Iterator[Hit]:
    """Still Planned (or no status at all) well after the visit date, or Completed with a date in the future."""
    today = ctx.now.tz_convert(ctx.visits.tz).tz_localize(None).normalize()
    days = int(ctx.p("stale_days", 2))
    date = ctx.f["visit_date"]
    long_past = (date < today - pd.Timedelta(days=days)).to_numpy()
    blank = ctx.empty("status") & ~ctx.unreadable("status")
    for i in positions(ctx.planned() & long_past & ~ctx.unreadable("status")):
        values = {
            "status": plain(ctx, i, "status"),
            "visit_date": plain(ctx, i, "visit_date"),
            "stale_days": days,
        }
        yield Hit(i, "status", kind="no status" if blank[i] else "still planned", values=values)
    future = ctx.happened() & (date > today).to_numpy()
    for i in positions(future):
        values = {"status": plain(ctx, i, "status"), "visit_date": plain(ctx, i, "visit_date")}
        yield Hit(i, "status", kind="future", values=values, severity="error")


@rule(
    "HV028",
    "No prior contact attempts",
    "error",
    needs=("prior_contact", "location_type"),
    params={"exempt_reasons": EXEMPT_REASONS},
    texts={
        "none": Text(
            "No earlier contact attempts are recorded before this home visit.",
            "Record the phone calls, texts or in-school meetings tried first in {header[prior_contact]}.",
        )
    },
)
def no_prior_contact(ctx: Context) -> Iterator[Hit]:
    """A home visit is not the first option: phone calls or meetings in school come first."""
    home = (ctx.f["location_type"].isna() | (ctx.f["location_type"] == "Home")).to_numpy()
    for i in positions(ctx.live() & home & ctx.empty("prior_contact") & ~exempt(ctx)):
        values = {"prior_contact": None, "location_type": plain(ctx, i, "location_type")}
        yield Hit(i, "prior_contact", kind="none", values=values)
