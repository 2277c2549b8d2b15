"""Set up a log from the column catalogue: headers, a frozen header row, dropdowns, formats, header notes.

On an empty worksheet every column is written. On a log staff already use, only the columns it
lacks are added, after its last column; nothing is reordered, renamed or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import HomevisitsError
from .schema import Column, Schema, column_name, find_header_row, map_headers

YES_NO = ("YES", "NO")
NUMBER_FORMATS = {  # column type -> (Google numberFormat type, pattern); the same pattern in Excel
    "date": ("DATE", "dd/mm/yyyy"),
    "time": ("TIME", "hh:mm"),
    "datetime": ("DATE_TIME", "dd/mm/yyyy hh:mm"),
    "phone": ("TEXT", "@"),  # keeps the leading 0 of 07700 900123
}
EXCEL_MAX_ROW = 1_048_576


@dataclass
class SetupPlan:
    """What init-sheet will do to one worksheet."""

    header_row: int  # 1-based sheet row of the header row
    new_sheet: bool  # the worksheet is empty: every column, and freeze the header
    add: list[tuple[int, Column]] = field(default_factory=list)  # (0-based column, column) to add
    # (header the sheet has, field it resembles): not added, a [columns] line is asked for instead
    ask: list[tuple[str, str]] = field(default_factory=list)

    @property
    def added_headers(self) -> list[str]:
        return [column.header for _, column in self.add]


def plan(
    rows: Sequence[Sequence[Any]],
    schema: Schema,
    overrides: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
) -> SetupPlan:
    """Which columns to write and where, from the worksheet's current cells.

    ``fields`` are the columns wanted (default: the whole catalogue). A wanted column is not added when
    the sheet already has a header that closely resembles it: a ``[columns]`` line is asked for instead.
    """
    wanted = [c for c in schema.columns if fields is None or c.field in fields]
    if all(_empty(cell) for row in rows for cell in row):
        return SetupPlan(header_row=1, new_sheet=True, add=list(enumerate(wanted)))
    try:
        header_pos = find_header_row(rows, schema, overrides)
    except HomevisitsError as exc:
        raise HomevisitsError(
            "The worksheet already has data but no header row homevisits recognises: set the log up on a new, "
            "empty worksheet (give --worksheet a new name) or map your headers under [columns]."
        ) from exc
    mapping = map_headers(rows[header_pos], schema, overrides)
    width = max((_width(row) for row in rows), default=0)
    missing = [column for column in wanted if column.field not in mapping.positions]
    near = {name: header for _, header, name in mapping.suggestions(schema) if name is not None}
    ask = [(near[c.field], c.field) for c in missing if c.field in near]
    missing = [c for c in missing if c.field not in near]
    return SetupPlan(
        header_row=header_pos + 1,
        new_sheet=False,
        add=[(width + i, column) for i, column in enumerate(missing)],
        ask=ask,
    )


def policy_fields(policy: Any, schema: Schema) -> list[str]:
    """The columns a policy uses: what it requires, what its rules read (the first of each either/or
    pair the sheet may lack), and the columns homevisits itself writes."""
    needed = list(policy.needed_columns())
    needed += [group[0] for group in policy.needed_alternatives()]
    needed += [c.field for c in schema.columns if c.owner == "tool"]
    return [c.field for c in schema.columns if c.field in set(needed)]


def _width(row: Sequence[Any]) -> int:
    width = len(row)
    while width and _empty(row[width - 1]):
        width -= 1
    return width


def _empty(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def dropdown(column: Column) -> list[str] | None:
    """The values a column's dropdown offers: its choices, or YES and NO."""
    if column.type == "choice":
        return list(column.choices)
    if column.type == "yesno":
        return list(YES_NO)
    return None


column_letter = column_name  # 0-based column index as letters: 0 -> A, 26 -> AA


# ---------------------------------------------------------------- Google Sheets


def google_requests(setup: SetupPlan, sheet_id: int, column_count: int) -> list[dict[str, Any]]:
    """spreadsheets:batchUpdate requests carrying out ``setup`` on the sheet ``sheet_id``."""
    if not setup.add:
        return []
    requests: list[dict[str, Any]] = []
    needed = max(position for position, _ in setup.add) + 1
    if needed > column_count:
        requests.append(
            {
                "updateSheetProperties": {
                    "properties": {"sheetId": sheet_id, "gridProperties": {"columnCount": needed}},
                    "fields": "gridProperties.columnCount",
                }
            }
        )
    first = setup.add[0][0]
    requests.append(
        {
            "updateCells": {
                "start": {"sheetId": sheet_id, "rowIndex": setup.header_row - 1, "columnIndex": first},
                "rows": [{"values": [_header_cell(column) for _, column in setup.add]}],
                "fields": "userEnteredValue,note,userEnteredFormat.textFormat.bold",
            }
        }
    )
    if setup.new_sheet:
        requests.append(
            {
                "updateSheetProperties": {
                    "properties": {
                        "sheetId": sheet_id,
                        "gridProperties": {"frozenRowCount": setup.header_row},
                    },
                    "fields": "gridProperties.frozenRowCount",
                }
            }
        )
    for position, column in setup.add:
        below = {
            "sheetId": sheet_id,
            "startRowIndex": setup.header_row,
            "startColumnIndex": position,
            "endColumnIndex": position + 1,
        }
        values = dropdown(column)
        if values:
            requests.append(
                {
                    "setDataValidation": {
                        "range": below,
                        "rule": {
                            "condition": {
                                "type": "ONE_OF_LIST",
                                "values": [{"userEnteredValue": v} for v in values],
                            },
                            "inputMessage": column.help,
                            "showCustomUi": True,
                            "strict": False,
                        },
                    }
                }
            )
        if column.type in NUMBER_FORMATS:
            kind, pattern = NUMBER_FORMATS[column.type]
            requests.append(
                {
                    "repeatCell": {
                        "range": below,
                        "cell": {"userEnteredFormat": {"numberFormat": {"type": kind, "pattern": pattern}}},
                        "fields": "userEnteredFormat.numberFormat",
                    }
                }
            )
    return requests


def _header_cell(column: Column) -> dict[str, Any]:
    return {
        "userEnteredValue": {"stringValue": column.header},
        "note": column.help,
        "userEnteredFormat": {"textFormat": {"bold": True}},
    }


# ---------------------------------------------------------------- Excel (openpyxl)


def apply_openpyxl(sheet: Any, setup: SetupPlan) -> None:
    """Carry out ``setup`` on an openpyxl worksheet (saved by the caller)."""
    from openpyxl.comments import Comment
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    for position, column in setup.add:
        letter = column_letter(position)
        cell = sheet.cell(row=setup.header_row, column=position + 1, value=column.header)
        cell.font = Font(bold=True)
        note = Comment(column.help, "homevisits")
        note.width, note.height = 300, 90
        cell.comment = note
        sheet.column_dimensions[letter].width = max(12, min(40, len(column.header) + 4))
        values = dropdown(column)
        if values and len(",".join(values)) < 250 and not any("," in v or '"' in v for v in values):
            validation = DataValidation(
                type="list",
                formula1='"' + ",".join(values) + '"',
                allow_blank=True,
                showErrorMessage=True,
                errorStyle="warning",
                prompt=column.help[:255],
                showInputMessage=True,
            )
            validation.add(f"{letter}{setup.header_row + 1}:{letter}{EXCEL_MAX_ROW}")
            sheet.add_data_validation(validation)
        if column.type in NUMBER_FORMATS:
            sheet.column_dimensions[letter].number_format = NUMBER_FORMATS[column.type][1]
    if setup.new_sheet:
        sheet.freeze_panes = f"A{setup.header_row + 1}"
