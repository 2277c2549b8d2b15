"""Where the log lives: an Excel workbook or a Google Sheet, behind one small interface.

A source reads the whole worksheet as raw cells (:class:`RawSheet`) and writes back only the
tool's own cells, locating each row by its Visit ID at write time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawSheet:
    """A snapshot of one worksheet: every cell as the source gave it, rows in sheet order.

    ``rows[0]`` is sheet row ``first_row`` (1-based, as the spreadsheet numbers it).
    ``date1904`` is true for a workbook using Excel's 1904 date system.
    """

    name: str  # what to call the source in messages: the file name or the spreadsheet title
    worksheet: str
    rows: list[list[Any]]
    first_row: int = 1
    date1904: bool = False
    worksheets: list[str] = field(default_factory=list)
