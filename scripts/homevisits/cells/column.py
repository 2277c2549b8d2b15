"""One cell or a whole column read through the parser of its type, after what every cell type
shares (a formula error is a problem, unprintable characters are removed).

A column is parsed one distinct raw value at a time: a log repeats its dates, times and answers.
NumPy and pandas are imported inside the functions that group a column, so reading stays light.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .basics import _UNPRINTABLE, Parsed, formula_error, printable
from .moments import parse_date, parse_datetime, parse_duration, parse_time, written_moment
from .phones import parse_phone
from .words import _UNTIDY, parse_choice, parse_email, parse_text, parse_yesno

PARSERS: dict[str, Callable[..., Parsed]] = {
    "text": parse_text,
    "date": parse_date,
    "time": parse_time,
    "datetime": parse_datetime,
    "duration": parse_duration,
    "phone": parse_phone,
    "email": parse_email,
    "yesno": parse_yesno,
}


def _cell_parser(kind: str, lookup: Mapping[str, str] | None) -> Callable[..., Parsed]:
    """The parser for a column's type, called as ``parse(raw, date1904)``."""
    if kind == "choice":
        table = lookup or {}
        return lambda raw, date1904=False: parse_choice(raw, table)
    return PARSERS[kind]


def _guarded(parse: Callable[..., Parsed]) -> Callable[..., Parsed]:
    """``parse`` for one raw value, after what every cell type shares: a formula error is a problem
    (the same from Google's text and Excel's error cells), and unprintable characters are removed."""

    def guarded(raw: Any, date1904: bool = False) -> Parsed:
        if raw.__class__ is str:
            if raw[:1] == "#":
                error = formula_error(raw)
                if error:
                    return (
                        None,
                        f"the cell shows a formula error ({error}): correct the formula or type the value",
                    )
            if _UNPRINTABLE.search(raw):
                cleaned = printable(raw)
                if not cleaned.strip() and raw.strip():  # never silently blank (whitespace is blank)
                    return None, "the cell holds only control characters, nothing that can be read"
                raw = cleaned
        return parse(raw, date1904)

    return guarded


def parse_one(
    kind: str, raw: Any, *, lookup: Mapping[str, str] | None = None, date1904: bool = False
) -> Parsed:
    """One cell read exactly as :func:`parse_cells` reads it in a column."""
    return _guarded(_cell_parser(kind, lookup))(raw, date1904)


@dataclass(frozen=True)
class ParsedColumn:
    """A whole column parsed: each distinct raw value once, and which of them each cell holds."""

    distinct: list[Any]  # the parsed value of each distinct raw value
    codes: Any  # NumPy integer array: for each cell, its index into ``distinct``
    problems: list[tuple[int, Any, str]]  # (position, raw value, reason) of each bad cell, in order

    @property
    def values(self) -> list[Any]:
        return [self.distinct[code] for code in self.codes.tolist()]


def parse_cells(
    kind: str, raws: Sequence[Any], *, lookup: Mapping[str, str] | None = None, date1904: bool = False
) -> ParsedColumn:
    """Parse a whole column, each distinct raw value once: a log repeats its dates, times and answers.

    The cells are grouped by pandas' hash table (in C); ``True``, ``1`` and ``1.0`` are equal there
    as in Python, so a column mixing yes/no cells with numbers is grouped by type as well.
    """
    import numpy as np
    import pandas as pd

    parse = _guarded(_cell_parser(kind, lookup))
    cells = _object_array(raws)
    try:
        codes, uniques = pd.factorize(cells)  # cells pandas calls missing (None, NaN) get -1
        distinct = uniques.tolist()
    except TypeError:  # an unhashable cell
        codes, distinct = _group_by_type_and_value(cells)
    else:
        if _mixes_bools_and_numbers(cells, codes, distinct):
            codes, distinct = _group_by_type_and_value(cells)
    results = _results(kind, distinct, parse, date1904)
    missing = codes < 0
    if missing.any():  # each kind of missing cell (nearly always just None) parsed once
        gaps = cells[missing].tolist()
        kinds = list(dict.fromkeys(map(type, gaps)))
        slots = {kind: len(results) + i for i, kind in enumerate(kinds)}
        results.extend(parse(next(raw for raw in gaps if type(raw) is kind), date1904) for kind in kinds)
        codes[missing] = [slots[type(raw)] for raw in gaps] if len(kinds) > 1 else slots[kinds[0]]
    codes = codes.astype(np.intp, copy=False)
    bad = np.fromiter(
        map(operator.is_not, map(operator.itemgetter(1), results), itertools.repeat(None)),
        dtype=bool,
        count=len(results),
    )
    where = np.flatnonzero(bad[codes])
    problems = [
        (i, printable(raw) if raw.__class__ is str else raw, results[code][1])
        for i, raw, code in zip(where.tolist(), cells[where].tolist(), codes[where].tolist(), strict=True)
    ]
    return ParsedColumn(distinct=[value for value, _ in results], codes=codes, problems=problems)


_PLAIN_MOBILE = re.compile(r"(?:0|\+44 ?)(7[1-57-9]\d\d) ?(\d{6})")
_NOT_PLAIN_TEXT = re.compile(f"{_UNTIDY.pattern}|{_UNPRINTABLE.pattern}")


def _plain_text(raw: str) -> bool:
    """A sure "no" from ``_NOT_PLAIN_TEXT`` in a few string methods rather than a regular expression
    (a Visit ID of its own on each row): a printable string holds no whitespace but the space and
    nothing unprintable (tests/test_cells_package.py checks this of every character), so only a space
    at either end or two together could be untidy. False is no answer: the expression then decides."""
    return raw.isprintable() and raw[0] != " " and raw[-1] != " " and "  " not in raw


def _results(kind: str, distinct: list[Any], parse: Callable[..., Parsed], date1904: bool) -> list[Parsed]:
    """Each distinct cell parsed. The commonest cells of three kinds are written straight out, as
    ``parse`` (the guarded parser) gives them, without its two calls apiece: a log has tens of
    thousands of them, a Visit ID or a form's sent time of its own on each row.

    - text: a tidy string of more than 6 characters, not starting with ``#`` or ``'``, kept as it is;
    - datetime: a real date-time cell (no time zone, whole seconds, a year from 1900 to 2100), or text
      typed ``03/04/2026 14:30`` that is a real moment (a cell formatted as text, a pasted log);
    - phone: a plain mobile (``07700 900123``, ``07700900123``, ``+44 7700 900123``), as 07700 900123.
    """
    if kind == "text":
        untidy = _NOT_PLAIN_TEXT.search
        return [
            (raw, None)
            if raw.__class__ is str
            and len(raw) > 6
            and raw[0] not in "#'"
            and (_plain_text(raw) or not untidy(raw))
            else parse(raw, date1904)
            for raw in distinct
        ]
    if kind == "datetime":
        moment = dt.datetime
        return [
            (raw, None)
            if raw.__class__ is moment
            and raw.tzinfo is None
            and not raw.microsecond
            and 1900 <= raw.year <= 2100
            else (written, None)
            if raw.__class__ is str and (written := written_moment(raw)) is not None
            else parse(raw, date1904)
            for raw in distinct
        ]
    if kind == "phone":
        plain = _PLAIN_MOBILE.fullmatch
        results: list[Parsed] = []
        for raw in distinct:
            found = plain(raw) if raw.__class__ is str else None
            results.append((f"0{found[1]} {found[2]}", None) if found else parse(raw, date1904))
        return results
    return [parse(raw, date1904) for raw in distinct]


def _object_array(raws: Sequence[Any]) -> Any:
    import numpy as np

    if isinstance(raws, np.ndarray) and raws.dtype == object and raws.ndim == 1:
        return raws
    cells = np.empty(len(raws), dtype=object)
    try:
        cells[:] = list(raws)
    except ValueError:  # a cell NumPy would read as a sequence: place cells one by one
        for position, raw in enumerate(raws):
            cells[position] = raw
    return cells


def _mixes_bools_and_numbers(cells: Any, codes: Any, distinct: list[Any]) -> bool:
    """True when pandas grouped a yes/no cell (``True``/``False``) with a number equal to it (1, 0.0):
    the two read differently, so the column is grouped again by type as well.

    Only the groups of a value equal to 0 or 1 can mix them (``distinct`` holds each value once), so
    only their cells are looked at, not the whole column."""
    if not {bool, int, float} & set(map(type, distinct)):
        return False
    for number in (0, 1):
        try:
            code = distinct.index(number)  # the one distinct value equal to it (False, 0, 0.0...)
        except ValueError:
            continue
        kinds = set(map(type, cells[codes == code].tolist()))
        if bool in kinds and (int in kinds or float in kinds):
            return True
    return False


def _group_by_type_and_value(cells: Any) -> tuple[Any, list[Any]]:
    import numpy as np

    index: dict[Any, int] = {}
    distinct: list[Any] = []
    codes = np.empty(len(cells), dtype=np.intp)
    for position, raw in enumerate(cells.tolist()):
        try:
            key: Any = (raw.__class__, raw)
            code = index.get(key)
        except TypeError:  # unhashable: a group of its own
            key, code = None, None
        if code is None:
            code = len(distinct)
            distinct.append(raw)
            if key is not None:
                index[key] = code
        codes[position] = code
    return codes, distinct


def parse_column(
    kind: str,
    raws: Sequence[Any],
    *,
    lookup: Mapping[str, str] | None = None,
    date1904: bool = False,
) -> tuple[list[Any], list[tuple[int, Any, str]]]:
    """Parse a whole column; return the values and ``(position, raw, problem)`` for each bad cell."""
    column = parse_cells(kind, raws, lookup=lookup, date1904=date1904)
    return column.values, column.problems
