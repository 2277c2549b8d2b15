"""The rules, one small function each, registered by a stable id (HV001...).

A rule reads the visits table through a :class:`Context` and yields :class:`Hit` records as data:
which visit, which field, the values that made the finding and which of the rule's ``texts`` words
it; the message and fix are rendered from those templates at the edge (policy.check, with the
sheet's own headers). A rule never opens a file and never knows which school it serves: the profile
(policies/*.toml) turns it on, sets its parameters and names the clause it enforces. The simple
"this cell must be filled in when..." rules are not here: profiles declare them as ``[[checks]]``
(checks.py). Masks are computed over whole columns (pandas); only the rows that break a rule are
looped over.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import safe_return, state
from .findings import Text
from .safe_return import Timings
from .settings import Setting
from .timings import clock
from .timings import form_deadline as form_deadline_of
from .visit_ids import ALLOWED, MAX_LENGTH, is_header_safe_id
from .visits import Visits


@dataclass(slots=True)
class Hit:
    """What a rule found, as data: where, which field, the values that made it and which of the rule's
    texts words it (``kind``); the message and fix are rendered from that text at the edge
    (policy.check). A rule whose wording needs more than templates gives ``message`` and ``fix``."""

    position: int | None  # the visit's position in the table; None for a sheet-wide finding
    field: str | None
    message: str = ""
    fix: str = ""
    severity: str | None = None  # overrides the rule's severity (e.g. HV009: info until the deadline)
    row: int | None = None
    values: dict[str, Any] | None = None  # the cells that made the finding, as plain data
    kind: str | None = None  # the key of the rule's ``texts`` that words it


@dataclass(slots=True)
class Hits:
    """Many hits of one field and kind at once, as columns (HV002 over a log with ~150,000 bad
    cells): policy.check words each distinct set of values once and builds the findings in one
    pass, where a :class:`Hit` apiece would cost an object and a round of the loop each."""

    field: str
    kind: str
    positions: list[int | None]  # as Hit.position
    rows: list[int]  # the sheet row of each
    values: list[dict[str, Any]]


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


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    needs: tuple[str, ...]  # columns the sheet must have; "a|b" means either will do
    func: Callable[[Context], Iterator[Hit]]
    params: dict[str, Setting] = field(default_factory=dict)  # what a profile may set under [rules.<id>]
    blocks_form: bool = True  # its findings (errors, alerts) stop the risk assessment form going
    texts: dict[str, Text] = field(default_factory=dict)  # kind -> message and fix templates


# Parameters more than one rule declares (timings are not parameters: policy [timings], ctx.timings).
EXEMPT_REASONS = Setting("texts", ())
PAIRS = Setting("choice", "always", choices=("always", "first_visit", "out_of_hours_or_little_info"))
SAFE_RETURN = {"escalation": Setting("texts", ())}
# The escalation steps when a profile names none (HV022 words its alert with them; so does the job's email).
DEFAULT_STEPS = ("Call the staff member", "Call the school office", "Call the police")


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str,
    title: str,
    severity: str,
    needs: tuple[str, ...] = (),
    params: dict[str, Setting] | None = None,
    blocks_form: bool = True,
    texts: dict[str, Text] | None = None,
) -> Callable:
    """Register a rule function under its id, with the parameters a profile may set for it."""

    def register(func: Callable[[Context], Iterator[Hit]]) -> Callable[[Context], Iterator[Hit]]:
        if rule_id in RULES:  # two rules under one id: the first would vanish without a word
            raise ValueError(f"rule {rule_id} is registered twice")
        RULES[rule_id] = Rule(
            rule_id, title, severity, needs, func, dict(params or {}), blocks_form, dict(texts or {})
        )
        return func

    return register


def rule_titles(policy: Any = None) -> dict[str, str]:
    """Every rule id a profile can name: the functions here and the checks the bundled profiles
    declare, plus the checks ``policy`` (a policy.Policy) declares of its own."""
    from .checks import bundled

    titles = {rule_id: r.title for rule_id, r in RULES.items()}
    titles.update({check_id: check.title for check_id, check in bundled().items()})
    for config in getattr(policy, "rules", {}).values():
        if config.check is not None:
            titles[config.id] = config.check.title
    return dict(sorted(titles.items()))


def positions(mask: Any) -> list[int]:
    return np.flatnonzero(np.asarray(mask, dtype=bool)).tolist()


def _value(ctx: Context, position: int, name: str) -> Any:
    value = ctx.col(name)[position]
    return (
        None if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)) else value
    )


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


def _minutes_between(start: Any, end: Any) -> int:
    return int((end - start) / np.timedelta64(1, "m"))


def _uk_date(day: Any) -> str:
    year, month, date = str(np.datetime64(day, "D")).split("-")
    return f"{date}/{month}/{year}"


def _each_distinct(column: pd.Series, func: Callable[[str], Any], dtype: Any = object) -> np.ndarray:
    """``func`` of each cell's text (blank as ""), worked out once per distinct value."""
    codes, distinct = pd.factorize(column.fillna("").astype(str))
    answers = np.empty(len(distinct), dtype=dtype)
    answers[:] = [func(text) for text in distinct]
    return answers[codes]


_NOT_A_LETTER = re.compile(r"[^a-z]")


def _folded_names(names: pd.Series) -> np.ndarray:
    """Names reduced to letters, so 'Sam  O'Neill' and 'sam oneill' are the same person."""
    return _each_distinct(names, lambda name: _NOT_A_LETTER.sub("", name.lower()))


# ---------------------------------------------------------------- the sheet itself


@rule(
    "HV001",
    "Required information missing",
    "error",
    params={"fields": Setting("texts", ())},
    texts={"missing": Text("{column} is empty.", "Fill in {column} for this visit.")},
)
def required_value_missing(ctx: Context) -> Iterator[Hit]:
    """A column the profile requires is empty on a visit that is planned or went ahead."""
    live = ctx.live()
    for name in ctx.p("fields", []):
        missing = live & ctx.empty(name) & ~ctx.unreadable(name)
        for i in positions(missing):
            yield Hit(i, name, kind="missing", values={name: None})


CELL_HINTS = {
    "date": "write the date day first, e.g. 03/04/2026 or 3 Apr 2026",
    "time": "write a time such as 14:30 or 2.30pm",
    "datetime": "write a date and time such as 03/04/2026 14:30, or just a time for the visit date",
    "duration": "write minutes, e.g. 45, or hours and minutes, e.g. 1h30",
    "phone": "write a UK phone number, e.g. 07700 900123",
    "email": "write one email address, e.g. name@school.example",
    "yesno": "write YES or NO",
}


@rule(
    "HV002",
    "Cell could not be read",
    "error",
    texts={
        kind: Text("'{cell}' in {column} could not be read: {reason}.", f"Correct the cell: {hint}.")
        for kind, hint in {**CELL_HINTS, "other": "write a value from the list"}.items()
    },
)
def unreadable_cell(ctx: Context) -> Iterator[Hits]:
    """A cell whose value cannot be understood (a bad date, time, phone number or choice).

    One :class:`Hits` per run of problems in the same field (the problems come field by field), in
    the problems' order: a finding-heavy log has ~150,000 of them, most alike (the same text, the
    same reason), which share one values dict so that it is written once."""
    position_of_row = {row: i for i, row in enumerate(ctx.f["row"].tolist())}
    alike: dict[tuple[str, str], dict[str, str]] = {}  # cells alike share one values dict (never changed)
    for name, run in itertools.groupby(ctx.visits.problems, key=operator.itemgetter(1)):
        problems = list(run)
        rows = [problem[0] for problem in problems]
        texts = [str(problem[2]) for problem in problems]
        shown = [text if len(text) <= 60 else text[:57] + "..." for text in texts]
        values = [
            alike.get(key) or alike.setdefault(key, {"cell": key[0], "reason": key[1]})
            for key in zip(shown, [problem[3] for problem in problems], strict=True)
        ]
        kind = ctx.visits.schema[name].type
        kind = kind if kind in CELL_HINTS else "other"
        yield Hits(name, kind, list(map(position_of_row.get, rows)), rows, values)


@rule(
    "HV019",
    "Same Visit ID twice",
    "error",
    needs=("visit_id",),
    texts={
        "twice": Text(
            "Visit ID {visit_id} is also used on {other_rows:rows}.",
            "Give each visit its own ID (clear the cell on the copy and homevisits will assign a new one).",
        )
    },
)
def duplicate_visit_id(ctx: Context) -> Iterator[Hit]:
    """Two rows share a Visit ID, so emails and write-backs could land on the wrong visit."""
    duplicated = (ctx.f["visit_id"].notna() & ctx.f["visit_id"].duplicated(keep=False)).to_numpy()
    ids = ctx.col("visit_id")
    rows = ctx.col("row")
    rows_of: dict[str, list[int]] = {}
    for i in positions(duplicated):
        rows_of.setdefault(ids[i], []).append(int(rows[i]))
    for i in positions(duplicated):
        others = [r for r in rows_of[ids[i]] if r != rows[i]]
        yield Hit(i, "visit_id", kind="twice", values={"visit_id": ids[i], "other_rows": others})


@rule(
    "HV031",
    "Visit ID unusable in emails",
    "error",
    needs=("visit_id",),
    texts={
        "unusable": Text(
            f"Visit ID '{{visit_id:clean}}' can hold only {ALLOWED} (at most {MAX_LENGTH} characters): "
            "emails about this visit name it as row {row} instead.",
            "Change the Visit ID to letters and digits, e.g. HV-0042, or clear the cell and homevisits "
            "will give the visit a new one.",
        )
    },
)
def unusable_visit_id(ctx: Context) -> Iterator[Hit]:
    """A Visit ID with anything but letters, digits and ``- _ / .``, or longer than 40 characters,
    never goes into an email subject, header or file name (it could carry text into them): the
    emails about the visit name its sheet row instead, which is harder to follow."""
    ids = ctx.f["visit_id"]
    unusable = ids.notna().to_numpy() & ~_each_distinct(ids, is_header_safe_id, bool)
    values = ctx.col("visit_id")
    for i in positions(unusable):
        yield Hit(i, "visit_id", kind="unusable", values={"visit_id": values[i]})


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


def _exempt(ctx: Context) -> np.ndarray:
    words = [w.lower() for w in ctx.p("exempt_reasons", [])]
    return _each_distinct(ctx.f["reason"], lambda reason: any(w in reason.lower() for w in words), bool)


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
    for i in positions(ctx.live() & lacking & ~_exempt(ctx)):
        said = plain(ctx, i, "parent_consent")
        kind = "refused" if said == "NO" else "blank" if said is None else "other"
        yield Hit(i, "parent_consent", kind=kind, values={"parent_consent": said})


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


# ---------------------------------------------------------------- after the visit


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
    for i in positions(ctx.live() & home & ctx.empty("prior_contact") & ~_exempt(ctx)):
        values = {"prior_contact": None, "location_type": plain(ctx, i, "location_type")}
        yield Hit(i, "prior_contact", kind="none", values=values)


# ---------------------------------------------------------------- what the sheet holds that was not read


_NOT_READ = "The header '{sheet_header}' (column {letter}) is not a column homevisits knows, so its cells are not read"


@rule(
    "HV029",
    "Part of the sheet not read",
    "warning",
    texts={
        "looks like": Text(
            _NOT_READ + "; it looks like '{looks_like_header}'.",
            'If it holds {looks_like_header}, add under [columns] in the config: "{sheet_header}" = "{looks_like}".',
        ),
        "unknown": Text(
            _NOT_READ + ".",
            'If the policy needs it, map it under [columns] in the config ("{sheet_header}" = "<field>", fields '
            "as in sheets_schema/home_visits.yaml); a column of the school's own can stay as it is.",
        ),
        "rows skipped": Text("{note}", "Nothing to do unless one of those rows is a visit."),
    },
)
def sheet_not_fully_read(ctx: Context) -> Iterator[Hit]:
    """Every header is accounted for, and every row skipped is said: a column the tool cannot place
    is not read (so its cells count for nothing), and rows holding only tick-box defaults are not visits."""
    visits = ctx.visits
    header_row = visits.header_row
    for position, header, near in visits.extra.get("unplaced", ()):
        values = {"sheet_header": header, "letter": _column_name(position), "looks_like": near}
        if near is not None:
            values["looks_like_header"] = visits.schema[near].header
            yield Hit(None, None, row=header_row, kind="looks like", values=values)
        else:
            yield Hit(None, None, severity="info", row=header_row, kind="unknown", values=values)
    for note in visits.extra.get("skipped", ()):
        yield Hit(None, None, severity="info", row=None, kind="rows skipped", values={"note": note})


def _column_name(position: int) -> str:
    from .schema import column_name

    return column_name(position)


LOCALE_NAMES = {"en_GB": "United Kingdom", "en_US": "United States", "en_IE": "Ireland", "en_AU": "Australia"}
MONTH_FIRST_LOCALES = ("en_US", "en_PH", "en_CA", "es_US", "fil_PH")


_LOCALE_FIX = (
    "In the Google Sheet choose File → Settings → Locale: {expected_name}, then check every date typed so "
    "far whose day is 12 or less, and retype any that changed."
)
_SWAPPED = " {ambiguous_dates} {visit_dates} in the sheet could have day and month swapped."


@rule(
    "HV030",
    "Spreadsheet locale not the school's",
    "error",
    params={"locale": Setting("text", "en_GB")},
    texts={
        "month first": Text(
            "The Google Sheet's locale is {locale} ({locale_name}), not {expected_locale}: dates typed day "
            "first are stored month first: 03/04/2026 became 4 March 2026, and a date with a day over 12 "
            "(13/04/2026) stayed as text." + _SWAPPED,
            _LOCALE_FIX,
        ),
        "other conventions": Text(
            "The Google Sheet's locale is {locale} ({locale_name}), not {expected_locale}: dates and times "
            "typed so far were read by that locale's conventions, not the school's." + _SWAPPED,
            _LOCALE_FIX,
        ),
    },
)
def spreadsheet_locale(ctx: Context) -> Iterator[Hit]:
    """A Google Sheet reads what staff type by its locale: in a US-English sheet 03/04/2026 is stored as
    4 March, a real date the tool cannot tell from one typed correctly."""
    locale = ctx.visits.extra.get("locale")
    expected = str(ctx.p("locale", "en_GB"))
    if not locale or locale.replace("-", "_").lower() == expected.replace("-", "_").lower():
        return
    dates = ctx.f["visit_date"]
    ambiguous = int(((dates.dt.day <= 12) & (dates.dt.day != dates.dt.month)).fillna(False).sum())
    expected_name = LOCALE_NAMES.get(expected, expected)
    values = {
        "locale": locale,
        "expected_locale": expected,
        "ambiguous_dates": ambiguous,
        "locale_name": LOCALE_NAMES.get(locale, "not " + expected_name),
        "expected_name": expected_name,
        "visit_dates": "visit date" if ambiguous == 1 else "visit dates",
    }
    kind = "month first" if locale in MONTH_FIRST_LOCALES else "other conventions"
    yield Hit(None, None, kind=kind, values=values)
