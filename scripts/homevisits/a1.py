"""Spreadsheet column letters (A1 notation), one definition for the schema, the sources and the setup."""

from __future__ import annotations


def column_letters(index: int) -> str:
    """0-based column index -> the spreadsheet's letters: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_index(letters: bytes | str) -> int:
    """The spreadsheet's letters -> 0-based column index: A -> 0."""
    text = letters.decode() if isinstance(letters, bytes) else letters
    index = 0
    for char in text.upper():
        index = index * 26 + ord(char) - 64
    return index - 1
