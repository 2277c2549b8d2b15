"""Which Visit IDs may travel in an email header or a file name: one strict pattern, one test.

A Visit ID is cell text, typed by anyone who can edit the sheet. It goes into a subject, the
``X-Homevisits-Visit`` header, a Message-ID or a file name only when ``is_header_safe_id`` says so:
letters and digits (ASCII), ``-``, ``_``, ``/`` and ``.``, at most 40 characters. Nothing else a cell
can hold (an encoded word such as ``=?utf-8?q?...?=``, a line break, a space, a name) gets through.
Any other ID is named by its sheet row instead (``row 14``, ``row-14``), and rule HV031 asks the
school to fix it. Pure: no I/O, no imports beyond ``re`` and ``hashlib``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MAX_LENGTH = 40
ALLOWED = "letters, digits and - _ / ."
# At least one letter or digit; nothing outside the class (fullmatch: no trailing newline slips past).
HEADER_SAFE_ID = re.compile(rf"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9_./-]{{1,{MAX_LENGTH}}}")


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
