"""Excel workbooks (.xlsx / .xlsm): read with python-calamine, the fast path for large logs."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ..errors import HomevisitsError
from . import RawSheet

EXCEL_SUFFIXES = (".xlsx", ".xlsm")


def check_path(path: Path) -> None:
    if not path.exists():
        raise HomevisitsError(f"The workbook {path} does not exist: check [source] path in the config or --source.")
    if path.is_dir():
        raise HomevisitsError(f"{path} is a folder, not a workbook: give the path of the .xlsx file.")
    if path.suffix.lower() not in EXCEL_SUFFIXES:
        raise HomevisitsError(
            f"{path.name} is not an Excel workbook (.xlsx or .xlsm): save the log in that format and try again."
        )


def uses_1904_dates(path: Path) -> bool:
    """True when the workbook counts dates from 1904 (old Mac Excel), so serial numbers shift."""
    try:
        with zipfile.ZipFile(path) as archive:
            workbook = archive.read("xl/workbook.xml")[:4000].decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return re.search(r"date1904\s*=\s*[\"'](1|true)[\"']", workbook) is not None


def read(path: Path | str, worksheet: str | None = None) -> RawSheet:
    """Every cell of one worksheet (by name, default the first) as calamine gives it."""
    from python_calamine import CalamineError, CalamineWorkbook

    path = Path(path)
    check_path(path)
    try:
        book = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise HomevisitsError(f"Could not open {path.name} as an Excel workbook ({_short(exc)}).") from exc
    try:
        names = list(book.sheet_names)
        if worksheet is None:
            sheet = book.get_sheet_by_index(0)
        elif worksheet in names:
            sheet = book.get_sheet_by_name(worksheet)
        else:
            folded = {n.strip().lower(): n for n in names}
            if worksheet.strip().lower() not in folded:
                raise HomevisitsError(
                    f"{path.name} has no worksheet called '{worksheet}'; it has: {', '.join(names)}."
                )
            sheet = book.get_sheet_by_name(folded[worksheet.strip().lower()])
        rows = sheet.to_python(skip_empty_area=False)
        title = sheet.name
    except CalamineError as exc:
        raise HomevisitsError(f"Could not read {path.name} ({_short(exc)}).") from exc
    finally:
        book.close()
    return RawSheet(
        name=path.name, worksheet=title, rows=rows, first_row=1, date1904=uses_1904_dates(path), worksheets=names
    )


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
