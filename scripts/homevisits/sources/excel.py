"""Excel workbooks (.xlsx / .xlsm): the source that reads one (excel_read.py) and writes the tool's
cells back surgically, in place and atomically (excel_file.py keeps the file safe while it does).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_TIMEZONE
from ..errors import HomevisitsError
from ..sheet import RawSheet
from .excel_file import (
    FileStamp,
    check_writable,
    feature_counts,  # noqa: F401 - tests import it from here
    file_stamp,
    lock_file,  # noqa: F401 - setup_check imports it from here
    open_for_write,
    remove_stale_copies,
    replace_atomically,
    save_atomically,
    sheet_named,
)
from .excel_read import EXCEL_SUFFIXES, _short, check_path, read

if TYPE_CHECKING:
    from ..sheet import SheetLayout


# ---------------------------------------------------------------- writing back (surgical)
#
# The tool's cells are written into the worksheet part's XML in place (sources/xlsx_sheet.py) and
# the package is copied member by member (sources/xlsx_package.py): every other part, and every
# other byte of the changed part, stays as it was. The copy is made in a temporary file beside the
# workbook (mode 0600, locked while it is written), checked, and moved into place in one step.


def _members(path: Path) -> tuple[list[str], Any]:
    """The package's member names and a function reading one member's bytes."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise HomevisitsError(f"Could not open {path.name} as an Excel workbook ({_short(exc)}).") from exc
    return archive.namelist(), archive


def _surgery(path: Path, stamp: FileStamp | None, change: Any) -> FileStamp:
    """Apply ``change(names, read) -> (replaced, added)`` to a copy of the package, then move it into place."""
    from .xlsx_book import BookError
    from .xlsx_package import rewrite
    from .xlsx_sheet import SheetError

    check_path(path)
    check_writable(path, stamp)
    stamp = stamp or file_stamp(path)  # whatever happens to the file from now on is noticed before the move
    remove_stale_copies(path)
    names, archive = _members(path)
    with archive:
        try:
            replaced, added = change(names, archive.read)
            if not replaced and not added:
                return stamp or file_stamp(path)
        except (BookError, SheetError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, HomevisitsError):
                raise
            raise HomevisitsError(
                f"Could not write to {path.name}: its worksheet is not laid out as Excel writes one ({_short(exc)}); "
                "nothing was written."
            ) from exc
    with path.open("rb") as source:
        return replace_atomically(
            path,
            stamp,
            lambda target: rewrite(source, target, replaced, added),
            lambda t: _check_copy(t, replaced, added),
        )


def _check_copy(temporary: Path, replaced: dict[str, bytes], added: list[tuple[str, bytes]]) -> None:
    """The copy opens as a zip and holds exactly the new parts (their checksums are verified on read)."""
    from .xlsx_package import PackageError

    try:
        with zipfile.ZipFile(temporary) as copy:
            for name, data in [*replaced.items(), *added]:
                if copy.read(name) != data:
                    raise PackageError(f"the copy's {name} is not what was written")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise PackageError(f"the copy does not read back ({_short(exc)})") from exc


def _tab_part(path: Path, names: list[str], read: Any, worksheet: str | None) -> tuple[Any, Any]:
    from .xlsx_book import read_book

    book = read_book(read, names)
    try:
        tab = book.tab(worksheet)
    except KeyError:
        raise HomevisitsError(
            f"{path.name} has no worksheet called '{worksheet}'; it has: {', '.join(t.name for t in book.tabs)}."
        ) from None
    if tab.kind != "worksheet" or tab.part not in names:
        raise HomevisitsError(f"The tab '{tab.name}' of {path.name} is not a worksheet: nothing was written.")
    return book, tab


def write_cells(
    path: Path | str,
    worksheet: str | None,
    cells: dict[tuple[int, int], Any],
    *,
    stamp: FileStamp | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> tuple[FileStamp, dict[tuple[int, int], str]]:
    """Write ``cells`` ((1-based row, 0-based column) -> value) into one tab of the workbook at ``path``.

    The one entry point for a write-back to an .xlsx/.xlsm file (the Drive source uses it on its
    download): surgical and atomic, refused while the file is open in Excel or LibreOffice, or when
    it is no longer the file ``stamp`` describes. Values are written as the tool writes them
    (``xlsx_book.cell_renderer``). Returns the file's new stamp and the cells not written, with why
    (a cell that holds a formula is never overwritten).
    """
    from zoneinfo import ZoneInfo

    from .xlsx_book import cell_renderer, date_styles
    from .xlsx_sheet import write_cells as patch

    path = Path(path)
    refused: dict[tuple[int, int], str] = {}

    def change(names: list[str], read: Any) -> tuple[dict[str, bytes], list]:
        book, tab = _tab_part(path, names, read, worksheet)
        styles = date_styles(read("xl/styles.xml") if "xl/styles.xml" in names else None)
        render = cell_renderer(styles, book.date1904, ZoneInfo(timezone))
        xml, skipped = patch(read(tab.part), cells, render)
        refused.update(skipped)
        return ({tab.part: xml} if len(skipped) < len(cells) else {}), []

    new_stamp = _surgery(path, stamp, change) if cells else (stamp or file_stamp(path))
    return new_stamp, refused


def write_tab(
    path: Path | str,
    title: str,
    rows: list[list[Any]],
    *,
    stamp: FileStamp | None = None,
    widths: list[float] | None = None,
) -> FileStamp:
    """Replace the tool's own tab ``title`` (found ignoring case) with ``rows``, or add it after the others.

    Adding it adds one worksheet part and its entries in the workbook, its rels, [Content_Types].xml
    and docProps/app.xml; replacing it changes only its part. Text is cleaned and typed as text,
    so nothing in the tab can run as a formula.
    """
    from .xlsx_book import add_tab_entries, cell_renderer, new_part_name, read_book, tab_sheet

    path = Path(path)

    def change(names: list[str], read: Any) -> tuple[dict[str, bytes], list]:
        book = read_book(read, names)
        render = cell_renderer({}, book.date1904, None, marker=False)
        sheet = tab_sheet(rows, render, widths or [])
        try:
            tab = book.tab(title)
        except KeyError:
            tab = None
        if tab is not None:
            if tab.kind != "worksheet" or tab.part not in names:
                raise HomevisitsError(
                    f"The tab '{tab.name}' of {path.name} is not a worksheet: rename it so homevisits can add its own."
                )
            return {tab.part: sheet}, []
        part = new_part_name(names)
        wanted = [book.workbook_part, book.rels_part, "[Content_Types].xml", "docProps/app.xml"]
        current = {name: (read(name) if name in names else None) for name in wanted}
        if current[book.rels_part] is None:
            raise HomevisitsError(f"{path.name} has no workbook relationships part: nothing was written.")
        return add_tab_entries(current, book, title, part), [(part, sheet)]

    return _surgery(path, stamp, change)


class ExcelSource:
    """An Excel workbook: read with calamine; the tool's cells written back in place (surgically), by Visit ID."""

    def __init__(
        self,
        path: Path | str,
        worksheet: str | None = None,
        *,
        columns: dict[str, str] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
    ) -> None:
        from zoneinfo import ZoneInfo

        self.path = Path(path)
        self.worksheet = worksheet
        self.columns = dict(columns or {})
        self.tz = ZoneInfo(timezone)
        self.snapshot: RawSheet | None = None
        self.stamp: FileStamp | None = None

    def __repr__(self) -> str:
        return f"ExcelSource({self.path.name!r}, {self.worksheet!r})"

    def read(self) -> RawSheet:
        """The whole worksheet (see :func:`read`), remembering exactly which file it came from."""
        check_path(self.path)
        remove_stale_copies(self.path)
        stamp = file_stamp(self.path)
        raw = read(self.path, self.worksheet)
        now = self.path.stat()
        if (now.st_size, now.st_mtime_ns) != (stamp.size, stamp.mtime_ns):
            raise HomevisitsError(f"{self.path.name} changed while it was being read: run again.")
        self.snapshot, self.stamp = raw, stamp
        return raw

    def write(self, updates: Any, layout: SheetLayout | None = None) -> Any:
        """Write the tool's cells in the columns ``layout`` (the read's) names, each row located by Visit
        ID; one atomic save, or nothing at all (nothing, and one sentence, if a column moved)."""
        from .writeback import Skipped, WriteResult, layout_for, locate

        updates = list(updates)
        if not updates:
            return WriteResult()
        raw = self.snapshot or self.read()
        found = layout_for(raw, layout, self.columns)
        header_pos = found.header_pos
        header = raw.rows[header_pos] if header_pos < len(raw.rows) else []
        found.check(header, (u.field for u in updates))  # this file's header row, as just read
        first = raw.first_row + header_pos + 1
        id_column = found.positions.get("visit_id")
        ids = {}
        if id_column is not None:
            for offset, cells in enumerate(raw.rows[header_pos + 1 :]):
                ids[first + offset] = cells[id_column] if id_column < len(cells) else None
        placed, skipped = locate(
            updates,
            ids=ids,
            columns=found.positions,
            headers=found.headers,
            tool_fields=found.tool_fields,
            row_unchanged=lambda row: True,  # the file is checked unchanged since the read before saving
        )
        if placed:
            cells = {(cell.row, cell.column): cell.update.value for cell in placed}
            self.stamp, refused = write_cells(
                self.path, raw.worksheet, cells, stamp=self.stamp, timezone=self.tz.key
            )
            for cell in [c for c in placed if (c.row, c.column) in refused]:
                name = header[cell.column] if cell.column < len(header) else cell.update.field
                reason = f"row {cell.row}'s '{name}' cell holds a formula, which homevisits never overwrites"
                skipped.append(Skipped(cell.update, reason))
            placed = [c for c in placed if (c.row, c.column) not in refused]
            for cell in placed:  # the snapshot now matches the saved file for the next write
                cells_now = (
                    raw.rows[cell.row - raw.first_row] if cell.row - raw.first_row < len(raw.rows) else None
                )
                if cells_now is None:
                    continue
                cells_now.extend([None] * (cell.column + 1 - len(cells_now)))
                cells_now[cell.column] = cell.update.value
        return WriteResult(placed, skipped)

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None:
        """Replace the 'Policy check' tab (found ignoring case; added after the others when missing)."""
        from ..findings_tab import FINDINGS_TAB, FINDINGS_WIDTHS

        widths = FINDINGS_WIDTHS[: len(header)]
        self.stamp = write_tab(self.path, FINDINGS_TAB, [header, *rows], stamp=self.stamp, widths=widths)

    def init_sheet(self, schema: Any = None, fields: Any = None) -> Any:
        """Set the log up from the column catalogue (a new workbook when the file does not exist)."""
        from ..schema import load_schema
        from ..sheet_setup import apply_openpyxl, plan

        schema = schema or load_schema()
        if not self.path.exists():
            import openpyxl

            if self.path.suffix.lower() not in EXCEL_SUFFIXES or not self.path.parent.is_dir():
                raise HomevisitsError(
                    f"Cannot create {self.path}: give a path ending .xlsx in a folder that exists."
                )
            book = openpyxl.Workbook()
            book.active.title = self.worksheet or "Home visits"
            setup = plan([], schema, fields=fields)
            apply_openpyxl(book.active, setup)
            self.stamp = save_atomically(book, self.path, None, {})
            return setup
        book, before, stamp = open_for_write(self.path, None)
        sheet = sheet_named(book, self.worksheet, create=True)
        rows = [list(cells) for cells in sheet.iter_rows(values_only=True)]
        setup = plan(rows, schema, self.columns, fields)
        if setup.add:
            apply_openpyxl(sheet, setup)
            self.stamp = save_atomically(book, self.path, stamp, before)
        return setup
