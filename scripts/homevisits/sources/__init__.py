"""Where the log lives: an Excel workbook, a Google Sheet or a workbook on Google Drive, behind one interface.

A source reads the whole worksheet as raw cells (:class:`RawSheet`) and writes back only the
tool's own cells, in the columns the read found (the :class:`SheetLayout` the pipeline hands it),
locating each row by its Visit ID at write time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..config import DEFAULT_TIMEZONE
from ..sheet import RawSheet, SheetLayout

__all__ = ["RawSheet", "SheetLayout", "Source", "open_source"]


class Source(Protocol):
    """What every source offers (see sources/excel.py, sources/gsheet.py and sources/drive.py).

    ``read()`` takes one snapshot of the whole worksheet (a ``sheet.RawSheet``); ``write(updates, layout)``
    writes the tool's own cells (a list of ``sheet.CellUpdate``) in the columns ``layout`` names (the
    ``sheet.SheetLayout`` the read found; found again from the snapshot when not given), locating each
    row again by its Visit ID, and returns a ``writeback.WriteResult`` naming what it wrote and what it
    skipped and why (a column moved since the read: ``sheet.LayoutChanged``, nothing written);
    ``write_findings(header, rows)`` replaces the "Policy check" tab; ``init_sheet(schema)`` sets the
    log up from the column catalogue and returns a ``sheet_setup.SetupPlan`` of what it added.
    """

    def read(self) -> RawSheet: ...

    def write(self, updates: Any, layout: SheetLayout | None = None) -> Any: ...

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None: ...

    def init_sheet(self, schema: Any = None, fields: Any = None) -> Any: ...


def open_source(
    source_cfg: dict[str, Any],
    base_dir: Path,
    worksheet: str | None = None,
    *,
    columns: dict[str, str] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> Source:
    """The source the config's [source] table names: ``path`` (Excel), ``spreadsheet`` (Google Sheet) or
    ``drive_file`` (an Excel workbook on Google Drive; a Sheets URL in Office mode counts as one).

    ``columns`` is the config's [columns] table (header -> field), used to find the tool's own
    columns when writing; ``timezone`` is the school's, for the times the tool writes.
    """
    from ..errors import HomevisitsError

    worksheet = worksheet or source_cfg.get("worksheet")
    named = [key for key in ("path", "spreadsheet", "drive_file") if source_cfg.get(key)]
    if len(named) > 1:
        raise HomevisitsError(
            f"[source] sets both {named[0]} and {named[1]}: keep only the one where the log is."
        )
    credentials = source_cfg.get("credentials")
    if credentials:
        key = Path(str(credentials)).expanduser()
        credentials = key if key.is_absolute() else base_dir / key
    if source_cfg.get("path"):
        from .excel import ExcelSource

        path = Path(source_cfg["path"]).expanduser()
        return ExcelSource(
            path if path.is_absolute() else base_dir / path, worksheet, columns=columns, timezone=timezone
        )
    drive_file = source_cfg.get("drive_file")
    if source_cfg.get("spreadsheet"):
        from .drive import is_office_mode

        if is_office_mode(str(source_cfg["spreadsheet"])):  # an .xlsx opened in Sheets: the Drive file
            drive_file = source_cfg["spreadsheet"]
        else:
            from .drive import DriveSource, SheetOrDriveFile
            from .gsheet import GoogleSheet

            spreadsheet = str(source_cfg["spreadsheet"])
            sheet = GoogleSheet(
                spreadsheet,
                worksheet,
                credentials,
                name=source_cfg.get("name"),
                columns=columns,
                timezone=timezone,
            )
            return SheetOrDriveFile(  # an .xlsx named like a Sheet is found out by the Sheets API's answer
                sheet,
                lambda: DriveSource(spreadsheet, worksheet, credentials, columns=columns, timezone=timezone),
            )
    if drive_file:
        from .drive import DriveSource

        return DriveSource(str(drive_file), worksheet, credentials, columns=columns, timezone=timezone)
    raise HomevisitsError(
        "No sheet to check: set [source] path (an Excel workbook), spreadsheet (a Google Sheet) or drive_file "
        "(an Excel workbook on Google Drive) in the config, or pass --source."
    )
