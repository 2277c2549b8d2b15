"""Small real workbooks for tests, built with openpyxl, and one call to check them.

Rows are dicts keyed by canonical header (``"Visit date"``) or field name (``"visit_date"``); any
other key is written as a column of that name (a school's own or unknown header). ``None`` in the
row list writes a blank row. ``rename`` shows a column under another header (an alias or the
school's own), ``title_rows`` go above the header, ``blank_before`` empty rows above those.

``visit(row, kind)`` builds one invented visit that breaks no rule of any profile at ``NOW``; a test
changes the fields it is about (``visit(3, approved_by=None)``). ``run_check`` runs the real
pipeline (config, read, parse, check) and ``found`` turns findings into comparable tuples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from homevisits.schema import load_schema

LONDON = ZoneInfo("Europe/London")
SCHEMA = load_schema()
HEADERS: dict[str, str] = {c.field: c.header for c in SCHEMA.columns}
FIELDS: dict[str, str] = {c.header: c.field for c in SCHEMA.columns}
ALL_HEADERS: list[str] = list(HEADERS.values())


NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=LONDON)  # a Monday, GMT: the tests' usual "now"
PAST = dt.date(2026, 11, 17)  # the Tuesday before
FUTURE = dt.date(2026, 11, 26)  # the Thursday after


def header_of(key: str) -> str:
    """The canonical header for a field name or header; anything else is returned unchanged."""
    return HEADERS.get(key, key)


def london(*parts: int) -> dt.datetime:
    """An aware Europe/London moment: ``london(2026, 11, 23, 12)``."""
    return dt.datetime(*parts, tzinfo=LONDON)


def at(day: dt.date, hm: tuple[int, int], minutes: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(*hm)) + dt.timedelta(minutes=minutes)


def visit(
    row: int,
    kind: str = "done",
    *,
    date: dt.date | None = None,
    start: tuple[int, int] = (10, 0),
    end: tuple[int, int] = (11, 30),
    **changes: Any,
) -> dict[str, Any]:
    """One visit that breaks no rule of any profile, on sheet row ``row`` (Visit ID ``V<row>``).

    ``kind``: done (Completed, in the past), planned (in the future), cancelled, no_answer.
    ``changes`` are field names (``risk_level="HIGH"``); ``None`` empties the cell.
    """
    day = date or (FUTURE if kind == "planned" else PAST)
    begin, finish = at(day, start), at(day, end)
    minutes = int((finish - begin).total_seconds() // 60)
    values: dict[str, Any] = {
        "visit_id": f"V{row}",
        "learner_name": f"Learner {row}",
        "learner_id": f"L{row:03d}",
        "parent_phone": "0113 496 0000",
        "address": f"{row} Test Street, Birmingham",
        "postcode": "B23 6XX",
        "reason": "Attendance concerns",
        "visit_date": day,
        "start_time": dt.time(*start),
        "expected_return": dt.time(*end),
        "expected_duration": minutes,
        "location_type": "Home",
        "lead_staff": "Sam Teacher",
        "second_staff": "Alex Colleague",
        "phone_taken": "07700 900123",
        "line_manager": "Pat Manager",
        "risk_level": "LOW",
        "risk_notes": "Known to school; no concerns",
        "dangerous_animals": "NO",
        "parent_consent": "YES",
        "approved_by": "Pat Manager",
        "authorised_by": "Head Teacher",
        "safeguarding_informed": "YES",
        "safe_word_agreed": "YES",
        "laptop_taken": "NO",
        "prior_contact": "Phoned twice",
        "form_sent_at": f"{day - dt.timedelta(days=3):%d/%m/%Y} 09:00",
        "status": {
            "done": "Completed",
            "planned": "Planned",
            "cancelled": "Cancelled",
            "no_answer": "No answer",
        }[kind],
        "safeguarding_concern": "NO",
    }
    if kind in ("done", "no_answer"):
        values["arrived_at"] = f"{begin + dt.timedelta(minutes=5):%H:%M}"
        values["departed_at"] = f"{finish - dt.timedelta(minutes=20):%H:%M}"
        values["returned_at"] = f"{finish - dt.timedelta(minutes=10):%H:%M}"
    if kind == "done":
        values["outcome"] = "Met parent; attendance plan agreed"
    if kind == "no_answer":
        values["note_left"] = "YES"
    if kind == "cancelled":
        values["cancellation_reason"] = "Family asked to rearrange"
    values.update(changes)
    return {header_of(k): v for k, v in values.items()}


def write_workbook(
    path: Path | str,
    rows: Sequence[Mapping[str, Any] | None],
    *,
    columns: Iterable[str] | None = None,
    rename: Mapping[str, str] | None = None,
    title_rows: Sequence[Sequence[Any]] = (),
    blank_before: int = 0,
    sheet: str = "Home Visits",
    sheets_before: Sequence[str] = (),
    epoch1904: bool = False,
    number_format: Mapping[str, str] | None = None,
    column_formats: Mapping[str, str] | None = None,
) -> Path:
    """Write ``rows`` under one header row to a new .xlsx and return its path.

    ``columns`` fixes the column order (default: keys in order of first appearance);
    ``number_format`` sets an Excel number format per column (e.g. ``{"Visit date": "0"}``) on the cells
    written; ``column_formats`` sets it on whole columns, as ``init-sheet`` does (empty cells included).

    Hundreds of tests ask for the same few workbooks (each rule's case under every profile), and
    openpyxl takes ~10 ms to build one: a workbook asked for again, the same rows and options
    exactly (compared by ``repr``), is the first one's bytes, written to ``path`` as a new file.
    """
    path = Path(path)
    asked = repr(
        (rows, columns, rename, title_rows, blank_before, sheet, sheets_before, epoch1904, number_format,
         column_formats)
    )  # fmt: skip
    if asked not in _WRITTEN:
        _build_workbook(path, rows, columns, rename, title_rows, blank_before, sheet, sheets_before,
                        epoch1904, number_format, column_formats)  # fmt: skip
        _WRITTEN[asked] = path.read_bytes()
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_WRITTEN[asked])
    return path


_WRITTEN: dict[str, bytes] = {}  # each workbook built, by the repr of what was asked for


def _build_workbook(
    path: Path,
    rows: Sequence[Mapping[str, Any] | None],
    columns: Iterable[str] | None,
    rename: Mapping[str, str] | None,
    title_rows: Sequence[Sequence[Any]],
    blank_before: int,
    sheet: str,
    sheets_before: Sequence[str],
    epoch1904: bool,
    number_format: Mapping[str, str] | None,
    column_formats: Mapping[str, str] | None,
) -> None:
    import openpyxl

    order = [header_of(c) for c in columns] if columns is not None else []
    for row in rows:
        for key in row or {}:
            name = header_of(key)
            if name not in order:
                order.append(name)
    shown = {header_of(k): v for k, v in (rename or {}).items()}
    formats = {header_of(k): v for k, v in (number_format or {}).items()}

    book = openpyxl.Workbook()
    if epoch1904:
        from openpyxl.utils.datetime import CALENDAR_MAC_1904

        book.epoch = CALENDAR_MAC_1904
    book.remove(book.active)
    for name in sheets_before:
        book.create_sheet(name).append(["Nothing to see here"])
    worksheet = book.create_sheet(sheet)
    line = 1 + blank_before
    for title in title_rows:
        for column, value in enumerate(title, start=1):
            worksheet.cell(row=line, column=column, value=value)
        line += 1
    for column, name in enumerate(order, start=1):
        worksheet.cell(row=line, column=column, value=shown.get(name, name))
    for name, code in (column_formats or {}).items():
        if header_of(name) in order:
            from openpyxl.utils import get_column_letter

            letter = get_column_letter(order.index(header_of(name)) + 1)
            worksheet.column_dimensions[letter].number_format = code
    line += 1
    for row in rows:
        if row is not None:
            values = {header_of(k): v for k, v in row.items()}
            for column, name in enumerate(order, start=1):
                value = values.get(name)
                if value is None:
                    continue
                cell = worksheet.cell(row=line, column=column, value=value)
                if name in formats:
                    cell.number_format = formats[name]
        line += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


def make_config(path: Path | str, policy: str, **settings: Any):
    """A Config for the workbook at ``path`` as if read from a homevisits.toml beside it."""
    from homevisits.config import from_mapping

    path = Path(path)
    data: dict[str, Any] = {"policy": policy, "source": {"path": str(path)}}
    if "worksheet" in settings:
        data["source"]["worksheet"] = settings.pop("worksheet")
    data.update(settings)
    return from_mapping(data, path.parent / "homevisits.toml")


def run_check(path: Path | str, policy: str, now: dt.datetime, **settings: Any):
    """Read, parse and check the workbook at ``path`` under ``policy`` at ``now`` (the pipeline)."""
    from homevisits.pipeline import load

    return load(make_config(path, policy, **settings), now)


def found(findings: Iterable[Any]) -> list[tuple[str, str, int | None, str | None, str | None]]:
    """Findings as data: ``(rule, severity, row, visit_id, column)`` in report order."""
    return [(f.rule, f.severity, f.row, f.visit_id, f.column) for f in findings]
