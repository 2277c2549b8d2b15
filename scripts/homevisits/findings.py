"""The Finding record (one problem in one row, as data) and its renderers: message and fix from
templates, text, JSON (the HTML page, emails and the Policy check tab take the same records)."""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

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


class Text(NamedTuple):
    """A kind of finding's wording: templates of its message and fix (see :func:`render`)."""

    message: str
    fix: str


def render(template: str, values: Mapping[str, Any], fill: Fill) -> str:
    """A message or fix from its template: ``{column}`` is the header of the finding's column as the
    sheet spells it, ``{header[outcome]}`` any field's, ``{row}`` the sheet row, ``{name}`` a value of
    the finding, shown by its format: ``{due:when}`` a UTC instant as the school reads it
    (``Mon 23 Nov 2026 14:30``), ``{visit_date:date}`` a date as 23/11/2026, ``{rows:rows}`` a list
    of rows (``row 3`` or ``rows 3, 4``), ``{reasons:and}`` a list joined by "and", ``{place:or none}``
    the value or, when blank, the words after ``or``; a blank value shows as "blank", a yes/no as
    YES or NO."""
    out = []
    for literal, place, name, spec in _pieces(template):
        out.append(literal)
        if place is _VALUE:
            value = values[name]
            out.append(value if not spec and value.__class__ is str else _shown(value, spec, fill.tz))
        elif place is _COLUMN:
            out.append(str(fill.column))
        elif place is _ROW:
            out.append(str(fill.row))
        elif place is _HEADER:
            out.append(fill.header[name])
    return "".join(out)


_VALUE, _COLUMN, _ROW, _HEADER = "value", "column", "row", "header"  # what a template's {...} names


@lru_cache(maxsize=1024)
def _pieces(template: str) -> tuple[tuple[str, str | None, str | None, str], ...]:
    """A template as (text, what its place names, the name, the format) pieces, sorted out once."""
    pieces = []
    for literal, name, spec in _parts(template):
        if name is None:
            pieces.append((literal, None, None, spec))
        elif name in ("column", "row"):
            pieces.append((literal, _COLUMN if name == "column" else _ROW, name, spec))
        elif name.startswith("header["):
            pieces.append((literal, _HEADER, name[7:-1], spec))
        else:
            pieces.append((literal, _VALUE, name, spec))
    return tuple(pieces)


@lru_cache(maxsize=1024)
def _parts(template: str) -> tuple[tuple[str, str | None, str], ...]:
    """A template as (text, name, format) pieces, read once."""
    import string

    return tuple((literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(template))


class Wording:
    """A rule's texts rendered for one check: a finding whose values (and column) repeat another's
    is worded once, since a large log has thousands alike (``{row}`` counts as a value)."""

    MEMO = 20_000  # findings of a kind mostly share a few wordings; times of their own never repeat

    def __init__(self, texts: Mapping[str, Text], header: Mapping[str, str], tz: Any) -> None:
        self.texts, self.header, self.tz = texts, header, tz
        self.by_row: dict[str, bool] = {}
        self.named: dict[str, Callable[[Mapping[str, Any]], Any]] = {}  # the values a kind's texts show
        for kind, text in texts.items():
            names = [n for _, n, _ in (*_parts(text.message), *_parts(text.fix)) if n is not None]
            self.by_row[kind] = "row" in names
            shown = sorted({n for n in names if n not in ("row", "column") and not n.startswith("header[")})
            self.named[kind] = operator.itemgetter(*shown) if shown else _nothing
        self.memo: dict[tuple, tuple[str, str]] = {}

    def __call__(
        self, kind: str, values: Mapping[str, Any], column: str | None, row: int | None
    ) -> tuple[str, str]:
        key: tuple = (kind, column, row if self.by_row[kind] else None, self.named[kind](values))
        try:
            return self.memo[key]
        except KeyError:
            pass
        except TypeError:  # a list among the values: no key, worded each time
            key = ()
        text, fill = self.texts[kind], Fill(self.header, column, row, self.tz)
        worded = (render(text.message, values, fill), render(text.fix, values, fill))
        if key and len(self.memo) < self.MEMO:
            self.memo[key] = worded
        return worded

    def many(
        self, kind: str, values: Sequence[Mapping[str, Any]], column: str | None, rows: Sequence[int | None]
    ) -> list[tuple[str, str]]:
        """The wording of many findings of one kind and column, as calling this Wording on each
        gives it: each distinct set of values (and row, when the texts show it) worded once."""
        text, by_row, named = self.texts[kind], self.by_row[kind], self.named[kind]
        done: dict[tuple, tuple[str, str]] = {}
        out: list[tuple[str, str]] = []
        for one, row in zip(values, rows, strict=True):
            try:
                key: tuple | None = (named(one), row if by_row else None)
                worded = done.get(key)  # type: ignore[arg-type]
            except TypeError:  # a list among the values: no key, worded each time
                key, worded = None, None
            if worded is None:
                fill = Fill(self.header, column, row, self.tz)
                worded = (render(text.message, one, fill), render(text.fix, one, fill))
                if key is not None:
                    done[key] = worded
            out.append(worded)
        return out


def _nothing(_values: Mapping[str, Any]) -> None:
    return None


FORMATS = ("", "when", "date", "rows", "and", "clean")  # and "or <words>": what render can show


def known_format(spec: str) -> bool:
    """A format :func:`render` knows (a profile's template is checked when it loads, not when it is used)."""
    return spec in FORMATS or spec.startswith("or ")


@dataclass(frozen=True, slots=True)
class Fill:
    """What every template of one check can name besides its values: headers, the row, the time zone."""

    header: Mapping[str, str]
    column: str | None
    row: int | None
    tz: Any  # a ZoneInfo


def _shown(value: Any, spec: str, tz: Any) -> str:
    """One value as a template's format asks (see :func:`render`)."""
    if not spec:
        return value if type(value) is str else _plain(value)
    if spec.startswith("or "):
        return spec[3:] if value is None else _plain(value)
    if spec == "when":
        return "an unknown time" if value is None else _when(value, tz)
    if spec == "date":
        year, month, day = str(value)[:10].split("-")
        return f"{day}/{month}/{year}"
    if spec == "rows":
        return f"row{'s' if len(value) > 1 else ''} {', '.join(str(r) for r in value)}"
    if spec == "and":
        return " and ".join(value)
    if spec == "clean":
        from .cleaning import shown

        return shown(value)
    return format(value, spec)


@lru_cache(maxsize=8192)
def _when(instant: str, tz: Any) -> str:
    """An ISO 8601 instant as the school reads it, worked out once (a message and its fix often both
    show it, and visits due back at the same time share it)."""
    moment = dt.datetime.fromisoformat(instant).astimezone(tz)  # as strftime("%a %d %b %Y %H:%M"), sooner
    return (
        f"{_DAYS[moment.weekday()]} {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year} "
        f"{moment.hour:02d}:{moment.minute:02d}"
    )


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # English whatever the machine's locale
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _plain(value: Any) -> str:
    if value is None:
        return "blank"
    if value is True or value is False:
        return "YES" if value else "NO"
    return str(value)


def sort_key(finding: Finding) -> tuple:
    return (SEVERITY_RANK.get(finding.severity, 9), finding.row or 0, finding.rule, finding.column or "")


def in_order(findings: Sequence[Finding]) -> list[Finding]:
    """The findings as ``sorted(findings, key=sort_key)`` orders them (stable: equal keys keep their
    order), sorted as four columns of integers (NumPy's stable lexsort) rather than ~200,000 tuples."""
    import numpy as np

    count = len(findings)
    rank = SEVERITY_RANK.get
    severities = np.fromiter((rank(f.severity, 9) for f in findings), np.int64, count)
    rows = np.fromiter((f.row or 0 for f in findings), np.int64, count)
    rules = _codes([f.rule for f in findings])
    columns = _codes([f.column or "" for f in findings])
    order = np.lexsort((columns, rules, rows, severities)).tolist()
    return [findings[i] for i in order]


def _codes(texts: list[str]) -> Any:
    """Each text's place among the distinct texts in sorted order: compares as the texts do."""
    import numpy as np

    place = {text: code for code, text in enumerate(sorted(set(texts)))}
    return np.fromiter(map(place.__getitem__, texts), np.int64, len(texts))


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
        yield ("" if start == 0 else ",\n") + ", ".join(_findings_json(findings[start : start + batch]))
    yield "\n]}\n"


def _findings_json(findings: Sequence[Finding]) -> list[str]:
    """Each finding as ``json.dumps(f.as_dict(), ensure_ascii=False)`` writes it, in one loop (a call
    per finding costs as much as the work).

    Findings that share one values dict or message (HV002's bad cells repeat: rules.unreadable_cell
    hands the same dict to each alike) have them written once: by identity, and only within this
    batch, whose findings hold them (so no id is reused meanwhile). Kept for the whole report instead,
    they saved 0.016 s on 200,000 findings but held 6 MB more at the run's peak."""
    template, encode, values_json = _template, encode_basestring, _ENCODE
    written: dict[int, str] = {}
    out = []
    for f in findings:
        values, message = f.values, f.message
        values_text = written.get(id(values))
        if values_text is None:
            values_text = written[id(values)] = "".join(values_json(values, 0)) if values else "{}"
        message_text = written.get(id(message))
        if message_text is None:
            message_text = written[id(message)] = encode(message)
        out.append(
            template(f.rule, f.severity, f.column, f.fix, f.clause, f.field)
            % (
                "null" if f.row is None else int(f.row),
                "null" if f.visit_id is None else encode(f.visit_id),
                message_text,
                values_text,
            )
        )
    return out


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


def _c_encoder() -> Any:
    """json's C encoder (as ``json.dumps(..., ensure_ascii=False)`` builds it for each call), if this
    Python has it and it writes what json.dumps writes; else json.dumps."""
    from json import encoder

    sample = {"a": None, "b": True, "c": 1, "d": 1.5, "e": "é\n", "f": [1, "x"]}
    try:
        made = encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, json.JSONEncoder().default, encode_basestring, None, ": ", ", ", False, False, True
        )
        if "".join(made(sample, 0)) == json.dumps(sample, ensure_ascii=False):
            return made
    except (AttributeError, TypeError):
        pass
    return lambda values, _level: (json.dumps(values, ensure_ascii=False),)


_ENCODE = _c_encoder()


def to_json(report: Report) -> str:
    return "".join(json_chunks(report))


def to_text(report: Report, width: int = 100) -> str:
    """A readable listing grouped by severity, alerts first, then a one-line summary."""
    lines: list[str] = [f"{report.source}: {report.rows} visits checked against {report.policy}"]
    ordered = in_order(report.findings)
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
