"""When a member of staff is due back from a visit, and whether the sheet shows them back.

One definition for the safe-return rules (HV005, HV017, HV022, HV023), the scheduled job and the
reports. It fails safe: a live visit past its due time plus grace has exactly two outcomes, a readable
safe return or an alert.

- **Due back** is the Expected return (a time before the start is the next day when the gap fits the
  longest visit) or the start plus a plausible Expected duration (up to the longest visit), whichever
  is sooner when both are filled in; else the
  start plus the longest visit (``max_visit_minutes``); else, with no readable start either, the visit
  day at ``day_end``. Every fallback says why, naming what the cells hold.
- **Back** is a Returned safely at that reads as a time not after now and after the start. Words,
  ``0``, a time still to come or a time before the start are not a return: the alert says what the
  cell holds.

Pure: functions of the visits table, the policy's timings (``timings.Timings``) and an explicit ``now``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import state
from .timings import Timings
from .visits import NAT, Visits, localise

MINUTE = 60_000_000_000  # nanoseconds
DAY = 1440 * MINUTE

# How the due time was found (DueBack.basis).
EXPECTED_RETURN, NEXT_DAY, DURATION, LONGEST_VISIT, DAY_END, UNKNOWN = range(6)
FALLBACKS = (LONGEST_VISIT, DAY_END)


def _i8(series: pd.Series) -> np.ndarray:
    """UTC instants (or naive datetimes) as integer nanoseconds, NAT where missing."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _series(nanoseconds: np.ndarray) -> pd.Series:
    return pd.Series(nanoseconds.view("datetime64[ns]")).dt.tz_localize("UTC")


def _known(values: np.ndarray) -> np.ndarray:
    return values != NAT


@dataclass
class Cells:
    """The raw value of each unreadable cell, for saying what it holds (looked up only when worded)."""

    visits: Visits
    _raw: dict[str, dict[int, Any]] = field(default_factory=dict, repr=False)  # field -> position -> raw

    def raw(self, position: int, name: str) -> Any:
        by_position = self._raw.get(name)
        if by_position is None:  # made for this field's cells only: a bad log has ~150,000 others
            by_position = self._raw[name] = {at: raw for at, raw, _ in self.visits.bad_cells.get(name, ())}
        return by_position.get(position)

    def quoted(self, position: int, name: str) -> str:
        text = " ".join(str(self.raw(position, name)).split())
        return f"'{text[:40]}{'...' if len(text) > 40 else ''}'"


@dataclass
class DueBack:
    """When each visit's staff are due back (UTC nanoseconds, NAT: no visit date), and how it was found."""

    visits: Visits
    timings: Timings
    at: np.ndarray
    basis: np.ndarray
    start: np.ndarray
    by_return: np.ndarray  # the Expected return on the visit date, before any next-day reading

    @property
    def series(self) -> pd.Series:
        return _series(self.at)

    def when(self, position: int) -> dt.datetime | None:
        return _aware(self.at[position], self.visits)

    def why(self, position: int, cells: Cells | None = None) -> str | None:
        """For a fallback due time, one sentence naming what could not be read; else None."""
        basis = int(self.basis[position])
        if basis not in FALLBACKS:
            return None
        cells = cells or Cells(self.visits)
        visits, parts = self.visits, []
        for name, kind in (("expected_return", "a time"), ("expected_duration", "a duration")):
            header = visits.header(name)
            if visits.unreadable(name)[position]:
                parts.append(f"{header} reads {cells.quoted(position, name)}, which is not {kind}")
            elif name == "expected_return" and _known(self.by_return[position : position + 1])[0]:
                parts.append(f"{header} {_hhmm(self.by_return[position], visits)} is before the start")
            elif name == "expected_duration" and (
                (minutes := float(visits.frame[name].iat[position])) > self.timings.max_visit_minutes
            ):
                parts.append(
                    f"{header} reads {minutes:g} minutes, longer than the longest visit the policy "
                    f"expects ({self.timings.max_visit_minutes:g} minutes)"
                )
            elif name in visits.headers:
                parts.append(f"{header} is blank")
        due = _hhmm(self.at[position], visits)
        if basis == LONGEST_VISIT:
            after = f"{self.timings.max_visit_minutes:g} minutes after the start, the longest visit"
            return f"{'; '.join(parts) or 'No expected return'}: treated as due back by {due} ({after})."
        start = visits.header("start_time")
        how = "is not a time" if visits.unreadable("start_time")[position] else "is blank"
        parts.append(f"{start} {how}")
        return f"{'; '.join(parts)}: treated as due back by {due} on the visit day."


def due_back(visits: Visits, timings: Timings) -> DueBack:
    """Each visit's due-back time (vectorised over the whole table)."""
    frame = visits.frame
    start = _i8(frame["start_at"])
    by_return = _i8(localise(frame["visit_date"] + frame["expected_return"], visits.tz))
    longest = int(timings.max_visit_minutes * MINUTE)
    has_start, has_return = _known(start), _known(by_return)

    before = has_start & has_return & (by_return <= start)
    next_day = before & (by_return + DAY - start <= longest)
    return_ok = has_return & ~(before & ~next_day)
    minutes = frame["expected_duration"].to_numpy(dtype=float)
    plausible = ~np.isnan(minutes) & (np.nan_to_num(minutes) <= timings.max_visit_minutes)
    by_duration = start + np.where(plausible, np.nan_to_num(minutes) * MINUTE, 0).astype(np.int64)

    at = np.full(len(frame), NAT, dtype=np.int64)
    basis = np.full(len(frame), UNKNOWN, dtype=np.int8)
    day_end = _i8(
        localise(
            frame["visit_date"] + pd.Timedelta(hours=timings.day_end.hour, minutes=timings.day_end.minute),
            visits.tz,
        )
    )
    # Both an expected return and a plausible duration: the earlier one (a doubt is never a later alert).
    by_duration_ok = has_start & plausible
    returned_at = np.where(next_day, by_return + DAY, by_return)
    sooner = by_duration_ok & return_ok & (by_duration < returned_at)
    choices = (
        (sooner, by_duration, DURATION),
        (return_ok & ~next_day, by_return, EXPECTED_RETURN),
        (next_day, by_return + DAY, NEXT_DAY),
        (by_duration_ok, by_duration, DURATION),
        (has_start, start + longest, LONGEST_VISIT),
        (_known(day_end), day_end, DAY_END),
    )
    undecided = np.ones(len(frame), dtype=bool)
    for mask, values, how in choices:
        take = undecided & mask
        at[take], basis[take] = values[take], how
        undecided &= ~take
    return DueBack(visits, timings, at, basis, start, by_return)


@dataclass
class Back:
    """Whether the sheet shows each visit's staff back safe, and why a filled cell does not count."""

    visits: Visits
    due: DueBack
    now: int
    returned: np.ndarray  # UTC nanoseconds as read (a time before a next-day start moved on a day)
    confirmed: np.ndarray  # a readable return, not after now, after the start

    def doubt(self, position: int, cells: Cells | None = None) -> str | None:
        """Why Returned safely at does not count as a return, in one sentence; None when blank."""
        visits = self.visits
        header = visits.header("returned_at")
        if visits.unreadable("returned_at")[position]:
            quoted = (cells or Cells(visits)).quoted(position, "returned_at")
            return f"{header} reads {quoted}, which is not a time: treated as not back."
        returned = self.returned[position]
        if returned == NAT or self.confirmed[position]:
            return None
        shown = _hhmm(returned, visits)
        if returned > self.now:
            return f"{header} reads {shown}, which is still to come: treated as not back."
        start = self.due.start[position]
        if start != NAT and returned == start:
            return f"{header} reads {shown}, the time the visit started: treated as not back."
        if start != NAT:
            return (
                f"{header} reads {shown}, before the visit started at {_hhmm(start, visits)}: "
                "treated as not back."
            )
        return f"{header} reads {shown}, which cannot be placed after the visit: treated as not back."


def back(visits: Visits, due: DueBack, now: dt.datetime) -> Back:
    """Which visits the sheet shows as returned safely (vectorised)."""
    frame = visits.frame
    moment = int(pd.Timestamp(now).tz_convert("UTC").value)
    returned = _i8(frame["returned_at"])
    start = due.start
    # A visit that runs past midnight: a bare time after midnight was typed for the next day.
    midnight = _i8(localise(frame["visit_date"], visits.tz))
    after_midnight = _known(midnight) & (due.at >= midnight + DAY)
    rolled = after_midnight & _known(returned) & (returned < start) & (returned + DAY <= moment)
    returned = np.where(rolled, returned + DAY, returned)
    after_start = np.where(
        _known(start), returned > start, np.where(_known(midnight), returned > midnight, True)
    )
    confirmed = _known(returned) & (returned <= moment) & after_start
    confirmed &= ~visits.unreadable("returned_at")
    return Back(visits, due, moment, returned, confirmed)


@dataclass
class Overdue:
    """The safe-return state of every visit at ``now``."""

    due: DueBack
    back: Back
    live: np.ndarray
    started: np.ndarray  # the start has come (or cannot be read)
    past_grace: np.ndarray  # live, not back, started, past due + grace
    recent: np.ndarray  # past_grace, and not longer ago than alert_hours
    unplaced: np.ndarray  # live, planned, not back, and no visit date to place it in time
    limit: np.ndarray  # due back plus grace (UTC nanoseconds, NAT: no due time): the alert's moment

    @property
    def limit_series(self) -> pd.Series:
        return _series(self.limit)


def overdue(visits: Visits, timings: Timings, now: dt.datetime) -> Overdue:
    """Due times, returns and who is overdue at ``now``: the one test of the safe-return loop."""
    due = due_back(visits, timings)
    home = back(visits, due, now)
    moment = home.now
    status = visits.frame["status"]
    live = state.live(status)
    grace = int(timings.grace_minutes * MINUTE)
    placed = _known(due.at)
    started = ~_known(due.start) | (due.start <= moment)
    limit = np.where(placed, due.at + grace, NAT)
    past = live & ~home.confirmed & placed & started & (limit < moment)
    recent = past & (limit > moment - int(timings.alert_hours * 60 * MINUTE))
    unplaced = live & state.planned(status) & ~home.confirmed & ~placed
    return Overdue(due, home, live, started, past, recent, unplaced, limit)


def _aware(nanoseconds: int, visits: Visits) -> dt.datetime | None:
    if nanoseconds == NAT:
        return None
    return dt.datetime.fromtimestamp(int(nanoseconds) / 1e9, dt.UTC).astimezone(visits.tz)


def _hhmm(nanoseconds: int, visits: Visits) -> str:
    moment = _aware(nanoseconds, visits)
    return moment.strftime("%H:%M") if moment else "an unknown time"
