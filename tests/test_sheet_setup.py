"""init-sheet: a new log from the column catalogue, or only the missing columns added to a log in use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from homevisits.errors import HomevisitsError
from homevisits.schema import load_schema
from homevisits.sheet import header_layout
from homevisits.sheet_setup import column_letter, plan
from homevisits.sources.excel import ExcelSource
from homevisits.sources.gsheet import GoogleSheet
from sheets_standin import SheetsStandIn
from workbooks import ALL_HEADERS, visit, write_workbook

SCHEMA = load_schema()
KEY = "1HvSetupExampleKey0123456789abcdefghijklmno"
TAB = "Home visits"
DROPDOWNS = {
    c.header: (list(c.choices) if c.type == "choice" else ["YES", "NO"])
    for c in SCHEMA.columns
    if c.type in ("choice", "yesno")
}
FORMATS = {c.header: c.type for c in SCHEMA.columns if c.type in ("date", "time", "datetime", "phone")}


@pytest.fixture
def api():
    with SheetsStandIn() as server:
        yield server


@pytest.fixture
def sheet(api, tmp_path):
    key_file = api.service_account_file(tmp_path)
    return lambda worksheet=TAB: GoogleSheet(KEY, worksheet, key_file, endpoint=api.url)


def test_an_empty_sheet_gets_every_column_in_order():
    setup = plan([[], [None, "  "]], SCHEMA)
    assert setup.new_sheet and setup.header_row == 1
    assert setup.added_headers == ALL_HEADERS
    assert [position for position, _ in setup.add] == list(range(len(ALL_HEADERS)))


def test_a_log_in_use_only_gets_its_missing_columns_after_its_last_one():
    rows = [
        ["Home visits 2026"],
        ["Date", "Pupil", "Our own remarks", "Visit ID"],
        ["01/12/2026", "Ada", "x", "HV-1", "", "stray"],
    ]
    setup = plan(rows, SCHEMA)
    assert not setup.new_sheet and setup.header_row == 2
    assert setup.add[0][0] == 6  # after the stray cell in column F, never over it
    added = setup.added_headers
    assert "Visit ID" not in added and "Visit date" not in added and "Learner name" not in added
    assert len(added) == len(ALL_HEADERS) - 3


def test_data_without_a_recognisable_header_is_left_alone():
    with pytest.raises(HomevisitsError, match="no header row homevisits recognises"):
        plan([["a", "b"], ["c", "d"]], SCHEMA)


def test_column_letters():
    assert [column_letter(i) for i in (0, 25, 26, 42, 701, 702)] == ["A", "Z", "AA", "AQ", "ZZ", "AAA"]


# ---------------------------------------------------------------- Google Sheets


def test_google_init_sets_up_an_empty_worksheet_in_one_batch(api, sheet):
    api.add_book(KEY, {TAB: []})
    setup = sheet().init_sheet()
    assert setup.new_sheet
    assert api.values(KEY, TAB) == [ALL_HEADERS]
    grid = api.grid(KEY, TAB)
    assert grid.frozen == 1
    for position, column in enumerate(SCHEMA.columns):
        cell = grid.cells[(0, position)]
        assert cell.bold and cell.note == column.help
        rule = grid.validation(5, position)
        if column.header in DROPDOWNS:
            assert [v["userEnteredValue"] for v in rule["condition"]["values"]] == DROPDOWNS[column.header]
            assert rule["condition"]["type"] == "ONE_OF_LIST" and rule["showCustomUi"]
            assert grid.validation(0, position) is None  # not on the header itself
        else:
            assert rule is None
        fmt = grid.number_format(5, position)
        kind = FORMATS.get(column.header)
        assert (fmt or {}).get("type") == {
            "date": "DATE",
            "time": "TIME",
            "datetime": "DATE_TIME",
            "phone": "TEXT",
            None: None,
        }[kind]
    assert grid.number_format(5, SCHEMA.fields.index("visit_date"))["pattern"] == "dd/mm/yyyy"
    assert api.sheets_counts() == {"metadata": 1, "values.get": 1, "batchUpdate": 1}
    header_pos, mapping = header_layout(sheet().read().rows, SCHEMA)
    assert header_pos == 0 and len(mapping.positions) == len(ALL_HEADERS)


def test_google_init_adds_a_missing_worksheet(api, sheet):
    api.add_book(KEY, {"Other": [["keep me"]]})
    sheet("Visits 2026").init_sheet()
    assert api.values(KEY, "Visits 2026") == [ALL_HEADERS]
    assert api.values(KEY, "Other") == [["keep me"]]
    assert api.sheets_counts() == {"metadata": 1, "batchUpdate": 1}
    (batch,) = [r for r in api.log if r.kind == "batchUpdate"]
    assert next(iter(batch.body["requests"][0])) == "addSheet"


def test_google_init_on_a_log_in_use_adds_columns_at_the_end_only(api, sheet):
    own = ["Visit date", "Learner name", "Our remarks", "Risk level", "Visit ID"]
    rows = [
        own,
        ["01/12/2026", "Ada Example", "keep", "LOW", "HV-0001"],
        ["02/12/2026", "Ben Sample", "", "HIGH", "HV-0002"],
    ]
    api.add_book(KEY, {TAB: rows}, cols=8)
    setup = sheet().init_sheet()
    values = api.values(KEY, TAB)
    assert values[0][:5] == own and values[1] == rows[1] and values[2] == rows[2]
    assert values[0][5:] == [h for h in ALL_HEADERS if h not in own]
    assert setup.added_headers == values[0][5:]
    assert api.grid(KEY, TAB).cols == len(ALL_HEADERS) + 1  # widened to fit
    assert api.grid(KEY, TAB).frozen == 0  # the school's own layout is left as it is
    assert api.grid(KEY, TAB).validation(1, 3) is None  # no dropdown forced onto an existing column
    api.reset_counts()
    assert sheet().init_sheet().add == []
    assert "batchUpdate" not in api.sheets_counts()


# ---------------------------------------------------------------- Excel


def test_excel_init_creates_a_new_workbook(tmp_path):
    import openpyxl

    path = tmp_path / "Home visits.xlsx"
    ExcelSource(path, TAB).init_sheet()
    book = openpyxl.load_workbook(path)
    sheet = book[TAB]
    assert [c.value for c in sheet[1]] == ALL_HEADERS
    assert sheet.freeze_panes == "A2"
    assert all(
        c.font.bold and c.comment.text == column.help
        for c, column in zip(sheet[1], SCHEMA.columns, strict=True)
    )
    lists = {next(iter(v.sqref.ranges)).min_col: v.formula1 for v in sheet.data_validations.dataValidation}
    for position, column in enumerate(SCHEMA.columns, start=1):
        if column.header in DROPDOWNS:
            assert lists[position] == '"' + ",".join(DROPDOWNS[column.header]) + '"'
    date = column_letter(SCHEMA.fields.index("visit_date"))
    assert sheet.column_dimensions[date].number_format == "dd/mm/yyyy"
    raw = ExcelSource(path, TAB).read()
    assert raw.rows == [ALL_HEADERS]


def test_excel_init_on_a_log_in_use_adds_only_what_is_missing(tmp_path):
    import openpyxl

    own = ["Visit ID", "Learner name", "Visit date", "Start time"]
    rows = [{h: v for h, v in visit(n).items() if h in own} for n in (2, 3)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=own, sheet=TAB)
    before = ExcelSource(path, TAB).read().rows
    setup = ExcelSource(path, TAB).init_sheet()
    assert setup.add[0][0] == 4
    after = ExcelSource(path, TAB).read().rows
    assert [row[:4] for row in after] == [row[:4] for row in before]
    assert after[0][4:] == [h for h in ALL_HEADERS if h not in before[0]]
    assert openpyxl.load_workbook(path)[TAB].freeze_panes is None
    saved = path.read_bytes()
    assert ExcelSource(path, TAB).init_sheet().add == []
    assert path.read_bytes() == saved  # nothing to add: the file is not rewritten


def test_excel_init_refuses_a_missing_folder(tmp_path):
    with pytest.raises(HomevisitsError, match="Cannot create"):
        ExcelSource(tmp_path / "nowhere" / "log.xlsx").init_sheet()


# ---------------------------------------------------------------- the command line


def test_init_sheet_command_on_excel_then_validate_reads_it(tmp_path, capsys):
    from homevisits.cli import main

    path = tmp_path / "new log.xlsx"
    assert main(["init-sheet", "--all", "--source", str(path), "--worksheet", TAB]) == 0
    assert "Set up 44 columns" in capsys.readouterr().out
    assert main(["init-sheet", "--all", "--source", str(path), "--worksheet", TAB]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert ExcelSource(path, TAB).read().rows[0] == ALL_HEADERS


def test_init_sheet_command_on_a_google_sheet(api, tmp_path, monkeypatch, capsys):
    from homevisits.cli import main

    key_file = api.service_account_file(tmp_path)
    api.add_book(KEY, {TAB: [["Visit ID", "Learner name"], ["HV-0001", "Ada Example"]]})
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    assert (
        main(
            [
                "init-sheet",
                "--all",
                "--source",
                f"https://docs.google.com/spreadsheets/d/{KEY}/edit",
                "--worksheet",
                TAB,
            ]
        )
        == 0
    )
    assert "Added 42 missing column(s) after the last one: Learner ID, " in capsys.readouterr().out
    assert api.values(KEY, TAB)[0][:3] == ["Visit ID", "Learner name", "Learner ID"]


def test_init_sheet_needs_a_sheet(tmp_path, monkeypatch, capsys):
    from homevisits.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    assert main(["init-sheet"]) == 2
    assert "init-sheet needs the sheet to set up" in capsys.readouterr().err


def test_init_sheet_adds_only_the_columns_the_policy_uses(tmp_path, capsys):
    from homevisits.cli import main
    from homevisits.policy import load_policy
    from homevisits.sheet_setup import policy_fields

    path = tmp_path / "attendance.xlsx"
    assert (
        main(["init-sheet", "--source", str(path), "--policy", "attendance_academy", "--worksheet", TAB]) == 0
    )
    headers = ExcelSource(path, TAB).read().rows[0]
    wanted = policy_fields(load_policy("attendance_academy"), SCHEMA)
    assert headers == [SCHEMA[name].header for name in wanted]
    assert f"Set up {len(wanted)} columns" in capsys.readouterr().out
    # what the attendance academy's rules never read is not forced on its log
    assert "Safe word agreed" not in headers and "Laptop taken" not in headers
    # ...and the tool's own columns are there, for what it writes back
    assert {"Visit ID", "Form sent at", "Escalated at"} <= set(headers)
    # the profile's rules all find their columns: validate reads the new log
    assert (
        main(["validate", "--source", str(path), "--policy", "attendance_academy", "--worksheet", TAB]) == 0
    )


def test_init_sheet_asks_for_a_columns_line_instead_of_adding_a_near_duplicate(tmp_path, capsys):
    from homevisits.cli import main

    own = ["Visit ID", "Learner name", "Visit date", "Start time", "Returned safe"]
    rows = [{h: v for h, v in visit(2).items() if h in own}]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=own, sheet=TAB)
    assert main(["init-sheet", "--all", "--source", str(path), "--worksheet", TAB]) == 1
    out = capsys.readouterr().out
    assert (
        "Not added: Returned safely at. The sheet has 'Returned safe', which looks like it; if it is, add under "
        '[columns] in the config: "Returned safe" = "returned_at"' in out
    )
    headers = ExcelSource(path, TAB).read().rows[0]
    assert "Returned safely at" not in headers and headers.count("Returned safe") == 1
    assert "Expected return" in headers  # everything else missing was added
