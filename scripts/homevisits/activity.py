"""The ledger as people read it: ``homevisits log`` (text or CSV) and the counts ``status`` prints.

Read-only: the file is opened with SQLite's ``mode=ro``, never created or migrated, so looking at
the record can never change it or hold up a run. Rows name visits by ID only (no names, no
addresses); CSV cells go through the formula guard, so a spreadsheet never runs them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import HomevisitsError
from .formula_guard import neutralise
from .ledger import ADDED_COLUMNS, Entry, _entry

STAGES = {"overdue_alert": "1 line manager", "smt_alert": "2 SMT"}
COLUMNS = ("Queued", "Sent", "Visit", "Kind", "Stage", "To", "Status", "Attempts", "Withdrawn", "Why")


def read_ledger(path: Path) -> list[Entry] | None:
    """Every entry, oldest first; None when there is no ledger yet."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise HomevisitsError(f"Could not open the ledger {path} ({exc}).") from exc
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM messages ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise HomevisitsError(f"{path} could not be read as a homevisits ledger ({exc}).") from exc
    finally:
        db.close()
    missing = dict.fromkeys(ADDED_COLUMNS)  # a version-1 file lacks these: they read as empty
    return [_entry({**missing, **dict(row)}) for row in rows]  # type: ignore[arg-type]


def select(
    entries: Iterable[Entry], *, since: dt.date | None, visit: str | None, tz: ZoneInfo
) -> list[Entry]:
    chosen = []
    for entry in entries:
        if visit and entry.visit_id.strip().lower() != visit.strip().lower():
            continue
        if since and entry.queued_at.astimezone(tz).date() < since:
            continue
        chosen.append(entry)
    return chosen


def _when(moment: dt.datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%d/%m/%Y %H:%M") if moment else ""


def _why(entry: Entry) -> str:
    if entry.withdrawn_reason:
        return entry.withdrawn_reason
    if entry.error:
        return entry.error
    if entry.refused:
        return f"{len(entry.refused)} recipient(s) refused: " + ", ".join(
            sorted({r for _, r in entry.refused})
        )
    return ""


def rows(entries: Sequence[Entry], tz: ZoneInfo) -> list[list[str]]:
    """One row per message: when, visit ID, kind, stage, how many recipients, status, why. No addresses."""
    return [
        [
            _when(e.queued_at, tz),
            _when(e.sent_at, tz),
            e.visit_id,
            e.kind.replace("_", " "),
            STAGES.get(e.kind, ""),
            str(len(e.recipients)),
            e.status,
            str(e.attempts),
            _when(e.withdrawn_at, tz),
            _why(e),
        ]
        for e in entries
    ]


def as_text(table: list[list[str]]) -> str:
    if not table:
        return "No messages match.\n"
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(COLUMNS)]
    widths[-1] = len(COLUMNS[-1])  # the reason runs on, unpadded

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(COLUMNS), *(line(r) for r in table)]) + f"\n{len(table)} message(s).\n"


def as_csv(table: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows([[neutralise(c) for c in r] for r in table])
    return out.getvalue()
