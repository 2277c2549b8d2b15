"""Cells written into a worksheet part's XML in place: every other byte of the part stays as it was.

The part is scanned, not parsed and re-serialised: rows and cells are found by their tags, a
written cell's element is replaced (or inserted where the format wants it: rows by number, cells
by column), and everything else (other cells, shared formulas, cached values, ``<extLst>``,
elements this module does not know) is left byte for byte. Pure functions: bytes in, bytes out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..a1 import column_index, column_letters

_ATTRIBUTE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)["']""")
_REFERENCE = re.compile(rb"\$?([A-Za-z]{1,3})\$?(\d+)")


class SheetError(ValueError):
    """The worksheet part is not laid out as a worksheet must be (rows or cells out of order...)."""


# A cell's new XML from its reference (b"G5"), its style (the cell's, else the row's or the
# column's), the tags' namespace prefix (b"" or b"x:"), and the value; or None to refuse the cell.
Render = Callable[[bytes, "int | None", bytes, object], "bytes | None"]


def attributes(tag: bytes) -> dict[bytes, bytes]:
    return {m[1]: m[2] if m[2] is not None else m[3] for m in _ATTRIBUTE.finditer(tag)}


def _set_attribute(tag: bytes, name: bytes, value: bytes) -> bytes:
    """The start tag with one attribute's value changed (added before the tag's end when missing)."""
    pattern = re.compile(rb"(\s" + re.escape(name) + rb"""\s*=\s*)(?:"[^"]*"|'[^']*')""")
    if pattern.search(tag):
        return pattern.sub(lambda m: m[1] + b'"' + value + b'"', tag, count=1)
    close = 2 if tag.endswith(b"/>") else 1
    return tag[:-close] + b" " + name + b'="' + value + b'"' + tag[-close:]


@dataclass
class _Sheet:
    xml: bytes
    prefix: bytes  # b"" or b"x:" as the part writes its tags
    data_start: int  # just after <sheetData ...>
    data_end: int  # at </sheetData>
    self_closed: bool  # <sheetData/>
    column_styles: list[tuple[int, int, int]]  # (first, last, style), 0-based columns


def _locate(xml: bytes) -> _Sheet:
    found = re.search(rb"<((?:[\w.-]+:)?)sheetData\b[^>]*?(/?)>", xml)
    if not found:
        raise SheetError("no sheetData")
    prefix = found[1]
    if found[2]:
        end = found.end()
        return _Sheet(xml, prefix, found.start(), end, True, _column_styles(xml[: found.start()], prefix))
    closing = xml.rfind(b"</" + prefix + b"sheetData>")
    if closing < found.end():
        raise SheetError("no end to sheetData")
    return _Sheet(xml, prefix, found.end(), closing, False, _column_styles(xml[: found.start()], prefix))


def _column_styles(head: bytes, prefix: bytes) -> list[tuple[int, int, int]]:
    styles = []
    for tag in re.finditer(rb"<" + re.escape(prefix) + rb"col\b[^>]*>", head):
        values = attributes(tag[0])
        if b"style" in values and b"min" in values and b"max" in values:
            styles.append((int(values[b"min"]) - 1, int(values[b"max"]) - 1, int(values[b"style"])))
    return styles


def _column_style(sheet: _Sheet, column: int) -> int | None:
    for first, last, style in sheet.column_styles:
        if first <= column <= last:
            return style
    return None


def write_cells(xml: bytes, cells: Mapping[tuple[int, int], object], render: Render) -> tuple[bytes, dict]:
    """The worksheet part with ``cells`` ((1-based row, 0-based column) -> value) written.

    ``render`` makes each written cell's XML; the cell keeps its own style, else takes its row's
    (when the row has a custom format) or its column's. A cell holding a formula is not written:
    it is returned in the second value, ``{(row, column): "a formula"}``, and left as it is.
    The ``<dimension>`` and a row's ``spans`` widen when a cell lands outside them.
    """
    sheet = _locate(xml)
    prefix = sheet.prefix
    by_row: dict[int, dict[int, object]] = {}
    for (row, column), value in cells.items():
        by_row.setdefault(row, {})[column] = value
    targets = sorted(by_row)
    refused: dict[tuple[int, int], str] = {}
    pieces: list[bytes] = []
    cursor = 0
    row_tag = re.compile(rb"<" + re.escape(prefix) + rb"row\b[^>]*?(/?)>")
    row_end = b"</" + prefix + b"row>"
    number = 0
    position = sheet.data_start
    next_target = 0
    while next_target < len(targets) and not sheet.self_closed:
        found = row_tag.search(xml, position, sheet.data_end)
        if not found:
            break
        given = _ROW_NUMBER.search(found[0])
        number = int(given[1]) if given else number + 1
        closed = bool(found[1])
        end = found.end() if closed else xml.find(row_end, found.end(), sheet.data_end)
        if end < 0:
            raise SheetError(f"row {number} has no end")
        after = end if closed else end + len(row_end)
        position = after
        while next_target < len(targets) and targets[next_target] < number:
            row = targets[next_target]
            pieces += [xml[cursor : found.start()], _new_row(row, by_row[row], sheet, render, refused)]
            cursor = found.start()
            next_target += 1
        if next_target < len(targets) and targets[next_target] == number:
            pieces.append(xml[cursor : found.start()])
            pieces.append(
                _patched_row(xml, found, end, closed, number, by_row[number], sheet, render, refused)
            )
            cursor = after
            next_target += 1
    tail = b"".join(_new_row(row, by_row[row], sheet, render, refused) for row in targets[next_target:])
    if sheet.self_closed and tail:
        opening = xml[sheet.data_start : sheet.data_end]
        pieces += [
            xml[: sheet.data_start],
            opening[:-2].rstrip() + b">",
            tail,
            b"</" + prefix + b"sheetData>",
        ]
    else:
        pieces += [xml[cursor : sheet.data_end], tail]
    pieces.append(xml[sheet.data_end :])
    written = b"".join(pieces)
    return _widen_dimension(
        written, sheet.data_start, [k for k in cells if k not in refused], prefix
    ), refused


def _new_row(
    row: int,
    columns: Mapping[int, object],
    sheet: _Sheet,
    render: Render,
    refused: dict,
) -> bytes:
    cells = b"".join(
        _render_new(row, column, None, columns, sheet, render, refused) for column in sorted(columns)
    )
    if not cells:
        return b""
    p = sheet.prefix
    return b"<" + p + b'row r="' + str(row).encode() + b'">' + cells + b"</" + p + b"row>"


def _patched_row(
    xml: bytes,
    found: re.Match,
    end: int,
    closed: bool,
    row: int,
    columns: Mapping[int, object],
    sheet: _Sheet,
    render: Render,
    refused: dict,
) -> bytes:
    """One existing row with its written cells replaced or inserted in column order."""
    p = sheet.prefix
    tag = found[0]
    row_values = attributes(tag)
    row_style = None
    if row_values.get(b"customFormat") in (b"1", b"true") and b"s" in row_values:
        row_style = int(row_values[b"s"])
    content = b"" if closed else xml[found.end() : end]
    cell_tag = re.compile(rb"<" + re.escape(p) + rb"c\b[^>]*?(/?)>")
    cell_end = b"</" + p + b"c>"
    pieces: list[bytes] = []
    cursor = 0
    position = 0
    column = -1
    targets = sorted(columns)
    index = 0
    while index < len(targets):
        cell = cell_tag.search(content, position)
        if not cell:
            break
        values = attributes(cell[0])
        reference = _REFERENCE.fullmatch(values.get(b"r", b""))
        column = column_index(reference[1]) if reference else column + 1
        stop = cell.end() if cell[1] else content.find(cell_end, cell.end())
        if stop < 0:
            raise SheetError(f"a cell of row {row} has no end")
        after = stop if cell[1] else stop + len(cell_end)
        position = after
        while index < len(targets) and targets[index] < column:
            made = _render_new(row, targets[index], row_style, columns, sheet, render, refused)
            pieces += [content[cursor : cell.start()], made]
            cursor = cell.start()
            index += 1
        if index < len(targets) and targets[index] == column:
            body = content[cell.end() : stop] if not cell[1] else b""
            if re.search(rb"<" + re.escape(p) + rb"f\b", body):
                refused[(row, column)] = "a formula"
            else:
                style = int(values[b"s"]) if b"s" in values else row_style
                if style is None:
                    style = _column_style(sheet, column)
                made = render((column_letters(column) + str(row)).encode(), style, p, columns[column])
                if made is None:
                    refused[(row, column)] = "not writable"
                else:
                    pieces += [content[cursor : cell.start()], made]
                    cursor = after
            index += 1
    rest = b"".join(_render_new(row, c, row_style, columns, sheet, render, refused) for c in targets[index:])
    extension = content.find(b"<" + p + b"extLst", cursor)
    if rest and extension >= 0:  # cells come before a row's extLst
        pieces += [content[cursor:extension], rest]
        cursor = extension
        rest = b""
    pieces += [content[cursor:], rest]
    inner = b"".join(pieces)
    if closed and not inner:
        return tag
    opening = tag[:-2] + b">" if closed else tag
    opening = _widen_spans(opening, [c for c in columns if (row, c) not in refused])
    return opening + inner + b"</" + p + b"row>"


def _render_new(
    row: int,
    column: int,
    row_style: int | None,
    columns: Mapping[int, object],
    sheet: _Sheet,
    render: Render,
    refused: dict,
) -> bytes:
    style = row_style if row_style is not None else _column_style(sheet, column)
    made = render((column_letters(column) + str(row)).encode(), style, sheet.prefix, columns[column])
    if made is None:
        refused[(row, column)] = "not writable"
        return b""
    return made


def _widen_spans(tag: bytes, columns: list[int]) -> bytes:
    spans = attributes(tag).get(b"spans")
    if not spans or not columns or not re.fullmatch(rb"\d+:\d+", spans):
        return tag
    low, high = (int(x) for x in spans.split(b":"))
    new_low, new_high = min(low, min(columns) + 1), max(high, max(columns) + 1)
    if (new_low, new_high) == (low, high):
        return tag
    return _set_attribute(tag, b"spans", f"{new_low}:{new_high}".encode())


def _widen_dimension(xml: bytes, head_length: int, cells: list[tuple[int, int]], prefix: bytes) -> bytes:
    if not cells:
        return xml
    found = re.compile(rb"<" + re.escape(prefix) + rb"dimension\b[^>]*>").search(xml, 0, head_length)
    if not found:
        return xml
    ref = attributes(found[0]).get(b"ref", b"")
    corners = _REFERENCE.findall(ref)
    if not corners:
        return xml
    rows = [int(r) for _, r in corners] + [r for r, _ in cells]
    columns = [column_index(c) for c, _ in corners] + [c for _, c in cells]
    old = [int(r) for _, r in corners], [column_index(c) for c, _ in corners]
    if (
        min(rows) >= min(old[0])
        and max(rows) <= max(old[0])
        and min(columns) >= min(old[1])
        and max(columns) <= max(old[1])
    ):
        return xml
    top_left = f"{column_letters(min(columns))}{min(rows)}"
    bottom_right = f"{column_letters(max(columns))}{max(rows)}"
    tag = _set_attribute(found[0], b"ref", f"{top_left}:{bottom_right}".encode())
    return xml[: found.start()] + tag + xml[found.end() :]
