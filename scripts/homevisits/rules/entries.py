"""The rules about what is typed in the sheet: a required value missing (HV001), a cell that cannot be
read (HV002), a Visit ID used twice (HV019) or unusable in emails (HV031)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..findings import Text
from ..settings import Setting
from ..visit_ids import ALLOWED, MAX_LENGTH, is_header_safe_id
from .catalogue import Hit, Hits, rule
from .context import Context, positions


@rule(
    "HV001",
    "Required information missing",
    "error",
    params={"fields": Setting("texts", ())},
    texts={"missing": Text("{column} is empty.", "Fill in {column} for this visit.")},
)
def required_value_missing(ctx: Context) -> Iterator[Hit]:
    """A column the profile requires is empty on a visit that is planned or went ahead."""
    live = ctx.live()
    for name in ctx.p("fields", []):
        missing = live & ctx.empty(name) & ~ctx.unreadable(name)
        for i in positions(missing):
            yield Hit(i, name, kind="missing", values={name: None})


CELL_HINTS = {
    "date": "write the date day first, e.g. 03/04/2026 or 3 Apr 2026",
    "time": "write a time such as 14:30 or 2.30pm",
    "datetime": "write a date and time such as 03/04/2026 14:30, or just a time for the visit date",
    "duration": "write minutes, e.g. 45, or hours and minutes, e.g. 1h30",
    "phone": "write a UK phone number, e.g. 07700 900123",
    "email": "write one email address, e.g. name@school.example",
    "yesno": "write YES or NO",
}


@rule(
    "HV002",
    "Cell could not be read",
    "error",
    texts={
        kind: Text("'{cell}' in {column} could not be read: {reason}.", f"Correct the cell: {hint}.")
        for kind, hint in {**CELL_HINTS, "other": "write a value from the list"}.items()
    },
)
def unreadable_cell(ctx: Context) -> Iterator[Hits]:
    """A cell whose value cannot be understood (a bad date, time, phone number or choice).

    One :class:`Hits` per field with unreadable cells (Visits.bad_cells: fields in the sheet's order,
    cells in row order): a finding-heavy log has ~150,000 of them, most alike (the same text, the
    same reason), which share one values dict so that it is written once."""
    numbers = ctx.f["row"].tolist()
    alike: dict[tuple[str, str], dict[str, str]] = {}  # cells alike share one values dict (never changed)
    for name, cells in ctx.visits.bad_cells.items():
        if not cells:
            continue
        positions = [cell[0] for cell in cells]
        texts = [str(cell[1]) for cell in cells]
        shown = [text if len(text) <= 60 else text[:57] + "..." for text in texts]
        values = [
            alike.get(key) or alike.setdefault(key, {"cell": key[0], "reason": key[1]})
            for key in zip(shown, [cell[2] for cell in cells], strict=True)
        ]
        kind = ctx.visits.schema[name].type
        kind = kind if kind in CELL_HINTS else "other"
        yield Hits(name, kind, positions, list(map(numbers.__getitem__, positions)), values)


@rule(
    "HV019",
    "Same Visit ID twice",
    "error",
    needs=("visit_id",),
    texts={
        "twice": Text(
            "Visit ID {visit_id} is also used on {other_rows:rows}.",
            "Give each visit its own ID (clear the cell on the copy and homevisits will assign a new one).",
        )
    },
)
def duplicate_visit_id(ctx: Context) -> Iterator[Hit]:
    """Two rows share a Visit ID, so emails and write-backs could land on the wrong visit."""
    duplicated = (ctx.f["visit_id"].notna() & ctx.f["visit_id"].duplicated(keep=False)).to_numpy()
    ids = ctx.col("visit_id")
    rows = ctx.col("row")
    rows_of: dict[str, list[int]] = {}
    for i in positions(duplicated):
        rows_of.setdefault(ids[i], []).append(int(rows[i]))
    for i in positions(duplicated):
        others = [r for r in rows_of[ids[i]] if r != rows[i]]
        yield Hit(i, "visit_id", kind="twice", values={"visit_id": ids[i], "other_rows": others})


@rule(
    "HV031",
    "Visit ID unusable in emails",
    "error",
    needs=("visit_id",),
    texts={
        "unusable": Text(
            f"Visit ID '{{visit_id:clean}}' can hold only {ALLOWED} (at most {MAX_LENGTH} characters): "
            "emails about this visit name it as row {row} instead.",
            "Change the Visit ID to letters and digits, e.g. HV-0042, or clear the cell and homevisits "
            "will give the visit a new one.",
        )
    },
)
def unusable_visit_id(ctx: Context) -> Iterator[Hit]:
    """A Visit ID with anything but letters, digits and ``- _ / .``, or longer than 40 characters,
    never goes into an email subject, header or file name (it could carry text into them): the
    emails about the visit name its sheet row instead, which is harder to follow."""
    values = ctx.col("visit_id")  # each ID is checked as it is: a log's IDs are nearly all distinct
    unusable = np.fromiter(
        (value is not None and not is_header_safe_id(str(value)) for value in values.tolist()),
        dtype=bool,
        count=len(values),
    )
    for i in positions(unusable):
        yield Hit(i, "visit_id", kind="unusable", values={"visit_id": values[i]})
