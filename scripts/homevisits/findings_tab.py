"""The "Policy check" tab: the findings as rows a school reads in its own workbook.

``validate --write-findings`` builds the table here, where findings are turned into text, and hands it
to the source, which only writes the cells it is given (sources/excel.py, gsheet.py, drive.py).
Each row takes a finding's message, fix and column as the finding has them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from typing import Any

from .sheet import DATETIME_TEXT

FINDINGS_TAB = "Policy check"
FINDINGS_HEADER = [
    "Severity",
    "Row",
    "Visit ID",
    "Column",
    "Rule",
    "What is wrong",
    "What to do",
    "Policy",
    "Checked at",
]
FINDINGS_WIDTHS = [12, 6, 10, 18, 7, 60, 60, 40, 17]  # Excel column widths, one per header


def findings_table(findings: Iterable[Any], checked_at: str) -> tuple[list[str], list[list[Any]]]:
    """The findings as a table for the ``Policy check`` tab: worst first, then by row."""
    from .findings import sort_key

    with contextlib.suppress(ValueError):
        checked_at = dt.datetime.fromisoformat(checked_at).strftime(DATETIME_TEXT)
    rows = [
        [
            f.severity.upper(),
            f.row,
            f.visit_id or "",
            f.column or "",
            f.rule,
            f.message,
            f.fix,
            f.clause,
            checked_at,
        ]
        for f in sorted(findings, key=sort_key)
    ]
    return list(FINDINGS_HEADER), rows
