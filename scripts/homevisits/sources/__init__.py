"""Where the log lives: an Excel workbook or a Google Sheet, behind one small interface.

A source reads the whole worksheet as raw cells (:class:`RawSheet`) and writes back only the
tool's own cells, locating each row by its Visit ID at write time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


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


class Source(Protocol):
    """What every source offers: one read of the whole worksheet."""

    def read(self) -> RawSheet: ...


@dataclass
class ExcelSource:
    path: Path
    worksheet: str | None = None

    def read(self) -> RawSheet:
        from . import excel

        return excel.read(self.path, self.worksheet)


def open_source(source_cfg: dict[str, Any], base_dir: Path, worksheet: str | None = None) -> Source:
    """The source the config's [source] table names: ``path`` (Excel) or ``spreadsheet`` (Google Sheet)."""
    from ..errors import HomevisitsError

    worksheet = worksheet or source_cfg.get("worksheet")
    if source_cfg.get("path"):
        path = Path(source_cfg["path"]).expanduser()
        return ExcelSource(path if path.is_absolute() else base_dir / path, worksheet)
    raise HomevisitsError(
        "No sheet to check: set [source] path (an Excel workbook) or spreadsheet (a Google Sheet) in the config, "
        "or pass --source."
    )
