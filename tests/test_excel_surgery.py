"""The surgical Excel write-back: only the written cells change, every other byte of the package stays.

The workbook is laid out the way Excel saves one (tests/excel_books.py): shared formulas with cached
values, a Power Query connection, customXml, dynamic arrays, printer settings, extLst and more.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from excel_books import (
    DATE_COLUMN,
    FORMULA_HEADER,
    TAB,
    cell_xml,
    excel_workbook,
    members,
    read_member,
    without_cells,
)
from homevisits.errors import HomevisitsError
from homevisits.findings_tab import FINDINGS_TAB
from homevisits.sources import excel
from homevisits.sources.excel import ExcelSource, write_cells
from homevisits.sources.writeback import CellUpdate
from homevisits.sources.xlsx_sheet import column_letters
from jobs_fixtures import TODAY, out_today, planned
from workbooks import ALL_HEADERS, LONDON

SHEET = "xl/worksheets/sheet1.xml"
THURSDAY = dt.date(2026, 11, 26)
SENT_AT = ALL_HEADERS.index("Form sent at")
ESCALATED_AT = ALL_HEADERS.index("Escalated at")
RETURN_AT = ALL_HEADERS.index(FORMULA_HEADER)


def calamine_rows(path: Path, tab: str = TAB) -> list[list]:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    try:
        return book.get_sheet_by_name(tab).to_python(skip_empty_area=False)
    finally:
        book.close()


def openpyxl_cells(path: Path, *, data_only: bool) -> dict[tuple[str, int, int], object]:
    import warnings

    import openpyxl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Data Validation extension is not supported": reading only
        book = openpyxl.load_workbook(path, data_only=data_only)
    return {
        (sheet.title, cell.row, cell.column - 1): _comparable(cell.value)
        for sheet in book.worksheets
        for row in sheet.iter_rows()
        for cell in row
        if cell.value is not None
    }


def _comparable(value):
    from openpyxl.worksheet.formula import ArrayFormula

    return ("array", value.ref, value.text) if isinstance(value, ArrayFormula) else value


def as_grid(rows: list[list]) -> dict[tuple[int, int], object]:
    return {
        (r, c): v for r, cells in enumerate(rows, start=1) for c, v in enumerate(cells) if v not in ("", None)
    }


@pytest.fixture
def book(tmp_path):
    rows = [planned(2, THURSDAY), out_today(3), planned(4, THURSDAY, form_sent_at="20/11/2026 09:00")]
    return excel_workbook(tmp_path / "home_visits.xlsx", rows)


def assert_only_cells_changed(
    before: Path, after: Path, written: set[str], *, changed_parts=(SHEET,)
) -> None:
    """Every member but ``changed_parts`` is stored byte for byte (same order, same compression), and
    the changed sheet differs from the old one only in the elements of the ``written`` cells."""
    old, new = members(before), members(after)
    assert list(new) == list(old)
    for name, stored in old.items():
        if name not in changed_parts:
            assert new[name] == stored, name
        else:
            assert new[name][0] == stored[0], f"{name} changed its compression"
    for name in changed_parts:
        assert without_cells(read_member(after, name), written) == without_cells(
            read_member(before, name), written
        )


def test_a_write_back_changes_only_the_written_cells(book, tmp_path):
    original = tmp_path / "original.xlsx"
    shutil.copyfile(book, original)
    calamine_before = as_grid(calamine_rows(book))
    formulas_before = openpyxl_cells(book, data_only=False)
    cached_before = openpyxl_cells(book, data_only=True)
    assert calamine_before[(3, RETURN_AT)] == dt.time(11, 30)  # the formula's cached value
    assert (
        formulas_before[(TAB, 3, RETURN_AT)] == "=K3+TIME(1,30,0)"
    )  # shared formula, as openpyxl expands it

    source = ExcelSource(book, TAB)
    source.read()
    sent = dt.datetime(2026, 11, 23, 12, 10, tzinfo=LONDON)
    result = source.write(
        [
            CellUpdate("V2", "form_sent_at", sent),  # a styled empty cell in a date-formatted column
            CellUpdate("V3", "escalated_at", sent),  # no cell yet, no date format: UK text
            CellUpdate("V4", "escalated_at", '=HYPERLINK("http://evil.example","x")'),
        ]
    )
    assert result.ok and len(result.written) == 3
    written = {
        f"{column_letters(SENT_AT)}2",
        f"{column_letters(ESCALATED_AT)}3",
        f"{column_letters(ESCALATED_AT)}4",
    }
    assert_only_cells_changed(original, book, written)

    xml = read_member(book, SHEET)
    assert cell_xml(xml, f"{column_letters(SENT_AT)}2") == (
        f'<c r="{column_letters(SENT_AT)}2" s="3"><v>46349.506944444445</v></c>'.encode()
    )
    assert b'<f t="shared" ref="L2:L4" si="0">K2+TIME(1,30,0)</f><v>0.4791666666666667</v>' in xml

    calamine_after = as_grid(calamine_rows(book))
    assert calamine_after.pop((2, SENT_AT)) == dt.datetime(2026, 11, 23, 12, 10)
    assert calamine_after.pop((3, ESCALATED_AT)) == "23/11/2026 12:10"
    assert calamine_after.pop((4, ESCALATED_AT)) == '\'=HYPERLINK("http://evil.example","x")'
    assert calamine_after == calamine_before  # every other cell, cached formula values included
    assert as_grid(calamine_rows(book, "Lists")) == as_grid(calamine_rows(original, "Lists"))
    for data_only, before in ((False, formulas_before), (True, cached_before)):
        after = openpyxl_cells(book, data_only=data_only)
        for key in [(TAB, 2, SENT_AT), (TAB, 3, ESCALATED_AT), (TAB, 4, ESCALATED_AT)]:
            after.pop(key)
        assert after == before
    assert b"<f>" not in b"".join(cell_xml(xml, ref) or b"" for ref in written)


def test_a_cell_holding_a_formula_is_never_overwritten(book, tmp_path):
    original = book.read_bytes()
    stamp, refused = write_cells(book, TAB, {(3, RETURN_AT): "12:00"})
    assert refused == {(3, RETURN_AT): "a formula"}
    assert book.read_bytes() == original  # nothing to write: the file is not even rewritten
    stamp, refused = write_cells(book, TAB, {(2, RETURN_AT): "12:00", (2, ESCALATED_AT): "x"}, stamp=stamp)
    assert refused == {(2, RETURN_AT): "a formula"}
    assert b"K2+TIME(1,30,0)" in read_member(book, SHEET)
    assert calamine_rows(book)[1][ESCALATED_AT] == "x"


def test_the_policy_check_tab_adds_one_part_and_its_entries_then_is_replaced_alone(book, tmp_path):
    original = tmp_path / "original.xlsx"
    shutil.copyfile(book, original)
    source = ExcelSource(book, TAB)
    source.read()
    header = ["Severity", "Row", "What is wrong"]
    source.write_findings(
        header, [["ERROR", 3, "=1+1"], ["WARNING", 4, "Pat\x01 Lee \ud800"], ["INFO", 5, "_x0041_"]]
    )
    entries = ("[Content_Types].xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "docProps/app.xml")
    old, new = members(original), members(book)
    assert list(new) == [*old, "xl/worksheets/sheet3.xml"]
    assert [n for n in old if old[n] != new[n]] == list(entries)
    for name in entries:  # the old part is the new one with the entry taken out
        before, after = read_member(original, name), read_member(book, name)
        assert len(after) > len(before)
    workbook = read_member(book, "xl/workbook.xml").decode()
    assert '<sheet name="Policy check" sheetId="4" r:id="rId10"/></sheets>' in workbook
    app = read_member(book, "docProps/app.xml").decode()
    assert "<vt:i4>3</vt:i4>" in app and '<vt:vector size="4" baseType="lpstr">' in app
    assert "<vt:lpstr>Lists</vt:lpstr><vt:lpstr>Policy check</vt:lpstr><vt:lpstr>StaffList</vt:lpstr>" in app
    tab = calamine_rows(book, FINDINGS_TAB)
    assert tab == [header, ["ERROR", 3.0, "=1+1"], ["WARNING", 4.0, "Pat Lee "], ["INFO", 5.0, "_x0041_"]]
    part = read_member(book, "xl/worksheets/sheet3.xml")
    assert b'<c r="C2" t="inlineStr"><is><t>=1+1</t></is></c>' in part  # text: shown without an apostrophe
    assert b"<f" not in part

    import openpyxl

    loaded = openpyxl.load_workbook(book)
    assert loaded.sheetnames == [TAB, "Lists", FINDINGS_TAB]
    assert loaded[FINDINGS_TAB]["C2"].value == "=1+1" and loaded[FINDINGS_TAB]["C2"].data_type == "s"
    assert loaded[FINDINGS_TAB].freeze_panes == "A2"

    after_first = tmp_path / "first.xlsx"
    shutil.copyfile(book, after_first)
    source.write_findings(header, [["WARNING", 9, "only this"]])
    first, second = members(after_first), members(book)
    assert list(second) == list(first)
    assert [n for n in first if first[n] != second[n]] == ["xl/worksheets/sheet3.xml"]
    assert calamine_rows(book, FINDINGS_TAB) == [header, ["WARNING", 9.0, "only this"]]
    assert calamine_rows(book) == calamine_rows(original)


def test_a_tab_called_policy_check_in_any_case_is_reused(book):
    source = ExcelSource(book, TAB)
    source.read()
    source.write_findings(["Severity"], [["ERROR"]])
    workbook = read_member(book, "xl/workbook.xml")
    renamed = workbook.replace(b'name="Policy check"', b'name="POLICY Check"')
    copy = book.with_name("renamed.xlsx")
    with zipfile.ZipFile(book) as old, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as out:
        for info in old.infolist():
            out.writestr(info, renamed if info.filename == "xl/workbook.xml" else old.read(info.filename))
    ExcelSource(copy, TAB).write_findings(["Severity"], [["WARNING"]])
    import openpyxl

    assert openpyxl.load_workbook(copy).sheetnames == [TAB, "Lists", "POLICY Check"]
    assert calamine_rows(copy, "POLICY Check") == [["Severity"], ["WARNING"]]


# ---------------------------------------------------------------- random writes


VALUES = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=12),
    # numbers an Excel date can hold (calamine 0.9.1 panics on larger ones in a date-formatted cell)
    st.integers(0, 2_958_465),
    st.floats(0, 2_958_465, allow_nan=False),
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2040, 1, 1)).map(lambda d: d.replace(microsecond=0)),
    st.booleans(),
    st.none(),
)
CELLS = st.dictionaries(
    st.tuples(st.integers(1, 9), st.integers(0, len(ALL_HEADERS) + 6)),  # rows and columns past the last
    VALUES,
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def random_base(tmp_path_factory):
    rows = [planned(2, THURSDAY), out_today(3), planned(4, THURSDAY, form_sent_at="20/11/2026 09:00")]
    return excel_workbook(tmp_path_factory.mktemp("random") / "base.xlsx", rows)


def check_written(path: Path, row: int, column: int, value, got) -> None:
    """The cell holds what the tool writes: typed numbers (read through the cell's own style), a date
    as a serial when the cell's style shows dates and as UK text otherwise, text neutralised."""
    import re

    from homevisits.formula_guard import clean, neutralise
    from homevisits.sources.xlsx_book import date_styles, serial

    element = cell_xml(read_member(path, SHEET), f"{column_letters(column)}{row}") or b""
    style = re.search(rb' s="(\d+)"', element)
    dated = style is not None and int(style[1]) in date_styles(read_member(path, "xl/styles.xml"))
    number = re.search(rb"<v>([^<]*)</v>", element)
    if value is None:
        assert got is None and b"<v>" not in element and b"<is>" not in element
    elif isinstance(value, bool):
        assert got is value and b't="b"' in element
    elif isinstance(value, int | float):
        assert number and float(number[1]) == pytest.approx(float(value), rel=1e-12, abs=1e-12)
        assert b" t=" not in element
    elif isinstance(value, dt.datetime):
        if dated:
            assert number and float(number[1]) == pytest.approx(serial(value, False), abs=1e-9)
        else:
            assert got == value.strftime("%d/%m/%Y %H:%M")
    else:
        assert b't="inlineStr"' in element
        assert got == (neutralise(clean(value)) or None), (row, column, value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=CELLS)
def test_random_cells_are_written_and_nothing_else_changes(random_base, tmp_path_factory, cells):
    folder = tmp_path_factory.mktemp("case")
    path = folder / "log.xlsx"
    shutil.copyfile(random_base, path)
    before = as_grid(calamine_rows(random_base))
    formulas = {(r, c) for r in (2, 3, 4) for c in (RETURN_AT,)}
    _, refused = write_cells(path, TAB, cells)
    assert set(refused) == {k for k in cells if k in formulas}
    written = {f"{column_letters(c)}{r}" for (r, c) in cells if (r, c) not in refused}
    assert_only_cells_changed(random_base, path, written, changed_parts=(SHEET,) if written else ())
    after = as_grid(calamine_rows(path))
    for (row, column), value in cells.items():
        if (row, column) in refused:
            continue
        check_written(path, row, column, value, after.pop((row, column), None))
        before.pop((row, column), None)
    assert after == before
    openpyxl_cells(path, data_only=True)  # it opens


# ---------------------------------------------------------------- temporary copies


def test_the_temporary_copy_is_private_and_gone_on_every_exit(book, monkeypatch):
    from homevisits.sources import xlsx_package

    seen = []
    real = xlsx_package.rewrite

    def watching(source, target, replaced, added=()):
        seen.append(
            (os.fstat(target.fileno()).st_mode & 0o777, sorted(p.name for p in book.parent.iterdir()))
        )
        real(source, target, replaced, added)

    monkeypatch.setattr(xlsx_package, "rewrite", watching)
    write_cells(book, TAB, {(2, ESCALATED_AT): "x"})
    mode, listing = seen[0]
    assert mode == 0o600 and len(listing) == 2 and listing[0].startswith(".home_visits.homevisits-")
    assert sorted(p.name for p in book.parent.iterdir()) == ["home_visits.xlsx"]

    def failing(source, target, replaced, added=()):
        raise KeyboardInterrupt

    monkeypatch.setattr(xlsx_package, "rewrite", failing)
    with pytest.raises(KeyboardInterrupt):
        write_cells(book, TAB, {(2, ESCALATED_AT): "y"})
    assert sorted(p.name for p in book.parent.iterdir()) == ["home_visits.xlsx"]


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from homevisits.sources import excel, xlsx_package
    real = xlsx_package._copy
    def dying(source, target, offset, length):
        real(source, target, offset, length)
        target.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the atomic save
    xlsx_package._copy = dying
    excel.write_cells(sys.argv[1], "Home Visits", {(2, 37): "x"})
    """
)


def test_a_killed_save_leaves_a_copy_that_the_next_run_removes(book):
    original = book.read_bytes()
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(book)], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    left = [p for p in book.parent.iterdir() if p.name != book.name]
    assert len(left) == 1 and left[0].name.startswith(".home_visits.homevisits-")
    assert book.read_bytes() == original
    # someone else's file with a similar name, and a copy a live run holds, are left alone
    theirs = book.parent / ".home_visits.homevisits-notes.xlsx"
    theirs.write_bytes(b"not ours")
    theirs.chmod(0o644)
    old = time.time() - 60
    for path in (*left, theirs):
        os.utime(path, (old, old))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(book.parent / ".home_visits.homevisits-live.xlsx")],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        live = book.parent / ".home_visits.homevisits-live.xlsx"
        os.utime(live, (old, old))
        rows = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from homevisits.sources.excel import ExcelSource; ExcelSource({str(book)!r}).read()",
            ],
            capture_output=True,
            timeout=120,
        )
        assert rows.returncode == 0, rows.stderr
        assert sorted(p.name for p in book.parent.iterdir()) == sorted([book.name, theirs.name, live.name])
    finally:
        holder.kill()
        holder.wait()


HOLD = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read() if False else __import__("time").sleep(120)
    """
)


def test_refusals_still_hold(book):
    original = book.read_bytes()
    (book.parent / f"~${book.name}").write_bytes(b"someone")
    with pytest.raises(HomevisitsError, match="is open in Excel or LibreOffice"):
        write_cells(book, TAB, {(2, ESCALATED_AT): "x"})
    (book.parent / f"~${book.name}").unlink()
    stamp = excel.file_stamp(book)
    book.write_bytes(original + b"")  # same bytes, new time: still the same file
    os.utime(book, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(HomevisitsError, match="changed since homevisits read it"):
        write_cells(book, TAB, {(2, ESCALATED_AT): "x"}, stamp=stamp)
    assert book.read_bytes() == original
    with pytest.raises(HomevisitsError, match="no worksheet called 'Nope'"):
        write_cells(book, "Nope", {(2, ESCALATED_AT): "x"})


# ---------------------------------------------------------------- LibreOffice opens the result


def test_libreoffice_opens_and_saves_the_written_workbook(book, tmp_path):
    office = shutil.which("soffice") or shutil.which("libreoffice")
    if office is None:
        pytest.skip(
            "LibreOffice is not installed (apt-get install libreoffice-calc-nogui; .ci/run installs it)"
        )
    source = ExcelSource(book, TAB)
    source.read()
    assert source.write(
        [
            CellUpdate("V2", "form_sent_at", dt.datetime(2026, 11, 23, 12, 10)),
            CellUpdate("V3", "escalated_at", "x"),
        ]
    ).ok
    write_cells(book, TAB, {(40, 60): "far below and beyond", (1, 50): 7})
    source = ExcelSource(book, TAB)
    source.write_findings(["Severity", "What"], [["ERROR", "=1+1"]])
    out = tmp_path / "saved"
    done = subprocess.run(
        [
            office,
            f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
            "--headless",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            str(book),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    saved = out / book.name
    rows = calamine_rows(saved)
    assert rows[1][SENT_AT] == dt.datetime(2026, 11, 23, 12, 10)
    assert rows[2][ESCALATED_AT] == "x" and rows[2][RETURN_AT] == dt.time(11, 30)
    assert rows[39][60] == "far below and beyond" and rows[0][50] == 7
    assert calamine_rows(saved, FINDINGS_TAB) == [["Severity", "What"], ["ERROR", "=1+1"]]
    assert calamine_rows(saved, "Lists")[1][0] == "Sam Teacher"  # (LibreOffice 7.4 cannot compute SORT)


def test_date_column_detection_follows_the_number_format():
    from homevisits.sources.xlsx_book import format_kind

    assert format_kind("dd/mm/yyyy;@") == "date"
    assert format_kind("dd/mm/yyyy\\ hh:mm") == "datetime"
    assert format_kind("[h]:mm") == "time"
    assert format_kind("[$-en-GB]d mmmm yyyy") == "date"
    assert format_kind('0.00" days"') is None
    assert format_kind("General") is None
    assert format_kind("[Red]0.00") is None
    assert DATE_COLUMN == "Form sent at" and TODAY


# ---------------------------------------------------------------- the scheduled job, end to end


def test_run_scheduled_twice_on_an_excel_made_workbook_delivers_every_stage(tmp_path, server):
    """Expected return is a formula (with its cached value); the workbook has a Power Query connection,
    customXml and a dynamic array. Form, overdue alert and SMT alert all go, and every part of the
    package stays byte for byte except the two cells written."""
    from jobs_fixtures import School, delivered, london, smtp_mail

    place = School(tmp_path).configure(smtp_mail(server))
    excel_workbook(place.workbook, [planned(2, THURSDAY), out_today(3)])
    with zipfile.ZipFile(place.workbook) as archive:
        assert {"xl/connections.xml", "customXml/item1.xml", "xl/metadata.xml"} <= set(archive.namelist())
    assert b'cm="1"' in read_member(place.workbook, "xl/worksheets/sheet2.xml")
    first = tmp_path / "before-first-run.xlsx"
    shutil.copyfile(place.workbook, first)

    result = place.run("run-scheduled", london(2026, 11, 23, 12, 10))
    assert result.status == 0, result.err
    assert sorted(delivered(server)) == [("V2", "form"), ("V3", "overdue_alert")]
    written = {f"{column_letters(SENT_AT)}2", f"{column_letters(ESCALATED_AT)}3"}
    assert_only_cells_changed(first, place.workbook, written)
    rows = calamine_rows(place.workbook)
    assert rows[1][SENT_AT] == dt.datetime(2026, 11, 23, 12, 10)  # a date cell: the column is formatted
    assert rows[2][ESCALATED_AT] == "23/11/2026 12:10"
    assert rows[2][RETURN_AT] == dt.time(11, 30)  # the cached value of =K3+TIME(1,30,0) is still there
    second = tmp_path / "before-second-run.xlsx"
    shutil.copyfile(place.workbook, second)

    result = place.run("run-scheduled", london(2026, 11, 23, 12, 45))
    assert result.status == 0, result.err
    assert sorted(delivered(server)) == [("V2", "form"), ("V3", "overdue_alert"), ("V3", "smt_alert")]
    assert place.workbook.read_bytes() == second.read_bytes()  # nothing more to write
    assert place.run("run-scheduled", london(2026, 11, 23, 13, 30)).status == 0
    assert len(server.messages) == 3
    assert sorted(p.name for p in place.workbook.parent.iterdir() if p.name.startswith(".")) == []


def test_init_sheet_on_an_excel_made_log_refuses_rather_than_lose_what_openpyxl_drops(tmp_path):
    """init-sheet on an existing log still saves through openpyxl: it names what that would lose."""
    path = excel_workbook(tmp_path / "log.xlsx", [planned(2, THURSDAY)], columns=ALL_HEADERS[:-3])
    original = path.read_bytes()
    with pytest.raises(HomevisitsError) as refused:
        ExcelSource(path, TAB).init_sheet()
    message = str(refused.value)
    for feature in ("data connections (Power Query)", "custom XML parts", "printer settings", "custom views"):
        assert feature in message
    assert "formula results" in message and "nothing was written" in message
    assert path.read_bytes() == original


class _Unseekable:
    """A stream zipfile cannot seek back in, so it writes each member with a data descriptor."""

    def __init__(self, target):
        self.target = target

    def write(self, data):
        return self.target.write(data)

    def flush(self):
        self.target.flush()

    def tell(self):
        return self.target.tell()

    def seekable(self):
        return False


def test_members_stored_with_data_descriptors_are_copied_as_they_are(book, tmp_path):
    streamed = tmp_path / "streamed.xlsx"
    with (
        zipfile.ZipFile(book) as old,
        streamed.open("wb") as raw,
        zipfile.ZipFile(_Unseekable(raw), "w") as out,
    ):
        for info in old.infolist():
            out.writestr(info, old.read(info.filename))
    with zipfile.ZipFile(streamed) as check:
        assert all(info.flag_bits & 0x08 for info in check.infolist())
    original = tmp_path / "streamed-original.xlsx"
    shutil.copyfile(streamed, original)
    write_cells(streamed, TAB, {(3, ESCALATED_AT): "x"})
    assert_only_cells_changed(original, streamed, {f"{column_letters(ESCALATED_AT)}3"})
    with zipfile.ZipFile(streamed) as check:
        assert check.testzip() is None
    assert calamine_rows(streamed)[2][ESCALATED_AT] == "x"
