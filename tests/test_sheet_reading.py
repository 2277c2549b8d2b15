"""Reading the sheet people really keep (issue 11 items 4-9 and 13, issue 10 item 7): every header
accounted for, phantom rows, formula errors from both sources, the Google Sheet's locale, tab titles
without case, people's phones and dates, and cells no message, report or workbook can carry.

Real workbooks (openpyxl, with error cells written into the sheet's XML as Excel saves them), the
loopback Sheets stand-in, and the commands an admin runs.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homevisits import cells
from homevisits.cli import main
from homevisits.config import from_mapping
from homevisits.errors import HomevisitsError
from homevisits.findings_tab import FINDINGS_TAB
from homevisits.pipeline import load
from homevisits.sources.excel import read as read_excel
from homevisits.sources.gsheet import GoogleSheet
from jobs_fixtures import School, out_today, smtp_mail
from sheets_standin import SheetsStandIn
from workbooks import ALL_HEADERS, NOW, found, run_check, visit, write_workbook

KEY = "1HvLogExampleKey0123456789abcdefghijklmnopq"
TAB = "Home visits"


@pytest.fixture
def api(monkeypatch):
    with SheetsStandIn() as server:
        monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", server.url)  # the loopback stand-in, never Google
        yield server


def grid_of(rows, headers=ALL_HEADERS):
    return [list(headers), *[[row.get(h) for h in headers] for row in rows]]


def google_config(api, tmp_path, worksheet=TAB, policy="omg_education", **settings_):
    key_file = api.service_account_file(tmp_path)
    source = {"spreadsheet": KEY, "credentials": str(key_file)}
    if worksheet:
        source["worksheet"] = worksheet
    return from_mapping({"policy": policy, "source": source, **settings_}, tmp_path / "homevisits.toml")


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def with_error_cells(path: Path, errors: dict[str, str]) -> Path:
    """Rewrite the workbook's first sheet so each named cell is a formula error cell, as Excel saves
    one (``<c r="B3" t="e"><f>...</f><v>#N/A</v></c>``)."""
    temporary = path.with_suffix(".tmp.xlsx")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                text = data.decode()
                for ref, shown in errors.items():
                    cell = f'<c r="{ref}" t="e"><f>VLOOKUP(A1,Z:Z,2,0)</f><v>{shown}</v></c>'
                    pattern = rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)'
                    assert re.search(pattern, text), ref
                    text = re.sub(pattern, cell, text, count=1)
                data = text.encode()
            target.writestr(item, data)
    temporary.replace(path)
    return path


def letter(header: str) -> str:
    from homevisits.schema import column_name

    return column_name(ALL_HEADERS.index(header))


# ---------------------------------------------------------------- item 6: formula errors, both sources


ERRORS = ["#N/A", "#REF!", "#NAME?", "#DIV/0!", "#VALUE!"]


def test_excel_error_cells_read_as_errors_not_blank(tmp_path):
    rows = [visit(2), visit(3), visit(4), visit(5), visit(6)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    refs = {
        f"{letter('Learner name')}2": "#N/A",
        f"{letter('Visit date')}3": "#REF!",
        f"{letter('Parent/carer phone')}4": "#NAME?",
        f"{letter('Expected duration (mins)')}5": "#DIV/0!",
        f"{letter('Risk level')}6": "#VALUE!",
    }
    with_error_cells(path, refs)
    raw = read_excel(path)
    assert [
        raw.rows[r][ALL_HEADERS.index(h)]
        for r, h in enumerate(
            ["Learner name", "Visit date", "Parent/carer phone", "Expected duration (mins)", "Risk level"],
            start=1,
        )
    ] == ERRORS
    results = run_check(path, "omg_education", NOW)
    hv002 = [f for f in results.findings if f.rule == "HV002"]
    assert [(f.row, f.column) for f in hv002] == [
        (2, "Learner name"),
        (3, "Visit date"),
        (4, "Parent/carer phone"),
        (5, "Expected duration (mins)"),
        (6, "Risk level"),
    ]
    for finding, shown in zip(hv002, ERRORS, strict=True):
        assert finding.message.startswith(f"'{shown}' in ")
        assert f"the cell shows a formula error ({shown})" in finding.message
    # a name that is an error is not a name: the row is not "filled in" by it
    assert results.visits.record(0)["learner_name"] is None
    assert results.visits.unreadable("learner_name").tolist() == [True, False, False, False, False]


def test_google_error_text_gives_the_same_findings_as_excel_error_cells(api, tmp_path):
    rows = [visit(2, learner_name="#N/A"), visit(3, visit_date="#REF!"), visit(4)]
    api.add_book(KEY, {TAB: grid_of(rows)})
    google = load(google_config(api, tmp_path), NOW)
    path = write_workbook(tmp_path / "log.xlsx", [visit(2), visit(3), visit(4)], columns=ALL_HEADERS)
    with_error_cells(path, {f"{letter('Learner name')}2": "#N/A", f"{letter('Visit date')}3": "#REF!"})
    excel = run_check(path, "omg_education", NOW)
    assert found(google.findings) == found(excel.findings)
    assert [f.message for f in google.findings if f.rule == "HV002"] == [
        f.message for f in excel.findings if f.rule == "HV002"
    ]
    assert {f.rule for f in google.findings} >= {"HV002"}


# ---------------------------------------------------------------- item 5: phantom rows


def test_google_checkbox_columns_down_to_row_1000_make_no_visits(api, tmp_path):
    rows = [visit(n) for n in range(2, 8)]
    grid = grid_of(rows)
    checkbox = ALL_HEADERS.index("Laptop taken")
    zero = ALL_HEADERS.index("Expected duration (mins)")
    for _ in range(len(grid), 1000):
        row = [""] * len(ALL_HEADERS)
        row[checkbox], row[zero] = False, 0
        grid.append(row)
    api.add_book(KEY, {TAB: grid}, rows=1000)
    checked = load(google_config(api, tmp_path), NOW)
    assert len(checked.visits) == 6
    [note] = [f for f in checked.findings if f.rule == "HV029"]
    assert note.severity == "info" and note.message.startswith(
        "993 rows below the header (8, 9, 10, 11, 12 and"
    )
    assert [f for f in checked.findings if f.rule != "HV029"] == []


def test_excel_checkbox_defaults_and_blank_formulas_make_no_visits(tmp_path):
    rows = [visit(2), visit(3)] + [{"Laptop taken": True, "Dangerous animals": "FALSE"}] * 40
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    checked = run_check(path, "omg_education", NOW)
    assert len(checked.visits) == 2
    assert [f.rule for f in checked.findings] == ["HV029"]


# ---------------------------------------------------------------- item 4: every header accounted for


WATCH_ONLY = """name = "Watch only"
required_columns = ["visit_id", "learner_name", "status"]

[timings]
grace_minutes = 30

[rules.HV002]
clause = "§1: the log is accurate"

[rules.HV022]
clause = "§2: a late return is escalated"

[rules.HV029]
clause = "§1: the log is accurate"
"""


def watching_school(tmp_path, server, columns, row):
    """A school whose own profile watches returns but requires few columns: the safe-return check's
    own guard is what stops a blind run."""
    profile = tmp_path / "watch_only.toml"
    profile.write_text(WATCH_ONLY, encoding="utf-8")
    place = School(tmp_path, policy=str(profile)).configure(smtp_mail(server))
    write_workbook(place.workbook, [row], columns=columns, sheet="Home Visits")
    return place


def test_check_returns_and_run_scheduled_never_run_blind(tmp_path, server):
    columns = [h for h in ALL_HEADERS if h != "Start time"] + ["Leaving at"]
    row = {k: v for k, v in out_today(2).items() if k != "Start time"}
    place = watching_school(tmp_path, server, columns, {**row, "Leaving at": "10:00"})
    late = dt.datetime(2026, 11, 23, 12, 30, tzinfo=NOW.tzinfo)
    for command in ("check-returns", "run-scheduled"):
        for extra in ((), ("--dry-run",)):
            result = place.run(command, late, *extra)
            assert result.status == 2, (command, extra, result.err)
            assert result.err.count("\n") == 1
            assert result.err.startswith(
                "homevisits: home_visits.xlsx (Home Visits) has no column 'Start time', which the safe-return "
                "check needs: homevisits will not watch returns without it."
            )
    assert server.messages == []
    # validate still checks the sheet, and says which header it could not place
    result = place.run("validate", late, "--format", "text")
    assert result.status in (0, 1), result.err
    assert "The header 'Leaving at' (column AR) is not a column homevisits knows" in result.out


def test_the_missing_return_column_error_offers_the_columns_line_for_a_close_header(tmp_path, server):
    columns = [h for h in ALL_HEADERS if h != "Start time"] + ["Start"]
    row = {k: v for k, v in out_today(2).items() if k != "Start time"}
    place = watching_school(tmp_path, server, columns, {**row, "Start": "10:00"})
    result = place.run("check-returns", NOW)
    assert result.status == 2
    assert result.err.endswith(
        'Is it \'Start\'? Then add under [columns] in the config: "Start" = "start_time".\n'
    )


def test_a_policy_without_the_safe_return_rule_does_not_need_its_columns(tmp_path, server):
    place = School(tmp_path, policy="attendance_academy")
    place.configure(smtp_mail(server))
    columns = [h for h in ALL_HEADERS if h != "Returned safely at"]
    row = {k: v for k, v in out_today(2).items() if k != "Returned safely at"}
    write_workbook(place.workbook, [row], columns=columns, sheet="Home Visits")
    assert place.run("check-returns", NOW, "--dry-run").status == 0


# ---------------------------------------------------------------- item 7: the Google Sheet's locale


def test_a_us_locale_sheet_is_a_finding_with_the_fix_and_what_it_did_to_dates(api, tmp_path):
    # staff typed 03/04/2026 and 10/12/2026 in a US-English sheet: Sheets stored 4 March and 12 October
    rows = [
        visit(2, visit_date=dt.date(2026, 3, 4)),
        visit(3, visit_date=dt.date(2026, 10, 12)),
        visit(4, visit_date=dt.date(2026, 11, 17)),
    ]
    api.add_book(KEY, {TAB: grid_of(rows)}, locale="en_US")
    checked = load(google_config(api, tmp_path, worksheet=None), NOW)
    [hit] = [f for f in checked.findings if f.rule == "HV030"]
    assert (hit.severity, hit.row, hit.column) == ("error", None, None)
    assert hit.message == (
        "The Google Sheet's locale is en_US (United States), not en_GB: dates typed day first are stored month "
        "first: 03/04/2026 became 4 March 2026, and a date with a day over 12 (13/04/2026) stayed as text. "
        "2 visit dates in the sheet could have day and month swapped."
    )
    assert hit.fix.startswith("In the Google Sheet choose File → Settings → Locale: United Kingdom")
    # one metadata request (the one an unnamed worksheet needs anyway) and the one read
    assert api.sheets_counts() == {"metadata": 1, "values.get": 1}
    (meta,) = [r for r in api.log if r.kind == "metadata"]
    assert "properties.locale" in meta.query["fields"][0]


def test_a_named_worksheet_is_read_with_its_locale_and_a_us_sheet_is_a_finding(api, tmp_path):
    api.add_book(KEY, {TAB: grid_of([visit(2)])}, locale="en_US")
    sheet = GoogleSheet(KEY, TAB, api.service_account_file(tmp_path), endpoint=api.url)
    assert sheet.read().locale == "en_US"  # the values, and one metadata request for the locale
    assert api.sheets_counts() == {"values.get": 1, "metadata": 1}
    assert sheet.spreadsheet_locale() == "en_US"  # known: not asked again
    assert sheet.read().locale == "en_US"
    assert api.sheets_counts() == {"values.get": 2, "metadata": 1}
    checked = load(google_config(api, tmp_path), NOW)  # a fresh run of a named worksheet: HV030 says so
    assert [f.rule for f in checked.findings if f.rule == "HV030"] == ["HV030"]


def test_a_uk_locale_sheet_has_no_locale_finding(api, tmp_path):
    api.add_book(KEY, {TAB: grid_of([visit(2)])}, locale="en_GB")
    checked = load(google_config(api, tmp_path, worksheet=None), NOW)
    assert checked.raw.locale == "en_GB"
    assert [f for f in checked.findings if f.rule == "HV030"] == []


def test_the_locale_is_never_guessed_for_excel(tmp_path):
    path = write_workbook(tmp_path / "log.xlsx", [visit(2)], columns=ALL_HEADERS)
    checked = run_check(path, "omg_education", NOW)
    assert checked.raw.locale is None and checked.findings == []


# ---------------------------------------------------------------- item 8: tab titles without case


def test_the_standin_refuses_a_tab_title_differing_only_in_case(api, tmp_path):
    from gspread.exceptions import APIError

    api.add_book(KEY, {TAB: [["Visit ID"]], "Policy Check": [["old"]]})
    sheet = GoogleSheet(KEY, TAB, api.service_account_file(tmp_path), endpoint=api.url)
    with pytest.raises(APIError, match="already exists"):
        sheet.http.batch_update(KEY, {"requests": [{"addSheet": {"properties": {"title": "policy check"}}}]})


def test_findings_go_to_the_existing_tab_whatever_its_capitals(api, tmp_path):
    api.add_book(KEY, {TAB: [["Visit ID"]], "Policy Check": [["old"]]})
    sheet = GoogleSheet(KEY, TAB, api.service_account_file(tmp_path), endpoint=api.url)
    for _ in range(2):
        sheet.write_findings(["Severity", "What"], [["ERROR", "x"]])
    assert sorted(g.title for g in api.books[KEY].sheets) == sorted([TAB, "Policy Check"])
    assert api.values(KEY, "Policy Check") == [["Severity", "What"], ["ERROR", "x"]]
    assert FINDINGS_TAB == "Policy check"


# ---------------------------------------------------------------- item 9: phones and dates people write


@pytest.mark.parametrize(
    ("raw", "number", "others"),
    [
        ("mum: 07400 123456", "07400 123456", ()),
        ("07400 123456 (mum)", "07400 123456", ()),
        ("(dad) 07400 123456", "07400 123456", ()),
        ("Dad - 07400 123456", "07400 123456", ()),
        ("M: 07400 123456", "07400 123456", ()),
        ("0121 496 0000 ext 123", "0121 496 0000", ()),
        ("0121 496 0000 x 123", "0121 496 0000", ()),
        ("07400 123456 / 0121 496 0000", "07400 123456", ("0121 496 0000",)),
        ("+44 07400 123456", "07400 123456", ()),
        ("+44 (0)7400 123456", "07400 123456", ()),
    ],
)
def test_phones_as_people_write_them(raw, number, others):
    value, problem = cells.parse_one("phone", raw)
    assert problem is None and value == number
    assert tuple(getattr(value, "others", ())) == others


@pytest.mark.parametrize("raw", ["mum", "call the office", "07400", "mum: 0740 123", "0121 496 000 ext 1"])
def test_words_without_a_whole_number_stay_unreadable(raw):
    value, problem = cells.parse_one("phone", raw)
    assert value is None and problem


def test_a_second_number_is_kept_for_the_alert(tmp_path):
    rows = [visit(2, phone_taken="07700 900123 / 0121 496 0000"), visit(3)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    checked = run_check(path, "omg_education", NOW)
    assert checked.findings == []
    first, second = checked.visits.records()
    assert (first["phone_taken"], first["phone_taken_also"]) == ("07700 900123", "0121 496 0000")
    assert (second["phone_taken"], second["phone_taken_also"]) == ("07700 900123", None)
    assert type(first["phone_taken"]) is str


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Fri 03/04/2026", dt.date(2026, 4, 3)),
        ("Fri 3/4/26", dt.date(2026, 4, 3)),
        ("Friday, 03/04/2026", dt.date(2026, 4, 3)),
        ("3rd of April 2026", dt.date(2026, 4, 3)),
        ("Fri 3rd of April 2026", dt.date(2026, 4, 3)),
        ("03-Apr-26", dt.date(2026, 4, 3)),
    ],
)
def test_dates_as_people_write_them(raw, expected):
    assert cells.parse_one("date", raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("Thu 03/04/2026", "03 April 2026 is a Friday, not the day written"),
        ("Fri 04/03/2026", "04 March 2026 is a Wednesday, not the day written"),  # never swapped to 3 April
        ("Fri 04/13/2026", "there is no month 13 (dates are day first: DD/MM/YYYY)"),
    ],
)
def test_a_weekday_never_swaps_day_and_month(raw, reason):
    assert cells.parse_one("date", raw) == (None, reason)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2100, 12, 31)), st.booleans())
def test_a_weekday_before_a_numeric_date_reads_day_first(day, short_year):
    year = f"{day:%y}" if short_year and 2000 <= day.year <= 2099 else f"{day:%Y}"
    text = f"{day:%a} {day.day}/{day.month}/{year}"
    assert cells.parse_one("date", text) == (day, None)
    other = (day + dt.timedelta(days=1)).strftime("%a")
    assert cells.parse_one("date", f"{other} {day.day}/{day.month}/{year}")[0] is None


# ---------------------------------------------------------------- issue 10 item 7: one bad cell never stops a run


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("visit_date", dt.datetime(2262, 4, 12)),
        ("visit_date", dt.date(2620, 4, 3)),
        ("visit_date", dt.date(9999, 12, 31)),
        ("form_sent_at", dt.datetime(2262, 4, 12, 9, 0)),
        ("visit_date", dt.date(1899, 1, 1)),
    ],
)
def test_out_of_range_date_cells_are_a_finding_on_that_cell(tmp_path, field, value):
    from workbooks import HEADERS

    rows = [visit(2), visit(3, **{field: value}), visit(4)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    status, _out, err = run(
        ["validate", "--source", str(path), "--policy", "omg_education", "--now", NOW.isoformat()]
    )
    assert status == 1, err
    checked = run_check(path, "omg_education", NOW)
    hv002 = [f for f in checked.findings if f.rule == "HV002"]
    assert [(f.row, f.column) for f in hv002] == [(3, HEADERS[field])]
    assert "not plausible" in hv002[0].message or "not a date" in hv002[0].message
    record = checked.visits.record(1)
    assert record[field] is None  # never wrapped into 2035 or 1816
    assert checked.visits.unreadable(field).tolist() == [False, True, False]


def test_a_1677_date_time_from_google_is_a_finding_too(api, tmp_path):
    # (calamine reads Excel's negative serial for 21/09/1677 09:00 as the time 09:00, a cell the sheet
    # shows as ####; Google sends the serial itself)
    rows = [visit(2), visit(3, form_sent_at=dt.datetime(1677, 9, 21, 9, 0)), visit(4)]
    api.add_book(KEY, {TAB: grid_of(rows)})
    checked = load(google_config(api, tmp_path), NOW)
    assert [(f.row, f.column) for f in checked.findings if f.rule == "HV002"] == [(3, "Form sent at")]
    assert checked.visits.record(1)["form_sent_at"] is None


def test_a_typed_year_out_of_range_is_a_finding(tmp_path):
    rows = [
        visit(2, visit_date="3/4/2620"),
        visit(3, form_sent_at="2620-04-03 10:00"),
        visit(4, visit_date="1/1/1899"),
    ]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    checked = run_check(path, "omg_education", NOW)
    assert [(f.row, f.column) for f in checked.findings if f.rule == "HV002"] == [
        (2, "Visit date"),
        (3, "Form sent at"),
        (4, "Visit date"),
    ]


def test_an_out_of_range_date_never_stops_run_scheduled(tmp_path, server):
    place = School(tmp_path).write([out_today(2), out_today(3, visit_date=dt.datetime(2262, 4, 12))])
    place.configure(smtp_mail(server))
    result = place.run("run-scheduled", dt.datetime(2026, 11, 23, 12, 5, tzinfo=NOW.tzinfo))
    assert result.status != 2, result.err
    kinds = [(m.message["X-Homevisits-Visit"], m.message["X-Homevisits-Kind"]) for m in server.messages]
    assert ("V2", "overdue_alert") in kinds


# ---------------------------------------------------------------- cells no message can carry (items 13 and 10.7)


TERMINAL = "\x1b[2K\x1b[1A\x1b[8mhidden\x1b[0m\x1b]0;title\x07\x9b31m"


def test_terminal_sequences_and_lone_surrogates_never_reach_the_output(api, tmp_path):
    headers = [*ALL_HEADERS[:-1], ALL_HEADERS[-1] + "\x1b[8m"]
    rows = [
        visit(2, learner_name="Ada\x1b[2K Example\ud800", visit_date="31/02/2026" + TERMINAL),
        visit(3, parent_phone="\x1b[1A07700 900123", outcome="Met\x00 parent\x07"),
    ]
    api.add_book(KEY, {TAB: grid_of(rows, headers)})
    config = google_config(api, tmp_path)
    (tmp_path / "homevisits.toml").write_text(
        f'policy = "omg_education"\n[source]\nspreadsheet = "{KEY}"\nworksheet = "{TAB}"\n'
        f'credentials = "{config.source["credentials"]}"\n',
        encoding="utf-8",
    )
    checked = load(config, NOW)
    first, second = checked.visits.records()
    assert first["learner_name"] == "Ada Example"
    assert second["parent_phone"] == "07700 900123" and second["outcome"] == "Met parent"
    [bad] = [f for f in checked.findings if f.rule == "HV002"]
    assert bad.message.startswith("'31/02/2026hidden' in Visit date could not be read")
    for fmt in ("text", "json", "html"):
        status, out, err = run(
            [
                "validate",
                "--config",
                str(tmp_path / "homevisits.toml"),
                "--now",
                NOW.isoformat(),
                "--format",
                fmt,
            ]
        )
        assert status == 1, err
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", out), fmt
        out.encode("utf-8")  # no lone surrogate: the output can be written and mailed
    json.loads(run(["validate", "--config", str(tmp_path / "homevisits.toml"), "--format", "json"])[1])


def test_printable_removes_only_what_cannot_be_shown():
    assert cells.printable("Zoë O’Neill – 07700 900123 ✓") == "Zoë O’Neill – 07700 900123 ✓"
    assert cells.printable("a\x1b[31mb\x1b[0mc") == "abc"
    assert cells.printable("x\x1b]8;;http://evil\x1b\\y") == "xy"
    assert cells.printable("tab\tand\nline") == "tab\tand\nline"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from([*cells.PARSERS, "choice"]))
def test_no_cell_reads_as_anything_unprintable(text, kind):
    from homevisits.schema import load_schema

    value, _problem = cells.parse_one(kind, text, lookup=load_schema()["status"].lookup)
    if isinstance(value, str):
        assert cells.printable(value) == value
        value.encode("utf-8")
    column = cells.parse_cells(kind, [text])
    for _, raw, _reason in column.problems:
        if isinstance(raw, str):
            raw.encode("utf-8")
            assert cells.printable(raw) == raw


def test_a_duplicated_header_stops_every_command_with_one_sentence(tmp_path):
    rows = [{**visit(2), "Date": "17/11/2026"}]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=[*ALL_HEADERS, "Date"])
    status, _out, err = run(["validate", "--source", str(path), "--policy", "omg_education"])
    assert status == 2 and err.count("\n") == 1
    assert "Two columns hold Visit date: 'Visit date' in column J and 'Date' in column AS" in err
    with pytest.raises(HomevisitsError, match="Two columns hold Visit date"):
        run_check(path, "omg_education", NOW)


# ---------------------------------------------------------------- item 5: a used range to row 1,048,576


def with_rows_below(path: Path, xml_rows: str, last: int) -> Path:
    """Add rows (as Excel writes them) after the log's last row, and say the used range ends at ``last``."""
    temporary = path.with_suffix(".tmp.xlsx")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                text = data.decode()
                text = re.sub(r'<dimension ref="A1:([A-Z]+)\d+"', rf'<dimension ref="A1:\g<1>{last}"', text)
                text = text.replace("</sheetData>", xml_rows + "</sheetData>")
                data = text.encode()
            target.writestr(item, data)
    temporary.replace(path)
    return path


def test_one_stray_cell_at_the_last_row_is_read_without_the_empty_million(tmp_path):
    rows = [visit(n) for n in range(2, 8)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    stray = '<row r="1048576"><c r="C1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    with_rows_below(path, stray, 1_048_576)
    raw = read_excel(path)
    assert len(raw.rows) == 1_048_576 and raw.rows[7:-1] == [[]] * (1_048_576 - 8)
    assert raw.rows[-1][:3] == ["", "", "x"] or raw.rows[-1][2] == "x"
    assert raw.notes == [
        "The sheet's used range runs to row 1,048,576, but only 8 rows hold anything a person wrote: the other "
        "1,048,568 (empty, or only tick-box defaults, 0 or formulas showing blank) were skipped. Delete the rows "
        "below the log in the sheet to make it smaller."
    ]
    checked = run_check(path, "omg_education", NOW)
    assert len(checked.visits) == 7 and checked.visits.frame["row"].tolist()[-1] == 1_048_576
    assert {f.row for f in checked.findings if f.rule == "HV001"} == {1_048_576}  # the stray row is said
    assert [f.message for f in checked.findings if f.rule == "HV029"] == raw.notes


def test_tick_boxes_down_to_the_bottom_are_skipped_in_the_compact_read(tmp_path):
    rows = [visit(n) for n in range(2, 6)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    laptop, duration = letter("Laptop taken"), letter("Expected duration (mins)")
    below = "".join(
        f'<row r="{n}"><c r="{laptop}{n}" t="b"><v>0</v></c><c r="{duration}{n}"><v>0</v></c>'
        f'<c r="A{n}" t="str"><f>IF(B{n}="","",B{n})</f><v></v></c></row>'
        for n in range(6, 150_001)
    )
    error = f'<row r="150001"><c r="{letter("Learner name")}150001" t="e"><f>1/0</f><v>#DIV/0!</v></c></row>'
    with_rows_below(path, below + error, 150_001)
    checked = run_check(path, "omg_education", NOW)
    assert checked.visits.frame["row"].tolist() == [2, 3, 4, 5, 150_001]
    assert [(f.rule, f.row) for f in checked.findings if f.rule == "HV002"] == [("HV002", 150_001)]
    [note] = [f.message for f in checked.findings if f.rule == "HV029"]
    assert note.startswith("The sheet's used range runs to row 150,001, but only 6 rows hold anything")
    # the school's workbook is read, never changed, and no copy is left anywhere near it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.xlsx"]


def test_a_negative_time_stays_the_number_in_the_compact_read(tmp_path):
    """A used range over 100,000 rows is read from a compact copy, renumbered: the negative-number scan
    runs on that copy, so -0.25 in a time cell is the number there too (calamine alone: 18:00), in a
    row near the top and in the last row alike."""
    import openpyxl

    path = tmp_path / "negative.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["time", "fine"])
    book.active.append([-0.25, 0.75])
    for cell in book.active[2]:
        cell.number_format = "hh:mm"
    book.save(path)
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    [style] = re.findall(r'<c r="A2" s="(\d+)"', sheet)
    last = f'<row r="150001"><c r="B150001" s="{style}"><v>-1.75</v></c></row>'
    with_rows_below(path, last, 150_001)
    raw = read_excel(path)
    assert raw.notes and raw.notes[0].startswith("The sheet's used range runs to row 150,001")  # compact
    assert raw.rows[1] == [-0.25, dt.time(18, 0)]
    assert raw.rows[150_000][1] == -1.75
    assert cells.parse_one("time", raw.rows[150_000][1]) == (None, "not a time")


def test_a_cell_of_control_characters_only_stays_unreadable_never_blank():
    column = cells.parse_cells("datetime", ["\x1b[2K\x1b[1A", None, "11:30"])
    assert column.values == [None, None, dt.time(11, 30)]
    assert column.problems == [
        (0, "", "the cell holds only control characters, nothing that can be read"),
    ]


LABELS = ["", "mum: ", "Mum - ", "M: ", "dad ", "(dad) ", "Carer: ", "mobile "]
AFTER = ["", " (mum)", " mum", " - dad", " ext 123", " x45", " (work)"]


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"07[1-57-9][0-9]{8}", fullmatch=True),
    st.sampled_from(LABELS),
    st.sampled_from(AFTER),
    st.sampled_from(["{0} {1}", "{0}{1}", "{0} {1}".replace(" ", "  "), "+44 {0} {1}", "+44 (0){2} {1}"]),
)
def test_a_mobile_with_a_label_or_an_extension_reads_as_the_number(digits, label, after, layout):
    written = layout.format(digits[:5], digits[5:], digits[1:5])
    value, problem = cells.parse_one("phone", f"{label}{written}{after}")
    assert (value, problem) == (f"{digits[:5]} {digits[5:]}", None)
    assert tuple(getattr(value, "others", ())) == ()


def test_the_unreadable_mask_is_read_only_so_no_rule_can_change_what_the_next_one_sees(tmp_path):
    rows = [visit(2, visit_date="32/01/2026"), visit(3)]
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    visits = run_check(path, "omg_education", NOW).visits
    bad, blank = visits.unreadable("visit_date"), visits.unreadable("learner_name")
    assert bad.tolist() == [True, False] and blank.tolist() == [False, False]
    for mask in (bad, blank):
        with pytest.raises(ValueError):
            mask[1] = True
    assert visits.unreadable("visit_date").tolist() == [True, False]


# ---------------------------------------------------------------- negative numbers in date and time cells


def test_negative_cells_are_found_whole_and_only_in_number_cells():
    from homevisits.sources.excel_read import _negative_cells

    xml = (
        b'<row r="2"><c r="A2" s="1"/><c r="F2" s="3"><v>-0.25</v></c>'
        b'<c r="G2" s="3"><f t="shared" ref="G2:G9" si="0">F2-E2</f><v>-1.5</v></c>'
        b'<c r="H2" t="n" s="3"><v>-2</v></c><c r="I2" t="str"><f>A1</f><v>-abc</v></c>'
        b'<c r="J2" t="s"><v>4</v></c><c r="K2" s="3"><v>0.5</v></c><c r="AB2"><v>-1E-3</v></c></row>'
    )
    assert _negative_cells(xml) == {(1, 5): -0.25, (1, 6): -1.5, (1, 7): -2.0, (1, 27): -0.001}
    cut = xml[xml.index(b's="3"><v>-0.25') :]  # the cell's opening is in the chunk before
    assert (1, 5) not in _negative_cells(cut)
    assert _negative_cells(b'<c r="A2" s="1"/><v>-1</v>') == {}  # a value that is no cell's


def test_a_negative_number_calamine_made_a_time_of_reads_as_the_number(tmp_path):
    """Excel shows ####### for a negative time or date; calamine alone gives 18:00 for -0.25 and a
    date-time's time for -1.5. A number in a General cell stays as calamine reads it."""
    import openpyxl

    path = tmp_path / "negative.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["time", "date and time", "duration", "general", "fine"])
    book.active.append([-0.25, -1.5, -0.5, -3, 0.75])
    for cell, style in zip(
        book.active[2], ["hh:mm", "dd/mm/yyyy hh:mm", "[h]:mm", "General", "hh:mm"], strict=True
    ):
        cell.number_format = style
    book.save(path)
    assert read_excel(path).rows[1] == [-0.25, -1.5, -0.5, -3, dt.time(18, 0)]
    assert cells.parse_one("time", -0.25) == (None, "not a time")
