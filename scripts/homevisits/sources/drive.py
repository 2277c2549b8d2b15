"""An Excel workbook kept on Google Drive (a Shared Drive): downloaded, read, edited and uploaded again.

OMG Education's staff fill "the Home Visits Excel Sheet located in the YP Details Google Shared
Drive": an ``.xlsx`` file on Drive, which the Sheets API cannot read. A run makes one ``files.get``
metadata request and one ``alt=media`` download into memory, then reads the bytes with the Excel
reader, exactly as a local workbook. A native Google Sheet named this way keeps the Sheets source.

Writing back applies the local workbook's own write-back (:class:`.excel.ExcelSource`) to a
private copy of the downloaded bytes, marks the version being replaced ``keepForever``, reads the
metadata again and uploads only when nobody saved meanwhile (``headRevisionId`` and
``md5Checksum`` unchanged). When somebody did, it downloads their version, applies the same
cells by Visit ID and tries once more; after a second clash it leaves the cells for the next run
(the ledger keeps what was sent). Drive v3 has no conditional upload: a save landing between that
last metadata read and the upload (a fraction of a second) is the one window left, and Drive's
version history still holds it. Every request goes through :mod:`.http`'s bounded retries.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..background import begun
from ..config import DEFAULT_TIMEZONE
from ..errors import HomevisitsError
from . import RawSheet

if TYPE_CHECKING:
    from ..sheet import SheetLayout
    from .excel import ExcelSource
    from .gsheet import GoogleSheet
    from .http import RetryingHTTPClient, RetryPolicy, ServiceAccount
    from .writeback import CellUpdate, WriteResult

DRIVE_API = "https://www.googleapis.com/drive/v3"
UPLOAD_API = "https://www.googleapis.com/upload/drive/v3"
FIELDS = "id,name,mimeType,md5Checksum,headRevisionId,modifiedTime,capabilities(canEdit),contentRestrictions"
GOOGLE_SHEET = "application/vnd.google-apps.spreadsheet"
EXCEL_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel.sheet.macroEnabled.12": ".xlsm",
}
GOOGLE_KINDS = {
    "application/vnd.google-apps.document": "a Google Doc",
    "application/vnd.google-apps.presentation": "a Google Slides presentation",
    "application/vnd.google-apps.form": "a Google Form",
    "application/vnd.google-apps.folder": "a folder",
    "application/vnd.google-apps.shortcut": "a shortcut",
}
_PATH_ID = re.compile(r"/(?:file|spreadsheets)/(?:u/\d+/)?d/([A-Za-z0-9_-]{10,})")
_ID = re.compile(r"[A-Za-z0-9_-]{20,}")


# ---------------------------------------------------------------- which file


def is_office_mode(text: str) -> bool:
    """A Sheets URL of an Excel file opened in Sheets' Office-editing mode (``...?rtpof=true``)."""
    parts = urlsplit(text.strip())
    return parts.hostname == "docs.google.com" and "true" in parse_qs(parts.query).get("rtpof", [])


def is_drive_url(text: str) -> bool:
    """A URL that names a file on Drive rather than a native Google Sheet: Drive's own, or Office mode."""
    parts = urlsplit(text.strip())
    return parts.scheme in ("http", "https") and (
        parts.hostname == "drive.google.com" or is_office_mode(text)
    )


def drive_file_id(text: str) -> str:
    """The file id from a Drive URL (``/file/d/<id>/view``, ``open?id=<id>``), a Sheets URL, or the id itself."""
    text = text.strip()
    match = _PATH_ID.search(text)
    if match:
        return match[1]
    ids = parse_qs(urlsplit(text).query).get("id", [])
    if ids and _ID.fullmatch(ids[0]):
        return ids[0]
    if _ID.fullmatch(text):
        return text
    raise HomevisitsError(
        f"'{text[:80]}' is not a Google Drive file URL or id: copy the file's address from the browser into "
        "[source] drive_file."
    )


def same_version(now: dict[str, Any], then: dict[str, Any]) -> bool:
    return (now.get("headRevisionId"), now.get("md5Checksum")) == (
        then.get("headRevisionId"),
        then.get("md5Checksum"),
    )


def md5_of(content: bytes) -> str:
    import hashlib

    return hashlib.md5(content, usedforsecurity=False).hexdigest()


@contextlib.contextmanager
def private_copy(content: bytes, name: str) -> Iterator[Path]:
    """``content`` as a file only this user can read, in a folder of its own; both gone on leaving."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="homevisits-drive-"))  # mode 0700
    try:
        path = folder / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class SavedMeanwhile(HomevisitsError):
    """Someone saved the file on Drive between the download and the upload, twice running."""


# ---------------------------------------------------------------- the source


class DriveSource:
    """An ``.xlsx``/``.xlsm`` on Google Drive, reached through a service account (see the module docstring)."""

    def __init__(
        self,
        file: str,
        worksheet: str | None = None,
        credentials: str | Path | None = None,
        *,
        columns: dict[str, str] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.file_id = drive_file_id(file)
        self.worksheet = worksheet
        self.credentials = credentials
        self.columns = dict(columns or {})
        self.timezone = timezone
        self.endpoint = endpoint
        self.retry = retry
        self._sleep, self._clock, self._rng = sleep, clock, rng
        self._http: RetryingHTTPClient | None = None
        self._account: ServiceAccount | None = None
        self.meta: dict[str, Any] | None = None  # the file's metadata when ``content`` was downloaded
        self.content: bytes | None = None
        self.snapshot: RawSheet | None = None
        self.sheet: GoogleSheet | None = None  # set when the file turns out to be a native Google Sheet
        self._uploading = False

    def __repr__(self) -> str:
        return f"DriveSource({self.file_id[:8]}..., {self.worksheet!r})"

    # ------------------------------------------------------------ connection

    @property
    def http(self) -> RetryingHTTPClient:
        """The project's bounded-retry client over an authorised session, with the drive scope."""
        if self._http is None:
            from .http import (
                DRIVE_SCOPES,
                RetryingHTTPClient,
                RetryPolicy,
                load_service_account,
                make_session,
            )

            self._account = load_service_account(self.credentials, DRIVE_SCOPES)
            session = make_session(self._account.credentials, self.endpoint)
            self._http = RetryingHTTPClient(
                None,
                session,
                policy=self.retry or RetryPolicy(),
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
            )
        return self._http

    @property
    def requests_made(self) -> int:
        return self._http.requests_made if self._http else 0

    @property
    def client_email(self) -> str:
        return self._account.client_email if self._account else "the service account"

    @property
    def name(self) -> str:
        return str((self.meta or {}).get("name") or f"the Drive file {self.file_id}")

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn a failed request into the one sentence a person sees."""
        import requests
        from google.auth import exceptions as auth_errors
        from gspread.exceptions import APIError

        try:
            yield
        except (APIError, requests.RequestException, auth_errors.GoogleAuthError) as exc:
            raise self.explain(exc, action) from exc
        finally:
            self._uploading = False

    def explain(self, exc: BaseException, action: str) -> HomevisitsError:
        """One sentence saying what to do about a failed Drive request."""
        import requests
        from google.auth import exceptions as auth_errors
        from gspread.exceptions import APIError

        from .http import STATUS_WORDS, Context, explain, rate_limited, tried

        if isinstance(exc, auth_errors.GoogleAuthError):
            key = self._account.path if self._account else None
            return explain(exc, Context(action, self.file_id, self.client_email, key))
        email, name = self.client_email, self.name
        if self._uploading:
            unwritten = " The upload may or may not have gone through: the next run reads the file again."
        else:
            unwritten = " Nothing was written." if action != "read" else ""
        after = tried(exc)
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return HomevisitsError(
                f"Could not reach Google Drive{after} ({exc.__class__.__name__}): check the internet connection; "
                f"the next run will try again.{unwritten}"
            )
        if not isinstance(exc, APIError):
            return HomevisitsError(f"Could not {action} {name} on Google Drive ({exc}).{unwritten}")
        code, message = exc.code, str(exc.error.get("message", ""))
        if code == 404:
            return HomevisitsError(
                f"Google Drive has no file {self.file_id} that the service account {email} can see: check "
                f"[source] drive_file, and add {email} to the Shared Drive as a Content manager.{unwritten}"
            )
        if rate_limited(exc):
            return HomevisitsError(
                f"Google Drive is limiting how often the tool may call it ({code}){after}: the next run will "
                f"try again.{unwritten}"
            )
        if code == 403:
            if (
                "has not been used" in message
                or "is disabled" in message
                or "SERVICE_DISABLED" in str(exc.error)
            ):
                return HomevisitsError(
                    "The Google Drive API is not enabled for the service account's project: enable it in Google "
                    "Cloud (APIs & Services, Library, Google Drive API) and run again."
                )
            return HomevisitsError(
                f"The service account {email} may not {action} {name} on Google Drive: add {email} to the "
                f"Shared Drive as a Content manager (Manage members) and run again.{unwritten}"
            )
        if code == 401:
            return HomevisitsError(
                "Google did not accept the service account's sign-in: create a new JSON key for the service "
                "account and point [source] credentials at it."
            )
        if code == 408 or code >= 500:
            return HomevisitsError(
                f"Google Drive did not answer ({code} {STATUS_WORDS.get(code, 'server error')}){after}: the next "
                f"run will try again.{unwritten}"
            )
        return HomevisitsError(
            f"Google Drive refused to {action} {name} ({code}: {message[:200]}).{unwritten}"
        )

    # ------------------------------------------------------------ requests (one each)

    def _metadata(self) -> dict[str, Any]:
        url = f"{DRIVE_API}/files/{self.file_id}"
        reply = self.http.request("get", url, params={"fields": FIELDS, "supportsAllDrives": "true"})
        meta = reply.json()
        self.meta = self.meta or meta  # a name for messages even before the first download
        return meta

    def _download(self) -> bytes:
        url = f"{DRIVE_API}/files/{self.file_id}"
        return self.http.request("get", url, params={"alt": "media", "supportsAllDrives": "true"}).content

    def _keep_forever(self, meta: dict[str, Any]) -> None:
        """Pin the version about to be replaced in Drive's version history (Manage versions, Keep forever)."""
        url = f"{DRIVE_API}/files/{self.file_id}/revisions/{meta['headRevisionId']}"
        self.http.request("patch", url, json={"keepForever": True})

    def _upload(self, content: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        """Replace the file's content: same id, name, sharing and place on the Shared Drive."""
        url = f"{UPLOAD_API}/files/{self.file_id}"
        params = {"uploadType": "media", "supportsAllDrives": "true", "fields": FIELDS}
        self._uploading = True
        reply = self.http.request(
            "patch", url, params=params, data=content, headers={"Content-Type": meta["mimeType"]}
        )
        self._uploading = False
        return reply.json()

    # ------------------------------------------------------------ what the file is

    def _suffix(self, meta: dict[str, Any]) -> str:
        """The Excel suffix for the file's type, or one sentence saying why it is not the log."""
        kind, name = str(meta.get("mimeType", "")), str(meta.get("name", self.file_id))
        if kind in EXCEL_TYPES:
            return EXCEL_TYPES[kind]
        if kind == "application/vnd.ms-excel":
            raise HomevisitsError(
                f"{name} on Google Drive is an old-format Excel file (.xls): open it in Excel and save it as an "
                ".xlsx workbook, then point [source] drive_file at that."
            )
        if kind.startswith("application/vnd.google-apps."):
            what = GOOGLE_KINDS.get(kind, "a Google file")
            raise HomevisitsError(
                f"{name} on Google Drive is {what}, not an Excel workbook or a Google Sheet: point [source] "
                "drive_file at the home-visits log."
            )
        raise HomevisitsError(
            f"{name} on Google Drive is not an Excel workbook ({kind or 'no type'}): point [source] drive_file "
            "at the .xlsx home-visits log."
        )

    def _file_name(self, meta: dict[str, Any]) -> str:
        """The Drive file's name, safe as a file name, with the suffix of its type."""
        suffix = self._suffix(meta)
        stem = (
            re.sub(r"[^\w .()&+,-]", "_", str(meta.get("name") or "workbook"))[:120].strip(" .") or "workbook"
        )
        return stem if stem.lower().endswith(suffix) else stem + suffix

    def _check_editable(self, meta: dict[str, Any]) -> None:
        if any(r.get("readOnly") for r in meta.get("contentRestrictions") or []):
            raise HomevisitsError(
                f"{self.name} is locked on Google Drive (a read-only content restriction): nothing was written; "
                "unlock it in Drive (right-click, File information, Unlock) for homevisits to write to it."
            )
        if not (meta.get("capabilities") or {}).get("canEdit"):
            raise HomevisitsError(
                f"The service account {self.client_email} may only read {self.name} on Google Drive: nothing was "
                f"written; add {self.client_email} to the Shared Drive as a Content manager and run again."
            )
        if not meta.get("headRevisionId") or not meta.get("md5Checksum"):
            raise HomevisitsError(
                f"Google Drive gave no version of {self.name} (headRevisionId, md5Checksum) to check a save "
                "against: nothing was written."
            )

    def _fetch(self) -> bool:
        """The metadata and the bytes of one version (the download is checked against its md5).

        Returns True for an Excel file, False for a native Google Sheet (nothing downloaded).
        """
        for _ in range(2):
            meta = self._metadata()
            self.meta = meta
            if meta.get("mimeType") == GOOGLE_SHEET:
                return False
            self._suffix(meta)
            content = self._download()
            if meta.get("md5Checksum") in (None, md5_of(content)):  # None: checked again before any write
                self.content = content
                return True
        raise HomevisitsError(f"{self.name} changed on Google Drive while it was being read: run again.")

    def _as_sheet(self) -> GoogleSheet:
        """The Sheets source for a native Google Sheet, sharing this sign-in and its request count."""
        if self.sheet is None:
            from .gsheet import GoogleSheet

            sheet = GoogleSheet(
                self.file_id, self.worksheet, self.credentials, columns=self.columns, timezone=self.timezone
            )
            sheet._http, sheet._account = self.http, self._account
            self.sheet = sheet
        return self.sheet

    def _excel(self, path: Path) -> ExcelSource:
        from .excel import ExcelSource

        return ExcelSource(path, self.worksheet, columns=self.columns, timezone=self.timezone)

    def _ensure_fetched(self) -> None:
        if self.sheet is None and self.content is None:
            with self._errors("read"):
                if not self._fetch():
                    self._as_sheet()

    # ------------------------------------------------------------ read

    def read(self) -> RawSheet:
        """One metadata request and one download, then the Excel reader (a native Sheet: the Sheets source)."""
        begun()  # requests: outside Python's lock
        self.sheet, self.content = None, None
        self._ensure_fetched()
        if self.sheet is not None:
            return self.sheet.read()
        assert self.meta is not None and self.content is not None
        with private_copy(self.content, self._file_name(self.meta)) as path:
            raw = self._excel(path).read()
        raw.name = self.name
        self.snapshot = raw
        return raw

    # ------------------------------------------------------------ write back

    def _save(self, edit: Callable[[ExcelSource, bool], tuple[Any, bool]]) -> Any:
        """Apply ``edit`` to a private copy and upload it unless someone saved meanwhile (see the module).

        ``edit(excel, again)`` changes the copy through the local workbook's write-back and returns
        (its result, whether anything changed); ``again`` is true on the retry after a clash.
        """
        assert self.meta is not None and self.content is not None
        meta, content = self.meta, self.content
        with self._errors("write to"):
            for again in (False, True):
                self._check_editable(meta)
                with private_copy(content, self._file_name(meta)) as path:
                    excel = self._excel(path)
                    result, changed = edit(excel, again)
                    if not changed:
                        return result
                    edited = path.read_bytes()
                    snapshot = excel.snapshot
                self._keep_forever(meta)
                now = self._metadata()
                if same_version(now, meta):
                    self.meta = self._upload(edited, meta)
                    self.content = edited
                    if snapshot is not None:
                        snapshot.name = self.name
                        self.snapshot = snapshot
                    return result
                if again:
                    break
                content = self._download()
                if md5_of(content) != now.get("md5Checksum"):
                    break
                meta, self.meta, self.content = now, now, content
        raise SavedMeanwhile(
            f"Someone saved {self.name} on Google Drive while homevisits was writing to it, twice: nothing was "
            "written; the next run will write it."
        )

    def write(self, updates: Iterable[CellUpdate], layout: SheetLayout | None = None) -> WriteResult:
        """The tool's cells in the columns ``layout`` (the read's) names, each found by Visit ID in the
        newest version on Drive; one upload, or none (none, and one sentence, if a column moved)."""
        from .writeback import Skipped, WriteResult, layout_for

        updates = list(updates)
        if not updates:
            return WriteResult()
        if self.snapshot is None and self.sheet is None:
            self.read()
        if self.sheet is not None:
            return self.sheet.write(updates, layout)
        original = self.snapshot
        assert original is not None
        found = layout_for(original, layout, self.columns)  # a newer version must still match it

        def edit(excel: ExcelSource, again: bool) -> tuple[WriteResult, bool]:
            raw = excel.read()
            todo, skipped = updates, []
            if again:  # a new Visit ID goes only into a row still exactly as it was read
                todo, skipped = still_in_place(updates, original, raw)
            result = excel.write(todo, found)
            result.skipped[:0] = skipped
            return result, bool(result.written)

        try:
            return self._save(edit)
        except SavedMeanwhile as exc:
            reason = str(exc).rstrip(".")
            return WriteResult([], [Skipped(update, reason) for update in updates])

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None:
        """Replace the 'Policy check' tab of the workbook on Drive (one upload)."""
        self._ensure_fetched()
        if self.sheet is not None:
            return self.sheet.write_findings(header, rows)

        def edit(excel: ExcelSource, again: bool) -> tuple[None, bool]:
            excel.write_findings(header, rows)
            return None, True

        self._save(edit)
        return None

    def init_sheet(self, schema: Any = None, fields: Any = None) -> Any:
        """Set the log up from the column catalogue, or add its missing columns (one upload when it does)."""
        self._ensure_fetched()
        if self.sheet is not None:
            return self.sheet.init_sheet(schema, fields)

        def edit(excel: ExcelSource, again: bool) -> tuple[Any, bool]:
            setup = excel.init_sheet(schema, fields)
            return setup, bool(setup.add)

        return self._save(edit)


def still_in_place(
    updates: list[CellUpdate], before: RawSheet, now: RawSheet
) -> tuple[list[CellUpdate], list[Any]]:
    """Split ``updates`` for a version saved by someone else: a new Visit ID is kept only for a row
    whose cells are exactly as first read; every other update is found again by its Visit ID."""
    from .writeback import Skipped, trimmed

    def row_of(raw: RawSheet, row: int) -> list[Any]:
        at = row - raw.first_row
        return trimmed(raw.rows[at]) if 0 <= at < len(raw.rows) else []

    keep, skipped = [], []
    for update in updates:
        if update.field == "visit_id" and (
            update.row is None or row_of(before, update.row) != row_of(now, update.row)
        ):
            reason = (
                f"row {update.row} changed or moved since the sheet was read; the next run will try again"
            )
            skipped.append(Skipped(update, reason))
        else:
            keep.append(update)
    return keep, skipped


class SheetOrDriveFile:
    """``[source] spreadsheet`` or ``--source`` as given (a key, or a Sheets URL without ``rtpof``): the
    Google Sheet it usually is, until the Sheets API answers that the document is not a Google Sheet;
    from then on the Drive source, which reads the file's type from its metadata. A school may paste
    the id or URL of its ``.xlsx`` anywhere a Sheet's goes; a native Sheet costs nothing more."""

    def __init__(self, sheet: GoogleSheet, drive: Callable[[], DriveSource]) -> None:
        self.sheet = sheet
        self.drive: DriveSource | None = None
        self._open_drive = drive

    def __repr__(self) -> str:
        return f"SheetOrDriveFile({self.drive or self.sheet!r})"

    @property
    def requests_made(self) -> int:
        return self.sheet.requests_made + (self.drive.requests_made if self.drive else 0)

    def _call(self, name: str, *args: Any) -> Any:
        from .http import NotAGoogleSheet

        if self.drive is None:
            try:
                return getattr(self.sheet, name)(*args)
            except NotAGoogleSheet:  # refused at its first request: nothing was changed
                self.drive = self._open_drive()
        return getattr(self.drive, name)(*args)

    def read(self) -> RawSheet:
        return self._call("read")

    def write(self, updates: Iterable[CellUpdate], layout: SheetLayout | None = None) -> WriteResult:
        return self._call("write", list(updates), layout)

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None:
        return self._call("write_findings", header, rows)

    def init_sheet(self, schema: Any = None, fields: Any = None) -> Any:
        return self._call("init_sheet", schema, fields)
