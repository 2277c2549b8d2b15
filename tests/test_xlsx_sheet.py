"""Cells written into a worksheet part's XML in place: exact bytes in, exact bytes out."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from homevisits.sources.xlsx_book import cell_renderer, serial
from homevisits.sources.xlsx_sheet import SheetError, column_index, column_letters, write_cells

RENDER = cell_renderer({3: "datetime"}, False, ZoneInfo("Europe/London"))
HEAD = b'<worksheet xmlns="m"><dimension ref="A1:C3"/><cols><col min="3" max="3" style="3"/></cols>'
TAIL = b'<extLst><ext uri="{x}"><mine/></ext></extLst></worksheet>'


def sheet(rows: bytes) -> bytes:
    return HEAD + b"<sheetData>" + rows + b"</sheetData>" + TAIL


ROWS = (
    b'<row r="1" spans="1:3"><c r="A1" t="s"><v>0</v></c><c r="C1" s="1"><f>A1*2</f><v>4</v></c></row>'
    b'<row r="3" spans="1:3" customFormat="1" s="2"><c r="B3"><v>7</v></c></row>'
)


def test_a_cell_between_two_others_goes_in_column_order_and_nothing_else_moves():
    out, refused = write_cells(sheet(ROWS), {(1, 1): "new"}, RENDER)
    assert refused == {}
    assert out == sheet(
        ROWS.replace(b'</c><c r="C1"', b'</c><c r="B1" t="inlineStr"><is><t>new</t></is></c><c r="C1"')
    )


def test_a_new_row_goes_between_rows_and_takes_the_column_style():
    moment = dt.datetime(2026, 11, 23, 12, 10, tzinfo=dt.UTC)
    out, _ = write_cells(sheet(ROWS), {(2, 2): moment}, RENDER)
    number = repr(serial(dt.datetime(2026, 11, 23, 12, 10), False)).encode()
    new_row = b'<row r="2"><c r="C2" s="3"><v>' + number + b"</v></c></row>"
    assert out == sheet(ROWS.replace(b'<row r="3"', new_row + b'<row r="3"'))


def test_a_cell_in_a_formatted_row_takes_the_row_style_and_the_sheet_grows_to_fit():
    out, _ = write_cells(sheet(ROWS), {(3, 4): 5, (9, 0): True}, RENDER)
    expected = ROWS.replace(
        b'<row r="3" spans="1:3" customFormat="1" s="2"><c r="B3"><v>7</v></c></row>',
        b'<row r="3" spans="1:5" customFormat="1" s="2"><c r="B3"><v>7</v></c><c r="E3" s="2"><v>5</v></c></row>'
        b'<row r="9"><c r="A9" t="b"><v>1</v></c></row>',
    )
    assert out == sheet(expected).replace(b'<dimension ref="A1:C3"/>', b'<dimension ref="A1:E9"/>')


def test_a_formula_is_refused_and_kept():
    out, refused = write_cells(sheet(ROWS), {(1, 2): "x", (1, 0): None}, RENDER)
    assert refused == {(1, 2): "a formula"}
    assert out == sheet(ROWS.replace(b'<c r="A1" t="s"><v>0</v></c>', b""))  # None empties an unstyled cell


def test_prefixed_tags_self_closed_rows_and_sheet_data_and_a_rows_extlst():
    xml = (
        b'<x:worksheet xmlns:x="m"><x:dimension ref="A1"/><x:sheetData>'
        b'<x:row r="2"/><x:row r="4"><x:c r="A4"><x:v>1</x:v></x:c><x:extLst><x:ext/></x:extLst></x:row>'
        b"</x:sheetData></x:worksheet>"
    )
    out, _ = write_cells(xml, {(2, 0): "a", (4, 1): "b"}, RENDER)
    assert out == (
        b'<x:worksheet xmlns:x="m"><x:dimension ref="A1:B4"/><x:sheetData>'
        b'<x:row r="2"><x:c r="A2" t="inlineStr"><x:is><x:t>a</x:t></x:is></x:c></x:row>'
        b'<x:row r="4"><x:c r="A4"><x:v>1</x:v></x:c><x:c r="B4" t="inlineStr"><x:is><x:t>b</x:t></x:is></x:c>'
        b"<x:extLst><x:ext/></x:extLst></x:row></x:sheetData></x:worksheet>"
    )
    empty = b'<worksheet xmlns="m"><sheetData/></worksheet>'
    out, _ = write_cells(empty, {(1, 0): 1}, RENDER)
    assert (
        out
        == b'<worksheet xmlns="m"><sheetData><row r="1"><c r="A1"><v>1</v></c></row></sheetData></worksheet>'
    )


def test_rows_and_cells_without_references_are_counted_in_order():
    xml = b"<worksheet><sheetData><row><c><v>1</v></c><c><v>2</v></c></row><row><c><v>3</v></c></row></sheetData></worksheet>"
    out, _ = write_cells(xml, {(2, 1): 9, (1, 1): 8}, RENDER)
    assert out == (
        b"<worksheet><sheetData><row><c><v>1</v></c>"
        b'<c r="B1"><v>8</v></c></row><row><c><v>3</v></c><c r="B2"><v>9</v></c></row></sheetData></worksheet>'
    )


def test_text_is_escaped_and_reads_back_as_written():
    out, _ = write_cells(sheet(b""), {(1, 0): " <a&b> _x0041_\r\n", (1, 1): "=1+1"}, RENDER)
    assert (
        b'<c r="A1" t="inlineStr"><is><t xml:space="preserve"> &lt;a&amp;b&gt; _x005F_x0041__x000D_\n</t></is></c>'
        in out
    )
    assert b"<t>'=1+1</t>" in out  # the log's own cells carry the formula guard's apostrophe


def test_a_part_without_sheet_data_is_refused():
    with pytest.raises(SheetError):
        write_cells(b"<worksheet/>", {(1, 0): 1}, RENDER)


@pytest.mark.parametrize(("index", "letters"), [(0, "A"), (25, "Z"), (26, "AA"), (701, "ZZ"), (16383, "XFD")])
def test_column_letters(index, letters):
    assert column_letters(index) == letters and column_index(letters) == index
