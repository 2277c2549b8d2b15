"""The workbook file itself: what it was when read, who has it open, and replacing it in one step.

A file stamp says which bytes were read, so nothing is saved over a version someone saved since; a
lock file says Excel or LibreOffice has it open; a save goes to a private copy beside the workbook,
checked, then moved into place (a killed run's copies are removed next time). init-sheet's openpyxl
save is refused when openpyxl would drop something the school's workbook has.
"""

from __future__ import annotations

import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HomevisitsError
from .excel_read import _short, check_path

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
