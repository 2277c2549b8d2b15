"""One worksheet as it was read: its raw cells, and where its header row and columns were found.

The read finds the layout once (``pipeline.load``); write-back receives that same layout and writes to
exactly those columns, after checking that the sheet still has them there. Sources import this module,
never the reverse, so the visits table and the rules need nothing from ``sources/``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import HomevisitsError

if TYPE_CHECKING:
    from .schema import HeaderMap, Schema

DATETIME_TEXT = "%d/%m/%Y %H:%M"  # a date and time as the tool writes it as text (UK, the school's clock)


@dataclass
class RawSheet:
    """A snapshot of one worksheet: every cell as the source gave it, rows in sheet order.

    ``rows[0]`` is sheet row ``first_row`` (1-based, as the spreadsheet numbers it).
    ``date1904`` is true for a workbook using Excel's 1904 date system.
    """

    name: str  # what to call the source in messages: the file name or the spreadsheet title
    worksheet: str
    rows: list[list[Any]]
    first_row: int = 1
    date1904: bool = False
    worksheets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader skipped and why, said as findings
    locale: str | None = None  # a Google Sheet's locale (en_GB...), None when the source has none


@dataclass(frozen=True)
class CellUpdate:
    """Put ``value`` in the ``field`` column of the visit whose ID is ``visit_id``.

    To give an ID to a row that has none, use ``field="visit_id"``, ``value`` the new ID (also in
    ``visit_id``) and ``row`` the sheet row it was read from: it is written only if that row is
    unchanged since the read.
    """

    visit_id: str
    field: str
    value: Any
    row: int | None = None


class LayoutChanged(HomevisitsError):
    """The sheet's header row no longer puts the tool's columns where the read found them."""


@dataclass(frozen=True)
class SheetLayout:
    """Where the read found the header row and each field's column: what write-back writes by.

    ``header_pos`` is the header row's index in ``RawSheet.rows`` (0-based); ``header_row`` the sheet's
    own 1-based number for it; ``overrides`` the config's ``[columns]`` table the headers were mapped with.
    """

    header_pos: int
    header_row: int
    mapping: HeaderMap
    schema: Schema
    overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def positions(self) -> dict[str, int]:
        """Field -> 0-based column, as read."""
        return self.mapping.positions

    @property
    def tool_fields(self) -> list[str]:
        """The columns the tool writes (``owner: tool`` in the catalogue, and ``owner: shared``: the
        check-in times staff may also text in, see checkin.py)."""
        return [column.field for column in self.schema.columns if column.owner in ("tool", "shared")]

    @property
    def headers(self) -> dict[str, str]:
        """Field -> header as staff see it: the sheet's own where it has the column, else the catalogue's."""
        return {c.field: self.mapping.headers.get(c.field, c.header) for c in self.schema.columns}

    def check(self, header_now: Sequence[Any], fields: Iterable[str]) -> None:
        """Raise :class:`LayoutChanged` unless ``header_now`` (the header row as the sheet holds it at
        write time) puts the Visit ID and every field in ``fields`` in the column the read found.

        A column inserted, moved or renamed between the read and the write would send a value into the
        wrong column: nothing is written then, and the sentence says which column moved.
        """
        from .a1 import column_letters as column_name
        from .schema import map_headers

        try:
            now = map_headers(header_now, self.schema, self.overrides).positions
        except HomevisitsError as exc:  # e.g. a second column now holds the same field
            raise LayoutChanged(
                f"The sheet's columns were moved or renamed since it was read ({str(exc).rstrip('.')}): "
                "nothing was written; the next run will try again."
            ) from exc
        for name in dict.fromkeys(["visit_id", *fields]):
            then, moved = self.positions.get(name), now.get(name)
            if then == moved:
                continue
            header = self.headers.get(name, name)
            where = f"is now column {column_name(moved)}" if moved is not None else "is no longer there"
            was = f"column {column_name(then)}" if then is not None else "not in the sheet"
            raise LayoutChanged(
                f"The sheet's columns were moved or renamed since it was read ('{header}' {where}, it was "
                f"{was}): nothing was written; the next run will try again."
            )


def header_layout(
    rows: Sequence[Sequence[Any]], schema: Schema, overrides: Mapping[str, str] | None = None
) -> tuple[int, HeaderMap]:
    """The header row's position (0-based) and the header map, as every command finds them."""
    from .schema import find_header_row, map_headers

    position = find_header_row(rows, schema, overrides)
    return position, map_headers(rows[position], schema, overrides)


def find_layout(raw: RawSheet, schema: Schema, overrides: Mapping[str, str] | None = None) -> SheetLayout:
    """The layout of a sheet just read: found once, then handed to everything that writes to it."""
    position, mapping = header_layout(raw.rows, schema, overrides)
    return SheetLayout(
        header_pos=position,
        header_row=raw.first_row + position,
        mapping=mapping,
        schema=schema,
        overrides=dict(overrides or {}),
    )
