"""Excel workbooks (.xlsx / .xlsm): read with python-calamine, the fast path for large logs."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HomevisitsError
from . import RawSheet

EXCEL_SUFFIXES = (".xlsx", ".xlsm")


def check_path(path: Path) -> None:
    if not path.exists():
        raise HomevisitsError(
            f"The workbook {path} does not exist: check [source] path in the config or --source."
        )
    if path.is_dir():
        raise HomevisitsError(f"{path} is a folder, not a workbook: give the path of the .xlsx file.")
    if path.suffix.lower() not in EXCEL_SUFFIXES:
        raise HomevisitsError(
            f"{path.name} is not an Excel workbook (.xlsx or .xlsm): save the log in that format and try again."
        )


OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted .xlsx (or an old .xls renamed)


def check_readable(path: Path) -> None:
    """A password-protected or damaged workbook is one plain sentence with the fix, never a zip error."""
    try:
        with path.open("rb") as stream:
            start = stream.read(8)
    except OSError as exc:
        raise HomevisitsError(
            f"Could not read {path} ({exc.strerror or exc}): check its permissions."
        ) from exc
    if start == OLE2_SIGNATURE:
        raise HomevisitsError(
            f"{path.name} is password-protected (encrypted), so it cannot be read: in Excel, File → Info → Protect "
            "Workbook → Encrypt with Password, clear the password and save; keep the file in a folder only staff "
            "can open instead."
        )
    if not zipfile.is_zipfile(path):
        raise HomevisitsError(
            f"{path.name} is damaged or incomplete (it is not a whole .xlsx file, perhaps copied while it was being "
            "saved): open it in Excel and save it again, or restore the last good copy from the drive's version history."
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
    check_readable(path)
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
        name=path.name,
        worksheet=title,
        rows=rows,
        first_row=1,
        date1904=uses_1904_dates(path),
        worksheets=names,
    )


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# ---------------------------------------------------------------- writing back (openpyxl)
#
# The workbook is written whole by openpyxl to a temporary file beside it, flushed to disk and moved
# into place in one step, so an error leaves the original as it was. The tool refuses to write
# when Excel has the file open, when it changed since it was read, or when openpyxl would drop
# something the school's workbook has (extended dropdowns and formats, shapes, sparklines...).

LOCK_NAMES = ("~${name}", ".~lock.{name}#")  # Excel's owner file; LibreOffice's lock file
DATE_FORMATS = {"datetime": "dd/mm/yyyy hh:mm", "date": "dd/mm/yyyy", "time": "hh:mm"}

# (what a person calls it, zip part pattern, element pattern counted in those parts)
_FEATURES: tuple[tuple[str, str, bytes | None], ...] = (
    ("dropdown lists (data validation)", r"xl/worksheets/[^/]+\.xml", rb"<(?:\w+:)?dataValidation[\s>]"),
    (
        "dropdown lists in Excel's newer format (x14 data validation)",
        r"xl/worksheets/[^/]+\.xml",
        rb"<x14:dataValidation[\s>]",
    ),
    ("conditional formatting", r"xl/worksheets/[^/]+\.xml", rb"<(?:\w+:)?cfRule[\s>]"),
    (
        "conditional formatting in Excel's newer format (x14)",
        r"xl/worksheets/[^/]+\.xml",
        rb"<x14:cfRule[\s>]",
    ),
    ("sparklines", r"xl/worksheets/[^/]+\.xml", rb"<x14:sparklineGroup[\s>]"),
    ("merged cells", r"xl/worksheets/[^/]+\.xml", rb"<(?:\w+:)?mergeCell[\s>]"),
    ("pictures", r"xl/drawings/[^/]+\.xml", rb"<(?:\w+:)?pic[\s>]"),
    ("shapes or text boxes", r"xl/drawings/[^/]+\.xml", rb"<(?:\w+:)?(?:sp|cxnSp|grpSp)[\s>]"),
    ("charts", r"xl/charts/chart[^/]*\.xml", None),
    ("comments (notes)", r"xl/comments[^/]*\.xml|xl/comments/[^/]+\.xml", rb"<(?:\w+:)?comment[\s>]"),
    ("threaded comments", r"xl/threadedComments/.+", None),
    ("tables", r"xl/tables/[^/]+\.xml", None),
    ("pivot tables", r"xl/pivotTables/[^/]+\.xml", None),
    ("slicers", r"xl/slicers/.+", None),
    ("timelines", r"xl/timelines/.+", None),
    ("form controls", r"xl/ctrlProps/.+", None),
    ("ActiveX controls", r"xl/activeX/.+", None),
    ("macros", r"xl/vbaProject\.bin", None),
    ("links to other workbooks", r"xl/externalLinks/[^/]+\.xml", None),
)
# What openpyxl 3.1 is known to drop on load; everything else is checked after saving.
_DROPPED_ON_LOAD = (
    "dropdown lists in Excel's newer format (x14 data validation)",
    "conditional formatting in Excel's newer format (x14)",
    "sparklines",
    "shapes or text boxes",
    "threaded comments",
    "slicers",
    "timelines",
    "form controls",
    "ActiveX controls",
)


@dataclass(frozen=True)
class FileStamp:
    """What the workbook was when read: size, modification time and a hash of its bytes."""

    size: int
    mtime_ns: int
    sha256: str


def file_stamp(path: Path) -> FileStamp:
    import hashlib

    info = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return FileStamp(info.st_size, info.st_mtime_ns, digest.hexdigest())


def lock_file(path: Path) -> Path | None:
    """Excel's ``~$`` owner file (or LibreOffice's lock) beside the workbook, when someone has it open."""
    for pattern in LOCK_NAMES:
        candidate = path.with_name(pattern.format(name=path.name))
        if candidate.exists():
            return candidate
    return None


def check_writable(path: Path, stamp: FileStamp | None) -> None:
    """Refuse while the workbook is open in Excel, or when it changed since ``stamp`` was taken."""
    lock = lock_file(path)
    if lock is not None:
        raise HomevisitsError(
            f"{path.name} is open in Excel or LibreOffice ({lock.name} is beside it): nothing was written; "
            "close it everywhere and the next run will write."
        )
    if stamp is not None and file_stamp(path) != stamp:
        raise HomevisitsError(
            f"{path.name} changed since homevisits read it: nothing was written; the next run will read it again."
        )


def feature_counts(path: Path) -> dict[str, int]:
    """How many of each workbook feature openpyxl could lose the file has."""
    counts = dict.fromkeys((name for name, _, _ in _FEATURES), 0)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for feature, part, element in _FEATURES:
            matching = [n for n in names if re.fullmatch(part, n)]
            if element is None:
                counts[feature] += len(matching)
                continue
            for name in matching:
                data = archive.read(name)
                if name.startswith("xl/worksheets/"):
                    data = data[data.rfind(b"</sheetData>") :]  # features follow the cells
                counts[feature] += len(re.findall(element, data))
    standard = "dropdown lists (data validation)"
    counts[standard] -= counts["dropdown lists in Excel's newer format (x14 data validation)"]
    counts["conditional formatting"] -= counts["conditional formatting in Excel's newer format (x14)"]
    return counts


def lost_features(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [name for name, count in before.items() if after.get(name, 0) < count]


def _refuse(path: Path, lost: list[str]) -> HomevisitsError:
    return HomevisitsError(
        f"Writing to {path.name} would lose its {' and '.join(lost)} (openpyxl cannot keep them): nothing was "
        "written; remove them from the workbook, or keep the log as a Google Sheet, for homevisits to write to it."
    )


def open_for_write(path: Path, stamp: FileStamp | None) -> tuple[Any, dict[str, int], FileStamp]:
    """The workbook loaded by openpyxl, after every check that can refuse before anything is written.

    Returns the workbook, its feature counts, and the stamp to check again just before saving
    (``stamp`` itself, or the file as it is now when the caller read nothing before).
    """
    import warnings

    import openpyxl

    check_path(path)
    check_writable(path, stamp)
    stamp = stamp or file_stamp(path)
    try:
        before = feature_counts(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise HomevisitsError(f"Could not open {path.name} as an Excel workbook ({_short(exc)}).") from exc
    dropped = [name for name in _DROPPED_ON_LOAD if before.get(name)]
    if dropped:
        raise _refuse(path, dropped)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            book = openpyxl.load_workbook(path, keep_vba=path.suffix.lower() == ".xlsm", rich_text=True)
        except Exception as exc:
            raise HomevisitsError(f"Could not open {path.name} for writing ({_short(exc)}).") from exc
    losing = [str(w.message) for w in caught if re.search(r"remove|lost|drop|discard", str(w.message), re.I)]
    if losing:
        raise HomevisitsError(
            f"Writing to {path.name} would lose part of it (openpyxl: {losing[0][:120]}): nothing was written; "
            "simplify the workbook, or keep the log as a Google Sheet, for homevisits to write to it."
        )
    return book, before, stamp


def sheet_named(book: Any, worksheet: str | None, *, create: bool = False) -> Any:
    """A worksheet by name (exact, then ignoring case), the first when no name is given."""
    if worksheet is None:
        return book.worksheets[0]
    if worksheet in book.sheetnames:
        return book[worksheet]
    folded = {name.strip().lower(): name for name in book.sheetnames}
    if worksheet.strip().lower() in folded:
        return book[folded[worksheet.strip().lower()]]
    if create:
        return book.create_sheet(worksheet)
    raise HomevisitsError(
        f"The workbook has no worksheet called '{worksheet}'; it has: {', '.join(book.sheetnames)}."
    )


def set_cell(cell: Any, value: Any, tz: Any) -> None:
    """Put a value the tool writes into an openpyxl cell: a value, never a formula."""
    import datetime as dt

    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    from ..formula_guard import neutralise
    from .writeback import wall_clock

    if value is None or isinstance(value, bool | int | float):
        cell.value = value
    elif isinstance(value, dt.datetime):
        cell.value = wall_clock(value, tz)
        cell.number_format = DATE_FORMATS["datetime"]
    elif isinstance(value, dt.date):
        cell.value = value
        cell.number_format = DATE_FORMATS["date"]
    elif isinstance(value, dt.time):
        cell.value = value.replace(microsecond=0)
        cell.number_format = DATE_FORMATS["time"]
    else:
        cell.value = neutralise(ILLEGAL_CHARACTERS_RE.sub("", str(value)))
        cell.data_type = "s"
    if cell.data_type == "f":  # never: every branch above writes a plain value
        raise ValueError("homevisits never writes a formula")


def save_atomically(book: Any, path: Path, stamp: FileStamp | None, before: dict[str, int]) -> FileStamp:
    """Save to a temporary file beside the workbook, check nothing was lost, then move it into place."""
    import os
    import stat
    import tempfile

    handle, name = tempfile.mkstemp(
        prefix=f".{path.stem[:40]}.homevisits-", suffix=path.suffix, dir=path.parent
    )
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            book.save(stream)
            stream.flush()
            os.fsync(stream.fileno())
        lost = lost_features(before, feature_counts(temporary))
        if lost:
            raise _refuse(path, lost)
        if path.exists():
            check_writable(path, stamp)  # again: nobody opened or saved it meanwhile
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise HomevisitsError(
            f"Could not save {path.name} ({exc.strerror or exc.__class__.__name__}): nothing was written and the "
            "workbook is as it was; check the disk and the folder's permissions."
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return file_stamp(path)


def _sync_folder(folder: Path) -> None:
    import os

    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class ExcelSource:
    """An Excel workbook: read with calamine; the tool's cells written back with openpyxl, by Visit ID."""

    def __init__(
        self,
        path: Path | str,
        worksheet: str | None = None,
        *,
        columns: dict[str, str] | None = None,
        timezone: str = "Europe/London",
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
        stamp = file_stamp(self.path)
        raw = read(self.path, self.worksheet)
        now = self.path.stat()
        if (now.st_size, now.st_mtime_ns) != (stamp.size, stamp.mtime_ns):
            raise HomevisitsError(f"{self.path.name} changed while it was being read: run again.")
        self.snapshot, self.stamp = raw, stamp
        return raw

    def write(self, updates: Any) -> Any:
        """Write the tool's cells, each located by Visit ID; one atomic save, or nothing at all."""
        from ..schema import load_schema
        from .writeback import WriteResult, header_names, layout, locate, tool_fields

        updates = list(updates)
        if not updates:
            return WriteResult()
        raw = self.snapshot or self.read()
        schema = load_schema()
        header_pos, mapping = layout(raw.rows, schema, self.columns)
        first = raw.first_row + header_pos + 1
        id_column = mapping.positions.get("visit_id")
        ids = {}
        if id_column is not None:
            for offset, cells in enumerate(raw.rows[header_pos + 1 :]):
                ids[first + offset] = cells[id_column] if id_column < len(cells) else None
        placed, skipped = locate(
            updates,
            ids=ids,
            columns=mapping.positions,
            headers=header_names(schema, mapping),
            tool_fields=tool_fields(schema),
            row_unchanged=lambda row: True,  # the file is checked unchanged since the read before saving
        )
        if placed:
            book, before, stamp = open_for_write(self.path, self.stamp)
            sheet = sheet_named(book, raw.worksheet)
            for cell in placed:
                set_cell(sheet.cell(row=cell.row, column=cell.column + 1), cell.update.value, self.tz)
            self.stamp = save_atomically(book, self.path, stamp, before)
            for cell in placed:  # the snapshot now matches the saved file for the next write
                cells = raw.rows[cell.row - raw.first_row]
                cells.extend([None] * (cell.column + 1 - len(cells)))
                cells[cell.column] = cell.update.value
        return WriteResult(placed, skipped)

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None:
        """Replace the 'Policy check' worksheet (created if missing) with the findings."""
        from openpyxl.styles import Font

        from .writeback import FINDINGS_TAB

        book, before, stamp = open_for_write(self.path, self.stamp)
        if FINDINGS_TAB in book.sheetnames:
            sheet = book[FINDINGS_TAB]
            sheet.delete_rows(1, sheet.max_row)
        else:
            sheet = book.create_sheet(FINDINGS_TAB)
        for row, values in enumerate([header, *rows], start=1):
            for column, value in enumerate(values, start=1):
                set_cell(sheet.cell(row=row, column=column), value, self.tz)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        self.stamp = save_atomically(book, self.path, stamp, before)

    def init_sheet(self, schema: Any = None) -> Any:
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
            setup = plan([], schema)
            apply_openpyxl(book.active, setup)
            self.stamp = save_atomically(book, self.path, None, {})
            return setup
        book, before, stamp = open_for_write(self.path, None)
        sheet = sheet_named(book, self.worksheet, create=True)
        rows = [list(cells) for cells in sheet.iter_rows(values_only=True)]
        setup = plan(rows, schema, self.columns)
        if setup.add:
            apply_openpyxl(sheet, setup)
            self.stamp = save_atomically(book, self.path, stamp, before)
        return setup
