"""Excel workbooks (.xlsx / .xlsm): read with python-calamine, the fast path for large logs."""

from __future__ import annotations

import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HomevisitsError
from . import RawSheet

if TYPE_CHECKING:
    from ..sheet import SheetLayout

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


_ERROR_CELL = re.compile(rb'<c\b([^>]*?)\bt="e"([^>]*)>(.*?)</c>', re.S)
_CELL_REF = re.compile(rb'\br="([A-Z]{1,3})(\d+)"')
_CACHED = re.compile(rb"<v>([^<]*)</v>")


def _sheet_part(archive: zipfile.ZipFile, title: str | None) -> str | None:
    """The zip part holding a worksheet (by title, default the first), from the workbook's own index."""
    try:
        workbook = archive.read("xl/workbook.xml").decode("utf-8", "replace")
        rels = archive.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
    except KeyError:
        return None
    sheets = re.findall(r"<(?:\w+:)?sheet\b([^>]*)/?>", workbook)
    chosen = None
    for attrs in sheets:
        name = re.search(r'\bname="([^"]*)"', attrs)
        if title is None or (name and _unescape(name[1]).strip().casefold() == title.strip().casefold()):
            chosen = attrs
            break
    rid = re.search(r'\br:id="([^"]+)"', chosen or "") or re.search(r'\b\w+:id="([^"]+)"', chosen or "")
    if rid is None:
        return None
    for rel in re.findall(r"<Relationship\b([^>]*)/?>", rels):
        if f'Id="{rid[1]}"' in rel:
            target = re.search(r'Target="([^"]+)"', rel)
            if target:
                name = target[1].lstrip("/")
                return name if name.startswith("xl/") else "xl/" + name
    return None


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def error_cells(path: Path, title: str | None) -> dict[tuple[int, int], str]:
    """``(row, column)`` (0-based) -> what each formula-error cell shows (``#N/A``...): calamine reads
    those cells as empty, so the sheet's XML is scanned for them (streamed, in bounded memory)."""
    found: dict[tuple[int, int], str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            part = _sheet_part(archive, title)
            if part is None:
                return found
            with archive.open(part) as stream:
                leftover = b""
                while True:
                    chunk = stream.read(1 << 20)
                    if not chunk:
                        break
                    buffer = leftover + chunk
                    if b't="e"' not in buffer:
                        leftover = buffer[-400:]
                        continue
                    end = 0
                    for match in _ERROR_CELL.finditer(buffer):
                        end = match.end()
                        ref = _CELL_REF.search(match[1] + match[2])
                        value = _CACHED.search(match[3])
                        if ref:
                            column = 0
                            for letter in ref[1]:
                                column = column * 26 + letter - 64
                            text = _unescape(value[1].decode("utf-8", "replace")) if value else "#ERROR!"
                            found[(int(ref[2]) - 1, column - 1)] = text
                    rest = buffer[end:]
                    at = rest.rfind(b't="e"')
                    start = rest.rfind(b"<c", 0, at) if at >= 0 else -1
                    leftover = rest[max(start, 0) :][-(1 << 20) :] if at >= 0 else rest[-400:]
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError):
        return found
    return found


def _show_errors(rows: list[list[Any]], errors: dict[tuple[int, int], str]) -> None:
    """Put each error cell's text where calamine left it empty, as Google Sheets gives it."""
    for (r, c), text in errors.items():
        if r < len(rows):
            cells = rows[r]
            if c >= len(cells):
                cells.extend([""] * (c + 1 - len(cells)))
            if cells[c] in ("", None):
                cells[c] = text


# A used range taller than this is read through a compact copy (see compact_copy): calamine holds
# every cell of the used range in memory, 1.4 GB for one stray cell at row 1,048,576.
COMPACT_ABOVE_ROWS = 100_000
UNMEASURED_PART_BYTES = 16 << 20  # a worksheet without <dimension> smaller than this is read as it is
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="[A-Z]*\d*:?[A-Z]*(\d+)"')
_ROW_OPENING = re.compile(rb"<(?:\w+:)?row\b[^>]*>")
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_CELL_TYPE = re.compile(rb'\bt="(\w+)"')
_TEXT = re.compile(rb"<(?:\w+:)?t\b[^>]*>([^<]*)</(?:\w+:)?t>")
_CELL_REFERENCE = re.compile(rb'(\br="[A-Z]{1,3})\d+"')
_SHARED = re.compile(rb"<(?:\w+:)?si\b[^>]*>(.*?)</(?:\w+:)?si>", re.S)


def used_rows(path: Path, title: str | None) -> int | None:
    """The last row of the worksheet's used range, as its ``<dimension>`` says (None when it says nothing)."""
    try:
        with zipfile.ZipFile(path) as archive:
            part = _sheet_part(archive, title)
            if part is None:
                return None
            with archive.open(part) as stream:
                head = stream.read(4096)
                found = _DIMENSION.search(head)
                if found:
                    return int(found[1])
                size = archive.getinfo(part).file_size
                if size < UNMEASURED_PART_BYTES:
                    return None
                # No <dimension> (some writers leave it out) and a large sheet: estimated from the size
                # of its first rows, without reading the rest before calamine does.
                head += stream.read(256 << 10)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError):
        return None
    start, end = head.find(b"<sheetData"), head.rfind(b"</row>")
    rows = head.count(b"<row", max(start, 0), max(end, 0))
    if start < 0 or rows < 20:
        return None
    return int(size * rows / (end - start))


def _shared_strings(archive: zipfile.ZipFile) -> list[bytes]:
    try:
        data = archive.read("xl/sharedStrings.xml")
    except KeyError:
        return []
    return [b"".join(_TEXT.findall(item)) for item in _SHARED.findall(data)]


def _is_content(row: bytes, shared: list[bytes]) -> bool:
    """True when a row's XML holds a value a person wrote: not only tick-box defaults (TRUE/FALSE),
    0, formulas showing blank, placeholders or formatting."""
    if b"<v" not in row and b"<is" not in row and b"<x:v" not in row:
        return False  # cells of formatting only
    if row.count(b"<c ") == row.count(b't="b"'):
        return False  # tick boxes only: the common phantom row
    for cell in _CELL.finditer(row):
        body = cell[2] or b""
        kind = _CELL_TYPE.search(cell[1])
        kind = kind[1] if kind else b"n"
        if kind == b"b":
            continue
        if kind in (b"e", b"d"):
            return True
        if kind == b"inlineStr":
            text = b"".join(_TEXT.findall(body))
        else:
            value = _CACHED.search(body)
            if value is None:
                continue
            text = value[1]
            if kind == b"s":
                index = int(text) if text.isdigit() else -1
                text = shared[index] if 0 <= index < len(shared) else b"?"
        if len(text) > 12:
            return True
        word = fold_word(text.decode("utf-8", "replace"))
        if word not in _EMPTY_WORDS and word not in ("true", "false", "0") and not _zero(word):
            return True
    return False


from ..cells import EMPTY_WORDS as _EMPTY_WORDS  # noqa: E402 - light: cells imports nothing heavy
from ..cells import fold_word  # noqa: E402


def _zero(word: str) -> bool:
    try:
        return float(word) == 0
    except ValueError:
        return False


def _last_row_number(xml: bytes, last: int) -> int:
    """The number of the last of some empty rows (``<row r="9"/>``), else ``last``."""
    for match in _ROW_OPENING.finditer(xml):
        number = _ROW_NUMBER.search(match[0])
        last = int(number[1]) if number else last + 1
    return last


def _renumber(row: bytes, number: int) -> bytes:
    """A row's XML moved to sheet row ``number`` (its own ``r`` and each cell's reference)."""
    row = _ROW_NUMBER.sub(b'r="%d"' % number, row, count=1)
    return _CELL_REFERENCE.sub(lambda cell: cell[1] + b'%d"' % number, row)


def compact_copy(path: Path, title: str | None, folder: Path) -> tuple[Path, list[int], int] | None:
    """A copy of the workbook (in ``folder``) whose worksheet keeps only the rows holding something a
    person wrote, renumbered from 1, streamed so memory stays bounded. Returns the copy, the original
    row number of each row kept, and the last row of the original. None when the sheet cannot be found."""
    with zipfile.ZipFile(path) as archive:
        part = _sheet_part(archive, title)
        if part is None:
            return None
        shared = _shared_strings(archive)
        copy = folder / "compact.xlsx"
        kept: list[int] = []
        last = 0
        with zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as target:
            for item in archive.infolist():
                if item.filename != part:
                    target.writestr(item, archive.read(item.filename))
            with archive.open(part) as stream, target.open(part, "w") as out:
                buffer, started = b"", False
                while True:
                    chunk = stream.read(1 << 20)
                    buffer += chunk
                    if not started:
                        at = buffer.find(b"<sheetData")
                        if at < 0 and chunk:
                            continue
                        opening = buffer.find(b">", at) + 1
                        head = _DIMENSION.sub(b'<dimension ref="A1"', buffer[:at])
                        out.write(head + buffer[at:opening])
                        if buffer[opening - 2 : opening] == b"/>":  # an empty sheet
                            out.write(buffer[opening:])
                            break
                        buffer, started = buffer[opening:], True
                    pieces = buffer.split(b"</row>")
                    buffer = pieces.pop()  # the row not finished in this chunk (or what follows the rows)
                    for piece in pieces:  # "<row r=..>cells", after any empty rows written "<row .../>"
                        at = piece.rfind(b"<row")
                        if at < 0:
                            continue
                        if piece.count(b"<row", 0, at):
                            last = _last_row_number(piece[:at], last)
                        opening = piece.find(b">", at)
                        number = _ROW_NUMBER.search(piece, at, opening)
                        last = int(number[1]) if number else last + 1
                        cells = piece[opening + 1 :]
                        has_value = b"<v" in cells or b"<is" in cells or b":v>" in cells
                        only_ticks = cells.count(b"<c ") == cells.count(b't="b"')
                        if has_value and not only_ticks and _is_content(cells, shared):
                            kept.append(last)
                            out.write(_renumber(piece[at:] + b"</row>", len(kept)))
                    if not chunk:
                        last = _last_row_number(buffer, last)
                    if not chunk:  # what follows the cells (merged cells, formats...) is not needed to read
                        out.write(b"</sheetData></worksheet>")
                        break
    return copy, kept, last


def _read_compact(path: Path, worksheet: str | None) -> RawSheet | None:
    """The worksheet through :func:`compact_copy`: the rows skipped are placed back as empty rows
    (so every row keeps its number) and said in ``notes``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="homevisits-") as folder:
        made = compact_copy(path, worksheet, Path(folder))
        if made is None:
            return None
        copy, kept, last = made
        raw = _calamine_read_safely(copy, worksheet)
        errors = error_cells(copy, worksheet)
    _show_errors(raw.rows, errors)
    rows: list[list[Any]] = [[] for _ in range(max(last, kept[-1] if kept else 0))]
    for position, number in enumerate(kept):
        if position < len(raw.rows):
            rows[number - 1] = raw.rows[position]
    skipped = len(rows) - len(kept)
    raw.rows = rows
    raw.name = path.name
    raw.date1904 = uses_1904_dates(path)
    raw.notes = [
        f"The sheet's used range runs to row {last:,}, but only {len(kept):,} rows hold anything a person "
        f"wrote: the other {skipped:,} (empty, or only tick-box defaults, 0 or formulas showing blank) were "
        "skipped. Delete the rows below the log in the sheet to make it smaller."
    ]
    return raw


def read(path: Path | str, worksheet: str | None = None) -> RawSheet:
    """Every cell of one worksheet (by name, default the first) as calamine gives it; formula-error
    cells read as the error they show (``#N/A``), never as empty. A used range far taller than the log
    (one stray cell at row 1,048,576, a tick-box column to the bottom) is read in bounded memory."""
    import threading

    path = Path(path)
    check_path(path)
    check_readable(path)
    if (used_rows(path, worksheet) or 0) > COMPACT_ABOVE_ROWS:
        compact = _read_compact(path, worksheet)
        if compact is not None:
            return compact
    errors: dict[tuple[int, int], str] = {}
    scan = threading.Thread(  # zlib works outside Python's lock: the scan runs beside calamine's read
        target=lambda: errors.update(error_cells(path, worksheet)), name="homevisits-errors", daemon=True
    )
    scan.start()
    try:
        raw = _calamine_read_safely(path, worksheet)
    finally:
        scan.join()
    _show_errors(raw.rows, errors)
    return raw


def _calamine_read_safely(path: Path, worksheet: str | None) -> RawSheet:
    """calamine's read; when one cell breaks it (a huge number in a duration-formatted cell overflows
    Python's timedelta; calamine itself may panic), the sheet is read again with every number format
    taken out, so each cell arrives as the plain number it holds and the cell parser judges it (one bad
    cell is a finding, never the end of the run)."""
    try:
        return _calamine_read(path, worksheet)
    except HomevisitsError:
        raise
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        broken = exc
    import tempfile

    with tempfile.TemporaryDirectory(prefix="homevisits-") as folder:
        plain = Path(folder) / path.name
        try:
            _without_number_formats(path, plain)
            raw = _calamine_read(plain, worksheet)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise HomevisitsError(f"Could not read {path.name} ({_short(broken)}).") from exc
    raw.date1904 = uses_1904_dates(path)
    return raw


_NUMBER_FORMAT = re.compile(rb'numFmtId="\d+"')


def _without_number_formats(source: Path, target: Path) -> None:
    """A private copy of the workbook whose cell formats all say General (the cells are untouched)."""
    import os

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with zipfile.ZipFile(source) as old, os.fdopen(fd, "wb") as stream, zipfile.ZipFile(stream, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "xl/styles.xml":
                data = _NUMBER_FORMAT.sub(b'numFmtId="0"', data)
            new.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)


def _calamine_read(path: Path, worksheet: str | None) -> RawSheet:
    from python_calamine import CalamineError, CalamineWorkbook

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


# ---------------------------------------------------------------- init-sheet on an existing log (openpyxl)
#
# init-sheet (headers, dropdowns, formats, notes) still saves the workbook whole through openpyxl to a temporary file beside it, flushed to disk and moved
# into place in one step, so an error leaves the original as it was. The tool refuses to write
# when Excel has the file open, when it changed since it was read, or when openpyxl would drop
# something the school's workbook has (extended dropdowns and formats, shapes, sparklines...).

LOCK_NAMES = ("~${name}", ".~lock.{name}#")  # Excel's owner file; LibreOffice's lock file

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
    ("data connections (Power Query)", r"xl/connections\.xml", None),
    ("custom XML parts", r"customXml/.+", None),
    ("printer settings", r"xl/printerSettings/.+", None),
    ("dynamic array formulas (cell metadata)", r"xl/metadata\.xml", None),
    ("ignored error markers", r"xl/worksheets/[^/]+\.xml", rb"<(?:\w+:)?ignoredError[\s>]"),
    ("custom views", r"xl/worksheets/[^/]+\.xml", rb"<(?:\w+:)?customSheetView[\s>]"),
    (
        "formula results (openpyxl keeps formulas but not the values Excel calculated)",
        r"xl/worksheets/[^/]+\.xml",
        rb"<(?:\w+:)?f\b[^>]*(?:/>|>[^<]*</(?:\w+:)?f>)\s*<(?:\w+:)?v>",
    ),
)
_IN_CELLS = ("formula results (openpyxl keeps formulas but not the values Excel calculated)",)
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
    "data connections (Power Query)",
    "custom XML parts",
    "printer settings",
    "dynamic array formulas (cell metadata)",
    "ignored error markers",
    "custom views",
    "formula results (openpyxl keeps formulas but not the values Excel calculated)",
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
                if name.startswith("xl/worksheets/") and feature not in _IN_CELLS:
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


def save_atomically(book: Any, path: Path, stamp: FileStamp | None, before: dict[str, int]) -> FileStamp:
    """Save the openpyxl ``book`` beside the workbook, check nothing was lost, then move it into place."""

    def check(temporary: Path) -> None:
        lost = lost_features(before, feature_counts(temporary))
        if lost:
            raise _refuse(path, lost)

    return replace_atomically(path, stamp, book.save, check)


def replace_atomically(path: Path, stamp: FileStamp | None, write: Any, check: Any) -> FileStamp:
    """``write(stream)`` a new workbook into a temporary file beside ``path``, ``check(temporary)`` it,
    then move it into place in one step: the original stays as it was on every failure.

    The temporary file is ``.<name>.homevisits-*`` (mode 0600, locked while this process lives, so a
    later run's :func:`remove_stale_copies` leaves it alone), removed on every exit path; just before
    the move the workbook is checked again (not opened in Excel, not changed since ``stamp``).
    """
    import contextlib
    import fcntl
    import os
    import stat
    import tempfile

    from .xlsx_package import PackageError

    handle, name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=path.suffix, dir=path.parent)
    temporary = Path(name)
    try:
        with contextlib.suppress(OSError):  # a folder without locks: the age check still protects the copy
            fcntl.flock(handle, fcntl.LOCK_EX)
        with os.fdopen(handle, "wb", closefd=False) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        check(temporary)
        if path.exists():
            check_writable(path, stamp)  # again: nobody opened or saved it meanwhile
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except PackageError as exc:
        temporary.unlink(missing_ok=True)
        raise HomevisitsError(
            f"Could not write to {path.name} ({exc}): nothing was written; save it again in Excel and retry."
        ) from exc
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise HomevisitsError(
            f"Could not save {path.name} ({exc.strerror or exc.__class__.__name__}): nothing was written and the "
            "workbook is as it was; check the disk and the folder's permissions."
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        os.close(handle)
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


# ---------------------------------------------------------------- writing back (surgical)
#
# The tool's cells are written into the worksheet part's XML in place (sources/xlsx_sheet.py) and
# the package is copied member by member (sources/xlsx_package.py): every other part, and every
# other byte of the changed part, stays as it was. The copy is made in a temporary file beside the
# workbook (mode 0600, locked while it is written), checked, and moved into place in one step.

TEMPORARY_MARK = ".homevisits-"
_STARTED = time.time()  # a copy older than this process, that no live process holds, is stale


def _temporary_prefix(path: Path) -> str:
    return f".{path.stem[:40]}{TEMPORARY_MARK}"


def remove_stale_copies(path: Path) -> list[Path]:
    """Remove the temporary copies of ``path`` a killed run left beside it; returns those removed.

    A copy is removed only when it is ours (named ``.<name>.homevisits-*``, a regular file owned by
    this user, mode 0600), older than this process, and no live process holds its lock.
    """
    import fcntl
    import os
    import stat

    removed = []
    prefix = _temporary_prefix(path)
    try:
        candidates = [
            p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.suffix == path.suffix
        ]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            info = candidate.lstat()
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.getuid()
                or stat.S_IMODE(info.st_mode) & 0o077
                or info.st_mtime >= _STARTED
            ):
                continue
            descriptor = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue  # a run that is still writing it
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
        finally:
            os.close(descriptor)
    return removed


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
    timezone: str = "Europe/London",
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
