"""The governors' summary of a period: counts and shares of visits, forms and safe returns, as a page
and a workbook.

Aggregates only: counts and shares, never a learner's name, address or phone number; reasons are grouped
into categories so free text typed into the sheet never reaches it. Forms and returns are judged by the
policy's own timings and the alert's own reading of a return (safe_return), so the summary and the
scheduled job never disagree.

This module builds the figures; summary_files.py writes them out (the page, the workbook, the charts).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import state
from .findings import Finding
from .reports import percent
from .timings import Timings, form_deadline
from .visits import Visits

RISKS = ("LOW", "MEDIUM", "HIGH")
NOT_RECORDED = "Not recorded"


def statuses() -> tuple[str, ...]:
    """Every Status in the report's order (planned, done, no answer, called off), from the schema's tags."""
    return tuple(dict.fromkeys((*state.PLANNED, *state.DONE, *state.NO_ANSWER, *state.CANCELLED)))


# Reason for visit is free text: it is grouped by keywords so no typed detail reaches the summary.
# First match wins; a reason matching nothing counts as "Other".
REASON_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Safe and well check", ("safe and well", "welfare", "wellbeing", "well being", "safety check")),
    ("Safeguarding", ("safeguard", "child protection", "cp", "dsl")),
    ("Attendance", ("attend", "absen", "truan", "refus", "holiday", "missing", "punctual", "cme")),
    ("Medical or illness", ("medical", "ill", "illness", "sick", "hospital", "health")),
    (
        "Work drop-off or collection",
        ("drop off", "dropping off", "collect", "work pack", "sending work", "work home", "deliver"),
    ),
    ("New starter or transition", ("transition", "induction", "new starter", "admission", "enrol", "intake")),
    ("Special educational needs", ("send", "sen", "ehcp", "annual review")),
    (
        "Behaviour or exclusion",
        ("behaviour", "behavior", "exclusion", "excluded", "suspension", "reintegrat"),
    ),
    ("Education at home", ("ehe", "elective home", "educated at home", "home education")),
    ("Meeting with parents/carers", ("meeting", "parent", "carer", "support", "strateg", "discuss")),
    ("Engagement or progress", ("engage", "progress", "course", "neet", "learning", "study")),
)


# ---------------------------------------------------------------- the governors' summary


@dataclass(frozen=True)
class Table:
    """One table of the summary: a title, column names, rows of plain values, and how to chart it."""

    key: str  # short name, for code and page anchors
    title: str
    sheet: str  # the worksheet's name in the .xlsx (at most 31 characters)
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    chart: str | None = "bar"  # "bar" (columns), "barh" (horizontal bars) or None
    chart_column: int = 1  # the column the chart plots
    label_column: int = 0  # the column naming each bar
    shares: tuple[int, ...] = ()  # columns holding shares (0 to 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
        }


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""
    tone: str = ""  # "good", "bad" or ""


@dataclass(frozen=True)
class Summary:
    """The governors' summary of one period: headline figures and tables, aggregates only."""

    start: dt.date
    end: dt.date
    generated_at: dt.datetime
    policy: str
    visits: int
    undated: int
    figures: tuple[Figure, ...]
    tables: tuple[Table, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self, key: str) -> Table:
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "visits": self.visits,
            "tables": [t.as_dict() for t in self.tables],
        }


def parse_day(text: str | None, option: str) -> dt.date | None:
    """A day from the command line: ``2025-09-01`` or a UK date such as ``1/9/2025``."""
    if not text:
        return None
    from .cells import parse_date

    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        value, problem = parse_date(text)
    if problem or not isinstance(value, dt.date):
        from .errors import HomevisitsError

        raise HomevisitsError(f"{option} '{text}' is not a date: write it as 2026-09-01 or 01/09/2026.")
    return value


def academic_year(now: dt.date | dt.datetime) -> tuple[dt.date, dt.date]:
    """The English school year containing ``now``: 1 September to 31 August."""
    first = now.year if now.month >= 9 else now.year - 1
    return dt.date(first, 9, 1), dt.date(first + 1, 8, 31)


def period_end(start: dt.date) -> dt.date:
    """The end of a period given only its start: 12 months on, or the next 31 August if sooner."""
    try:
        year_on = start.replace(year=start.year + 1) - dt.timedelta(days=1)
    except ValueError:  # 29 February
        year_on = dt.date(start.year + 1, 2, 28)
    august = dt.date(start.year, 8, 31)
    if august < start:
        august = dt.date(start.year + 1, 8, 31)
    return min(year_on, august)


def build_summary(
    visits: Visits,
    findings: Iterable[Finding],
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    now: dt.datetime,
    timings: Timings,
    rule_titles: Mapping[str, str] | None = None,
    policy: str = "",
) -> Summary:
    """Counts and shares of the visits dated ``start``..``end`` (default: the academic year of ``now``),
    forms and returns judged by the policy's own ``timings`` (the job's, so the two never disagree)."""
    deadline_hours, grace_minutes = timings.form_deadline_hours, timings.grace_minutes
    if start is None or end is None:
        year_start, year_end = academic_year(now.astimezone(visits.tz) if now.tzinfo else now)
        start, end = start or year_start, end or year_end
    if end < start:
        from .errors import HomevisitsError

        raise HomevisitsError(
            f"The report period ends ({end}) before it starts ({start}): check --from and --to."
        )
    instant = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    frame = visits.frame
    dates = frame["visit_date"]
    in_period = ((dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))).fillna(False)
    period = frame[in_period.to_numpy(dtype=bool)]
    rows = set(period["row"].astype(int).tolist())
    period_findings = [f for f in findings if f.row in rows]
    titles = dict(rule_titles or {})

    forms = _forms_on_time(period, instant, deadline_hours)
    returns = _returns_on_time(visits, in_period.to_numpy(dtype=bool), timings, instant.to_pydatetime())
    alerts = _alerts(period, period_findings)
    breaches = _breaches(period_findings, titles)
    ahead = (
        f"{deadline_hours:g} hours before the visit starts" if deadline_hours else "before the visit starts"
    )
    tables = (
        _by_month(period, start, end),
        _share_table(
            "by_reason", "Visits by reason", "By reason", "Reason", _reasons(period["reason"]), chart="barh"
        ),
        _share_table(
            "by_risk",
            "Visits by risk level",
            "By risk level",
            "Risk level",
            _ordered(period["risk_level"], RISKS),
        ),
        _share_table(
            "by_outcome",
            "Visits by outcome",
            "By outcome",
            "Status",
            _ordered(period["status"], statuses()),
            chart="barh",
        ),
        _share_table(
            "forms_on_time",
            "Risk assessment forms sent on time",
            "Forms on time",
            "Form",
            forms,
            note=f"Deadline: {ahead}. Counts visits whose deadline has passed, except cancelled and HIGH risk visits.",
            chart="barh",
        ),
        _share_table(
            "safe_returns",
            "Safe returns confirmed on time",
            "Safe returns",
            "Safe return",
            returns,
            note=f"On time: confirmed within {grace_minutes:g} minutes of the expected return. "
            "Counts visits whose return was due, except cancelled ones.",
            chart="barh",
        ),
        Table(
            "alerts",
            "Alerts raised",
            "Alerts",
            ("Alert", "Visits"),
            tuple(alerts.items()),
            note="An alert means a safe return was not confirmed in time and the line manager was warned.",
            chart=None,
        ),
        breaches,
        _by_staff(period),
    )
    happened = int(state.happened(period["status"]).sum())
    concerns = int(period["safeguarding_concern"].fillna(False).astype(bool).sum())
    figures = (
        Figure("Visits", f"{len(period):,}", f"{happened:,} carried out"),
        _share_figure("Forms on time", forms, "On time"),
        _share_figure("Safe returns on time", returns, "Confirmed on time"),
        Figure(
            "Alerts raised",
            f"{alerts['Visits with an alert']:,}",
            "unconfirmed safe returns",
            "bad" if alerts["Visits with an alert"] else "good",
        ),
        Figure(
            "Policy breaches", f"{sum(r[-1] for r in breaches.rows):,}", "alerts and errors the check found"
        ),
        Figure("Safeguarding concerns", f"{concerns:,}", "raised on visits"),
    )
    undated = int(frame["visit_date"].isna().sum())
    return Summary(
        start=start,
        end=end,
        generated_at=instant.tz_convert(visits.tz).to_pydatetime(),
        policy=policy,
        visits=len(period),
        undated=undated,
        figures=figures,
        tables=tables,
        settings={"deadline_hours": deadline_hours, "grace_minutes": grace_minutes},
    )


def _share_table(
    key: str,
    title: str,
    sheet: str,
    label: str,
    counts: Mapping[str, int],
    *,
    note: str = "",
    chart: str | None = "bar",
) -> Table:
    total = sum(counts.values())
    rows = tuple((name, count, round(count / total, 4) if total else None) for name, count in counts.items())
    return Table(key, title, sheet, (label, "Visits", "Share"), rows, note=note, chart=chart, shares=(2,))


def _share_figure(label: str, counts: Mapping[str, int], good: str) -> Figure:
    total = sum(counts.values())
    if not total:
        return Figure(label, "–", "none due yet")
    share = counts[good] / total
    shown = round(share * 100)
    tone = "good" if shown >= 95 else "bad" if shown < 80 else ""
    return Figure(label, percent(share), f"{counts[good]:,} of {total:,}", tone)


def _ordered(column: pd.Series, order: Sequence[str]) -> dict[str, int]:
    counts = Counter(v for v in column.tolist() if isinstance(v, str) and v)
    result = {name: counts.pop(name, 0) for name in order}
    for name, count in sorted(counts.items()):
        result[name] = count
    blank = int(sum(1 for v in column.tolist() if not (isinstance(v, str) and v)))
    if blank:
        result[NOT_RECORDED] = blank
    return result


def reason_group(text: Any) -> str:
    """The category a typed reason falls in (never the text itself)."""
    if not isinstance(text, str) or not text.strip():
        return NOT_RECORDED
    folded = " " + re.sub(r"[^a-z0-9]+", " ", text.lower().replace("&", " and ").replace("+", " and ")) + " "
    for name, words in REASON_GROUPS:
        if any(_has_word(folded, word) for word in words):
            return name
    return "Other"


def _has_word(folded: str, word: str) -> bool:
    if len(word) <= 4:  # short words (cp, sen, ill, ehe) must stand alone
        return f" {word} " in folded
    return word in folded


def _reasons(column: pd.Series) -> dict[str, int]:
    counts = Counter(reason_group(v) for v in column.tolist())
    ordered = {name: counts[name] for name, _ in counts.most_common() if name not in ("Other", NOT_RECORDED)}
    for name in ("Other", NOT_RECORDED):
        if counts.get(name):
            ordered[name] = counts[name]
    return ordered


def _by_month(period: pd.DataFrame, start: dt.date, end: dt.date) -> Table:
    months = pd.period_range(pd.Timestamp(start), pd.Timestamp(end), freq="M")
    keys = period["visit_date"].dt.to_period("M")
    done = pd.Series(state.happened(period["status"]), index=period.index)
    rows = []
    for month in months:
        mask = (keys == month).to_numpy(dtype=bool)
        rows.append((f"{month.start_time:%b %Y}", int(mask.sum()), int(done.to_numpy()[mask].sum())))
    return Table(
        "by_month",
        "Visits by month",
        "By month",
        ("Month", "Visits", "Carried out"),
        tuple(rows),
        note="Carried out: completed, or the staff member went and nobody answered.",
    )


def _forms_on_time(period: pd.DataFrame, now: pd.Timestamp, deadline_hours: float) -> dict[str, int]:
    """Forms judged against their deadline: visits not cancelled, not HIGH risk, deadline passed (or sent)."""
    deadline = form_deadline(period["start_at"], deadline_hours)
    sent = period["form_sent_at"]
    live = pd.Series(state.live(period["status"]), index=period.index) & ~(period["risk_level"] == "HIGH")
    due = live & deadline.notna() & ((deadline < now) | sent.notna())
    on_time = due & (sent <= deadline)
    late = due & (sent > deadline)
    unsent = due & sent.isna()
    return {"On time": int(on_time.sum()), "Late": int(late.sum()), "Not sent": int(unsent.sum())}


def _returns_on_time(
    visits: Visits, in_period: np.ndarray, timings: Timings, now: dt.datetime
) -> dict[str, int]:
    """Safe returns judged as the alert judges them (safe_return): the visits of the period not called off
    whose alert moment (due back plus grace) has passed or whose return is confirmed. A return that cannot
    be read as a time after the start is not confirmed."""
    from . import safe_return

    state_now = safe_return.overdue(visits, timings, now)
    limit, home = state_now.limit, state_now.back
    placed = limit != safe_return.NAT
    due = in_period & state_now.live & placed & ((limit < home.now) | home.confirmed)
    return {
        "Confirmed on time": int((due & home.confirmed & (home.returned <= limit)).sum()),
        "Confirmed late": int((due & home.confirmed & (home.returned > limit)).sum()),
        "Not confirmed": int((due & ~home.confirmed).sum()),
    }


def _alerts(period: pd.DataFrame, findings: Sequence[Finding]) -> dict[str, int]:
    escalated = set(period.loc[period["escalated_at"].notna(), "row"].astype(int).tolist())
    unconfirmed = {f.row for f in findings if f.field == "returned_at" and f.severity == "alert"}
    return {
        "Line manager alerted (Escalated at filled)": len(escalated),
        "Safe return still unconfirmed at this check": len(unconfirmed),
        "Visits with an alert": len(escalated | unconfirmed),
    }


def _breaches(findings: Sequence[Finding], titles: Mapping[str, str]) -> Table:
    alerts = Counter(f.rule for f in findings if f.severity == "alert")
    errors = Counter(f.rule for f in findings if f.severity == "error")
    rules = sorted(set(alerts) | set(errors), key=lambda r: (-(alerts[r] + errors[r]), r))
    rows = tuple((r, titles.get(r, r), alerts[r], errors[r], alerts[r] + errors[r]) for r in rules)
    return Table(
        "breaches",
        "Policy breaches by rule",
        "Breaches by rule",
        ("Rule", "What it checks", "Alerts", "Errors", "Total"),
        rows,
        note="Each alert or error the policy check found on the period's visits.",
        chart="barh",
        chart_column=4,
        label_column=1,
    )


def _staff_name(value: Any) -> str | None:
    from .formula_guard import clean

    if not isinstance(value, str) or not clean(value).strip():
        return None
    return " ".join(clean(value).split())  # no control character or lone surrogate reaches a chart or cell


def _by_staff(period: pd.DataFrame) -> Table:
    led: Counter[str] = Counter()
    second: Counter[str] = Counter()
    done: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    happened = state.happened(period["status"]).tolist()
    for lead, partner, carried_out in zip(
        period["lead_staff"], period["second_staff"], happened, strict=True
    ):
        name = _staff_name(lead)
        if name:
            key = name.casefold()
            spelling.setdefault(key, name)
            led[key] += 1
            done[key] += bool(carried_out)
        partner_name = _staff_name(partner)
        if partner_name:
            key = partner_name.casefold()
            spelling.setdefault(key, partner_name)
            second[key] += 1
    keys = sorted(set(led) | set(second), key=lambda k: (-led[k], -second[k], spelling[k]))
    rows = tuple((spelling[k], led[k], second[k], done[k]) for k in keys)
    return Table(
        "by_staff",
        "Visits per member of staff",
        "By member of staff",
        ("Member of staff", "Visits led", "As second staff", "Carried out"),
        rows,
        chart="barh",
    )
