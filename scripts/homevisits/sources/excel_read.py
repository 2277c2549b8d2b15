"""Excel workbooks (.xlsx / .xlsm) read with python-calamine, the fast path for large logs.

One snapshot of one worksheet (:func:`read`): error cells shown as Excel shows them, the 1904 date
system detected, and a log whose used range runs far below its last visit read from a compact copy.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from ..background import begun, when_idle
from ..errors import HomevisitsError
from ..sheet import RawSheet

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


class Scanned:
    """What calamine cannot be trusted to show, found in the worksheet's XML by :func:`scan_cells`."""

    def __init__(self) -> None:
        self.errors: dict[tuple[int, int], str] = {}  # (row, column), 0-based -> the error shown
        self.negatives: dict[tuple[int, int], float] = {}  # (row, column) -> the negative number held


def scan_cells(path: Path, title: str | None) -> Scanned:
    """The sheet's XML scanned (streamed, in bounded memory) for two kinds of cell calamine misreads:

    - a formula-error cell (``#N/A``...), which calamine reads as empty;
    - a negative number in a cell formatted as a date, a time or a duration (Excel shows ``#######``;
      a formula such as ``=C5-D5`` can make one), which calamine turns into a plausible time of day:
      -0.25 reads as 18:00. A doubt is never a safe return, so the number is kept as it is and the
      cell parser calls it unreadable.
    """
    found = Scanned()
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
                    if b"<v>-" in buffer:
                        found.negatives.update(_negative_cells(buffer))
                    if b't="e"' not in buffer:
                        leftover = buffer[-_OVERLAP:]
                        continue
                    end = 0
                    for match in _ERROR_CELL.finditer(buffer):
                        end = match.end()
                        ref = _CELL_REF.search(match[1] + match[2])
                        value = _CACHED.search(match[3])
                        if ref:
                            text = _unescape(value[1].decode("utf-8", "replace")) if value else "#ERROR!"
                            found.errors[_position(ref)] = text
                    rest = buffer[end:]
                    at = rest.rfind(b't="e"')
                    start = rest.rfind(b"<c", 0, at) if at >= 0 else -1
                    leftover = rest[max(start, 0) :][-(1 << 20) :] if at >= 0 else rest[-_OVERLAP:]
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError):
        return found
    return found


_OVERLAP = 4096  # bytes carried into the next chunk: a cell cut in two is whole in the next buffer
_NUMBER_TYPES = (None, b"n")  # a cell's t attribute when it holds a number (absent or "n")


def _position(ref: re.Match[bytes]) -> tuple[int, int]:
    """A cell reference (``F5``) as (row, column), 0-based."""
    from ..a1 import column_index

    return int(ref[2]) - 1, column_index(ref[1])


def _negative_cells(buffer: bytes) -> dict[tuple[int, int], float]:
    """Each numeric cell in ``buffer`` holding a negative value (a cached formula result too):
    ``<c r="F5" s="3"><f>E5-D5</f><v>-0.25</v></c>``. A cell whose opening lies before the buffer
    is left for the next one, which holds it whole."""
    found: dict[tuple[int, int], float] = {}
    at = buffer.find(b"<v>-")
    while at >= 0:
        start = buffer.rfind(b"<c ", 0, at)
        head_end = buffer.find(b">", start) if start >= 0 else -1
        whole = (
            start >= 0
            and buffer[head_end - 1 : head_end] != b"/"  # not an empty cell before this one
            and buffer.find(b"</c>", start, at) < 0  # nor a whole one: the value is this cell's
        )
        close = buffer.find(b"</v>", at)
        if whole and close >= 0:
            head = buffer[start:head_end]
            kind = _CELL_TYPE.search(head)
            ref = _CELL_REF.search(head)
            try:
                number = float(buffer[at + 3 : close])
            except ValueError:
                number = 0.0
            if ref and (kind[1] if kind else None) in _NUMBER_TYPES and number < 0:
                found[_position(ref)] = number
        at = buffer.find(b"<v>-", at + 4)
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


def _show_negatives(rows: list[list[Any]], negatives: dict[tuple[int, int], float]) -> None:
    """Put back each negative number calamine made a date or time of (see :func:`scan_cells`)."""
    import datetime as dt

    for (r, c), number in negatives.items():
        if r < len(rows) and c < len(rows[r]) and isinstance(rows[r][c], dt.date | dt.time | dt.timedelta):
            rows[r][c] = number


def _show_scanned(rows: list[list[Any]], scanned: Scanned) -> None:
    _show_errors(rows, scanned.errors)
    _show_negatives(rows, scanned.negatives)


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
        from ..cells import EMPTY_WORDS, fold_word  # here: the read starts without the cell parsers

        word = fold_word(text.decode("utf-8", "replace"))
        if word not in EMPTY_WORDS and word not in ("true", "false", "0") and not _zero(word):
            return True
    return False


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
        scanned = scan_cells(copy, worksheet)
    _show_scanned(raw.rows, scanned)
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
    scanned: list[Scanned] = []
    ready = when_idle()  # in the background read: once the main thread has loaded what it needs

    def scan_when_ready() -> None:
        ready()
        scanned.append(scan_cells(path, worksheet))

    # zlib works outside Python's lock: the scan runs beside calamine's read
    scan = threading.Thread(target=scan_when_ready, name="homevisits-scan", daemon=True)
    scan.start()
    try:
        raw = _calamine_read_safely(path, worksheet)
    finally:
        scan.join()
    _show_scanned(raw.rows, scanned[0] if scanned else Scanned())
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
        begun()  # calamine's parse of the sheet, outside Python's lock
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
