"""Cell text made safe to put anywhere: one line for names and subjects, or a body of lines.

A cell can hold what no message or page should carry: line breaks, tabs, control characters
(C0, DEL, C1), bidirectional overrides that make text display in another order, and lone UTF-16
surrogates (left by some exports), which no encoder accepts, so a message holding one could never
be built. ``one_line`` and ``body`` replace them; they never raise, whatever they are given. Pure.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 (tab, CR and LF included), DEL, C1, and the bidirectional embeddings, overrides and isolates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAK = re.compile(r"\r\n?|[\u2028\u2029\x85]")


def one_line(value: Any) -> str:
    """One line of text: line breaks, tabs and control characters become single spaces, spaces are
    collapsed, and a lone surrogate becomes U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    return " ".join(_CONTROL.sub(" ", _SURROGATE.sub(REPLACEMENT, text)).split())


def body(value: Any) -> str:
    """Text of many lines: every line break becomes ``\\n``, tabs stay, other control characters
    become spaces, and a lone surrogate becomes U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    text = _LINE_BREAK.sub("\n", _SURROGATE.sub(REPLACEMENT, text))
    return _BODY_CONTROL.sub(" ", text)


def shown(value: Any, limit: int = 60) -> str:
    """A cell's text as a finding or a message quotes it: one line, at most ``limit`` characters."""
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
