"""The Finding record (one problem in one row) and its renderers: text, JSON, HTML."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

SEVERITIES = ("alert", "error", "warning", "info")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
SEVERITY_HELP = {
    "alert": "someone may be in danger now",
    "error": "a breach of the policy",
    "warning": "worth a look",
    "info": "something coming due",
}


@dataclass(slots=True)
class Finding:
    """One problem as data: which rule, how bad, where (sheet row as staff see it; ``field`` the schema
    field, ``column`` the sheet's own header), the cells that made it (``values``, e.g.
    ``{"status": "Completed"}``), and the text rendered for people (``message``, ``fix``, ``clause``).

    ``blocks_form``: whether the finding stops the risk assessment form going (the form deadline's
    own findings do not: the form is what they are about)."""

    rule: str
    severity: str
    row: int | None
    visit_id: str | None
    column: str | None
    message: str
    fix: str
    clause: str
    field: str | None = None
    values: dict[str, Any] | None = None
    blocks_form: bool = True

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "row": self.row,
            "visit_id": self.visit_id,
            "column": self.column,
            "message": self.message,
            "fix": self.fix,
            "clause": self.clause,
            "field": self.field,
            "values": dict(self.values or {}),
        }


def sort_key(finding: Finding) -> tuple:
    return (SEVERITY_RANK.get(finding.severity, 9), finding.row or 0, finding.rule, finding.column or "")


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {name: counts.get(name, 0) for name in SEVERITIES}


def exit_status(findings: Iterable[Finding]) -> int:
    """0 when nothing is worse than a warning; 1 when there is an error or an alert."""
    return 1 if any(f.severity in ("alert", "error") for f in findings) else 0


@dataclass(frozen=True)
class Report:
    """What one check found, with what it checked."""

    source: str
    policy: str
    checked_at: str  # ISO 8601, the check's ``now``
    rows: int
    findings: Sequence[Finding]

    def as_dict(self) -> dict:
        return {**self.head(), "findings": [f.as_dict() for f in self.findings]}

    def head(self) -> dict:
        """Everything but the findings."""
        return {
            "source": self.source,
            "policy": self.policy,
            "checked_at": self.checked_at,
            "rows": self.rows,
            "summary": summary(self.findings),
        }


def json_chunks(report: Report, batch: int = 500) -> Iterator[str]:
    """The JSON report in pieces (a line per batch of findings), so a large report never sits in memory twice."""
    yield json.dumps(report.head(), ensure_ascii=False)[:-1] + ', "findings": [\n'
    findings = report.findings
    for start in range(0, len(findings), batch):
        pieces = [_finding_json(f) for f in findings[start : start + batch]]
        yield ("" if start == 0 else ",\n") + ", ".join(pieces)
    yield "\n]}\n"


def _finding_json(f: Finding) -> str:
    """One finding as ``json.dumps(f.as_dict())`` writes it, made directly (a large report has many)."""
    return _template(f.rule, f.severity, f.column, f.fix, f.clause, f.field) % (
        "null" if f.row is None else int(f.row),
        "null" if f.visit_id is None else encode_basestring(f.visit_id),
        encode_basestring(f.message),
        _values_json(f.values),
    )


@lru_cache(maxsize=4096)
def _template(rule: str, severity: str, column: str | None, fix: str, clause: str, field: str | None) -> str:
    """The JSON of a kind of finding with the row, the Visit ID, the message and the values left to
    fill in: the rest is shared by every finding of that rule, column and wording of the fix."""

    def text(value: str | None) -> str:
        return "null" if value is None else encode_basestring(value).replace("%", "%%")

    return (
        f'{{"rule": {text(rule)}, "severity": {text(severity)}, "row": %s, "visit_id": %s, '
        f'"column": {text(column)}, "message": %s, "fix": {text(fix)}, "clause": {text(clause)}, '
        f'"field": {text(field)}, "values": %s}}'
    )


def _values_json(values: dict[str, Any] | None) -> str:
    """A finding's values as JSON, worked out once per distinct set (most findings share a few)."""
    if not values:
        return "{}"
    try:
        return _values_text(tuple((key, type(value), value) for key, value in values.items()))
    except TypeError:  # a value that cannot be a cache key
        return json.dumps(values, ensure_ascii=False)


@lru_cache(maxsize=4096)
def _values_text(items: tuple[tuple[str, type, Any], ...]) -> str:
    """(The type is in the key so that True, 1 and 1.0 are not taken for one another.)"""
    return json.dumps({key: value for key, _type, value in items}, ensure_ascii=False)


def to_json(report: Report) -> str:
    return "".join(json_chunks(report))


def to_text(report: Report, width: int = 100) -> str:
    """A readable listing grouped by severity, alerts first, then a one-line summary."""
    lines: list[str] = [f"{report.source}: {report.rows} visits checked against {report.policy}"]
    ordered = sorted(report.findings, key=sort_key)
    for severity in SEVERITIES:
        group = [f for f in ordered if f.severity == severity]
        if not group:
            continue
        lines.append("")
        lines.append(f"{severity.upper()}S ({len(group)}): {SEVERITY_HELP[severity]}")
        for f in group:
            where = f"row {f.row}" if f.row else "sheet"
            ident = f" {f.visit_id}" if f.visit_id else ""
            column = f" [{f.column}]" if f.column else ""
            lines.append(f"  {f.rule} {where}{ident}{column}: {f.message}")
            lines.append(f"        fix: {f.fix}")
            lines.append(f"        policy: {f.clause}")
    counts = summary(report.findings)
    lines.append("")
    lines.append(
        "Summary: "
        + ", ".join(f"{counts[s]} {s}{'' if counts[s] == 1 else 's'}" for s in SEVERITIES)
        + (" - nothing to fix." if not report.findings else ".")
    )
    return "\n".join(lines) + "\n"
