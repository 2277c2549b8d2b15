"""Google Drive request figures: what an .xlsx on a Shared Drive costs per run.

Runs the Drive source (the real google-auth session and the project's retrying transport) against the
loopback Drive v3 stand-in (tests/drive_standin.py) with a 5,000-row workbook, and counts requests to
the Drive API (signing in not counted):

- ``validate`` (target: 2: the metadata and one download);
- a write-back of 500 scattered cells (target: 3: keep the current version, metadata again, one upload);
- the same write-back when a member of staff saves just before the upload (target: 6: once more
  the download, the pin and the metadata);
- replacing the "Policy check" tab (target: 3).

``run()`` returns the figures as a dict; ``python bench/drive_bench.py`` prints them.
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

FILE_ID = "1XlsxBenchOnTheSharedDrive0123456789abcdef"
TAB = "Home visits"


def run(rows: int = 5000, cells: int = 500) -> dict[str, Any]:
    import openpyxl

    from drive_standin import DriveStandIn
    from homevisits.config import from_mapping
    from homevisits.pipeline import load
    from homevisits.schema import load_schema
    from homevisits.sources.drive import DriveSource
    from homevisits.sources.http import ENDPOINT_ENV
    from homevisits.sources.writeback import CellUpdate
    from sheets_standin import sample_rows

    headers = [c.header for c in load_schema().columns]
    figures: dict[str, Any] = {"rows": rows, "cells_written": cells}
    with DriveStandIn() as api, tempfile.TemporaryDirectory() as folder:
        key_file = api.service_account_file(Path(folder))
        book = openpyxl.Workbook()
        book.active.title = TAB
        for values in [headers, *sample_rows(headers, rows)]:
            book.active.append(values)
        workbook = Path(folder) / "log.xlsx"
        book.save(workbook)
        api.add_file(FILE_ID, workbook.read_bytes())
        saved = os.environ.get(ENDPOINT_ENV)
        os.environ[ENDPOINT_ENV] = api.url
        try:
            source = {"drive_file": FILE_ID, "worksheet": TAB, "credentials": str(key_file)}
            config = from_mapping(
                {"policy": "omg_education", "source": source}, Path(folder) / "homevisits.toml"
            )
            now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
            started = time.perf_counter()
            checked = load(config, now)
            figures["validate_seconds"] = round(time.perf_counter() - started, 2)
            figures["validate_requests"] = sum(api.drive_counts().values())
            figures["findings"] = len(checked.findings)

            chosen = random.Random(7).sample(range(1, rows + 1), cells)
            updates = [CellUpdate(f"HV-{n:04d}", "form_sent_at", now) for n in chosen]
            drive = DriveSource(FILE_ID, TAB, key_file)
            drive.read()
            api.reset_counts()
            started = time.perf_counter()
            result = drive.write(updates)
            figures["writeback_seconds"] = round(time.perf_counter() - started, 2)
            figures["writeback_requests"] = sum(api.drive_counts().values())
            figures["writeback_written"] = len(result.written)

            theirs = api.content(FILE_ID)
            api.before("revisions.update", lambda api: api.save_as_someone_else(FILE_ID, theirs))
            api.reset_counts()
            drive.write([CellUpdate(f"HV-{n:04d}", "escalated_at", now) for n in chosen])
            figures["clash_requests"] = sum(api.drive_counts().values())

            api.reset_counts()
            drive.write_findings(
                ["Severity", "What is wrong"], [["INFO", f"finding {i}"] for i in range(200)]
            )
            figures["findings_tab_requests"] = sum(api.drive_counts().values())
        finally:
            if saved is None:
                os.environ.pop(ENDPOINT_ENV, None)
            else:
                os.environ[ENDPOINT_ENV] = saved
    return figures


def main() -> None:
    figures = run()
    print(
        f"Google Drive requests on a {figures['rows']:,}-row .xlsx (loopback stand-in, google-auth session):"
    )
    lines = [
        ("validate (metadata, download)", figures["validate_requests"], "target 2"),
        (
            f"write-back of {figures['cells_written']} scattered cells",
            figures["writeback_requests"],
            "target 3",
        ),
        ("the same after a save by someone else", figures["clash_requests"], "target 6"),
        ("'Policy check' tab replaced", figures["findings_tab_requests"], "target 3"),
    ]
    for label, count, target in lines:
        print(f"  {label:<40}{count:>6}   {target}")
    print(
        f"  seconds on loopback: validate {figures['validate_seconds']}, write-back {figures['writeback_seconds']}"
    )


if __name__ == "__main__":
    main()
