"""The rules about how a visit is arranged: the risk assessment form sent in time (HV009), a second
member of staff where the policy wants pairs (HV010), the visit in office hours (HV011), and times
that can all be true (HV017)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import safe_return, state
from ..findings import Text
from ..settings import Setting
from ..timings import clock
from ..timings import form_deadline as form_deadline_of
from .catalogue import Hit, rule
from .context import Context, instants_at, plain, positions

PAIRS = Setting("choice", "always", choices=("always", "first_visit", "out_of_hours_or_little_info"))


# ---------------------------------------------------------------- the form and its deadline


def _deadline_texts() -> dict[str, Text]:
    """HV009's wording: the deadline said as hours before the visit, or (0 hours) as the visit itself."""
    texts: dict[str, Text] = {}
    for suffix, ahead in (
        ("", " ({deadline_hours:g} hours before the visit)."),
        (" at the start", " (before the visit)."),
    ):
        texts["sent late" + suffix] = Text(
            "The risk assessment form was sent {form_sent_at:when}, after the deadline of {deadline:when}"
            + ahead,
            "Send forms earlier: the visit should not go ahead until the form has been received in time.",
        )
        texts["deadline passed" + suffix] = Text(
            "The risk assessment form has not been sent and the deadline passed {deadline:when}" + ahead,
            "Do not go ahead as planned: send the form and rearrange the visit with the line manager.",
        )
        texts["due" + suffix] = Text(
            "The risk assessment form is due by {deadline:when}" + ahead,
            "Complete the row so the form can be sent before the deadline.",
        )
    return texts


@rule(
    "HV009",
    "Risk assessment form deadline",
    "error",
    needs=("form_sent_at", "visit_date", "start_time"),
    blocks_form=False,  # the deadline is about the form itself
    texts=_deadline_texts(),
)
def form_deadline(ctx: Context) -> Iterator[Hit]:
    """The risk assessment form reaches the safeguarding contact before the deadline (000: 24 hours ahead)."""
    hours = ctx.timings.form_deadline_hours
    deadline = form_deadline_of(ctx.f["start_at"], hours)
    sent = ctx.f["form_sent_at"]
    known = deadline.notna().to_numpy()
    eligible = ctx.live() & known & ~(ctx.f["risk_level"] == "HIGH").to_numpy()
    late = eligible & (sent > deadline).fillna(False).to_numpy(dtype=bool)
    unsent = eligible & sent.isna().to_numpy() & ~ctx.unreadable("form_sent_at")
    passed = (deadline < ctx.now).fillna(False).to_numpy(dtype=bool)
    suffix = "" if hours else " at the start"
    deadline, sent = deadline.dt.tz_localize(None).to_numpy(), ctx.col("form_sent_at")
    flagged = positions(late | unsent)
    deadline_text, sent_text = instants_at(deadline, flagged), instants_at(sent, flagged)
    for i in positions(late):
        values = {"form_sent_at": sent_text[i], "deadline": deadline_text[i], "deadline_hours": hours}
        yield Hit(i, "form_sent_at", kind="sent late" + suffix, values=values)
    for i in positions(unsent & passed):
        values = {"form_sent_at": None, "deadline": deadline_text[i], "deadline_hours": hours}
        yield Hit(i, "form_sent_at", kind="deadline passed" + suffix, values=values)
    for i in positions(unsent & ~passed & ctx.planned()):
        values = {"form_sent_at": None, "deadline": deadline_text[i], "deadline_hours": hours}
        yield Hit(i, "form_sent_at", kind="due" + suffix, values=values, severity="info")


# ---------------------------------------------------------------- who goes, when, what they carry


def _out_of_hours(ctx: Context) -> tuple[np.ndarray, list[list[str]]]:
    """Which visits fall outside office hours, and why (starts early or late, ends late, at the weekend)."""
    zone = ctx.visits.tz.key
    start = ctx.f["start_at"].dt.tz_convert(zone)
    end = ctx.f["return_due_at"].dt.tz_convert(zone)
    office_start, office_end = clock(ctx.timings.office_start), clock(ctx.timings.office_end)
    opens, closes = pd.Timedelta(office_start + ":00"), pd.Timedelta(office_end + ":00")
    start_clock = start - start.dt.normalize()
    end_clock = end - end.dt.normalize()

    def mask(condition: pd.Series) -> np.ndarray:
        return condition.fillna(False).to_numpy(dtype=bool)

    checks = [
        (mask(start_clock < opens), f"starts before {office_start}"),
        (mask(start_clock >= closes), f"starts after {office_end}"),
        (
            mask(
                (start_clock < closes) & ((end_clock > closes) | (end.dt.normalize() > start.dt.normalize()))
            ),
            f"ends after {office_end}",
        ),
    ]
    if ctx.timings.weekends_out_of_hours:
        checks.append((mask(start.dt.dayofweek >= 5), "is at the weekend"))
    reasons: list[list[str]] = [[] for _ in range(len(start))]
    for flagged, reason in checks:
        for i in positions(flagged):
            reasons[i].append(reason)
    return np.array([bool(r) for r in reasons], dtype=bool), reasons


def _first_visits(ctx: Context) -> np.ndarray:
    """No earlier Completed visit for the same learner (Learner ID, else name and postcode)."""
    return state.first_visits(ctx.f)


def _minutes_between(start: Any, end: Any) -> int:
    return int((end - start) / np.timedelta64(1, "m"))


@rule(
    "HV010",
    "No second member of staff",
    "error",
    needs=("second_staff",),
    params={"pairs": PAIRS, "information_field": Setting("text", "risk_notes")},
    texts={
        "alone": Text(
            "Nobody is recorded as going with the lead staff member, but {reasons:and}.",
            "Arrange a second member of staff and record their name, or rearrange the visit.",
        )
    },
)
def no_second_staff(ctx: Context) -> Iterator[Hit]:
    """Visits go in pairs where the policy says so: always, on a first visit, out of hours or when little is known."""
    mode = ctx.p("pairs", "always")
    alone = ctx.live() & ctx.empty("second_staff")
    if mode == "always":
        why = [["home visits are made in pairs"]] * len(alone)
        needed = np.ones(len(alone), dtype=bool)
    elif mode == "first_visit":
        needed = _first_visits(ctx)
        why = [["it is the learner's first home visit"]] * len(alone)
    elif mode == "out_of_hours_or_little_info":
        needed, why = _out_of_hours(ctx)
        little = ctx.empty(ctx.p("information_field", "risk_notes"))
        why = [
            w + (["little or nothing is known (no risk notes)"] if little[i] else [])
            for i, w in enumerate(why)
        ]
        needed = needed | little
    else:
        raise ValueError(f"HV010: unknown pairs mode {mode!r}")
    for i in positions(alone & needed):
        yield Hit(i, "second_staff", kind="alone", values={"second_staff": None, "reasons": list(why[i])})


@rule(
    "HV011",
    "Evening or out-of-hours visit",
    "warning",
    needs=("start_time", "visit_date"),
    texts={
        "outside": Text(
            "The visit {reasons:and}.",
            "Move the visit into the school day if you can; if not, make sure two staff go and the school "
            "knows when to expect the safe-return call.",
        )
    },
)
def out_of_hours(ctx: Context) -> Iterator[Hit]:
    """Visits outside office hours (default before 08:00, after 18:00, or at the weekend)."""
    outside, why = _out_of_hours(ctx)
    for i in positions(ctx.live() & outside):
        yield Hit(i, "start_time", kind="outside", values={"reasons": list(why[i])})


@rule(
    "HV017",
    "Inconsistent times",
    "error",
    needs=("start_time", "visit_date"),
    params={"max_minutes": Setting("number", 240, low=1, high=24 * 60)},
    texts={
        "return before start": Text(
            "Expected return {return_due_at:when} is not after the start {start_at:when}.",
            "Correct the start time or the expected return (24-hour clock, e.g. 15:30).",
        ),
        "too long": Text(
            "The visit is planned to last {minutes} minutes, longer than the {max_minutes:g} minutes the "
            "policy expects.",
            "Check the times; if the visit really is that long, agree check-in calls with the line manager.",
        ),
        "left before arriving": Text(
            "Departed {departed_at:when} is before arrived {arrived_at:when}.",
            "Correct the arrival or departure time.",
        ),
    },
)
def inconsistent_times(ctx: Context) -> Iterator[Hit]:
    """Times that cannot all be true: return before start, departure before arrival, a visit far too long."""
    frame = ctx.f
    live = ctx.live()
    start, due = frame["start_at"], frame["return_due_at"]
    next_day = ctx.overdue().due.basis == safe_return.NEXT_DAY  # 22:30 to 00:30 ends the next day
    backwards = live & ~next_day & (due <= start).fillna(False).to_numpy(dtype=bool)
    limit = float(ctx.p("max_minutes", 240))
    too_long = live & ((due - start) > pd.Timedelta(minutes=limit)).fillna(False).to_numpy(dtype=bool)
    start, due = ctx.col("start_at"), ctx.col("return_due_at")
    field = "expected_return" if "expected_return" in ctx.visits.headers else "expected_duration"
    for i in positions(backwards):
        values = {"start_at": plain(ctx, i, "start_at"), "return_due_at": plain(ctx, i, "return_due_at")}
        yield Hit(i, field, kind="return before start", values=values)
    for i in positions(too_long):
        values = {"minutes": _minutes_between(start[i], due[i]), "max_minutes": limit}
        yield Hit(i, field, kind="too long", values=values, severity="warning")
    backwards_visit = live & (frame["departed_at"] < frame["arrived_at"]).fillna(False).to_numpy(dtype=bool)
    for i in positions(backwards_visit):
        values = {"arrived_at": plain(ctx, i, "arrived_at"), "departed_at": plain(ctx, i, "departed_at")}
        yield Hit(i, "departed_at", kind="left before arriving", values=values)
