"""Writing back safely, whatever the source: which cell gets which value, and never a formula.

The tool writes only its own columns (``owner: tool`` in the column catalogue), in the columns the read
found (``sheet.SheetLayout``, handed over by the pipeline). Every cell is found again at write time by
the row's Visit ID; a row that has no ID yet is found by its sheet row, and only when that row is
exactly as it was read. Text that a spreadsheet could run as a formula is neutralised first. What to
write (the ledger's times, new Visit IDs, the Policy check tab's rows) is decided elsewhere: this module
only places and writes the cells it is given.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ..formula_guard import is_formula_like, neutralise
from ..sheet import DATETIME_TEXT, CellUpdate, RawSheet, SheetLayout, find_layout
from ..visit_ids import id_key, is_header_safe_id


@dataclass(frozen=True)
class Placed:
    """An update located in the sheet as it is now: 1-based sheet row, 0-based column."""

    update: CellUpdate
    row: int
    column: int


@dataclass(frozen=True)
class Skipped:
    update: CellUpdate
    reason: str


@dataclass
class WriteResult:
    """What a write did: the cells written and the updates left out, each with why."""

    written: list[Placed] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.skipped


def layout_for(raw: RawSheet, given: SheetLayout | None, columns: Mapping[str, str]) -> SheetLayout:
    """The layout a write goes by: the one the pipeline's read found, else (a script or a test that
    read the source itself) the same search on the source's own snapshot."""
    if given is not None:
        return given
    from ..schema import load_schema

    return find_layout(raw, load_schema(), columns)


# ---------------------------------------------------------------- values as written


def wall_clock(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A naive datetime on the school's clock (an aware one is converted first)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def sheet_value(value: Any, tz: ZoneInfo) -> Any:
    """A value for a Google Sheets RAW write: numbers and booleans as they are, everything else safe text.

    Dates and times are written as UK text (``23/11/2026 09:05``) so they read the same in any
    column format; the tool's own cell parsing reads them back.
    """
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.datetime):
        return wall_clock(value, tz).strftime(DATETIME_TEXT)
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return neutralise(str(value))


# ---------------------------------------------------------------- locating rows


def trimmed(cells: Sequence[Any] | None, skip: int | None = None) -> list[Any]:
    """A row's cells without trailing blanks (and with the ``skip`` column blanked), for comparing rows."""
    out = ["" if c is None or (i == skip) else c for i, c in enumerate(cells or ())]
    while out and out[-1] == "":
        out.pop()
    return out


def locate(
    updates: Iterable[CellUpdate],
    *,
    ids: Mapping[int, Any],
    columns: Mapping[str, int],
    headers: Mapping[str, str],
    tool_fields: Iterable[str],
    row_unchanged: Callable[[int], bool],
) -> tuple[list[Placed], list[Skipped]]:
    """Find the cell for every update in the sheet as it is now.

    ``ids`` maps each sheet row below the header to its Visit ID cell as just re-read; ``columns``
    maps fields to 0-based columns; ``row_unchanged(row)`` says whether a row still holds exactly
    what was read (used only to give a new ID to a row without one). Returns the cells to write and
    the updates skipped, each with a reason a person can act on. Nothing here writes.
    """
    allowed = set(tool_fields)
    rows_by_id: dict[str, list[int]] = defaultdict(list)
    for row, raw in ids.items():
        key = id_key(raw)
        if key:
            rows_by_id[key].append(row)

    def header(name: str) -> str:
        return headers.get(name, name)

    placed: dict[tuple[int, int], Placed] = {}
    skipped: list[Skipped] = []
    assigned: dict[str, int] = {}
    updates = list(updates)
    for update in updates:
        if update.field not in allowed:
            raise ValueError(
                f"{update.field} is not a column the tool owns; it writes only {sorted(allowed)}"
            )
    id_column = columns.get("visit_id")
    if id_column is None:
        reason = f"the sheet has no '{header('visit_id')}' column to find rows by (init-sheet adds it)"
        return [], [Skipped(update, reason) for update in updates]
    for update in (u for u in updates if u.field == "visit_id"):
        reason = _assignment_problem(update, id_column, rows_by_id, ids, assigned, row_unchanged, header)
        if reason:
            skipped.append(Skipped(update, reason))
            continue
        assert update.row is not None and id_column is not None
        assigned[id_key(update.value) or ""] = update.row
        placed[(update.row, id_column)] = Placed(update, update.row, id_column)
    for update in (u for u in updates if u.field != "visit_id"):
        column = columns.get(update.field)
        if column is None:
            skipped.append(Skipped(update, f"the sheet has no '{header(update.field)}' column"))
            continue
        key = id_key(update.visit_id)
        if key in assigned:
            row = assigned[key]
        else:
            found = rows_by_id.get(key or "", [])
            if not found:
                skipped.append(Skipped(update, f"no row has Visit ID {update.visit_id} any more"))
                continue
            if len(found) > 1:
                where = ", ".join(str(r) for r in found)
                skipped.append(
                    Skipped(
                        update,
                        f"Visit ID {update.visit_id} is in {len(found)} rows ({where}): give each visit its own ID",
                    )
                )
                continue
            row = found[0]
        placed[(row, column)] = Placed(update, row, column)
    return list(placed.values()), skipped


def _assignment_problem(
    update: CellUpdate,
    id_column: int | None,
    rows_by_id: Mapping[str, list[int]],
    ids: Mapping[int, Any],
    assigned: Mapping[str, int],
    row_unchanged: Callable[[int], bool],
    header: Callable[[str], str],
) -> str | None:
    """Why a new Visit ID cannot go into its row, or None when it can."""
    if id_column is None:
        return f"the sheet has no '{header('visit_id')}' column"
    if update.row is None:
        return "a new Visit ID needs the sheet row it was read from"
    new = id_key(update.value)
    if not new or is_formula_like(str(update.value)) or not is_header_safe_id(update.value):
        return f"'{update.value}' is not a Visit ID"  # the tool writes only IDs its emails can carry
    current = id_key(ids.get(update.row))
    if current is not None and current != new:
        return f"row {update.row} was given Visit ID {ids.get(update.row)} since the sheet was read"
    elsewhere = [r for r in rows_by_id.get(new, []) if r != update.row]
    if elsewhere or new in assigned:
        return f"Visit ID {update.value} is already used (row {(elsewhere or [assigned.get(new)])[0]})"
    if not row_unchanged(update.row):
        return f"row {update.row} changed or moved since the sheet was read; the next run will try again"
    return None
