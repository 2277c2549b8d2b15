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
    notes: list[str] = field(default_factory=list)  # what the reader skipped and why, said as findings
    locale: str | None = None  # a Google Sheet's locale (en_GB...), None when the source has none


class Source(Protocol):
    """What every source offers (see sources/excel.py and sources/gsheet.py).

    ``read()`` takes one snapshot of the whole worksheet; ``write(updates)`` writes the tool's own
    cells (a list of ``writeback.CellUpdate``), locating each row again by its Visit ID, and returns a
    ``writeback.WriteResult`` naming what it wrote and what it skipped and why;
    ``write_findings(header, rows)`` replaces the "Policy check" tab; ``init_sheet(schema)`` sets the
    log up from the column catalogue and returns a ``sheet_setup.SetupPlan`` of what it added.
    """

    def read(self) -> RawSheet: ...

    def write(self, updates: Any) -> Any: ...

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None: ...

    def init_sheet(self, schema: Any = None, fields: Any = None) -> Any: ...


def open_source(
    source_cfg: dict[str, Any],
    base_dir: Path,
    worksheet: str | None = None,
    *,
    columns: dict[str, str] | None = None,
    timezone: str = "Europe/London",
) -> Source:
    """The source the config's [source] table names: ``path`` (Excel) or ``spreadsheet`` (Google Sheet).

    ``columns`` is the config's [columns] table (header -> field), used to find the tool's own
    columns when writing; ``timezone`` is the school's, for the times the tool writes.
    """
    from ..errors import HomevisitsError

    worksheet = worksheet or source_cfg.get("worksheet")
    if source_cfg.get("path"):
        from .excel import ExcelSource

        path = Path(source_cfg["path"]).expanduser()
        return ExcelSource(
            path if path.is_absolute() else base_dir / path, worksheet, columns=columns, timezone=timezone
        )
    if source_cfg.get("spreadsheet"):
        from .gsheet import GoogleSheet

        credentials = source_cfg.get("credentials")
        if credentials:
            key = Path(str(credentials)).expanduser()
            credentials = key if key.is_absolute() else base_dir / key
        return GoogleSheet(
            str(source_cfg["spreadsheet"]),
            worksheet,
            credentials,
            name=source_cfg.get("name"),
            columns=columns,
            timezone=timezone,
        )
    raise HomevisitsError(
        "No sheet to check: set [source] path (an Excel workbook) or spreadsheet (a Google Sheet) in the config, "
        "or pass --source."
    )
