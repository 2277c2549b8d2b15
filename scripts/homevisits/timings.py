"""The policy's timings: one frozen table per profile, read by the rules, the forms, the jobs and the reports.

Every timing (the form deadline, the grace before a safe-return alert, the SMT delay, office hours...)
is declared once, with its default, in ``settings.TABLES["timings"]``. A profile sets them in its
``[timings]`` table, each line citing the clause of the policy it comes from; a school's
homevisits.toml may override any of them in its own ``[timings]``. No module looks a timing up in a
rule's parameters: a timing left under ``[rules.HVnnn]`` or ``[schedule]`` is one sentence saying
where it moved. Pure and standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HomevisitsError
from .settings import TABLES, check_moved, check_table

SPEC = TABLES["timings"]

# Where a rule's old timing parameter lives now: (rule id, parameter) -> its [timings] key.
MOVED_PARAMS = {
    ("HV009", "deadline_hours"): "form_deadline_hours",
    ("HV010", "office_start"): "office_start",
    ("HV010", "office_end"): "office_end",
    ("HV010", "weekends"): "weekends_out_of_hours",
    ("HV011", "office_start"): "office_start",
    ("HV011", "office_end"): "office_end",
    ("HV011", "weekends"): "weekends_out_of_hours",
    ("HV022", "grace_minutes"): "grace_minutes",
    ("HV022", "alert_hours"): "alert_hours",
    ("HV022", "max_visit_minutes"): "max_visit_minutes",
    ("HV022", "day_end"): "day_end",
    ("HV023", "grace_minutes"): "grace_minutes",
}


def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _default(key: str) -> Any:
    value = SPEC[key].default
    return _clock(value) if SPEC[key].kind == "time" else value


DEFAULTS = {key: _default(key) for key in SPEC}


@dataclass(frozen=True)
class Timings:
    """A profile's timings (with the school's overrides); the defaults are the declarations' own."""

    form_deadline_hours: float = DEFAULTS["form_deadline_hours"]
    grace_minutes: float = DEFAULTS["grace_minutes"]
    alert_hours: float = DEFAULTS["alert_hours"]
    smt_after_minutes: float = DEFAULTS["smt_after_minutes"]
    max_visit_minutes: float = DEFAULTS["max_visit_minutes"]
    day_end: dt.time = DEFAULTS["day_end"]
    office_start: dt.time = DEFAULTS["office_start"]
    office_end: dt.time = DEFAULTS["office_end"]
    weekends_out_of_hours: bool = DEFAULTS["weekends_out_of_hours"]
    reminder_hours: float = DEFAULTS["reminder_hours"]
    final_reminder_hours: float = DEFAULTS["final_reminder_hours"]

    @classmethod
    def of(cls, values: Mapping[str, Any] | None) -> Timings:
        """The timings from checked ``[timings]`` values (times as ``"17:00"``); the rest default."""
        kinds = {key: spec.kind for key, spec in SPEC.items()}
        converted: dict[str, Any] = {}
        for key, value in (values or {}).items():
            if kinds[key] == "time":
                converted[key] = _clock(value) if isinstance(value, str) else value
            elif kinds[key] == "number":
                converted[key] = float(value)
            else:
                converted[key] = value
        return cls(**converted)

    def items(self) -> dict[str, Any]:
        """Every timing by its key, times as ``"HH:MM"`` (as a profile writes them)."""
        out = dataclasses.asdict(self)
        return {k: v.strftime("%H:%M") if isinstance(v, dt.time) else v for k, v in out.items()}


def check_timings(where: str, table: Any) -> dict[str, Any]:
    """A ``[timings]`` table checked against the declarations (``where``: ``x.toml: [timings]``)."""
    if not isinstance(table, Mapping):
        raise HomevisitsError(f"{where} must be a table of settings, not a single value.")
    return check_table(SPEC, table, where, "timings")


def check_rule_params(where: str, rule_id: str, params: Mapping[str, Any]) -> None:
    """A timing left among a rule's parameters is one sentence saying it moved to ``[timings]``."""
    moved = {key: f"[timings] {new}" for (rule, key), new in MOVED_PARAMS.items() if rule == rule_id}
    check_moved(where, params, moved)


def form_deadline(start: Any, hours: float) -> Any:
    """When the form is due: ``hours`` elapsed hours before the start. ``start`` is one instant (None stays
    None) or a column of them; arithmetic is on instants (UTC), so it is right across clock changes."""
    if start is None:
        return None
    if isinstance(start, dt.datetime):
        start = start.astimezone(dt.UTC)
    return start - dt.timedelta(hours=float(hours))


def clock(moment: dt.time) -> str:
    """``08:30``: a timing's time of day as it is written and shown."""
    return moment.strftime("%H:%M")
