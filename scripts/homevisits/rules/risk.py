"""The rules about whether a visit should go ahead as planned: its risk (HIGH HV003, MEDIUM HV004, no
expected return HV005, dangerous animals HV015) and who agreed to it (parent/carer consent HV006,
line manager approval HV007)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .. import safe_return
from ..findings import Text
from .catalogue import EXEMPT_REASONS, Hit, rule
from .context import Context, each_distinct, exempt, instants_at, plain, positions

# ---------------------------------------------------------------- risk


@rule(
    "HV003",
    "High-risk visit",
    "error",
    needs=("risk_level", "status"),
    texts={
        "carried out": Text(
            "A visit rated HIGH risk is recorded as carried out; high-risk visits must not go ahead.",
            "Tell the line manager and record why it went ahead; correct the risk level if it was wrong.",
        ),
        "planned": Text(
            "This visit is rated HIGH risk; under the policy it must not go ahead.",
            "Set Status to Cancelled and meet the learner another way (in school or by phone), "
            "or review the risk with the manager.",
        ),
    },
)
def high_risk_visit(ctx: Context) -> Iterator[Hit]:
    """A visit rated HIGH risk that is planned or was carried out: it must not go ahead."""
    high = (ctx.f["risk_level"] == "HIGH").to_numpy() & ctx.live()
    happened = ctx.happened()
    for i in positions(high):
        values = {"risk_level": "HIGH", "status": plain(ctx, i, "status")}
        yield Hit(i, "risk_level", kind="carried out" if happened[i] else "planned", values=values)


@rule(
    "HV004",
    "Medium-risk visit not in a public place",
    "error",
    needs=("risk_level", "location_type"),
    texts={
        "not public": Text(
            "MEDIUM risk visit planned at '{location_type:or no location type}'; medium-risk meetings must "
            "be in a public place.",
            "Move the meeting to a public place near the home (a library or cafe) and set Location type "
            "to Public place.",
        )
    },
)
def medium_risk_not_public(ctx: Context) -> Iterator[Hit]:
    """A MEDIUM risk visit must meet in a public place near the home, such as a library or cafe."""
    medium = (ctx.f["risk_level"] == "MEDIUM").to_numpy() & ctx.live()
    public = (ctx.f["location_type"] == "Public place").to_numpy()
    for i in positions(medium & ~public):
        values = {"risk_level": "MEDIUM", "location_type": plain(ctx, i, "location_type")}
        yield Hit(i, "location_type", kind="not public", values=values)


_UNTIL_THEN = " Until then the safe-return alert counts the visit as due back by {due_at:when}."


@rule(
    "HV005",
    "No expected return",
    "error",
    needs=("expected_return|expected_duration",),
    texts={
        "too long": Text(
            "{column} reads {expected_duration:g} minutes, longer than the longest visit the policy expects "
            "({max_visit_minutes:g} minutes).",
            "Check the duration (minutes, e.g. 90, or 1h30)." + _UNTIL_THEN,
        ),
        "blank": Text(
            "No expected return time or duration: the line manager cannot tell when to expect the "
            "safe-return call.",
            "Fill in {column} (and tell the line manager)." + _UNTIL_THEN,
        ),
    },
)
def no_expected_return(ctx: Context) -> Iterator[Hit]:
    """Without a usable expected return time (or duration) nobody can tell when the safe-return call is late.

    An unreadable cell is HV002's; here: nothing filled in, or a duration longer than the longest visit.
    Either way the safe-return alert still goes, at the time safe_return falls back to (said in the fix)."""
    due = ctx.overdue().due
    fallback = ctx.live() & np.isin(due.basis, safe_return.FALLBACKS)
    unreadable = ctx.unreadable("expected_return") | ctx.unreadable("expected_duration")
    has_start = ctx.f["start_at"].notna().to_numpy()
    field = "expected_return" if "expected_return" in ctx.visits.headers else "expected_duration"
    minutes = ctx.f["expected_duration"].to_numpy(dtype=float)
    too_long = np.nan_to_num(minutes) > ctx.timings.max_visit_minutes
    blank = ctx.f["expected_return"].isna().to_numpy() & np.isnan(minutes)
    longest = float(ctx.timings.max_visit_minutes)
    found = positions(fallback & ~unreadable & has_start & (blank | too_long))
    due_text = instants_at(due.at, found)
    for i in found:
        due_at = due_text[i]
        if too_long[i] and not blank[i]:
            values = {"expected_duration": float(minutes[i]), "max_visit_minutes": longest, "due_at": due_at}
            yield Hit(i, "expected_duration", kind="too long", values=values)
            continue
        values = {"expected_return": None, "expected_duration": None, "due_at": due_at}
        yield Hit(i, field, kind="blank", values=values)


@rule(
    "HV015",
    "Dangerous animals flagged",
    "warning",
    needs=("dangerous_animals",),
    texts={
        "flagged": Text(
            "Dangerous animals are flagged at this address.",
            "Ask the family before the visit to keep the animals in another room; cancel the visit if they "
            "refuse or cannot.",
        )
    },
)
def dangerous_animals(ctx: Context) -> Iterator[Hit]:
    """Animals that may be dangerous: they must be kept in another room, or the visit is cancelled."""
    flagged = ctx.yes("dangerous_animals") & ctx.live() & ~ctx.happened()
    for i in positions(flagged):
        yield Hit(i, "dangerous_animals", kind="flagged", values={"dangerous_animals": True})


# ---------------------------------------------------------------- consent, approval, authorisation


_CONSENT_FIX = (
    "Confirm with the parent/carer that they are happy for the visit (a phone call is fine) and "
    "record YES, or record the safe-and-well / emergency reason."
)
_NOT_EXEMPT = ", and the reason given is not an exempt safe-and-well or emergency check."


@rule(
    "HV006",
    "No parent/carer consent",
    "error",
    needs=("parent_consent", "reason"),
    params={"exempt_reasons": EXEMPT_REASONS},
    texts={
        "refused": Text("Parent/carer agreement to the visit is recorded as NO" + _NOT_EXEMPT, _CONSENT_FIX),
        "blank": Text("Parent/carer agreement to the visit is not recorded" + _NOT_EXEMPT, _CONSENT_FIX),
        "other": Text("Parent/carer agreement to the visit is {parent_consent}" + _NOT_EXEMPT, _CONSENT_FIX),
    },
)
def no_parent_consent(ctx: Context) -> Iterator[Hit]:
    """Parents/carers agree to the visit beforehand, except safe-and-well or emergency safeguarding checks."""
    consent = ctx.f["parent_consent"]
    lacking = (consent != "YES").fillna(True).to_numpy(dtype=bool) & ~ctx.unreadable("parent_consent")
    for i in positions(ctx.live() & lacking & ~exempt(ctx)):
        said = plain(ctx, i, "parent_consent")
        kind = "refused" if said == "NO" else "blank" if said is None else "other"
        yield Hit(i, "parent_consent", kind=kind, values={"parent_consent": said})


_NOT_A_LETTER = re.compile(r"[^a-z]")


def _folded_names(names: pd.Series) -> np.ndarray:
    """Names reduced to letters, so 'Sam  O'Neill' and 'sam oneill' are the same person."""
    return each_distinct(names, lambda name: _NOT_A_LETTER.sub("", name.lower()))


@rule(
    "HV007",
    "Not approved by a line manager",
    "error",
    needs=("approved_by", "lead_staff"),
    texts={
        "unapproved": Text(
            "No line manager has approved this visit.",
            "Discuss the visit with your line manager and record their name in {header[approved_by]}.",
        ),
        "own": Text(
            "The visit is approved by {approved_by}, who is also leading it.",
            "Ask your line manager to approve the visit; nobody approves their own.",
        ),
    },
)
def not_approved(ctx: Context) -> Iterator[Hit]:
    """A line manager approves each visit; the lead staff member cannot approve their own."""
    live = ctx.live()
    for i in positions(live & ctx.empty("approved_by")):
        yield Hit(i, "approved_by", kind="unapproved", values={"approved_by": None})
    approver = _folded_names(ctx.f["approved_by"])
    self_approved = live & (approver != "") & (approver == _folded_names(ctx.f["lead_staff"]))
    for i in positions(self_approved):
        values = {"approved_by": plain(ctx, i, "approved_by"), "lead_staff": plain(ctx, i, "lead_staff")}
        yield Hit(i, "approved_by", kind="own", values=values)
