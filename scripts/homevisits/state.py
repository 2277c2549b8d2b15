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


def planned(status: Any) -> np.ndarray:
    """Still to happen: tagged planned, or a blank Status."""
    return (status.isna() | status.isin(values("planned"))).to_numpy(dtype=bool)


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
