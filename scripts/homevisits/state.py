"""What a visit's Status means, defined once for the rules, the scheduled job, the forms and the reports.

- cancelled: called off before it happened (``Cancelled``, ``Not carried out``);
- live: everything else, a blank or unreadable Status included (a doubt keeps the visit watched);
- planned: ``Planned`` or a blank Status (as staff leave it until the visit is done);
- happened: the visit went ahead (``Completed``, ``No answer``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CANCELLED = ("Cancelled", "Not carried out")
HAPPENED = ("Completed", "No answer")


def cancelled(status: Any) -> np.ndarray:
    """True where the Status says the visit was called off (``status``: the table's status column)."""
    return status.isin(CANCELLED).to_numpy(dtype=bool)


def live(status: Any) -> np.ndarray:
    """Planned or went ahead: not called off. A blank or unreadable Status is live."""
    return ~cancelled(status)


def planned(status: Any) -> np.ndarray:
    return (status.isna() | (status == "Planned")).to_numpy(dtype=bool)


def happened(status: Any) -> np.ndarray:
    return status.isin(HAPPENED).to_numpy(dtype=bool)


def is_cancelled(value: Any) -> bool:
    """The same test for one visit's Status as plain text."""
    return value in CANCELLED


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
    return [Condition(f"visit {called_off.lower()}", status != called_off) for called_off in CANCELLED]


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
        Condition(
            "visit no longer Planned", (status == "Planned") | status.isna()
        ),  # blank: as the rules read it
        Condition("HIGH risk", frame["risk_level"] != "HIGH"),
        Condition("no Visit ID", frame["visit_id"].notna()),
        Condition("outside the window", start <= instant + pd.Timedelta(days=window_days), True),
        Condition("started over a day ago", start > instant - pd.Timedelta(LATE_LIMIT), True),
    ]


def form_unsent(visits: Any) -> Condition:
    """The sheet shows no form sent (``Form sent at`` blank): what ``forms --due`` adds to the job's tests."""
    return Condition("form already sent", visits.frame["form_sent_at"].isna())
