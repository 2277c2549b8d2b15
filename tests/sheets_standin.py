"""A loopback stand-in for the parts of the Google Sheets API v4 that homevisits uses.

``SheetsStandIn`` serves on 127.0.0.1 (``http.server`` in a thread) and behaves like Google where the
tool relies on it: the OAuth token endpoint for a service account (JWT bearer grant, signature
checked), spreadsheet metadata, ``values`` get / batchGet / update / batchUpdate / append, and
``spreadsheets:batchUpdate`` (addSheet, updateSheetProperties, updateCells, repeatCell,
setDataValidation, appendDimension...), atomically. It keeps cell values the way Sheets does
(dates as serial numbers with a date format), renders ``UNFORMATTED_VALUE`` / ``FORMATTED_VALUE`` /
``FORMULA`` and ``SERIAL_NUMBER`` / ``FORMATTED_STRING``, treats ``RAW`` and ``USER_ENTERED`` input
differently, parses A1 ranges with quoted sheet names, answers errors in Google's JSON shape, counts
every request, and lets a test inject failures or change the sheet between a read and a write.
Every request is checked against Google's discovery document of the Sheets API v4 (see
``discovery.py``): an unknown path, parameter or body field is answered 400, kept in
``violations``, and fails the test when the stand-in stops.

The real gspread client reaches it through homevisits' own session (``endpoint=api.url``), so the
whole client stack runs: credentials, token refresh, HTTP, JSON and A1 ranges.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

EPOCH = dt.datetime(1899, 12, 30)
SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    408: "The request timed out.",
    429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' "
    "of service 'sheets.googleapis.com'.",
    500: "Internal error encountered.",
    502: "Bad gateway.",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}
DATE_TYPES = ("DATE", "TIME", "DATE_TIME")
SIGN_IN = ("token", "allowedLocations")  # google-auth's own calls, not Sheets API requests


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# ---------------------------------------------------------------- the model


@dataclass
class Cell:
    value: Any = None  # number, str or bool, as Sheets keeps it; None when empty
    formula: str | None = None
    fmt: dict[str, str] | None = None  # numberFormat {"type", "pattern"}
    note: str | None = None
    bold: bool = False

    def empty(self) -> bool:
        return (self.value is None or self.value == "") and self.formula is None


@dataclass
class Grid:
    """One worksheet."""

    sheet_id: int
    title: str
    rows: int = 1000
    cols: int = 26
    frozen: int = 0
    index: int = 0
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)
    validations: list[tuple[dict[str, int], dict[str, Any]]] = field(default_factory=list)
    range_formats: list[tuple[dict[str, int], dict[str, str]]] = field(default_factory=list)

    def properties(self) -> dict[str, Any]:
        grid = {"rowCount": self.rows, "columnCount": self.cols}
        if self.frozen:
            grid["frozenRowCount"] = self.frozen
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": self.index,
            "sheetType": "GRID",
            "gridProperties": grid,
        }

    def used(self) -> tuple[int, int]:
        """(rows, columns) up to the last non-empty cell."""
        rows = cols = 0
        for (r, c), cell in self.cells.items():
            if not cell.empty():
                rows, cols = max(rows, r + 1), max(cols, c + 1)
        return rows, cols

    def number_format(self, r: int, c: int) -> dict[str, str] | None:
        cell = self.cells.get((r, c))
        if cell is not None and cell.fmt:
            return cell.fmt
        for grid_range, fmt in reversed(self.range_formats):
            if _inside(grid_range, r, c):
                return fmt
        return None

    def validation(self, r: int, c: int) -> dict[str, Any] | None:
        for grid_range, rule in reversed(self.validations):
            if _inside(grid_range, r, c):
                return rule
        return None


@dataclass
class Book:
    key: str
    title: str
    sheets: list[Grid]
    editors: set[str] | None = None  # None: every service account may edit
    locale: str = "en_GB"

    def sheet(self, title: str) -> Grid | None:
        return next((s for s in self.sheets if s.title == title), None)

    def by_id(self, sheet_id: int) -> Grid | None:
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)


def _inside(grid_range: dict[str, int], r: int, c: int) -> bool:
    return grid_range.get("startRowIndex", 0) <= r < grid_range.get(
        "endRowIndex", 1 << 30
    ) and grid_range.get("startColumnIndex", 0) <= c < grid_range.get("endColumnIndex", 1 << 30)


# ---------------------------------------------------------------- values as Sheets keeps them


def to_serial(value: Any) -> tuple[Any, dict[str, str] | None]:
    """A Python value as Sheets stores a typed cell: dates and times become serial numbers with a format."""
    if isinstance(value, dt.datetime):
        days = (value - EPOCH).total_seconds() / 86400
        return days, {"type": "DATE_TIME", "pattern": "dd/mm/yyyy hh:mm"}
    if isinstance(value, dt.date):
        return (value - EPOCH.date()).days, {"type": "DATE", "pattern": "dd/mm/yyyy"}
    if isinstance(value, dt.time):
        return (value.hour * 3600 + value.minute * 60 + value.second) / 86400, {
            "type": "TIME",
            "pattern": "hh:mm",
        }
    return value, None


def formatted(value: Any, fmt: dict[str, str] | None) -> str:
    """FORMATTED_VALUE as an en_GB sheet shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        if fmt and fmt.get("type") in DATE_TYPES:
            moment = EPOCH + dt.timedelta(days=float(value))
            return moment.strftime(
                {"DATE": "%d/%m/%Y", "TIME": "%H:%M:%S", "DATE_TIME": "%d/%m/%Y %H:%M:%S"}[fmt["type"]]
            )
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UK_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def user_entered(value: Any) -> Cell:
    """What Sheets makes of a value typed by a person (en_GB locale)."""
    if not isinstance(value, str):
        return Cell(value=value)
    if value == "":
        return Cell()
    if value.startswith("'"):
        return Cell(value=value[1:])
    if value.startswith("="):
        return Cell(value="", formula=value)
    if value.upper() in ("TRUE", "FALSE"):
        return Cell(value=value.upper() == "TRUE")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        number = float(text)
        return Cell(value=int(number) if number.is_integer() and "." not in text else number)
    match = _UK_DATE.fullmatch(text)
    if match:
        day, month, year, hour, minute, second = match.groups()
        try:
            moment = dt.datetime(
                int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
            )
        except ValueError:
            return Cell(value=value)
        number, fmt = to_serial(moment if hour else moment.date())
        return Cell(value=number, fmt=fmt)
    match = _CLOCK.fullmatch(text)
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        number, fmt = to_serial(dt.time(int(match[1]), int(match[2]), int(match[3] or 0)))
        return Cell(value=number, fmt=fmt)
    return Cell(value=value)


def raw_input(value: Any) -> Cell:
    """RAW input: stored exactly as given, never parsed, never a formula."""
    if value == "" or value is None:
        return Cell()
    return Cell(value=value)


# ---------------------------------------------------------------- A1 notation


def quote_title(title: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) and not re.fullmatch(r"[A-Za-z]{1,3}\d+", title):
        return title
    return "'" + title.replace("'", "''") + "'"


def column_index(letters: str) -> int:
    number = 0
    for char in letters.upper():
        number = number * 26 + ord(char) - 64
    return number - 1


def column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


_CELLS = re.compile(r"([A-Za-z]{0,3})(\d*)(?::([A-Za-z]{0,3})(\d*))?")


def split_range(text: str) -> tuple[str | None, str | None]:
    """``'It''s'!A1:B2`` -> ("It's", "A1:B2"); ``Sheet1`` -> (None, "Sheet1") (resolved by the caller)."""
    text = text.strip()
    if text.startswith("'"):
        title, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    title.append("'")
                    i += 2
                    continue
                break
            title.append(text[i])
            i += 1
        else:
            raise ApiError(400, f"Unable to parse range: {text}")
        rest = text[i + 1 :]
        if not rest:
            return "".join(title), None
        if not rest.startswith("!"):
            raise ApiError(400, f"Unable to parse range: {text}")
        return "".join(title), rest[1:]
    if "!" in text:
        title, cells = text.rsplit("!", 1)
        return title, cells
    return None, text


@dataclass
class Span:
    grid: Grid
    r1: int
    c1: int
    r2: int | None  # inclusive; None: to the end of the grid
    c2: int | None

    def clamp(self) -> tuple[int, int, int, int]:
        return (
            self.r1,
            self.c1,
            self.grid.rows - 1 if self.r2 is None else self.r2,
            self.grid.cols - 1 if self.c2 is None else self.c2,
        )

    def a1(self) -> str:
        r1, c1, r2, c2 = self.clamp()
        return f"{quote_title(self.grid.title)}!{column_letters(c1)}{r1 + 1}:{column_letters(c2)}{r2 + 1}"


def parse_cells(grid: Grid, cells: str | None, text: str) -> Span:
    if cells is None:
        return Span(grid, 0, 0, None, None)
    match = _CELLS.fullmatch(cells.strip())
    if not match or not any(match.groups()):
        raise ApiError(400, f"Unable to parse range: {text}")
    l1, d1, l2, d2 = match.groups()
    has_right = ":" in cells
    if not has_right and not (l1 and d1):
        raise ApiError(400, f"Unable to parse range: {text}")
    r1 = int(d1) - 1 if d1 else 0
    c1 = column_index(l1) if l1 else 0
    if has_right:
        r2 = int(d2) - 1 if d2 else None
        c2 = column_index(l2) if l2 else None
    else:
        r2, c2 = r1, c1
    if (
        (r2 is not None and r2 >= grid.rows)
        or (c2 is not None and c2 >= grid.cols)
        or r1 >= grid.rows
        or c1 >= grid.cols
    ):
        raise ApiError(
            400,
            f"Range ({quote_title(grid.title)}!{cells}) exceeds grid limits. Max rows: {grid.rows}, max columns: {grid.cols}",
        )
    return Span(grid, r1, c1, r2, c2)


def resolve(book: Book, text: str) -> Span:
    title, cells = split_range(text)
    if title is None:
        grid = book.sheet(cells or "")
        if grid is not None:
            return Span(grid, 0, 0, None, None)
        if not book.sheets:
            raise ApiError(400, f"Unable to parse range: {text}")
        return parse_cells(book.sheets[0], cells, text)
    grid = book.sheet(title)
    if grid is None:
        raise ApiError(400, f"Unable to parse range: {text}")
    return parse_cells(grid, cells, text)


# ---------------------------------------------------------------- the service account key


@functools.lru_cache(maxsize=1)
def _private_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Request:
    kind: str
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class _Failure:
    status: int
    kind: str | None
    message: str | None
    applied: bool
    headers: dict[str, str]
    reason: str | None = None


# ---------------------------------------------------------------- the server


class SheetsStandIn:
    """``with SheetsStandIn() as api:`` a Sheets API on ``api.url``; see the module docstring."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.log: list[Request] = []
        self.counts: Counter[str] = Counter()
        self.scopes: list[str] = []
        self._tokens: dict[str, tuple[str, list[str]]] = {}
        self._keys: dict[str, Any] = {}
        self._failures: deque[_Failure] = deque()
        self._hooks: list[tuple[str, Callable[[SheetsStandIn], None]]] = []
        self.violations: list[str] = []  # requests Google's discovery document does not describe
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life

    def start(self) -> SheetsStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sheets-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SheetsStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        assert not self.violations, "requests Google would not recognise:\n" + "\n".join(self.violations)

    def discovery_problems(
        self, method: str, path: str, query: dict[str, list[str]], payload: Any
    ) -> list[str]:
        """What the Sheets API v4 discovery document does not describe in this request."""
        from discovery import Discovery

        return Discovery.load("sheets", "v4").check(method, path, query, payload)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------ set-up helpers for tests

    def service_account_file(
        self, folder: Path, email: str = "homevisits@school-project.iam.gserviceaccount.com"
    ) -> Path:
        """A throw-away service-account JSON key whose token endpoint is this stand-in."""
        key = _private_key()
        self._keys[email] = key.public_key()
        info = {
            "type": "service_account",
            "project_id": "school-project",
            "private_key_id": "standin-key",
            "private_key": _pem(key),
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": f"{self.url}/auth",
            "token_uri": f"{self.url}/token",
            "universe_domain": "googleapis.com",
        }
        path = Path(folder) / "service-account.json"
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def add_book(
        self,
        key: str,
        sheets: dict[str, list[list[Any]]] | None = None,
        *,
        title: str = "Home visits log",
        editors: Iterable[str] | None = None,
        rows: int = 1000,
        cols: int = 26,
        locale: str = "en_GB",
    ) -> Book:
        """A spreadsheet with worksheets ``{title: rows of Python values}`` (dates typed as dates)."""
        with self._lock:
            grids = []
            for index, (name, values) in enumerate((sheets or {"Sheet1": []}).items()):
                width = max([cols, *(len(r) for r in values)])
                grid = Grid(
                    sheet_id=1000 + index * 7,
                    title=name,
                    rows=max(rows, len(values) + 1),
                    cols=width,
                    index=index,
                )
                grids.append(grid)
            book = Book(
                key=key,
                title=title,
                sheets=grids,
                editors=set(editors) if editors is not None else None,
                locale=locale,
            )
            self.books[key] = book
            for name, values in (sheets or {}).items():
                self.put_rows(key, name, values)
            return book

    def grid(self, key: str, title: str) -> Grid:
        grid = self.books[key].sheet(title)
        assert grid is not None, f"no worksheet {title}"
        return grid

    def put_rows(self, key: str, title: str, rows: list[list[Any]], start: int = 1) -> None:
        """Type ``rows`` into the sheet from row ``start``: dates/times become serials, strings stay text."""
        with self._lock:
            grid = self.grid(key, title)
            grid.rows = max(grid.rows, start - 1 + len(rows))
            for i, values in enumerate(rows):
                grid.cols = max(grid.cols, len(values))
                for j, value in enumerate(values):
                    number, fmt = to_serial(value)
                    if number is None or number == "":
                        grid.cells.pop((start - 1 + i, j), None)
                    else:
                        grid.cells[(start - 1 + i, j)] = Cell(value=number, fmt=fmt)

    def values(self, key: str, title: str, render: str = "UNFORMATTED_VALUE") -> list[list[Any]]:
        """The worksheet as values.get would return it (trailing blanks trimmed)."""
        with self._lock:
            grid = self.grid(key, title)
            return _render(grid, Span(grid, 0, 0, None, None), render, "SERIAL_NUMBER")

    def cell(self, key: str, title: str, a1: str) -> Cell:
        grid = self.grid(key, title)
        span = parse_cells(grid, a1, a1)
        return grid.cells.get((span.r1, span.c1), Cell())

    def insert_rows(self, key: str, title: str, before: int, rows: list[list[Any]]) -> None:
        """Insert rows above sheet row ``before`` (1-based), as a person doing Insert row above would."""
        with self._lock:
            grid = self.grid(key, title)
            at, count = before - 1, len(rows)
            grid.cells = {(r + count if r >= at else r, c): cell for (r, c), cell in grid.cells.items()}
            grid.rows += count
        self.put_rows(key, title, rows, start=before)

    def delete_rows(self, key: str, title: str, row: int, count: int = 1) -> None:
        with self._lock:
            grid = self.grid(key, title)
            at = row - 1
            kept = {}
            for (r, c), cell in grid.cells.items():
                if r < at:
                    kept[(r, c)] = cell
                elif r >= at + count:
                    kept[(r - count, c)] = cell
            grid.cells = kept
            grid.rows -= count

    def sort_rows(
        self, key: str, title: str, first: int, by: Callable[[list[Any]], Any], reverse: bool = False
    ) -> None:
        """Sort the rows from sheet row ``first`` down, as Data > Sort range does (whole rows move)."""
        with self._lock:
            grid = self.grid(key, title)
            used_rows, used_cols = grid.used()
            start = first - 1
            rows = [[grid.cells.get((r, c)) for c in range(used_cols)] for r in range(start, used_rows)]
            rows.sort(key=lambda cells: by([cell.value if cell else None for cell in cells]), reverse=reverse)
            for r, c in [k for k in grid.cells if start <= k[0] < used_rows]:
                del grid.cells[(r, c)]
            for i, cells in enumerate(rows):
                for c, cell in enumerate(cells):
                    if cell is not None:
                        grid.cells[(start + i, c)] = cell

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        kind: str | None = None,
        message: str | None = None,
        applied: bool = False,
        retry_after: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``kind``, e.g. "values.batchUpdate") with ``status``.

        ``applied=True`` carries the request out first and then answers with the error, as when a
        gateway times out after Google did the work. ``reason`` goes in the error's ``errors`` list,
        as Drive words its rate limits (403 ``userRateLimitExceeded``).
        """
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        for _ in range(times):
            self._failures.append(_Failure(status, kind, message, applied, headers, reason))

    def before(self, kind: str, hook: Callable[[SheetsStandIn], None]) -> None:
        """Run ``hook(self)`` once, just before the next request of ``kind`` is carried out."""
        self._hooks.append((kind, hook))

    def api_requests(self) -> int:
        """Requests to the Sheets API (signing in not counted)."""
        return sum(self.sheets_counts().values())

    def sheets_counts(self) -> dict[str, int]:
        """Requests to the Sheets API by kind: what a run costs against Google's quota."""
        return {kind: n for kind, n in self.counts.items() if kind not in SIGN_IN}

    def reset_counts(self) -> None:
        self.counts.clear()
        self.log.clear()

    # ------------------------------------------------------------ dispatch

    def handle(self, method: str, target: str, body: bytes, headers: Any) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            payload = json.loads(body) if body and "json" in (headers.get("Content-Type") or "") else None
        except json.JSONDecodeError:
            return 400, _error(400, "Invalid JSON payload received."), {}
        if payload is None and body:
            payload = body  # media (an upload): the bytes as sent
        kind, route = self._route(method, parts.path, query)
        with self._lock:
            self.counts[kind] += 1
            self.log.append(Request(kind, method, parts.path, query, payload))
            if kind not in SIGN_IN:
                problems = self.discovery_problems(method, parts.path, query, payload)
                if problems:
                    self.violations += problems
                    return 400, _error(400, "; ".join(problems)), {}
            failure = self._take_failure(kind)
            if failure is not None and not failure.applied:
                return (
                    failure.status,
                    _error(failure.status, failure.message, failure.reason),
                    failure.headers,
                )
            for hook_kind, hook in list(self._hooks):
                if hook_kind == kind:
                    self._hooks.remove((hook_kind, hook))
                    hook(self)
            try:
                if kind == "token":
                    status, answer = self._token(body)
                elif kind == "allowedLocations":
                    status, answer = 200, self._allowed_locations()
                else:
                    email = self._authorise(headers)
                    status, answer = 200, route(email, query, payload)
            except ApiError as exc:
                return exc.code, _error(exc.code, exc.message), {}
            if failure is not None:
                return (
                    failure.status,
                    _error(failure.status, failure.message, failure.reason),
                    failure.headers,
                )
            return status, answer, {}

    def _take_failure(self, kind: str) -> _Failure | None:
        for failure in self._failures:
            if failure.kind == kind or (failure.kind is None and kind not in SIGN_IN):
                self._failures.remove(failure)
                return failure
        return None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]] | None = None
    ) -> tuple[str, Callable[..., Any]]:
        if path == "/token" and method == "POST":
            return "token", self._not_found
        if re.fullmatch(r"/v1/projects/-/serviceAccounts/[^/]+/allowedLocations", path):
            return "allowedLocations", self._allowed_locations
        match = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", path)
        if not match:
            return "unknown", self._not_found
        key, rest = match[1], match[2]
        routes: list[tuple[str, str, str, Callable[..., Any]]] = [
            ("GET", r"", "metadata", self._metadata),
            ("POST", r":batchUpdate", "batchUpdate", self._batch_update),
            ("GET", r"/values:batchGet", "values.batchGet", self._batch_get),
            ("POST", r"/values:batchUpdate", "values.batchUpdate", self._values_batch_update),
            ("POST", r"/values/(.+):append", "values.append", self._append),
            ("GET", r"/values/(.+)", "values.get", self._values_get),
            ("PUT", r"/values/(.+)", "values.update", self._values_update),
        ]
        for verb, pattern, kind, handler in routes:
            found = re.fullmatch(pattern, rest)
            if verb == method and found:
                args = [unquote(g) for g in found.groups()]
                return kind, functools.partial(self._with_book, handler, key, args)
        return "unknown", self._not_found

    def _allowed_locations(self, *args: Any) -> Any:
        """google-auth's background lookup after signing in (answered so it never goes looking further)."""
        return {"encodedLocations": "0x0", "locations": []}

    def _not_found(self, *args: Any) -> Any:
        raise ApiError(404, "Requested entity was not found.")

    def _authorise(self, headers: Any) -> str:
        auth = headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token not in self._tokens:
            raise ApiError(
                401, "Request had invalid authentication credentials. Expected OAuth 2 access token."
            )
        email, scopes = self._tokens[token]
        if SHEETS_SCOPE not in scopes and "https://www.googleapis.com/auth/drive" not in scopes:
            raise ApiError(403, "Request had insufficient authentication scopes.")
        return email

    def _with_book(
        self, handler: Callable[..., Any], key: str, args: list[str], email: str, query: Any, payload: Any
    ) -> Any:
        book = self.books.get(key)
        if book is None:
            raise ApiError(404, "Requested entity was not found.")
        if book.editors is not None and email not in book.editors:
            raise ApiError(403, "The caller does not have permission")
        return handler(book, *args, query=query, payload=payload)

    # ------------------------------------------------------------ OAuth

    def _token(self, body: bytes) -> tuple[int, Any]:
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form.get("assertion", [""])[0]
        try:
            head, claims, signature = assertion.split(".")
            payload = json.loads(_b64(claims))
        except ValueError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        public = self._keys.get(payload.get("iss"))
        if public is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            public.verify(_b64(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        scopes = str(payload.get("scope", "")).split()
        self.scopes.append(payload.get("scope", ""))
        token = f"ya29.standin-{len(self._tokens) + 1}"
        self._tokens[token] = (payload["iss"], scopes)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # ------------------------------------------------------------ reads

    def _metadata(self, book: Book, query: Any, payload: Any) -> Any:
        properties = {"title": book.title, "locale": book.locale, "timeZone": "Europe/London"}
        fields = [f.strip() for f in ",".join(query.get("fields", [])).split(",") if f.strip()]
        if fields and "properties" not in fields:  # as Google does: only the properties asked for
            properties = {k: v for k, v in properties.items() if f"properties.{k}" in fields}
        return {
            "spreadsheetId": book.key,
            "properties": properties,
            "sheets": [
                {"properties": grid.properties()} for grid in sorted(book.sheets, key=lambda g: g.index)
            ],
        }

    def _values_get(self, book: Book, text: str, query: Any, payload: Any) -> Any:
        return self._value_range(book, text, query)

    def _batch_get(self, book: Book, query: Any, payload: Any) -> Any:
        ranges = query.get("ranges", [])
        return {
            "spreadsheetId": book.key,
            "valueRanges": [self._value_range(book, text, query) for text in ranges],
        }

    def _value_range(self, book: Book, text: str, query: Any) -> dict[str, Any]:
        span = resolve(book, text)
        render = query.get("valueRenderOption", ["FORMATTED_VALUE"])[0]
        dates = query.get("dateTimeRenderOption", ["SERIAL_NUMBER"])[0]
        if query.get("majorDimension", ["ROWS"])[0] != "ROWS":
            raise ApiError(400, "the stand-in serves majorDimension=ROWS only")
        answer: dict[str, Any] = {"range": span.a1(), "majorDimension": "ROWS"}
        values = _render(span.grid, span, render, dates)
        if values:
            answer["values"] = values
        return answer

    # ------------------------------------------------------------ value writes

    def _parse_input(self, query: Any, payload: Any) -> Callable[[Any], Cell]:
        option = (payload or {}).get("valueInputOption") or (query.get("valueInputOption") or [None])[0]
        if option is None:
            raise ApiError(400, "'valueInputOption' is required but not specified")
        if option not in ("RAW", "USER_ENTERED"):
            raise ApiError(400, f"Invalid value at 'value_input_option' ({option})")
        return raw_input if option == "RAW" else user_entered

    def _plan_values(
        self, book: Book, text: str, values: list[list[Any]], parse: Callable[[Any], Cell]
    ) -> list[tuple[Grid, int, int, Cell | None]]:
        span = resolve(book, text)
        _, _, r2, c2 = span.clamp()
        changes = []
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                r, c = span.r1 + i, span.c1 + j
                if r > r2 or c > c2:
                    raise ApiError(
                        400, f"Requested writing within range [{text}], but tried writing to row [{r + 1}]"
                    )
                if value is None:
                    continue  # null leaves the cell as it is
                changes.append((span.grid, r, c, parse(value)))
        return changes

    @staticmethod
    def _apply_values(changes: list[tuple[Grid, int, int, Cell | None]]) -> None:
        for grid, r, c, new in changes:
            old = grid.cells.get((r, c))
            if new is None or new.empty():
                if old is not None:
                    old.value, old.formula = None, None
                continue
            if old is None:
                grid.cells[(r, c)] = new
            else:
                old.value, old.formula = new.value, new.formula
                old.fmt = new.fmt or old.fmt

    def _values_batch_update(self, book: Book, query: Any, payload: Any) -> Any:
        parse = self._parse_input(query, payload)
        planned = [
            (item, self._plan_values(book, item["range"], item.get("values", []), parse))
            for item in payload.get("data", [])
        ]
        responses = []
        for item, changes in planned:
            self._apply_values(changes)
            responses.append(_update_reply(book, item["range"], changes))
        return {
            "spreadsheetId": book.key,
            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
            "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "totalUpdatedSheets": len({r["updatedRange"].split("!")[0] for r in responses}),
            "responses": responses,
        }

    def _values_update(self, book: Book, text: str, query: Any, payload: Any) -> Any:
        parse = self._parse_input(query, payload)
        changes = self._plan_values(book, text, payload.get("values", []), parse)
        self._apply_values(changes)
        return _update_reply(book, text, changes)

    def _append(self, book: Book, text: str, query: Any, payload: Any) -> Any:
        parse = self._parse_input(query, payload)
        span = resolve(book, text)
        used_rows, _ = span.grid.used()
        rows = payload.get("values", [])
        if used_rows + len(rows) > span.grid.rows:
            span.grid.rows = used_rows + len(rows)
        start = f"{quote_title(span.grid.title)}!{column_letters(span.c1)}{used_rows + 1}"
        changes = self._plan_values(book, start + f":{column_letters(span.grid.cols - 1)}", rows, parse)
        self._apply_values(changes)
        return {
            "spreadsheetId": book.key,
            "tableRange": span.a1(),
            "updates": _update_reply(book, start, changes),
        }

    # ------------------------------------------------------------ spreadsheets:batchUpdate (atomic)

    def _batch_update(self, book: Book, query: Any, payload: Any) -> Any:
        work = _Staged(book)
        replies = []
        for number, request in enumerate((payload or {}).get("requests", [])):
            if len(request) != 1:
                raise ApiError(400, f"Invalid requests[{number}]: exactly one kind of request expected")
            ((name, body),) = request.items()
            handler = getattr(work, name, None)
            if handler is None or name.startswith("_"):
                raise ApiError(
                    400, f"Invalid JSON payload received. Unknown name \"{name}\" at 'requests[{number}]'"
                )
            try:
                replies.append(handler(body) or {})
            except ApiError as exc:
                raise ApiError(exc.code, f"Invalid requests[{number}].{name}: {exc.message}") from None
        work.commit()
        return {"spreadsheetId": book.key, "replies": replies}


class _Staged:
    """spreadsheets:batchUpdate requests applied to copies, committed only when every one succeeded."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.sheets = list(book.sheets)
        self.copied: set[int] = set()

    def grid(self, sheet_id: int) -> Grid:
        for i, grid in enumerate(self.sheets):
            if grid.sheet_id == sheet_id:
                if sheet_id not in self.copied:
                    grid = copy.deepcopy(grid)
                    self.sheets[i] = grid
                    self.copied.add(sheet_id)
                return grid
        raise ApiError(400, f"No grid with id: {sheet_id}")

    def commit(self) -> None:
        self.book.sheets = self.sheets

    def addSheet(self, body: dict[str, Any]) -> dict[str, Any]:
        props = body.get("properties", {})
        title = props.get("title") or f"Sheet{len(self.sheets) + 1}"
        self._refuse_title(title)
        sheet_id = props.get("sheetId", max((g.sheet_id for g in self.sheets), default=0) + 17)
        if any(g.sheet_id == sheet_id for g in self.sheets):
            raise ApiError(400, f"A sheet with the id {sheet_id} already exists.")
        grid_props = props.get("gridProperties", {})
        grid = Grid(
            sheet_id=sheet_id,
            title=title,
            rows=grid_props.get("rowCount", 1000),
            cols=grid_props.get("columnCount", 26),
            frozen=grid_props.get("frozenRowCount", 0),
            index=len(self.sheets),
        )
        self.sheets.append(grid)
        self.copied.add(sheet_id)
        return {"addSheet": {"properties": grid.properties()}}

    def _refuse_title(self, title: str, grid: Grid | None = None) -> None:
        """Google compares tab titles without case: "Policy Check" is taken when "Policy check" exists."""
        if any(g.title.casefold() == title.casefold() and g is not grid for g in self.sheets):
            raise ApiError(400, f'A sheet with the name "{title}" already exists. Please enter another name.')

    def deleteSheet(self, body: dict[str, Any]) -> None:
        grid = self.grid(body["sheetId"])
        self.sheets.remove(grid)

    def updateSheetProperties(self, body: dict[str, Any]) -> None:
        props = body.get("properties", {})
        grid = self.grid(props.get("sheetId", 0))
        fields = [f.strip() for f in body.get("fields", "").split(",") if f.strip()]
        if not fields:
            raise ApiError(400, "At least one field must be specified.")
        wanted = props.get("gridProperties", {})
        for name in fields:
            if name in ("title", "*") and "title" in props:
                self._refuse_title(props["title"], grid)
                grid.title = props["title"]
            if name in ("gridProperties.rowCount", "gridProperties", "*") and "rowCount" in wanted:
                grid.rows = wanted["rowCount"]
            if name in ("gridProperties.columnCount", "gridProperties", "*") and "columnCount" in wanted:
                grid.cols = wanted["columnCount"]
            if name in ("gridProperties.frozenRowCount", "gridProperties", "*"):
                grid.frozen = wanted.get("frozenRowCount", 0)

    def appendDimension(self, body: dict[str, Any]) -> None:
        grid = self.grid(body["sheetId"])
        if body.get("dimension") == "ROWS":
            grid.rows += body["length"]
        else:
            grid.cols += body["length"]

    def updateDimensionProperties(self, body: dict[str, Any]) -> None:
        self.grid(body.get("range", {}).get("sheetId", 0))

    def updateCells(self, body: dict[str, Any]) -> None:
        fields = [f.strip() for f in body.get("fields", "").split(",") if f.strip()]
        if not fields:
            raise ApiError(400, "At least one field must be specified.")
        if "range" in body:
            area = body["range"]
            grid = self.grid(area.get("sheetId", 0))
            r0, c0 = area.get("startRowIndex", 0), area.get("startColumnIndex", 0)
            r_end, c_end = area.get("endRowIndex", grid.rows), area.get("endColumnIndex", grid.cols)
        else:
            start = body.get("start", {})
            grid = self.grid(start.get("sheetId", 0))
            r0, c0 = start.get("rowIndex", 0), start.get("columnIndex", 0)
            r_end = c_end = None
        rows = body.get("rows", [])
        written: set[tuple[int, int]] = set()
        for i, row in enumerate(rows):
            for j, data in enumerate(row.get("values", [])):
                r, c = r0 + i, c0 + j
                if r >= grid.rows or c >= grid.cols or (r_end is not None and (r >= r_end or c >= c_end)):
                    raise ApiError(
                        400, f"Range exceeds grid limits. Max rows: {grid.rows}, max columns: {grid.cols}"
                    )
                _set_cell_data(grid, r, c, data, fields)
                written.add((r, c))
        if r_end is not None:  # the rest of the range: cleared for the fields given
            for r, c in [
                k for k in grid.cells if r0 <= k[0] < r_end and c0 <= k[1] < c_end and k not in written
            ]:
                _set_cell_data(grid, r, c, {}, fields)

    def repeatCell(self, body: dict[str, Any]) -> None:
        area = body["range"]
        grid = self.grid(area.get("sheetId", 0))
        fields = body.get("fields", "")
        fmt = body.get("cell", {}).get("userEnteredFormat", {})
        if "userEnteredFormat.numberFormat" in fields or fields == "userEnteredFormat":
            grid.range_formats.append((dict(area), dict(fmt.get("numberFormat", {}))))

    def setDataValidation(self, body: dict[str, Any]) -> None:
        area = body["range"]
        grid = self.grid(area.get("sheetId", 0))
        if body.get("rule"):
            grid.validations.append((dict(area), body["rule"]))


def _set_cell_data(grid: Grid, r: int, c: int, data: dict[str, Any], fields: list[str]) -> None:
    cell = grid.cells.setdefault((r, c), Cell())
    if "userEnteredValue" in fields or "*" in fields:
        entered = data.get("userEnteredValue", {})
        cell.formula = entered.get("formulaValue")
        cell.value = next(
            (entered[k] for k in ("stringValue", "numberValue", "boolValue") if k in entered),
            "" if cell.formula else None,
        )
    if "note" in fields or "*" in fields:
        cell.note = data.get("note")
    if any(
        f in fields
        for f in ("userEnteredFormat", "userEnteredFormat.textFormat", "userEnteredFormat.textFormat.bold")
    ):
        cell.bold = bool(data.get("userEnteredFormat", {}).get("textFormat", {}).get("bold"))
    if any(f in fields for f in ("userEnteredFormat", "userEnteredFormat.numberFormat")):
        cell.fmt = data.get("userEnteredFormat", {}).get("numberFormat")


def _render(grid: Grid, span: Span, render: str, dates: str) -> list[list[Any]]:
    r1, c1, r2, c2 = span.clamp()
    used_rows, used_cols = grid.used()
    r2, c2 = min(r2, used_rows - 1), min(c2, used_cols - 1)
    out: list[list[Any]] = []
    for r in range(r1, r2 + 1):
        row: list[Any] = []
        for c in range(c1, c2 + 1):
            cell = grid.cells.get((r, c))
            if cell is None or cell.empty():
                row.append("")
                continue
            fmt = grid.number_format(r, c)
            if render == "FORMULA" and cell.formula:
                row.append(cell.formula)
            elif render == "FORMATTED_VALUE" or (
                dates == "FORMATTED_STRING"
                and fmt
                and fmt.get("type") in DATE_TYPES
                and not isinstance(cell.value, str)
            ):
                row.append(formatted(cell.value, fmt))
            else:
                row.append(cell.value)
        while row and row[-1] == "":
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


def _update_reply(book: Book, text: str, changes: list[tuple[Grid, int, int, Cell | None]]) -> dict[str, Any]:
    span = resolve(book, text)
    rows = {r for _, r, _, _ in changes}
    cols = {c for _, _, c, _ in changes}
    return {
        "spreadsheetId": book.key,
        "updatedRange": span.a1() if span.r2 is not None and span.c2 is not None else text,
        "updatedRows": len(rows),
        "updatedColumns": len(cols),
        "updatedCells": len(changes),
    }


def _error(code: int, message: str | None, reason: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message or DEFAULT_MESSAGES.get(code, "Error"),
        "status": STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if reason:
        error["errors"] = [{"domain": "usageLimits", "reason": reason, "message": error["message"]}]
    return {"error": error}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, headers = self.server.standin.handle(method, self.path, body, self.headers)  # type: ignore[attr-defined]
        media = isinstance(payload, bytes)  # a file's content (Drive's alt=media)
        data = payload if media else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/octet-stream" if media else "application/json; charset=UTF-8"
        )
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


# ---------------------------------------------------------------- invented logs


def sample_rows(headers: list[str], count: int, start: dt.date = dt.date(2026, 11, 2)) -> list[list[Any]]:
    """``count`` invented visits under ``headers`` (invented names, Ofcom drama numbers, example domains)."""
    first = ["Ada", "Ben", "Cara", "Dev", "Ela", "Finn", "Gus", "Hana"]
    last = ["Example", "Sample", "Test", "Demo"]
    rows = []
    for i in range(count):
        day = start + dt.timedelta(days=i % 20)
        values = {
            "Visit ID": f"HV-{i + 1:04d}",
            "Learner name": f"{first[i % 8]} {last[i % 4]}",
            "Learner ID": f"L{1000 + i}",
            "Parent/carer phone": f"07700 900{i % 1000:03d}",
            "Address": f"{i + 1} Example Road, Birmingham",
            "Postcode": "B23 6XX",
            "Reason for visit": "Attendance",
            "Visit date": day,
            "Start time": dt.time(9 + i % 7, 30),
            "Expected return": dt.time(10 + i % 7, 30),
            "Expected duration (mins)": 45,
            "Location type": "Home",
            "Lead staff": "Sam Staff",
            "Staff email": "sam.staff@school.example",
            "Second staff": "Jo Colleague",
            "Phone taken on visit": "07700 900123",
            "Line manager": "Lee Manager",
            "Line manager email": "lee.manager@school.example",
            "Risk level": "LOW",
            "Dangerous animals": "NO",
            "Parent/carer consent": "YES",
            "Approved by": "Lee Manager",
            "Safeguarding team informed": "YES",
            "Safe word agreed": "YES",
            "Status": "Planned",
        }
        rows.append([values.get(h) for h in headers])
    return rows
