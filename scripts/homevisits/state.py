"""What a visit's Status means, defined once for the rules, the scheduled job, the forms and the reports.

The meanings are tags in sheets_schema/home_visits.yaml (the status column's ``meanings``); this
module derives every state from them, never from literal Status values:

- cancelled: called off before it happened (tagged ``cancelled``: Cancelled, Not carried out);
- live: everything else, a blank or unreadable Status included (a doubt keeps the visit watched);
- planned: tagged ``planned`` or a blank Status (as staff leave it until the visit is done);
- happened: the visit went ahead (tagged ``happened``: Completed, No answer);
- done: carried out, so its record is due (tagged ``done``: Completed);
- no answer: staff went and nobody answered (tagged ``no_answer``);
- first visit: no earlier done visit for the same learner.

``CANCELLED``, ``HAPPENED``, ``PLANNED``, ``DONE`` and ``NO_ANSWER`` are the canonical values with each
tag (read from the schema on first use). A tag no value carries is a broken schema: one sentence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

TAGS = {  # module constant -> the tag it stands for
    "CANCELLED": "cancelled",
    "HAPPENED": "happened",
    "PLANNED": "planned",
    "DONE": "done",
    "NO_ANSWER": "no_answer",
}


@cache
def values(tag: str) -> tuple[str, ...]:
    """The canonical Status values the schema tags ``tag`` (at least one, or the schema is broken)."""
    from .errors import HomevisitsError
    from .schema import SCHEMA_PATH, load_schema

    found = load_schema()["status"].meaning(tag)
    if not found:
        raise HomevisitsError(
            f"No Status in {SCHEMA_PATH.name} is tagged {tag} under meanings: add the tag to the status column."
        )
    return found


def __getattr__(name: str) -> tuple[str, ...]:
    """``state.CANCELLED`` and the others, derived from the schema's tags when first asked for."""
    if name in TAGS:
        return values(TAGS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cancelled(status: Any) -> np.ndarray:
    """True where the Status says the visit was called off (``status``: the table's status column)."""
    return status.isin(values("cancelled")).to_numpy(dtype=bool)


def live(status: Any) -> np.ndarray:
    """Planned or went ahead: not called off. A blank or unreadable Status is live."""
    return ~cancelled(status)


def planned_rows(status: Any) -> Any:
    """Still to happen: tagged planned, or a blank Status (a boolean Series over ``status``)."""
    return status.isna() | status.isin(values("planned"))


def planned(status: Any) -> np.ndarray:
    return planned_rows(status).to_numpy(dtype=bool)


def happened(status: Any) -> np.ndarray:
    """The visit went ahead (staff were at the door), whether or not anyone answered."""
    return status.isin(values("happened")).to_numpy(dtype=bool)


def done(status: Any) -> np.ndarray:
    """Carried out, so its record (outcome, arrival and departure) is due: the schema's Completed."""
    return status.isin(values("done")).to_numpy(dtype=bool)


def no_answer(status: Any) -> np.ndarray:
    """Staff went and nobody answered the door."""
    return status.isin(values("no_answer")).to_numpy(dtype=bool)


def is_cancelled(value: Any) -> bool:
    """The same test for one visit's Status as plain text."""
    return value in values("cancelled")


def first_visits(frame: Any) -> np.ndarray:
    """No earlier done visit for the same learner (Learner ID, else name and postcode): ``frame`` is
    the visits table (``start_at``, ``visit_date``, ``learner_key``, ``status``)."""
    import pandas as pd

    when = frame["start_at"].fillna(frame["visit_date"].dt.tz_localize("UTC"))
    completed = done(frame["status"])
    earliest: dict[Any, pd.Timestamp] = {}
    for key, moment, was_done in zip(frame["learner_key"], when, completed, strict=True):
        if (
            was_done
            and key is not None
            and not pd.isna(moment)
            and (key not in earliest or moment < earliest[key])
        ):
            earliest[key] = moment
    first = []
    for key, moment in zip(frame["learner_key"], when, strict=True):
        prior = earliest.get(key)
        first.append(prior is None or pd.isna(moment) or not prior < moment)
    return np.array(first, dtype=bool)


# ---------------------------------------------------------------- which visits are owed a form
# One definition for the scheduled job (notify) and ``forms --due``: named tests, each with the reason a
# row fails it, so a plan can say why a row was left out.

# A form is still owed, late, until this long after the visit's start (the line manager hears why).
LATE_LIMIT = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Condition:
    """One test a row must pass for a job to act on it: ``rows`` is True where it passes; ``reason``
    says why a row fails it. ``clock``: failed only as time goes by (a sheet edit cannot make a row
    fail it), so it never withdraws a message already queued."""

    reason: str
    rows: Any  # boolean pandas Series over visits.frame
    clock: bool = False


def passing(conditions: Sequence[Condition]) -> list[int]:
    """The positions of the rows that pass every condition."""
    mask = conditions[0].rows
    for condition in conditions[1:]:
        mask = mask & condition.rows
    return [int(i) for i in mask.fillna(False).to_numpy(dtype=bool).nonzero()[0]]


def first_failed(conditions: Sequence[Condition], position: int, *, clock: bool = False) -> str | None:
    """The first condition the row at ``position`` fails; only the sheet's own (not the clock's) unless
    ``clock``: a message is withdrawn for a change in the sheet, never for time going by."""
    import pandas as pd

    for condition in conditions:
        passes = condition.rows.iloc[position]
        if (clock or not condition.clock) and (pd.isna(passes) or not passes):
            return condition.reason
    return None


def not_called_off(status: Any) -> list[Condition]:
    """One condition per called-off Status, each naming it."""
    return [
        Condition(f"visit {called_off.lower()}", status != called_off) for called_off in values("cancelled")
    ]


def form_conditions(visits: Any, now: dt.datetime, window_days: float) -> list[Condition]:
    """Owed a form: not called off, Planned (or blank), not HIGH risk, with a Visit ID, starting within
    ``window_days`` or started less than LATE_LIMIT ago (a late form is still owed; the deadline message
    says it is late)."""
    import pandas as pd

    frame = visits.frame
    instant = pd.Timestamp(now.astimezone(dt.UTC))
    start, status = frame["start_at"], frame["status"]
    return [
        *not_called_off(status),
        Condition("visit no longer Planned", planned_rows(status)),  # blank: as the rules read it
        Condition("HIGH risk", frame["risk_level"] != "HIGH"),
        Condition("no Visit ID", frame["visit_id"].notna()),
        # as the window: never withdraws a queued form (before it, a blank start read "outside the window")
        Condition("no start date and time", start.notna(), True),
        Condition("outside the window", start <= instant + pd.Timedelta(days=window_days), True),
        Condition("started over a day ago", start > instant - pd.Timedelta(LATE_LIMIT), True),
    ]


def form_unsent(visits: Any) -> Condition:
    """The sheet shows no form sent (``Form sent at`` blank): what ``forms --due`` adds to the job's tests."""
    return Condition("form already sent", visits.frame["form_sent_at"].isna())
