"""What every kind of cell shares: blank cells and placeholders, the characters a cell may not carry,
formula errors, and Excel's serial numbers.

The words a cell is compared with are folded the same way everywhere (:func:`fold_word`), and a serial
number is read against the workbook's own epoch (1900 or 1904).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

Parsed = tuple[Any, str | None]

EMPTY_WORDS = frozenset({"", "-", "--", "—", "–", "n/a", "na", "none", "nil", "tbc", "?"})

EXCEL_EPOCH_1900 = dt.datetime(1899, 12, 30)
EXCEL_EPOCH_1904 = dt.datetime(1904, 1, 1)
# Serial numbers outside 1950..2100 are not plausible visit dates.
SERIAL_MIN, SERIAL_MAX = 18264, 73051


def is_blank(raw: Any) -> bool:
    """True for an empty cell, including a cell of spaces or a placeholder like ``-`` or ``N/A``."""
    if raw is None:
        return True
    if isinstance(raw, str):
        if len(raw) > 6 and len(raw.strip()) > 6:  # placeholders are short: most text stops here
            return False
        return _fold(raw) in EMPTY_WORDS
    return isinstance(raw, float) and math.isnan(raw)


def _fold(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split()).lower().strip(" .")


fold_word = _fold  # a short cell as compared with words: spaces collapsed, lower case, no full stop


def _whole(number: float) -> bool:
    return math.isfinite(number) and float(number).is_integer()


# ---------------------------------------------------------------- what a cell may not carry

# Terminal escape sequences (CSI such as cursor moves, erase-line and conceal; OSC; two-byte ESC),
# then any other control character, DEL, C1 control or lone UTF-16 surrogate: none can be printed,
# encoded or mailed, so a cell loses them before its value reaches a message, report or workbook.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences, control characters or lone surrogates."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub("", _ESCAPES.sub("", text))


# What a spreadsheet shows when a formula fails: Google sends the text, Excel keeps an error cell.
FORMULA_ERRORS = frozenset(
    {"#N/A", "#REF!", "#NAME?", "#DIV/0!", "#VALUE!", "#NUM!", "#NULL!", "#ERROR!", "#SPILL!", "#CALC!"}
)


def formula_error(raw: Any) -> str | None:
    """The error a cell shows (``#N/A``, ``#REF!``...), or None for any other value."""
    if raw.__class__ is str and raw[:1] == "#":
        text = raw.strip().upper()
        if text in FORMULA_ERRORS or text == "#N/A N/A":
            return text
    return None


# ---------------------------------------------------------------- serial numbers


def from_serial(serial: float, date1904: bool = False) -> dt.datetime | None:
    """An Excel / Sheets serial number (days since the epoch, fraction = time of day) as a datetime."""
    if not math.isfinite(serial):
        return None
    epoch = EXCEL_EPOCH_1904 if date1904 else EXCEL_EPOCH_1900
    low, high = (SERIAL_MIN - 1462, SERIAL_MAX - 1462) if date1904 else (SERIAL_MIN, SERIAL_MAX)
    if not low <= serial <= high:
        return None
    moment = epoch + dt.timedelta(days=serial)
    return _round_to_second(moment)


def _round_to_second(moment: dt.datetime) -> dt.datetime:
    if moment.microsecond >= 500_000:
        moment += dt.timedelta(seconds=1)
    return moment.replace(microsecond=0)


def _time_from_fraction(fraction: float) -> dt.time:
    seconds = round(fraction * 86400) % 86400
    return dt.time(seconds // 3600, seconds % 3600 // 60, seconds % 60)
