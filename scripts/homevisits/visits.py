"""Build the visits table: one typed row per visit, from a raw sheet snapshot and its header map.

Column types in ``Visits.frame`` (every schema field is present, all-missing when the sheet lacks it):

- text, phone, email, choice: ``object`` (``str`` or ``None``); phones read ``07700 900123``
- date: ``datetime64[ns]`` at midnight; time: ``timedelta64[ns]`` since midnight
- duration: ``float64`` minutes; yesno: pandas ``boolean``
- datetime: ``datetime64[ns, UTC]`` instants (a bare time is placed on the visit date, school wall clock)

plus ``row`` (the sheet's own 1-based row number), ``start_at`` and ``return_due_at`` (UTC instants:
visit date + start time, and visit date + expected return, else start + expected duration), and
``learner_key`` (Learner ID, else folded name and postcode) for telling first visits from later ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .cells import ParsedColumn, fold_word, is_blank, parse_cells
from .schema import HeaderMap, Schema
from .sheet import RawSheet

DERIVED = ("row", "start_at", "return_due_at", "learner_key")
ALSO = "_also"  # suffix of the column holding a phone cell's second and later numbers


class CellProblem(NamedTuple):
    """A cell that could not be understood: sheet row, field, the raw value and why."""

    row: int
    field: str
    raw: Any
    reason: str


BadCell = tuple[int, Any, str]  # a cell that could not be understood: position in the table, raw value, why


@dataclass
class Visits:
    frame: pd.DataFrame
    headers: dict[str, str]  # field -> header as the sheet spells it (mapped fields only)
    bad_cells: dict[str, list[BadCell]]  # field -> its unreadable cells in row order (fields in sheet order)
    schema: Schema
    tz: ZoneInfo
    source: str = ""
    worksheet: str = ""
    header_row: int = 1  # sheet row number of the header row
    extra: dict[str, Any] = field(default_factory=dict)
    _unreadable: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    def header(self, name: str) -> str:
        """The column as staff see it: the sheet's own header, else the catalogue's."""
        return self.headers.get(name) or self.schema[name].header

    def record(self, position: int) -> dict[str, Any]:
        """One visit as plain Python values: dates, times, London-time datetimes, ints, bools, str, None."""
        row = self.frame.iloc[position]
        out: dict[str, Any] = {}
        for name in (*self.schema.fields, *DERIVED, *self.also_fields):
            out[name] = _python(row[name], self.tz)
        return out

    @property
    def also_fields(self) -> list[str]:
        """``<phone field>_also``: the further numbers a phone cell held (``0121 496 0000``), for alerts."""
        return [f"{c.field}{ALSO}" for c in self.schema.columns if c.type == "phone"]

    def records(self) -> list[dict[str, Any]]:
        return [self.record(i) for i in range(len(self.frame))]

    @property
    def problems(self) -> list[CellProblem]:
        """Every unreadable cell with its sheet row, field by field (``bad_cells`` as one list)."""
        rows = self.frame["row"].tolist()
        return [
            CellProblem(rows[position], name, raw, reason)
            for name, cells in self.bad_cells.items()
            for position, raw, reason in cells
        ]

    def unreadable(self, name: str) -> np.ndarray:
        """True where the cell had a value that could not be read (each one is in ``bad_cells``).

        Read-only and made once per field: safe-return asks it visit by visit, so a copy per call
        would cost more than the answer (a caller that needs to change it copies it first)."""
        found = self._unreadable.get(name)
        if found is None:
            found = np.zeros(len(self.frame), dtype=bool)
            found[[position for position, _, _ in self.bad_cells.get(name, ())]] = True
            found = self._unreadable[name] = _read_only(found)
        return found

    def position_of(self, visit_id: str) -> int | None:
        hits = np.flatnonzero(self.frame["visit_id"].to_numpy() == visit_id)
        return int(hits[0]) if len(hits) else None


def _read_only(mask: np.ndarray) -> np.ndarray:
    mask.flags.writeable = False
    return mask


Job = tuple[str, str, int, Any]  # field, type, column position, choice lookup


def _parse_columns(rows: list[Any], width: int, jobs: list[Job], date1904: bool) -> dict[str, ParsedColumn]:
    """Parse every mapped column: the rows as one grid of cells, then each column as a whole."""
    grid = np.empty((len(rows), width), dtype=object)
    try:
        grid[:] = rows
    except (ValueError, TypeError):  # a cell numpy would read as a sequence: place cells one by one
        for i, cells in enumerate(rows):
            for j, cell in enumerate(cells):
                grid[i, j] = cell
    return {
        name: parse_cells(kind, grid[:, position], lookup=lookup, date1904=date1904)
        for name, kind, position, lookup in jobs
    }


def _python(value: Any, tz: ZoneInfo) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is not None:
            return value.tz_convert(tz).to_pydatetime()
        return value.date()
    if isinstance(value, pd.Timedelta):
        seconds = int(value.total_seconds())
        return dt.time(seconds // 3600 % 24, seconds % 3600 // 60, seconds % 60)
    if isinstance(value, float):
        if np.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def build_visits(raw: RawSheet, schema: Schema, mapping: HeaderMap, header_pos: int, tz: ZoneInfo) -> Visits:
    """Parse every mapped cell under the header row; blank rows are skipped, bad cells become problems."""
    body = raw.rows[header_pos + 1 :]
    first = raw.first_row + header_pos + 1
    kinds = [_content(cells) for cells in body]
    keep = [i for i, kind in enumerate(kinds) if kind is CONTENT]
    phantom = [first + i for i, kind in enumerate(kinds) if kind is DEFAULTS]
    rows = [body[i] for i in keep]
    row_numbers = np.asarray([first + i for i in keep], dtype=np.int64)
    n = len(rows)

    # Every row as wide as the widest mapped column (Google leaves out empty cells at a row's end).
    lengths = set(map(len, rows))
    width = max([*lengths, *(position + 1 for position in mapping.positions.values())])
    if lengths - {width}:
        rows = [list(cells) + [None] * (width - len(cells)) for cells in rows]
    jobs = [
        (name, schema[name].type, position, schema[name].lookup)
        for name, position in mapping.positions.items()
    ]
    parsed = _parse_columns(rows, width, jobs, raw.date1904)
    unmapped = ParsedColumn(distinct=[None], codes=np.zeros(n, dtype=np.intp), problems=[])
    frame: dict[str, Any] = {"row": row_numbers}
    for column in schema.columns:
        cells = parsed.get(column.field, unmapped)
        if column.type == "date":
            frame[column.field] = _dates(cells)
        elif column.type == "time":
            frame[column.field] = _times(cells)
    for column in schema.columns:
        cells = parsed.get(column.field, unmapped)
        if column.type == "datetime":
            frame[column.field] = _instants(cells, frame["visit_date"], tz)
        elif column.type == "duration":
            frame[column.field] = _each(
                cells, [np.nan if v is None else float(v) for v in cells.distinct], float
            )
        elif column.type == "yesno":
            known = np.asarray([v is not None for v in cells.distinct], dtype=bool)
            answers = np.asarray([bool(v) for v in cells.distinct], dtype=bool)
            frame[column.field] = pd.arrays.BooleanArray(answers[cells.codes], ~known[cells.codes])
        elif column.type == "phone":
            frame[column.field] = _each(cells, [None if v is None else str(v) for v in cells.distinct])
            frame[column.field + ALSO] = _each(
                cells, [" / ".join(getattr(v, "others", ())) or None for v in cells.distinct]
            )
        elif column.type not in ("date", "time"):
            frame[column.field] = _each(cells, cells.distinct)
    table = pd.DataFrame(frame, copy=False)  # each column as built: no copy into blocks of one type
    table["start_at"] = localise(table["visit_date"] + table["start_time"], tz)
    due = localise(table["visit_date"] + table["expected_return"], tz)
    minutes = table["expected_duration"].to_numpy()
    known = ~np.isnan(minutes)
    length = np.full(len(minutes), NAT, dtype=np.int64)
    length[known] = (minutes[known] * 60_000_000_000).astype(np.int64)
    by_duration = table["start_at"] + pd.Series(length.view("timedelta64[ns]"))
    table["return_due_at"] = due.fillna(by_duration)
    table["learner_key"] = _learner_keys(table)
    return Visits(
        frame=table,
        headers=dict(mapping.headers),
        bad_cells={name: column.problems for name, column in parsed.items()},
        schema=schema,
        tz=tz,
        source=raw.name,
        worksheet=raw.worksheet,
        header_row=raw.first_row + header_pos,
        extra={
            "unplaced": mapping.suggestions(schema),
            "skipped": [*raw.notes, *_phantom_note(phantom)],
            "locale": raw.locale,
        },
    )


def _phantom_note(rows: list[int]) -> list[str]:
    if not rows:
        return []
    shown = ", ".join(map(str, rows[:5])) + (f" and {len(rows) - 5:,} more" if len(rows) > 5 else "")
    return [
        f"{len(rows):,} row{'s' if len(rows) > 1 else ''} below the header ({shown}) hold only tick-box "
        "defaults (TRUE/FALSE), 0 or formulas showing blank: not read as visits."
    ]


BLANK, DEFAULTS, CONTENT = "blank", "defaults", "content"
DEFAULT_WORDS = frozenset({"true", "false", "0"})  # what a tick box or a formula fills a whole column with


def _content(cells: list[Any]) -> str:
    """CONTENT for a row with something a person wrote; DEFAULTS for one holding only tick-box
    defaults (TRUE/FALSE), 0 or formulas showing blank (not a visit); BLANK for an empty row."""
    defaults = False
    for cell in cells:  # a plain loop: the first cell of a real row nearly always decides
        if cell is None:
            continue
        kind = cell.__class__
        if kind is str:
            if len(cell) > 6 and len(cell.strip()) > 6:
                return CONTENT
            word = fold_word(cell)
            if word in DEFAULT_WORDS:
                defaults = True
            elif not is_blank(word):
                return CONTENT
        elif kind is bool:
            defaults = True
        elif kind is int or kind is float:
            if cell == 0:
                defaults = True
            elif cell == cell:  # not NaN
                return CONTENT
        else:
            return CONTENT
    return DEFAULTS if defaults else BLANK


EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
NAT = np.iinfo(np.int64).min  # NumPy's not-a-time, as an integer


def _each(cells: ParsedColumn, distinct_values: list[Any], dtype: Any = object) -> np.ndarray:
    """One value per cell, from one value per distinct raw value."""
    if dtype is object:
        table = np.empty(len(distinct_values), dtype=object)
        table[:] = distinct_values
    else:
        table = np.asarray(distinct_values, dtype=dtype)
    return table[cells.codes]


def _dates(cells: ParsedColumn) -> pd.Series:
    days = _each(cells, [NAT if v is None else v.toordinal() - EPOCH_DAY for v in cells.distinct], np.int64)
    return pd.Series(days.astype("datetime64[D]").astype("datetime64[ns]"))


def _times(cells: ParsedColumn) -> pd.Series:
    """Times of day as time since midnight (integer nanoseconds, so nothing is rounded)."""
    nanoseconds = _each(
        cells,
        [
            NAT if t is None else (t.hour * 3600 + t.minute * 60 + t.second) * 1_000_000_000
            for t in cells.distinct
        ],
        np.int64,
    )
    return pd.Series(nanoseconds.view("timedelta64[ns]"))


def _wall_seconds(value: Any, tz: ZoneInfo) -> int:
    """A datetime as seconds since 1970 on the school's wall clock (else not-a-time)."""
    if value.__class__ is not dt.datetime:
        return NAT
    if value.tzinfo is not None:
        value = value.astimezone(tz)
    return (value.toordinal() - EPOCH_DAY) * 86400 + value.hour * 3600 + value.minute * 60 + value.second


def _instants(cells: ParsedColumn, dates: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Wall-clock datetimes (or bare times on the visit date) as UTC instants."""
    wall = _each(cells, [NAT if v is None else _wall_seconds(v, tz) for v in cells.distinct], np.int64)
    bare = [v.__class__ is dt.time for v in cells.distinct]
    if any(bare):  # a bare time sits on the visit date
        of_day = _each(
            cells,
            [
                v.hour * 3600 + v.minute * 60 + v.second if is_time else 0
                for v, is_time in zip(cells.distinct, bare, strict=True)
            ],
            np.int64,
        )
        days = dates.to_numpy().astype("datetime64[s]").astype(np.int64)
        on_day = np.asarray(bare)[cells.codes] & (days != NAT)
        wall = np.where(on_day, days + of_day, wall)
    return localise(pd.Series(wall.astype("datetime64[s]").astype("datetime64[ns]")), tz)


def localise(naive: pd.Series, tz: ZoneInfo) -> pd.Series:
    """School wall-clock times to UTC instants; the repeated autumn hour is read as summer time."""
    ambiguous = np.ones(len(naive), dtype=bool)
    # The zone by name: pandas' vectorised path (a ZoneInfo object is converted one value at a time).
    local = naive.dt.tz_localize(tz.key, ambiguous=ambiguous, nonexistent="shift_forward")
    return local.dt.tz_convert("UTC")


def _learner_keys(table: pd.DataFrame) -> np.ndarray:
    """Learner ID when filled (each distinct ID worked out once), else folded name and postcode."""
    codes, ids = pd.factorize(table["learner_id"])  # a blank ID is -1
    by_id = np.empty(len(ids) + 1, dtype=object)  # the last slot, None, is for -1
    by_id[:-1] = ["id:" + str(learner_id).strip().lower() for learner_id in ids]
    keys = by_id[codes]
    names = table["learner_name"].to_numpy()
    postcodes = table["postcode"].to_numpy()
    for i in np.flatnonzero(codes < 0).tolist():
        if names[i]:
            keys[i] = (
                "name:"
                + " ".join(str(names[i]).lower().split())
                + "|"
                + "".join(str(postcodes[i] or "").lower().split())
            )
    return keys
