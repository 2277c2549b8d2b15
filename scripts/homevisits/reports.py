"""The validation page an admin forwards, and the page templates it shares with the governors'
summary (summary.py, written out by summary_files.py).

Pages are single self-contained HTML files (inline CSS and script, charts as data: images, no network),
rendered from templates/reports/ with autoescaping always on. The summary is aggregates only: counts
and shares, never a learner's name, address or phone number; its reasons are grouped into categories
so free text typed into the sheet never reaches it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .findings import SEVERITIES, SEVERITY_HELP, SEVERITY_RANK, Finding, Report, sort_key, summary
from .visits import Visits
from .wording import long_moment

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "reports"
SEVERITY_LABELS = {"alert": "Alerts", "error": "Errors", "warning": "Warnings", "info": "Coming due"}
CARD_HELP = {**SEVERITY_HELP, "info": "a deadline ahead, nothing wrong yet"}
BADGE_LABELS = {"alert": "Alert", "error": "Error", "warning": "Warning", "info": "Coming due"}


# ---------------------------------------------------------------- templates


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # forced on: every value is text, never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["percent"] = percent
    env.filters["cell"] = _cell
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f}%"


def _cell(value: Any, is_share: bool = False) -> str:
    if is_share:
        return percent(value)
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _day(value: dt.date) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


# ---------------------------------------------------------------- the validation page


@dataclass
class VisitGroup:
    """The findings of one visit (or of the sheet as a whole), worst first."""

    row: int | None
    visit_id: str | None
    worst: str
    details: list[str]
    findings: list[dict[str, Any]]


PAGE_VISITS = 500  # visits listed on the page; the counts and the JSON report cover them all


def validation_page(
    report: Report,
    *,
    visits: Visits | None = None,
    rule_titles: Mapping[str, str] | None = None,
    notes: Sequence[tuple[bool, str]] = (),
) -> str:
    """The whole check as one self-contained HTML page: counts, then findings grouped by visit.
    ``notes``: (fine, sentence) shown under the heading, e.g. when the scheduled job last ran."""
    titles = dict(rule_titles or {})
    counts = summary(report.findings)
    groups = _group_by_visit(report.findings, titles, visits)
    rules = Counter(f.rule for f in report.findings)
    shown = groups[:PAGE_VISITS]  # worst first: a page a person can open, print and forward
    return render(
        "validation.html.j2",
        report=report,
        checked_at=_checked_at(report.checked_at),
        counts=counts,
        severities=[
            {"key": s, "label": SEVERITY_LABELS[s], "help": CARD_HELP[s], "count": counts[s]}
            for s in SEVERITIES
        ],
        badge_labels=BADGE_LABELS,
        groups=shown,
        hidden_visits=len(groups) - len(shown),
        hidden_findings=sum(len(g.findings) for g in groups[PAGE_VISITS:]),
        total=len(report.findings),
        visits_with_findings=sum(1 for g in groups if g.row is not None),
        rules=[{"id": r, "title": titles.get(r, r), "count": rules[r]} for r in sorted(rules)],
        notes=[{"fine": fine, "text": text} for fine, text in notes],
    )


def _checked_at(text: str) -> str:
    try:
        return long_moment(dt.datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return text


def _group_by_visit(
    findings: Sequence[Finding], titles: Mapping[str, str], visits: Visits | None
) -> list[VisitGroup]:
    by_row: dict[tuple[int, str], list[Finding]] = {}
    for finding in findings:
        key = (finding.row or 0, finding.visit_id or "") if finding.row is not None else (0, "")
        by_row.setdefault(key, []).append(finding)
    details = _visit_details(visits, [row for row, _ in by_row if row])
    groups = []
    for (row, visit_id), items in by_row.items():
        items = sorted(items, key=sort_key)
        groups.append(
            VisitGroup(
                row=row or None,
                visit_id=visit_id or None,
                worst=items[0].severity,
                details=details.get(row, []),
                findings=[
                    {**f.as_dict(), "title": titles.get(f.rule, f.rule), "titled": f.rule in titles}
                    for f in items
                ],
            )
        )
    groups.sort(key=lambda g: (SEVERITY_RANK.get(g.worst, 9), g.row is not None, g.row or 0))
    return groups


def _visit_details(visits: Visits | None, rows: Sequence[int]) -> dict[int, list[str]]:
    """What identifies each visit to the admin: when, who leads it, status, risk. No learner details."""
    if visits is None or not rows:
        return {}
    frame = visits.frame
    wanted = frame[frame["row"].isin(rows)]
    starts = wanted["start_at"].dt.tz_convert(visits.tz)
    out: dict[int, list[str]] = {}
    for row, start, day, lead, status, risk in zip(
        wanted["row"].tolist(),
        starts.tolist(),
        wanted["visit_date"].tolist(),
        wanted["lead_staff"].tolist(),
        wanted["status"].tolist(),
        wanted["risk_level"].tolist(),
        strict=True,
    ):
        details = []
        if not pd.isna(start):
            details.append(f"{_day(start)}, {start:%H:%M}")
        elif not pd.isna(day):
            details.append(_day(day))
        if isinstance(lead, str) and lead:
            details.append(f"Lead: {lead}")
        if isinstance(status, str) and status:
            details.append(status)
        if isinstance(risk, str) and risk:
            details.append(f"Risk {risk}")
        out.setdefault(int(row), details)
    return out
