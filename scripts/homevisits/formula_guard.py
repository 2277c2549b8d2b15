"""The formula guard: text the tool writes into a sheet is never run as a formula, and reads back as written.

Pure functions, shared by the writers (sources/) and by the cell parser, which undoes the guard.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

MARKER = "'"  # kept literally by RAW writes and by openpyxl; read back by unneutralise()
_FORMULA_STARTS = frozenset("=+-@")
_DANGEROUS_CONTROLS = frozenset("\t\r\n\0")


def _leading_skip(char: str) -> bool:
    """Characters a spreadsheet ignores before a formula sign: whitespace, controls, invisible format marks."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet could take ``text`` for a formula or a command.

    After NFKC normalisation (so a full-width ``＝`` counts as ``=``) and skipping leading Unicode
    whitespace and invisible characters, the text starts with ``= + - @``; or it starts with a tab,
    carriage return, line feed or NUL at all.
    """
    normal = unicodedata.normalize("NFKC", text)
    for char in normal:
        if char in _DANGEROUS_CONTROLS:
            return True
        if not _leading_skip(char):
            return char in _FORMULA_STARTS
    return False


def neutralise(text: str) -> str:
    """Text that is safe in any spreadsheet cell: formula-like text gets a leading apostrophe."""
    return MARKER + text if is_formula_like(text) else text


def unneutralise(value: Any) -> Any:
    """Undo :func:`neutralise` on a value read back; anything else is returned as it is."""
    if isinstance(value, str) and value[:1] == MARKER and is_formula_like(value[1:]):
        return value[1:]
    return value


# XML 1.0 cannot hold these (Excel escapes them as _x0001_, openpyxl refuses them): C0 controls
# other than tab, line feed and carriage return, lone surrogates, and the two non-characters.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` without the characters no workbook can hold (controls, lone surrogates), so no write stops on them."""
    return _UNWRITABLE.sub("", text)


def text_cell(text: str) -> tuple[str, bool]:
    """Text for a cell typed as text (an xlsx string cell): the cleaned text, and whether it looks like a formula.

    A text-typed cell is never run, so no apostrophe is added (none shows in the cell); the flag lets
    a writer that owns the styles also set Excel's quote prefix, so editing the cell keeps it text.
    """
    cleaned = clean(text)
    return cleaned, is_formula_like(cleaned)
