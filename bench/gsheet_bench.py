"""Google Sheets request figures: what validate and a write-back cost against the API quota.

Runs the real gspread client against the loopback Sheets API stand-in (tests/sheets_standin.py)
with a 5,000-row log, and counts requests to the Sheets API (signing in not counted):

- ``validate`` on the whole sheet (target: 1 request);
- a write-back of 500 scattered cells (target: 2: the Visit ID re-read and one batch write);
- the same 500 cells written the naive way, gspread's ``update_cell`` one by one;
- replacing the "Policy check" tab (metadata and one batch update).

``run()`` returns the figures as a dict; ``python bench/gsheet_bench.py`` prints them.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

KEY = "1HvBenchLogKey0123456789abcdefghijklmnopqrs"
TAB = "Home visits"


def run(rows: int = 5000, cells: int = 500) -> dict[str, Any]:
    import gspread

    from homevisits.config import from_mapping
    from homevisits.pipeline import load
    from homevisits.schema import load_schema
    from homevisits.sources.gsheet import GoogleSheet
    from homevisits.sources.http import ENDPOINT_ENV, load_service_account, make_session
    from homevisits.sources.writeback import CellUpdate
    from sheets_standin import SheetsStandIn, sample_rows

    headers = [c.header for c in load_schema().columns]
    figures: dict[str, Any] = {"rows": rows, "cells_written": cells}
    with SheetsStandIn() as api, tempfile.TemporaryDirectory() as folder:
        key_file = api.service_account_file(Path(folder))
        api.add_book(KEY, {TAB: [headers, *sample_rows(headers, rows)]})
        saved = os.environ.get(ENDPOINT_ENV)
        os.environ[ENDPOINT_ENV] = api.url
        try:
            config = from_mapping(
                {
                    "policy": "omg_education",
                    "source": {"spreadsheet": KEY, "worksheet": TAB, "credentials": str(key_file)},
                },
                Path(folder) / "homevisits.toml",
            )
            now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
            started = time.perf_counter()
            checked = load(config, now)
            figures["validate_seconds"] = round(time.perf_counter() - started, 2)
            figures["validate_requests"] = api.api_requests()
            figures["findings"] = len(checked.findings)

            sheet = GoogleSheet(KEY, TAB, key_file)
            sheet.read()
            chosen = random.Random(7).sample(range(1, rows + 1), cells)
            updates = [CellUpdate(f"HV-{n:04d}", "form_sent_at", now) for n in chosen]
            api.reset_counts()
            started = time.perf_counter()
            result = sheet.write(updates)
            figures["writeback_seconds"] = round(time.perf_counter() - started, 2)
            figures["writeback_requests"] = api.api_requests()
            figures["writeback_written"] = len(result.written)

            api.reset_counts()
            sheet.write_findings(
                ["Severity", "What is wrong"], [["INFO", f"finding {i}"] for i in range(200)]
            )
            figures["findings_tab_requests"] = api.api_requests()

            account = load_service_account(key_file)
            client = gspread.Client(None, session=make_session(account.credentials))  # type: ignore[arg-type]
            api.reset_counts()
            started = time.perf_counter()
            worksheet = client.open_by_key(KEY).worksheet(TAB)
            column = headers.index("Escalated at") + 1
            for n in chosen:
                worksheet.update_cell(n + 1, column, "23/11/2026 09:00")
            figures["naive_seconds"] = round(time.perf_counter() - started, 2)
            figures["naive_update_cell_requests"] = api.api_requests()
        finally:
            if saved is None:
                os.environ.pop(ENDPOINT_ENV, None)
            else:
                os.environ[ENDPOINT_ENV] = saved
    return figures


def main() -> None:
    figures = run()
    print(
        f"Google Sheets requests on a {figures['rows']:,}-row log (loopback stand-in, real gspread client):"
    )
    lines = [
        ("validate (the whole sheet, and its locale)", figures["validate_requests"], "target 2"),
        (
            f"write-back of {figures['cells_written']} scattered cells",
            figures["writeback_requests"],
            "target 2",
        ),
        ("the same cells by naive update_cell", figures["naive_update_cell_requests"], ""),
        ("'Policy check' tab replaced", figures["findings_tab_requests"], ""),
    ]
    for label, count, target in lines:
        print(f"  {label:<40}{count:>6}   {target}")
    print(
        f"  seconds on loopback: validate {figures['validate_seconds']}, write-back {figures['writeback_seconds']}, "
        f"naive {figures['naive_seconds']}"
    )


if __name__ == "__main__":
    main()
