"""Cells of words: an email address, YES or NO however it is written, one of a column's choices,
and free text."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..formula_guard import unneutralise
from .basics import EMPTY_WORDS, Parsed, _fold, _whole, is_blank

YES_WORDS = frozenset(
    {
        "y",
        "yes",
        "yeah",
        "yep",
        "true",
        "t",
        "1",
        "✓",
        "✔",
        "☑",
        "✅",
        "x",
        "ticked",
        "tick",
        "agreed",
        "done",
        "ok",
    }
)
NO_WORDS = frozenset({"n", "no", "nope", "false", "f", "0", "✗", "✘", "☐", "❌", "not agreed"})


# ---------------------------------------------------------------- email, yes/no, choice, text

_EMAIL = re.compile(r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def parse_email(raw: Any, date1904: bool = False) -> Parsed:
    """An email address, lower-cased; ``Name <a@b.org>`` and ``mailto:`` are accepted."""
    if is_blank(raw):
        return None, None
    if not isinstance(raw, str):
        return None, "not an email address"
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    bracketed = re.search(r"<([^<>]+)>", text)
    if bracketed:
        text = bracketed[1].strip()
    if _EMAIL.fullmatch(text):
        return text.lower(), None
    return None, "not an email address"


def parse_yesno(raw: Any, date1904: bool = False) -> Parsed:
    """YES or NO however it is written: ``y``, ``Yes ``, ``TRUE``, ``✓``, ``x``, a tick box, 1/0."""
    if is_blank(raw):
        return None, None
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int | float):
        if raw in (0, 1):
            return bool(raw), None
        return None, "not YES or NO"
    if isinstance(raw, str):
        folded = _fold(raw)
        if folded in YES_WORDS:
            return True, None
        if folded in NO_WORDS:
            return False, None
    return None, "not YES or NO"


def choice_lookup(choices: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Map every folded spelling (and the canonical value itself) to the canonical value."""
    lookup: dict[str, str] = {}
    for canonical, spellings in choices.items():
        lookup[_fold(canonical)] = canonical
        for spelling in spellings or ():
            lookup[_fold(str(spelling))] = canonical
    return lookup


def parse_choice(raw: Any, lookup: Mapping[str, str], date1904: bool = False) -> Parsed:
    """One of a column's allowed values, matched case- and space-insensitively through its synonyms."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None, None
    if isinstance(raw, bool):
        text = "yes" if raw else "no"
    elif isinstance(raw, float) and _whole(raw):
        text = str(int(raw))
    else:
        text = str(raw)
    folded = _fold(text)
    if folded in lookup:
        return lookup[folded], None
    if folded in EMPTY_WORDS:
        return None, None
    allowed = ", ".join(dict.fromkeys(lookup.values()))
    return None, f"not one of: {allowed}"


_UNTIDY = re.compile(r"^\s|\s$|\s\s|[^\S ]")  # space at either end, doubled, or a tab / newline / NBSP


def parse_text(raw: Any, date1904: bool = False) -> Parsed:
    """Free text, trimmed; a whole number keeps no ``.0`` (a Learner ID typed as a number).

    A placeholder (``-``, ``TBC``, ``N/A``) is an empty cell: it does not count as filled in.
    """
    if raw.__class__ is str and len(raw) > 6 and not _UNTIDY.search(raw) and raw[:1] != "'":
        return raw, None  # already tidy and too long for a placeholder: the common case, kept as it is
    if is_blank(raw):
        return None, None
    if isinstance(raw, float) and _whole(raw):
        return str(int(raw)), None
    if isinstance(raw, dt.datetime):
        return raw.strftime("%d/%m/%Y %H:%M"), None
    if isinstance(raw, dt.date):
        return raw.strftime("%d/%m/%Y"), None
    if raw.__class__ is not str:
        raw = str(raw)
    if raw[:1] == "'":  # text the tool wrote with its formula guard: read it as it was meant
        raw = unneutralise(raw)
    text = " ".join(raw.split())
    if not text:
        return None, None
    return (raw if text == raw else text), None  # the sheet's own string when already tidy
