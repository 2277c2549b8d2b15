"""Which Visit IDs may travel in an email header or a file name: one strict pattern, one test.

A Visit ID is cell text, typed by anyone who can edit the sheet. It goes into a subject, the
``X-Homevisits-Visit`` header, a Message-ID or a file name only when ``is_header_safe_id`` says so:
letters and digits (ASCII), ``-``, ``_``, ``/`` and ``.``, at most 40 characters. Nothing else a cell
can hold (an encoded word such as ``=?utf-8?q?...?=``, a line break, a space, a name) gets through.
Any other ID is named by its sheet row instead (``row 14``, ``row-14``), and rule HV031 asks the
school to fix it.

The same IDs are compared and numbered here: :func:`id_key` (how two cells name the same visit) and
:func:`next_ids` / :func:`assign_ids` (``HV-0043`` for a row read without an ID). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .formula_guard import unneutralise
from .sheet import CellUpdate

MAX_LENGTH = 40
ALLOWED = "letters, digits and - _ / ."
# At least one letter or digit; nothing outside the class (fullmatch: no trailing newline slips past).
HEADER_SAFE_ID = re.compile(rf"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9_./-]{{1,{MAX_LENGTH}}}")
_ID_NUMBER = re.compile(r"HV-(\d+)", re.IGNORECASE)


def is_header_safe_id(value: Any) -> bool:
    """True when ``value`` is a string made only of letters, digits and ``-_/.`` (at most 40)."""
    return isinstance(value, str) and HEADER_SAFE_ID.fullmatch(value) is not None


def visit_ref(visit_id: Any, row: Any = None, sep: str = "-") -> str:
    """The visit as a header or a file name may name it: the ID when it is safe, else ``row-14``
    (``sep=" "``: ``row 14``, for a subject). With neither a safe ID nor a row, a short digest of the
    ID (``id-3fa9c2d1``): stable for the same text, and it shows nothing of it."""
    if is_header_safe_id(visit_id):
        return str(visit_id)
    if isinstance(row, int) and not isinstance(row, bool) and row > 0:
        return f"row{sep}{row}"
    if visit_id is None or visit_id == "":
        return "unnamed"
    digest = hashlib.sha256(str(visit_id).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"id-{digest}"


def id_key(raw: Any) -> str | None:
    """A Visit ID as compared when locating rows: trimmed, case-folded; ``42.0`` is ``42``."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        if raw != raw:  # NaN
            return None
        if raw.is_integer():
            raw = int(raw)
    text = " ".join(str(unneutralise(raw)).split()).upper()
    return text or None


def next_ids(existing: Iterable[Any], count: int) -> list[str]:
    """``count`` new IDs after the highest ``HV-`` number in use: ``HV-0043``, ``HV-0044``..."""
    top = 0
    for raw in existing:
        match = _ID_NUMBER.fullmatch(id_key(raw) or "")
        if match:
            top = max(top, int(match[1]))
    return [f"HV-{number:04d}" for number in range(top + 1, top + 1 + count)]


def assign_ids(rows: Sequence[int], existing: Iterable[Any]) -> list[CellUpdate]:
    """Updates giving a new Visit ID to each sheet row in ``rows`` (rows read without one)."""
    return [
        CellUpdate(visit_id=new, field="visit_id", value=new, row=row)
        for row, new in zip(rows, next_ids(existing, len(rows)), strict=True)
    ]
