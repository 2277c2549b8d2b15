"""What a rule reads: the visits table, the rule's parameters and now, through a :class:`Context`
that makes each column, mask and due-back state once per check, and the helpers that give cells as
plain data for findings' values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import safe_return, state
from ..safe_return import Timings
from ..visits import Visits


@dataclass
class Context:
    visits: Visits
    params: dict[str, Any]
    now: pd.Timestamp  # UTC
    policy_name: str = ""
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    timings: Timings = field(default_factory=Timings)

    @property
    def f(self) -> pd.DataFrame:
        return self.visits.frame

    def p(self, key: str, default: Any) -> Any:
        return self.params.get(key, default)

    def header(self, name: str) -> str:
        return self.visits.header(name)

    def unreadable(self, name: str) -> np.ndarray:
        """True where the cell had a value that could not be read (already reported by HV002)."""
        return self.visits.unreadable(name)

    def col(self, name: str) -> np.ndarray:
        """A column as a NumPy array for reading hit by hit (instants as UTC ``datetime64``), made once."""
        if name not in self.cache:
            series = self.f[name]
            if isinstance(series.dtype, pd.DatetimeTZDtype):
                self.cache[name] = series.dt.tz_localize(None).to_numpy()
            elif isinstance(series.dtype, pd.BooleanDtype):
                self.cache[name] = series.to_numpy(dtype=object, na_value=None)
            else:
                self.cache[name] = series.to_numpy()
        return self.cache[name]

    def plain(self, name: str) -> np.ndarray:
        """A column's cells as plain data for findings' values (rules.plain_column), made once."""
        key = ("plain", name)
        if key not in self.cache:
            kind = self.visits.schema[name].type if name in self.visits.schema else None
            self.cache[key] = plain_column(self.f[name], kind)
        return self.cache[key]

    def when(self, instant: Any) -> str:
        """A UTC instant (``datetime64`` or ``Timestamp``) as the school reads it: ``Mon 23 Nov 2026 14:30``."""
        if instant is None or pd.isna(instant):
            return "an unknown time"
        if isinstance(instant, pd.Timestamp):
            nanoseconds = instant.value
        elif isinstance(instant, int | np.integer):  # integer nanoseconds (safe_return)
            if instant == np.iinfo(np.int64).min:
                return "an unknown time"
            nanoseconds = int(instant)
        else:
            nanoseconds = np.datetime64(instant, "ns").astype(np.int64).item()
        shown = self.cache.get(("when", nanoseconds))  # each distinct instant formatted once per check
        if shown is None:
            moment = dt.datetime.fromtimestamp(nanoseconds / 1e9, self.visits.tz)
            shown = self.cache[("when", nanoseconds)] = moment.strftime("%a %d %b %Y %H:%M")
        return shown

    def status(self) -> pd.Series:
        return self.f["status"]

    def _mask(self, key: str, make: Callable[[], Any]) -> np.ndarray:
        """A row mask the rules share, made once per check (read-only, so no rule can change it)."""
        if key not in self.cache:
            mask = np.asarray(make(), dtype=bool)
            mask.flags.writeable = False
            self.cache[key] = mask
        return self.cache[key]

    def live(self) -> np.ndarray:
        """Visits that are planned or went ahead: not cancelled and not called off."""
        return self._mask("visit is live", lambda: state.live(self.f["status"]))

    def cancelled(self) -> np.ndarray:
        """Called off before it happened (Cancelled, Not carried out)."""
        return state.cancelled(self.f["status"])

    def planned(self) -> np.ndarray:
        return state.planned(self.f["status"])

    def happened(self) -> np.ndarray:
        return state.happened(self.f["status"])

    def overdue(self) -> safe_return.Overdue:
        """Due-back times, confirmed returns and who is overdue now (safe_return), made once per check."""
        key = "safe return"
        if key not in self.cache:
            self.cache[key] = safe_return.overdue(self.visits, self.timings, self.now.to_pydatetime())
        return self.cache[key]

    def started(self) -> np.ndarray:
        """The visit has begun by now, or is recorded as having happened."""
        begun = (self.f["start_at"] <= self.now).fillna(False).to_numpy(dtype=bool)
        return begun | self.happened()

    def empty(self, name: str) -> np.ndarray:
        return self._mask(f"{name} is empty", lambda: self.f[name].isna().to_numpy())

    def yes(self, name: str) -> np.ndarray:
        return self.f[name].fillna(False).to_numpy(dtype=bool)


def positions(mask: Any) -> list[int]:
    return np.flatnonzero(np.asarray(mask, dtype=bool)).tolist()


def plain(ctx: Context, position: int, name: str) -> Any:
    """A cell as plain data for a finding's values: None when blank, Python numbers and bools, a date
    as ``2026-11-23``, a time of day as ``14:30``, an instant as ISO 8601 UTC text."""
    return ctx.plain(name)[position]


def plain_column(series: pd.Series, kind: str | None) -> np.ndarray:
    """A whole column as :func:`plain` gives its cells (made at once: a large log has many findings)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return instants(series.dt.tz_localize(None).to_numpy())
    if isinstance(series.dtype, pd.BooleanDtype):
        return series.to_numpy(dtype=object, na_value=None)
    values = series.to_numpy()
    if values.dtype.kind == "M":  # a date at midnight
        out = np.datetime_as_string(values, unit="D").astype(object)
        out[np.isnat(values)] = None
        return out
    if values.dtype.kind == "m":  # a time of day
        minutes = values // np.timedelta64(1, "m")
        return np.array(
            [
                None if np.isnat(v) else f"{int(m) // 60:02d}:{int(m) % 60:02d}"
                for v, m in zip(values, minutes, strict=True)
            ],
            dtype=object,
        )
    if values.dtype.kind == "f":
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out
    out = values.astype(object)
    if values.dtype.kind == "O":
        out[pd.isna(values)] = None
    return out


def instants_at(values: np.ndarray, at: list[int]) -> dict[int, str | None]:
    """:func:`instants` of the positions ``at`` only (the rows a rule found), by position."""
    return dict(zip(at, instants(values[at]).tolist(), strict=True)) if at else {}


def instants(values: np.ndarray) -> np.ndarray:
    """UTC instants (``datetime64`` or integer nanoseconds, NAT where missing) as ISO 8601 text, or None."""
    moments = values.view("datetime64[ns]") if values.dtype.kind in "iu" else values.astype("datetime64[ns]")
    out = np.char.add(np.datetime_as_string(moments, unit="s"), "+00:00").astype(object)
    out[np.isnat(moments)] = None
    return out


def each_distinct(column: pd.Series, func: Callable[[str], Any], dtype: Any = object) -> np.ndarray:
    """``func`` of each cell's text (blank as ""), worked out once per distinct value."""
    codes, distinct = pd.factorize(column.fillna("").astype(str))
    answers = np.empty(len(distinct), dtype=dtype)
    answers[:] = [func(text) for text in distinct]
    return answers[codes]


def exempt(ctx: Context) -> np.ndarray:
    """True where the visit's reason holds one of the profile's ``exempt_reasons`` (HV006, HV028)."""
    words = [w.lower() for w in ctx.p("exempt_reasons", [])]
    return each_distinct(ctx.f["reason"], lambda reason: any(w in reason.lower() for w in words), bool)
