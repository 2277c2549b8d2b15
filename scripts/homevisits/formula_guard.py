"""The formula guard: text the tool writes into a sheet is never run as a formula, and reads back as written.

Pure functions, shared by the writers (sources/) and by the cell parser, which undoes the guard.
"""

from __future__ import annotations

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
