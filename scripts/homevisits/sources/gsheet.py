"""A Google Sheet: the whole worksheet in one request, the tool's cells in one batch write.

Reads ask for unformatted values with serial-number dates, so a date arrives as a number (days
since 1899-12-30) and goes through the same cell parsing as Excel. Writes go by the layout the read
found: they re-read the header row and the Visit ID column first (one small request), stop with one
sentence when a column moved meanwhile, locate every row by its Visit ID, and write every changed
cell in one ``values:batchUpdate`` with ``RAW`` input, so nothing is run as a formula.
Transport, retries and error messages live in :mod:`.http`.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from gspread.exceptions import APIError

from ..background import begun
from ..config import DEFAULT_TIMEZONE
from ..errors import HomevisitsError
from ..findings_tab import FINDINGS_TAB
from ..formula_guard import neutralise
from ..schema import load_schema
from ..sheet import SheetLayout
from ..sheet_setup import SetupPlan, column_letter, google_requests, plan
from . import RawSheet
from .http import (
    Context,
    RetryingHTTPClient,
    RetryPolicy,
    ServiceAccount,
    _retry_after,
    explain,
    is_transient,
    load_service_account,
    make_session,
)
from .writeback import CellUpdate, Skipped, WriteResult, layout_for, locate, sheet_value, trimmed

READ_PARAMS = {
    "valueRenderOption": "UNFORMATTED_VALUE",
    "dateTimeRenderOption": "SERIAL_NUMBER",
    "majorDimension": "ROWS",
}
_URL_KEY = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_KEY = re.compile(r"[A-Za-z0-9_-]{20,}")


def spreadsheet_key(text: str) -> str:
    """The spreadsheet's key, from the key itself or the sheet's full URL."""
    text = text.strip()
    match = _URL_KEY.search(text)
    if match:
        return match[1]
    if _KEY.fullmatch(text):
        return text
    raise HomevisitsError(
        f"'{text[:80]}' is not a Google Sheet URL or key: copy the sheet's address from the browser into "
        "[source] spreadsheet."
    )


def quote_title(title: str) -> str:
    """A worksheet title as A1 notation needs it: ``'It''s mine'``."""
    return "'" + title.replace("'", "''") + "'"


def _unparsable_range(exc: APIError) -> bool:
    return exc.code == 400 and "unable to parse range" in str(exc.error.get("message", "")).lower()


class GoogleSheet:
    """One worksheet of a Google Sheet, reached through a service account."""

    def __init__(
        self,
        spreadsheet: str,
        worksheet: str | None = None,
        credentials: str | Path | None = None,
        *,
        name: str | None = None,
        columns: dict[str, str] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Any = time.sleep,
        clock: Any = time.monotonic,
        rng: Any = random.random,
    ) -> None:
        self.key = spreadsheet_key(spreadsheet)
        self.worksheet = worksheet
        self.credentials = credentials
        self.name = name or "Google Sheet"
        self.columns = dict(columns or {})
        self.tz = ZoneInfo(timezone)
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self._sleep, self._clock, self._rng = sleep, clock, rng
        self._http: RetryingHTTPClient | None = None
        self._account: ServiceAccount | None = None
        self._sheets: list[dict[str, Any]] | None = None
        self.locale: str | None = None  # the spreadsheet's locale, known once a metadata request was made
        self.snapshot: RawSheet | None = None

    def __repr__(self) -> str:
        return f"GoogleSheet({self.key[:8]}..., {self.worksheet!r})"

    # ------------------------------------------------------------ connection

    @property
    def http(self) -> RetryingHTTPClient:
        """gspread's HTTP client with bounded retries, signed in as the service account."""
        if self._http is None:
            import gspread

            self._account = load_service_account(self.credentials)
            session = make_session(self._account.credentials, self.endpoint)

            def client(auth: Any, session: Any) -> RetryingHTTPClient:
                return RetryingHTTPClient(
                    auth, session, policy=self.retry, sleep=self._sleep, clock=self._clock, rng=self._rng
                )

            self._http = gspread.Client(None, session=session, http_client=client).http_client  # type: ignore[arg-type]
        return self._http

    @property
    def requests_made(self) -> int:
        return self._http.requests_made if self._http else 0

    def check_writable(self) -> None:
        """Ask Google whether the service account may edit the spreadsheet, changing nothing: an empty
        batchUpdate is checked for edit access. A refusal is the one sentence a person sees."""
        with self._errors("write to"):
            self.http.batch_update(self.key, {"requests": []})

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn a failed request into the one sentence a person sees."""
        from google.auth import exceptions as auth_errors

        try:
            yield
        except (APIError, requests.RequestException, auth_errors.GoogleAuthError) as exc:
            account = self._account
            context = Context(
                action=action,
                spreadsheet=self.key,
                client_email=account.client_email if account else "the service account",
                key_path=account.path if account else None,
                worksheet=self.worksheet,
            )
            raise explain(exc, context) from exc

    def _sheet_list(self, refresh: bool = False) -> list[dict[str, Any]]:
        """Every worksheet's properties (title, sheetId, grid size) and the spreadsheet's locale: one
        metadata request."""
        if self._sheets is None or refresh:
            meta = self.http.fetch_sheet_metadata(
                self.key, params={"fields": "properties.title,properties.locale,sheets.properties"}
            )
            self._sheets = [sheet["properties"] for sheet in meta.get("sheets", [])]
            self.locale = meta.get("properties", {}).get("locale") or self.locale
            if not self.name or self.name == "Google Sheet":
                title = meta.get("properties", {}).get("title")
                self.name = f"Google Sheet '{title}'" if title else self.name
        return self._sheets

    def spreadsheet_locale(self) -> str | None:
        """The spreadsheet's locale (``en_GB``...): known after any read, else one metadata request."""
        if self.locale is None:
            with self._errors("read"):
                self._sheet_list(refresh=True)
        return self.locale

    def _find(self, title: str | None, sheets: list[dict[str, Any]]) -> dict[str, Any] | None:
        if title is None:
            return sheets[0] if sheets else None
        for sheet in sheets:
            if sheet["title"] == title:
                return sheet
        folded = title.strip().casefold()
        return next((s for s in sheets if s["title"].strip().casefold() == folded), None)

    # ------------------------------------------------------------ read

    def read(self) -> RawSheet:
        """The whole worksheet in one request, and the spreadsheet's locale in one metadata request (which
        also lists the worksheets, so a misspelt or unnamed one costs one more read at most)."""
        begun()  # requests: outside Python's lock
        with self._errors("read"):
            title = self.worksheet
            if title is None:
                title = self._sheet_list()[0]["title"]
            try:
                data = self.http.values_get(self.key, quote_title(title), params=dict(READ_PARAMS))
            except APIError as exc:
                if not _unparsable_range(exc):
                    raise
                found = self._find(title, self._sheet_list())
                if found is None:
                    names = ", ".join(s["title"] for s in self._sheet_list())
                    raise HomevisitsError(
                        f"The Google Sheet has no worksheet called '{title}'; it has: {names}. "
                        "Check [source] worksheet or --worksheet."
                    ) from exc
                title = found["title"]
                data = self.http.values_get(self.key, quote_title(title), params=dict(READ_PARAMS))
            if self.locale is None:  # one metadata request: a US-locale sheet stores 03/04 as 4 March (HV030)
                self._sheet_list()
        rows = [list(cells) for cells in data.get("values", [])]  # cells.parse_text undoes the neutraliser
        titles = [s["title"] for s in self._sheets] if self._sheets else [title]
        self.snapshot = RawSheet(
            name=self.name, worksheet=title, rows=rows, first_row=1, worksheets=titles, locale=self.locale
        )
        return self.snapshot

    # ------------------------------------------------------------ write back

    def write(self, updates: Iterable[CellUpdate], layout: SheetLayout | None = None) -> WriteResult:
        """Write the tool's cells in the columns ``layout`` (the read's) names: re-read the header row
        and the Visit IDs, stop if a column moved, locate each row, one RAW batch write.

        A write Google may or may not have applied (a timeout, a 5xx) is never simply repeated:
        the rows are located again first, within the same bounded retry budget.
        """
        updates = list(updates)
        if not updates:
            return WriteResult()
        raw = self.snapshot or self.read()
        found = layout_for(raw, layout, self.columns)
        with self._errors("write to"), self.http.operation() as backoff:
            while True:
                try:
                    return self._locate_and_write(updates, raw, found)
                except (APIError, requests.ConnectionError, requests.Timeout) as exc:
                    if not (is_transient(exc) and backoff.wait(_retry_after(exc))):
                        raise

    def _locate_and_write(self, updates: list[CellUpdate], raw: RawSheet, layout: SheetLayout) -> WriteResult:
        headers = layout.headers
        id_column = layout.positions.get("visit_id")
        if id_column is None:
            reason = f"the sheet has no '{headers['visit_id']}' column to find rows by (init-sheet adds it)"
            return WriteResult([], [Skipped(update, reason) for update in updates])
        title = quote_title(raw.worksheet)
        header_row = layout.header_row
        letter = column_letter(id_column)
        ranges = [f"{title}!{header_row}:{header_row}", f"{title}!{letter}{header_row + 1}:{letter}"]
        new_rows = sorted({u.row for u in updates if u.field == "visit_id" and u.row and u.row > header_row})
        if new_rows:
            ranges.append(f"{title}!{new_rows[0]}:{new_rows[-1]}")
        got = self.http.values_batch_get(self.key, ranges, params=dict(READ_PARAMS))["valueRanges"]
        layout.check((got[0].get("values") or [[]])[0], (u.field for u in updates))  # a moved column: stop

        id_cells = [list(cells) for cells in got[1].get("values", [])]
        ids = {header_row + 1 + i: (cells[0] if cells else None) for i, cells in enumerate(id_cells)}
        span = [list(cells) for cells in got[2].get("values", [])] if new_rows else []

        def row_unchanged(row: int) -> bool:
            at = row - raw.first_row
            before = raw.rows[at] if 0 <= at < len(raw.rows) else []
            at = row - new_rows[0]
            now = span[at] if 0 <= at < len(span) else []
            return trimmed(before, id_column) == trimmed(now, id_column)

        placed, skipped = locate(
            updates,
            ids=ids,
            columns=layout.positions,
            headers=headers,
            tool_fields=layout.tool_fields,
            row_unchanged=row_unchanged,
        )
        if placed:
            data = [
                {
                    "range": f"{title}!{column_letter(cell.column)}{cell.row}",
                    "values": [[sheet_value(cell.update.value, self.tz)]],
                }
                for cell in placed
            ]
            body = {"valueInputOption": "RAW", "data": data, "includeValuesInResponse": False}
            reply = self.http.values_batch_update(self.key, body)
            if len(reply.get("responses", data)) != len(data):
                raise HomevisitsError(
                    f"Google Sheets confirmed {len(reply.get('responses', []))} of {len(data)} cells written: "
                    "check the sheet; the next run will write the rest."
                )
        return WriteResult(placed, skipped)

    # ------------------------------------------------------------ the "Policy check" tab

    def write_findings(self, header: list[str], rows: list[list[Any]]) -> None:
        """Replace the 'Policy check' tab with the findings (created if missing) in one batch update."""
        table = [header, *rows]
        width = max(len(r) for r in table)
        with self._errors("write to"):
            sheets = self._sheet_list(refresh=True)
            tab = self._find(FINDINGS_TAB, sheets)  # "Policy Check" is the same tab, as Google says
            requests_: list[dict[str, Any]] = []
            if tab is None:
                sheet_id = max((s["sheetId"] for s in sheets), default=0) + 1
                grid = {"rowCount": max(len(table), 100), "columnCount": max(width, 10), "frozenRowCount": 1}
                requests_.append(
                    {
                        "addSheet": {
                            "properties": {"sheetId": sheet_id, "title": FINDINGS_TAB, "gridProperties": grid}
                        }
                    }
                )
            else:
                sheet_id = tab["sheetId"]
                grid = tab.get("gridProperties", {})
                size = {
                    "rowCount": max(grid.get("rowCount", 0), len(table)),
                    "columnCount": max(grid.get("columnCount", 0), width),
                    "frozenRowCount": 1,
                }
                requests_.append(
                    {
                        "updateSheetProperties": {
                            "properties": {"sheetId": sheet_id, "gridProperties": size},
                            "fields": "gridProperties.rowCount,gridProperties.columnCount,gridProperties.frozenRowCount",
                        }
                    }
                )
            requests_.append(
                {
                    "updateCells": {  # every cell of the tab: the table, and cleared beyond it
                        "range": {"sheetId": sheet_id},
                        "rows": [
                            {"values": [_cell(v, i == 0, self.tz) for v in r]} for i, r in enumerate(table)
                        ],
                        "fields": "userEnteredValue,userEnteredFormat.textFormat.bold",
                    }
                }
            )
            self.http.batch_update(self.key, {"requests": requests_})
            self._sheets = None

    # ------------------------------------------------------------ set up a sheet

    def init_sheet(self, schema: Any = None, fields: Any = None) -> SetupPlan:
        """Headers, frozen header row, dropdowns, formats and notes; on a log in use, only missing columns."""
        schema = schema or load_schema()
        with self._errors("set up"):
            sheets = self._sheet_list(refresh=True)
            tab = self._find(self.worksheet, sheets)
            requests_: list[dict[str, Any]] = []
            if tab is None:
                title = self.worksheet or "Home visits"
                sheet_id = max((s["sheetId"] for s in sheets), default=0) + 1
                columns = max(26, len(schema.columns))
                grid = {"rowCount": 1000, "columnCount": columns}
                requests_.append(
                    {
                        "addSheet": {
                            "properties": {"sheetId": sheet_id, "title": title, "gridProperties": grid}
                        }
                    }
                )
                rows: list[list[Any]] = []
            else:
                title, sheet_id = tab["title"], tab["sheetId"]
                columns = tab.get("gridProperties", {}).get("columnCount", 26)
                data = self.http.values_get(self.key, quote_title(title), params=dict(READ_PARAMS))
                rows = data.get("values", [])
            setup = plan(rows, schema, self.columns, fields)
            requests_ += google_requests(setup, sheet_id, columns)
            if requests_:
                self.http.batch_update(self.key, {"requests": requests_})
            self._sheets = None
        return setup


def _cell(value: Any, bold: bool, tz: ZoneInfo) -> dict[str, Any]:
    """One cell for updateCells: numbers and booleans as they are, text neutralised (never a formula)."""
    cell: dict[str, Any] = {}
    if isinstance(value, bool):
        cell["userEnteredValue"] = {"boolValue": value}
    elif isinstance(value, int | float):
        cell["userEnteredValue"] = {"numberValue": value}
    elif value is not None and value != "":
        cell["userEnteredValue"] = {"stringValue": neutralise(str(sheet_value(value, tz)))}
    if bold:
        cell["userEnteredFormat"] = {"textFormat": {"bold": True}}
    return cell
