"""Writing back to Excel: by Visit ID, atomically, never a formula, never losing what the workbook has.

The workbooks under test are made by LibreOffice (a hand-written flat ODS converted with
``libreoffice --headless --convert-to xlsx``), so dropdowns, conditional formats and pictures are
written the way an office suite writes them, not the way openpyxl would.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from homevisits.cells import parse_text
from homevisits.errors import HomevisitsError
from homevisits.findings_tab import FINDINGS_TAB
from homevisits.sources.excel import ExcelSource, feature_counts
from homevisits.sources.writeback import CellUpdate
from homevisits.visit_ids import assign_ids

TAB = "Home visits"
HEADERS = ["Visit ID", "Learner name", "Visit date", "Risk level", "Status", "Form sent at", "Escalated at"]
ROWS = [
    ["HV-0003", "Ada Example", "17/11/2026", "LOW", "Completed", "", ""],
    ["HV-0001", "Ben Sample", "18/11/2026", "HIGH", "Planned", "", ""],
    ["", "Cara Test", "19/11/2026", "MEDIUM", "Planned", "", ""],
    ["HV-0002", "Dev Demo", "20/11/2026", "LOW", "Planned", "", ""],
]
SENT, ESCALATED = HEADERS.index("Form sent at") + 1, HEADERS.index("Escalated at") + 1


def _png() -> str:
    raw = b"".join(b"\x00" + bytes((200, 30, 30)) * 4 for _ in range(4))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


def flat_ods(extras: tuple[str, ...] = ()) -> str:
    """A home-visits log as flat ODS: a Risk level dropdown with a note, a red fill for HIGH, a logo picture."""
    cells = []
    for row in [HEADERS, *ROWS]:
        line = []
        for column, value in enumerate(row):
            validation = ' table:content-validation-name="risk"' if column == 3 and row is not HEADERS else ""
            note = "<office:annotation><text:p>LOW, MEDIUM or HIGH</text:p></office:annotation>"
            note = note if column == 3 and row is HEADERS else ""
            if value:
                line.append(
                    f'<table:table-cell{validation} office:value-type="string">{note}<text:p>{escape(value)}</text:p>'
                    "</table:table-cell>"
                )
            else:
                line.append(f"<table:table-cell{validation}/>")
        cells.append("<table:table-row>" + "".join(line) + "</table:table-row>")
    last = len(ROWS) + 1
    shapes = f'<draw:frame draw:name="Logo" svg:width="2cm" svg:height="2cm" svg:x="18cm" svg:y="1cm"><draw:image><office:binary-data>{_png()}</office:binary-data></draw:image></draw:frame>'
    if "shape" in extras:
        shapes += '<draw:rect draw:name="Reminder" svg:width="4cm" svg:height="1cm" svg:x="18cm" svg:y="4cm"><text:p>Call in safe</text:p></draw:rect>'
    formats = f"""<calcext:conditional-format calcext:target-range-address="'{TAB}'.D2:'{TAB}'.D{last}">
      <calcext:condition calcext:apply-style-name="High" calcext:value="=&quot;HIGH&quot;" calcext:base-cell-address="'{TAB}'.D2"/>
    </calcext:conditional-format>"""
    if "databar" in extras:
        formats += f"""<calcext:conditional-format calcext:target-range-address="'{TAB}'.C2:'{TAB}'.C{last}">
      <calcext:data-bar calcext:positive-color="#638ec6" calcext:negative-color="#ff0000" calcext:axis-position="automatic" calcext:axis-color="#000000">
        <calcext:formatting-entry calcext:value="0" calcext:type="auto-minimum"/><calcext:formatting-entry calcext:value="0" calcext:type="auto-maximum"/>
      </calcext:data-bar></calcext:conditional-format>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"
 xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" xmlns:xlink="http://www.w3.org/1999/xlink"
 xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
 <office:styles><style:style style:name="High" style:family="table-cell"><style:table-cell-properties fo:background-color="#ffcccc"/></style:style></office:styles>
 <office:body><office:spreadsheet>
  <table:content-validations>
   <table:content-validation table:name="risk" table:condition="of:cell-content-is-in-list(&quot;LOW&quot;;&quot;MEDIUM&quot;;&quot;HIGH&quot;)"
    table:allow-empty-cell="true" table:base-cell-address="'{TAB}'.D2" table:display-list="unsorted"/>
  </table:content-validations>
  <table:table table:name="{TAB}">
   <table:shapes>{shapes}</table:shapes>
   <table:table-column table:number-columns-repeated="{len(HEADERS)}"/>
   {"".join(cells)}
   <calcext:conditional-formats>{formats}</calcext:conditional-formats>
  </table:table>
 </office:spreadsheet></office:body>
</office:document>"""


@pytest.fixture(scope="module")
def office_books(tmp_path_factory):
    """{"plain" | "databar" | "shape": path} of workbooks LibreOffice wrote, made once."""
    office = shutil.which("libreoffice") or shutil.which("soffice")
    if office is None:
        pytest.skip(
            "LibreOffice is not installed (apt-get install libreoffice-calc-nogui; .ci/run installs it)"
        )
    folder = tmp_path_factory.mktemp("office")
    sources = []
    for name, extras in {"plain": (), "databar": ("databar",), "shape": ("shape",)}.items():
        path = folder / f"{name}.fods"
        path.write_text(flat_ods(extras), encoding="utf-8")
        sources.append(str(path))
    profile = (folder / "profile").as_uri()
    subprocess.run(
        [
            office,
            f"-env:UserInstallation={profile}",
            "--headless",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(folder),
            *sources,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    books = {name: folder / f"{name}.xlsx" for name in ("plain", "databar", "shape")}
    assert all(path.exists() for path in books.values())
    return books


@pytest.fixture
def log(office_books, tmp_path):
    path = tmp_path / "Home visits log.xlsx"
    shutil.copyfile(office_books["plain"], path)
    return path


def sheet_xml(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.read("xl/worksheets/sheet1.xml").decode()


def test_write_back_keeps_libreoffice_dropdowns_formats_and_pictures(log):
    import openpyxl

    before = feature_counts(log)
    assert before["dropdown lists (data validation)"] == 1
    assert before["conditional formatting"] == 1 and before["pictures"] == 1
    assert before["comments (notes)"] == 1
    source = ExcelSource(log, TAB)
    first = source.read()
    sent = dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC)
    result = source.write(
        [
            CellUpdate("HV-0001", "form_sent_at", sent),
            CellUpdate("HV-0002", "escalated_at", '=HYPERLINK("http://example.org","x")'),
            CellUpdate("HV-0003", "escalated_at", dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)),
        ]
    )
    assert result.skipped == [] and len(result.written) == 3
    assert feature_counts(log) == before

    book = openpyxl.load_workbook(log)
    sheet = book[TAB]
    assert [v.formula1 for v in sheet.data_validations.dataValidation] == ['"LOW,MEDIUM,HIGH"']
    assert len(sheet._images) == 1
    assert sheet.cell(1, 4).comment.text.strip() == "LOW, MEDIUM or HIGH"
    # the columns have no date format, so times go in as UK text (as in a Google Sheet), styles untouched
    assert sheet.cell(3, SENT).value == "23/11/2026 09:05"
    assert sheet.cell(2, ESCALATED).value == "01/07/2026 09:00"  # British Summer Time
    assert sheet.cell(5, ESCALATED).value == '\'=HYPERLINK("http://example.org","x")'
    assert "<f>" not in sheet_xml(log)  # no cell the tool wrote is a formula

    again = ExcelSource(log, TAB).read()
    changed = {(2, ESCALATED - 1), (3, SENT - 1), (5, ESCALATED - 1)}
    for r, cells in enumerate(again.rows, start=1):
        for c, value in enumerate(cells):
            if (r, c) not in changed:
                old = first.rows[r - 1][c] if c < len(first.rows[r - 1]) else ""
                assert value == old, (r, c)
    # parsing reads the marker away again
    assert parse_text(again.rows[4][ESCALATED - 1]) == ('=HYPERLINK("http://example.org","x")', None)


@pytest.mark.parametrize(
    ("kind", "feature"),
    [("databar", "conditional formatting in Excel's newer format (x14)"), ("shape", "shapes or text boxes")],
)
def test_keeps_what_openpyxl_would_drop(office_books, tmp_path, kind, feature):
    path = tmp_path / "log.xlsx"
    shutil.copyfile(office_books[kind], path)
    before = feature_counts(path)
    assert before[feature] >= 1
    source = ExcelSource(path, TAB)
    source.read()
    assert source.write([CellUpdate("HV-0001", "form_sent_at", "sent")]).ok
    assert feature_counts(path) == before
    assert ExcelSource(path, TAB).read().rows[2][SENT - 1] == "sent"


@pytest.mark.parametrize(
    ("kind", "feature"),
    [("databar", "conditional formatting in Excel's newer format (x14)"), ("shape", "shapes or text boxes")],
)
def test_init_sheet_refuses_to_save_what_openpyxl_would_drop(office_books, tmp_path, kind, feature):
    path = tmp_path / "log.xlsx"
    shutil.copyfile(office_books[kind], path)
    original = path.read_bytes()
    with pytest.raises(HomevisitsError, match=f"would lose its {re.escape(feature)}.*nothing was written"):
        ExcelSource(path, TAB).init_sheet()
    assert path.read_bytes() == original


@pytest.mark.parametrize("lock", ["~$Home visits log.xlsx", ".~lock.Home visits log.xlsx#"])
def test_refuses_while_the_workbook_is_open(log, lock):
    original = log.read_bytes()
    source = ExcelSource(log, TAB)
    source.read()
    (log.parent / lock).write_bytes(b"someone")
    with pytest.raises(HomevisitsError, match=r"is open in Excel or LibreOffice.*nothing was written"):
        source.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
    assert log.read_bytes() == original


def test_refuses_when_the_workbook_changed_since_it_was_read(log):
    import openpyxl

    source = ExcelSource(log, TAB)
    source.read()
    book = openpyxl.load_workbook(log)
    book[TAB]["B2"] = "Edited by staff"
    book.save(log)
    edited = log.read_bytes()
    with pytest.raises(HomevisitsError, match="changed since homevisits read it: nothing was written"):
        source.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
    assert log.read_bytes() == edited


def test_a_failed_save_leaves_the_original_byte_identical(log):
    """The disk refuses to grow the file mid-save (a real EFBIG, in a child process)."""
    original = log.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from homevisits.errors import HomevisitsError
        from homevisits.sources.excel import ExcelSource
        from homevisits.sources.writeback import CellUpdate
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        source = ExcelSource({str(log)!r}, {TAB!r})
        source.read()
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            source.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
        except HomevisitsError as error:
            print(error)
            sys.exit(2)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Could not save Home visits log.xlsx (File too large): nothing was written" in done.stdout
    assert log.read_bytes() == original
    assert sorted(p.name for p in log.parent.iterdir()) == ["Home visits log.xlsx"]


def test_rows_are_found_by_visit_id_and_new_ids_only_fill_blank_ones(log):
    source = ExcelSource(log, TAB)
    raw = source.read()
    blank = [i + 1 for i, cells in enumerate(raw.rows) if i and not cells[0]]
    assert blank == [4]
    updates = assign_ids(blank, [cells[0] for cells in raw.rows[1:]])
    result = source.write(
        [
            *updates,
            CellUpdate("HV-0004", "form_sent_at", "sent with new ID"),
            CellUpdate("HV-0009", "form_sent_at", "nobody"),
        ]
    )
    assert [s.reason for s in result.skipped] == ["no row has Visit ID HV-0009 any more"]
    rows = ExcelSource(log, TAB).read().rows
    assert rows[3][0] == "HV-0004" and rows[3][SENT - 1] == "sent with new ID"
    assert [r[0] for r in rows[1:]] == ["HV-0003", "HV-0001", "HV-0004", "HV-0002"]
    source.write([CellUpdate("HV-0002", "escalated_at", "second write, same run")])  # the source keeps up
    assert ExcelSource(log, TAB).read().rows[4][ESCALATED - 1] == "second write, same run"


def test_findings_sheet_is_created_then_fully_replaced(log):
    import openpyxl

    source = ExcelSource(log, TAB)
    source.read()
    header = ["Severity", "Row", "What is wrong"]
    source.write_findings(header, [["ERROR", 3, "=bad"], ["WARNING", 4, "b"], ["INFO", 5, "c"]])
    source.write_findings(header, [["WARNING", 9, "only this"]])
    book = openpyxl.load_workbook(log)
    assert book.sheetnames == [TAB, FINDINGS_TAB]
    assert [list(r) for r in book[FINDINGS_TAB].iter_rows(values_only=True)] == [
        header,
        ["WARNING", 9, "only this"],
    ]
    assert book[FINDINGS_TAB].freeze_panes == "A2"
    assert feature_counts(log)["pictures"] == 1


def test_file_permissions_survive_the_atomic_replace(log):
    log.chmod(0o640)
    source = ExcelSource(log, TAB)
    source.read()
    source.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
    assert log.stat().st_mode & 0o777 == 0o640
