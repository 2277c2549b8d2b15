"""Understand one spreadsheet cell the way a person in an English school would.

Every parser takes the raw value as it came from the sheet (calamine: str, float, int, bool,
date, datetime, time, timedelta; Google Sheets: str, float, bool) and returns ``(value, problem)``:
``value`` is the typed value or ``None``; ``problem`` is ``None`` or a short phrase saying why the
cell could not be understood. Nothing here raises on bad input: a bad cell is a finding.

UK conventions throughout: dates are day first and strict (``01/13/2026`` has no month 13 and
is unreadable, never swapped to 13 January), times may be 12- or 24-hour, phones are UK numbers.

The package: basics.py (what every cell shares: blank cells, printable text, formula errors, serial
numbers), the cells by kind: moments.py (dates, times, date-times, durations), phones.py (UK phone
numbers) and words.py (email, yes/no, choice, text), and column.py (the guarded parser of each type,
one cell or a whole column at a time). Every name callers use is importable from here.
"""

from .basics import (
    EMPTY_WORDS,
    EXCEL_EPOCH_1900,
    EXCEL_EPOCH_1904,
    FORMULA_ERRORS,
    SERIAL_MAX,
    SERIAL_MIN,
    Parsed,
    fold_word,
    formula_error,
    from_serial,
    is_blank,
    printable,
)
from .column import PARSERS, ParsedColumn, _results, parse_cells, parse_column, parse_one
from .moments import (
    CELL_YEARS,
    MONTHS,
    SHORTEST_VISIT,
    WEEKDAYS,
    parse_date,
    parse_datetime,
    parse_duration,
    parse_time,
)
from .phones import Phone, _checked_number, _numbers_in, parse_phone
from .words import NO_WORDS, YES_WORDS, choice_lookup, parse_choice, parse_email, parse_text, parse_yesno

__all__ = [
    "CELL_YEARS",
    "EMPTY_WORDS",
    "EXCEL_EPOCH_1900",
    "EXCEL_EPOCH_1904",
    "FORMULA_ERRORS",
    "MONTHS",
    "NO_WORDS",
    "PARSERS",
    "SERIAL_MAX",
    "SERIAL_MIN",
    "SHORTEST_VISIT",
    "WEEKDAYS",
    "YES_WORDS",
    "Parsed",
    "ParsedColumn",
    "Phone",
    "_checked_number",
    "_numbers_in",
    "_results",
    "choice_lookup",
    "fold_word",
    "formula_error",
    "from_serial",
    "is_blank",
    "parse_cells",
    "parse_choice",
    "parse_column",
    "parse_date",
    "parse_datetime",
    "parse_duration",
    "parse_email",
    "parse_one",
    "parse_phone",
    "parse_text",
    "parse_time",
    "parse_yesno",
    "printable",
]
