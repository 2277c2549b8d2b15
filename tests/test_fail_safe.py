"""The overdue-return alert fails safe: every way staff write "not back", a loose return time, a broken
chain or a broken ledger still gets an alert to the SMTP server (aiosmtpd on 127.0.0.1).

A visit 09:00 to 10:00 today (Monday 23 November 2026), OMG Education (30 minutes' grace), checked
at 10:45 unless the test says otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs_fixtures import (
    ADMIN,
    MANAGER,
    SMT,
    TODAY,
    School,
    body,
    delivered,
    london,
    message_ids,
    only,
    out_today,
    smtp_mail,
)
from smtp_fixtures import RecordingHandler, smtp_server

CHECK = london(2026, 11, 23, 10, 45)
NOT_BACK = [
    "NO", "No", "n", "not yet", "Not back", "awaiting call", "pending", "waiting", "no answer", "x",
    "✗", "FALSE", "0", "unknown", "phoned - no reply", "10:45?", "due 10:00", "tbc", "?", "-", "",
]  # fmt: skip
LOOSE_RETURNS = [
    "10ish", "approx 10:00", "10-10:30", "by 10", "after lunch", "10:00 (call Pat)", "about 10",
    "10 or so", "around ten", "ten", "10am-ish", "c. 10:00", "10:00?", "asap",
]  # fmt: skip
LOOSE_DURATIONS = ["1 hour 30", "1-2 hours", "about an hour", "60-90", "1/2 hour", "1.5"]


def place(tmp_path: Path, rows, server, policy: str = "omg_education", **mail) -> School:
    return School(tmp_path, policy).write(rows).configure(smtp_mail(server, **mail))


def visit(**changes):
    return out_today(1, start=(9, 0), end=(10, 0), **changes)


def kinds(server) -> list[str]:
    return [str(m.message["X-Homevisits-Kind"]) for m in server.messages]


# ---------------------------------------------------------------- what staff type in Returned safely at


@pytest.mark.parametrize("typed", NOT_BACK)
def test_every_way_of_writing_not_back_gets_the_alert(tmp_path, server, typed):
    school = place(tmp_path, [visit(returned_at=typed or None)], server)
    result = school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert"], result.err
    text = body(only(server, "overdue_alert", "V1"))
    if typed.strip() and typed not in ("tbc", "?", "-"):
        assert "Returned safely at reads" in text and "treated as not back" in text
    if typed == "0":
        assert (
            "Returned safely at reads 00:00, before the visit started at 09:00: treated as not back." in text
        )


def _negative_return(path: Path, number: float, formula: str | None = None) -> None:
    """Returned safely at holding a negative number in a time-formatted cell, as a formula such as
    ``=E2-D2`` leaves it (Excel shows #######): calamine alone reads -0.6 as 09:36."""
    import re
    import zipfile

    import openpyxl

    from jobs_fixtures import HEADERS

    book = openpyxl.load_workbook(path)
    sheet = book.active
    [column] = [c.column for c in sheet[1] if c.value == HEADERS["returned_at"]]
    sheet.cell(row=2, column=column, value=number).number_format = "hh:mm"
    book.save(path)
    if formula:
        temporary = path.with_suffix(".tmp.xlsx")
        with zipfile.ZipFile(path) as old, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as new:
            for item in old.infolist():
                data = old.read(item.filename)
                if item.filename.startswith("xl/worksheets/sheet"):
                    data, count = re.subn(rb"<v>-0\.6</v>", f"<f>{formula}</f><v>-0.6</v>".encode(), data)
                    assert count == 1
                new.writestr(item, data)
        temporary.replace(path)


@pytest.mark.parametrize("formula", [None, "E2-D2"])
def test_a_negative_time_is_not_a_return(tmp_path, server, formula):
    """-0.6 in a time cell is no time anyone wrote (calamine would read 09:36, after the start and
    before the check: a safe return): it is unreadable, and the alert goes saying so."""
    from homevisits.sources.excel_read import read

    school = place(tmp_path, [visit()], server)
    _negative_return(school.workbook, -0.6, formula)
    column = list(read(school.workbook).rows[0]).index("Returned safely at")
    assert read(school.workbook).rows[1][column] == -0.6
    result = school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert"], result.err
    assert "Returned safely at" in body(only(server, "overdue_alert", "V1"))


def test_a_return_time_still_to_come_is_not_a_return(tmp_path, server):
    school = place(tmp_path, [visit(returned_at="12:00")], server)
    school.run("run-scheduled", CHECK)
    assert "Returned safely at reads 12:00, which is still to come: treated as not back." in body(
        only(server, "overdue_alert", "V1")
    )


@pytest.mark.parametrize("typed", ["10:40", "10.40", "10:40am", "23/11/2026 10:40"])
def test_a_readable_past_return_after_the_start_means_no_alert(tmp_path, server, typed):
    school = place(tmp_path, [visit(returned_at=typed)], server)
    assert school.run("run-scheduled", CHECK).status == 0
    assert server.messages == []


def test_a_queued_alert_is_not_withdrawn_by_words_in_returned_safely_at(tmp_path):
    handler = RecordingHandler(data_replies={1: "451 4.3.0 later"})
    with smtp_server(handler=handler) as server:
        school = place(tmp_path, [visit()], server)
        assert school.run("run-scheduled", CHECK).status == 1  # queued for the next run
        school.write([visit(returned_at="not yet")])
        handler.data_replies.clear()
        assert school.run("run-scheduled", CHECK + dt.timedelta(minutes=5)).status == 0
        assert kinds(server) == ["overdue_alert"]  # words never withdraw an alert


# ---------------------------------------------------------------- when they are due back


@pytest.mark.parametrize("typed", LOOSE_RETURNS)
def test_a_loose_expected_return_still_alerts_at_the_longest_visit(tmp_path, server, typed):
    school = place(tmp_path, [visit(expected_return=typed, expected_duration=None)], server)
    early = school.run("run-scheduled", london(2026, 11, 23, 11, 30))  # due 11:00 + 30 minutes: not yet
    assert kinds(server) == []
    assert early.status == 1 and "treated as due back by 11:00" in early.err  # cron's MAILTO sees it
    late = school.run("run-scheduled", london(2026, 11, 23, 11, 31))
    assert kinds(server) == ["overdue_alert"] and late.status == 1
    text = body(only(server, "overdue_alert", "V1"))
    assert "The sheet does not say when they were due back: Expected return reads" in text
    assert "treated as due back by 11:00 (120 minutes after the start, the longest visit)." in text


@pytest.mark.parametrize("typed", LOOSE_DURATIONS)
def test_a_loose_duration_without_a_return_time_still_alerts(tmp_path, server, typed):
    school = place(tmp_path, [visit(expected_return=None, expected_duration=typed)], server)
    school.run("run-scheduled", london(2026, 11, 23, 11, 30))
    assert kinds(server) == []  # 1.5 is never "2 minutes": nothing fires 32 minutes into the visit
    school.run("run-scheduled", london(2026, 11, 23, 11, 31))
    assert kinds(server) == ["overdue_alert"]
    assert "Expected duration (mins) reads" in body(only(server, "overdue_alert", "V1"))


def test_no_start_time_either_means_due_back_at_the_end_of_the_day(tmp_path, server):
    row = visit(start_time="morning", expected_return=None, expected_duration=None)
    school = place(tmp_path, [row], server)
    school.run("run-scheduled", london(2026, 11, 23, 17, 30))
    assert kinds(server) == []
    school.run("run-scheduled", london(2026, 11, 23, 17, 31))
    assert "treated as due back by 17:00 on the visit day" in body(only(server, "overdue_alert", "V1"))


def test_a_visit_across_midnight_alerts_at_its_real_time_and_never_before_it_starts(tmp_path, server):
    row = out_today(1, start=(22, 30), end=(0, 30), expected_duration=None)
    school = place(tmp_path, [row], server)
    for moment in (london(2026, 11, 23, 22, 40), london(2026, 11, 24, 0, 20), london(2026, 11, 24, 1, 0)):
        school.run("run-scheduled", moment)
    assert kinds(server) == []
    school.run("run-scheduled", london(2026, 11, 24, 1, 1))
    assert kinds(server) == ["overdue_alert"]
    assert "expected back by Tuesday 24 November 2026 at 00:30" in body(only(server, "overdue_alert", "V1"))
    school.run("run-scheduled", london(2026, 11, 24, 1, 32))
    assert kinds(server) == ["overdue_alert", "smt_alert"]


def test_a_return_after_midnight_ends_a_visit_across_midnight(tmp_path, server):
    row = out_today(1, start=(22, 30), end=(0, 30), expected_duration=None, returned_at="00:40")
    school = place(tmp_path, [row], server)
    assert school.run("run-scheduled", london(2026, 11, 24, 1, 30)).status == 0
    assert server.messages == []


def test_nothing_fires_before_the_visit_starts(tmp_path, server):
    row = out_today(1, start=(14, 0), end=(9, 0), expected_duration=None)  # return before the start
    school = place(tmp_path, [row], server)
    school.run("run-scheduled", london(2026, 11, 23, 13, 59))
    assert kinds(server) == []
    school.run("run-scheduled", london(2026, 11, 23, 16, 31))  # start + 120 minutes + grace
    assert kinds(server) == ["overdue_alert"]


# ---------------------------------------------------------------- the chain never dead-ends


@pytest.mark.parametrize(
    ("where", "reply"),
    [("rcpt", "550 5.1.1 No such user"), ("data", "550 5.7.1 no"), ("data", "552 5.3.4 too big"), ("data", "554 5.7.1 no")],
)  # fmt: skip
def test_a_line_manager_refused_for_good_means_smt_at_once_and_every_run_says_so(tmp_path, where, reply):
    handler = RecordingHandler()
    if where == "rcpt":
        handler.rcpt_replies[MANAGER] = reply
    else:
        handler.data_replies[1] = reply
    with smtp_server(handler=handler) as server:
        school = place(tmp_path, [visit()], server)
        first = school.run("run-scheduled", CHECK)
        assert first.status == 1
        assert sorted(kinds(server)) == ["admin_report", "smt_alert"]
        smt = only(server, "smt_alert", "V1")
        assert smt.rcpt_tos == [SMT] and "could NOT be reached" in body(smt)
        assert only(server, "admin_report").rcpt_tos == [ADMIN]
        for minutes in (5, 60, 120):
            later = school.run("run-scheduled", CHECK + dt.timedelta(minutes=minutes))
            assert later.status == 1 and "the line manager's alert reached nobody" in later.err
        assert sorted(kinds(server)) == ["admin_report", "smt_alert"]


def test_smt_is_alerted_on_time_while_the_line_managers_alert_is_stuck_retrying(tmp_path):
    handler = RecordingHandler(rcpt_replies={MANAGER: "450 4.2.1 mailbox busy"})
    with smtp_server(handler=handler) as server:
        school = place(tmp_path, [visit()], server)
        assert school.run("run-scheduled", CHECK).status == 1
        assert school.run("run-scheduled", CHECK + dt.timedelta(minutes=31)).status == 1
        assert kinds(server) == ["smt_alert"]


# ---------------------------------------------------------------- a broken ledger


def two_overdue() -> list[dict]:
    return [visit(), out_today(2, start=(9, 0), end=(10, 0))]


def assert_both_alerts(server, result, cause: str) -> None:
    assert result.status == 2, result.err
    assert sorted(delivered(server)) == [("V1", "overdue_alert"), ("V2", "overdue_alert")]
    assert cause in result.err


def test_a_locked_ledger_still_sends_the_alerts(tmp_path, server, monkeypatch):
    from homevisits import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "BUSY_TIMEOUT_S", 0.2)
    school = place(tmp_path, two_overdue(), server)
    school.ledger.parent.mkdir(parents=True)
    sqlite3.connect(school.ledger).execute("CREATE TABLE t (x)").connection.commit()
    ready, done = multiprocessing.get_context("fork").Event(), multiprocessing.get_context("fork").Event()

    def hold() -> None:
        db = sqlite3.connect(school.ledger, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        ready.set()
        done.wait(30)
        os._exit(0)

    holder = multiprocessing.get_context("fork").Process(target=hold)
    holder.start()
    try:
        assert ready.wait(10)
        result = school.run("run-scheduled", CHECK)
    finally:
        done.set()
        holder.join(10)
    assert_both_alerts(server, result, "is locked by another program")
    assert school.cell("V1", "escalated_at") == dt.datetime(2026, 11, 23, 10, 45)


def test_a_damaged_ledger_is_moved_aside_and_the_alerts_still_go(tmp_path, server):
    school = place(tmp_path, two_overdue(), server)
    school.ledger.parent.mkdir(parents=True)
    with sqlite3.connect(school.ledger) as db:
        db.execute("CREATE TABLE filler (x)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    data = school.ledger.read_bytes()
    school.ledger.write_bytes(data[: len(data) // 3])  # truncated
    result = school.run("run-scheduled", CHECK)
    assert_both_alerts(server, result, "is damaged")
    moved = list(school.ledger.parent.glob("ledger.sqlite.damaged-*"))
    assert len(moved) == 1 and "moved it aside to" in result.err
    again = school.run("run-scheduled", CHECK + dt.timedelta(minutes=5))
    assert again.status == 0 and len(server.messages) == 2  # the sheet's Escalated at counts


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A small tmpfs at ``folder`` (root and a kernel that allows it: else the test is skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_ledger_folder_still_sends_the_alerts(tmp_path, server):
    school = place(tmp_path, two_overdue(), server)
    with mounted(tmp_path / "state", "size=1m"):
        assert school.run("run-scheduled", CHECK - dt.timedelta(hours=1)).status == 0  # a ledger exists
        subprocess.run(["mount", "-o", "remount,ro", str(tmp_path / "state")], check=True)
        result = school.run("run-scheduled", CHECK)
        assert_both_alerts(server, result, "cannot be written")
        assert school.cell("V2", "escalated_at") == dt.datetime(2026, 11, 23, 10, 45)


def test_a_full_disk_under_the_ledger_still_sends_the_alerts(tmp_path, server):
    school = place(tmp_path, two_overdue(), server)
    with mounted(tmp_path / "state", "size=48k"):
        filler = tmp_path / "state" / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as stream:
            stream.write(b"\0" * 100_000)
        result = school.run("run-scheduled", CHECK)
        assert_both_alerts(server, result, "is full")


def test_an_alert_sent_without_a_ledger_keeps_its_message_id(tmp_path, server):
    school = place(tmp_path, [visit()], server)
    school.run("run-scheduled", CHECK)
    first = next(iter(message_ids(server)))
    for part in school.ledger.parent.glob("ledger.sqlite*"):
        part.unlink()  # lost; and the sheet forgot too
    school.write([visit()])
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=5))
    assert list(message_ids(server)) == [first] and message_ids(server)[first] == 2


# ---------------------------------------------------------------- rows without a Visit ID


def test_a_row_without_a_visit_id_is_alerted_at_once_and_carried_over(tmp_path, server):
    school = place(tmp_path, [visit(visit_id=None)], server)
    first = school.run("run-scheduled", CHECK)
    [alert] = server.messages
    assert alert.message["X-Homevisits-Kind"] == "overdue_alert"
    assert "row 2" in alert.message["Subject"] and "Learner" not in alert.message["Subject"]
    assert first.status == 0
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=5))  # the row has its ID now
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=10))
    assert kinds(server) == ["overdue_alert"]  # carried over: not alerted again under its new ID
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=40))
    assert kinds(server) == ["overdue_alert", "smt_alert"]


def test_a_workbook_open_in_excel_still_gets_the_alert(tmp_path, server):
    school = place(tmp_path, [visit(visit_id=None)], server)
    lock = school.workbook.with_name("~$" + school.workbook.name)
    lock.write_bytes(b"excel")
    result = school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert"]
    assert "1 message(s) went, but the sheet was not updated" in result.err
    lock.unlink()
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=5))
    assert kinds(server) == ["overdue_alert"]


def test_with_nothing_sent_the_run_never_says_messages_went(tmp_path, server):
    school = place(tmp_path, [out_today(1, visit_id=None, returned_at="10:40")], server)
    lock = school.workbook.with_name("~$" + school.workbook.name)
    lock.write_bytes(b"excel")
    result = school.run("run-scheduled", CHECK)
    assert "messages went" not in result.err and "the sheet was not updated" in result.err


# ---------------------------------------------------------------- ONE MAT


def test_one_mat_visits_are_watched_too(tmp_path, server):
    school = place(tmp_path, [visit()], server, policy="one_mat")
    school.run("run-scheduled", CHECK)
    assert "overdue_alert" in kinds(server)


# ---------------------------------------------------------------- the property


TIMES = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(6, 20), st.integers(0, 59))
ANY_TIME = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
# What people type that is not a time (numbers that read as times, such as 1.5 for 01:50, are left out).
WORDS = st.sampled_from(
    [w for w in [*NOT_BACK, *LOOSE_RETURNS] if not any(c.isdigit() for c in w)] + ["0", "FALSE"]
)
DURATIONS = st.one_of(st.integers(5, 300).map(str), st.sampled_from([*LOOSE_DURATIONS, "", "0", "2"]))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    start=st.one_of(TIMES, WORDS),
    expected=st.one_of(TIMES, WORDS),
    duration=DURATIONS,
    returned=st.one_of(ANY_TIME, WORDS),
)
def test_a_live_visit_past_its_latest_due_time_is_back_or_alerted(start, expected, duration, returned):
    """For every value typed in the four cells that decide it, checked at 23:30 (after any due time those
    cells can give a visit starting by 21:00): the alert reaches the server exactly when Returned safely
    at does not read as a time from the start to now."""
    row = out_today(
        1,
        start_time=start or None,
        expected_return=expected or None,
        expected_duration=duration or None,
        returned_at=returned or None,
    )
    with tempfile.TemporaryDirectory() as folder, smtp_server() as server:
        school = place(Path(folder), [row], server)
        school.run("run-scheduled", london(2026, 11, 23, 23, 30))
        alerted = "overdue_alert" in kinds(server) or "smt_alert" in kinds(server)
    back = False
    if returned[:2].isdigit() and returned.count(":") == 1 and len(returned) == 5:
        start_ok = start[:2].isdigit() and start.count(":") == 1 and len(start) == 5
        back = (returned > start if start_ok else returned > "00:00") and returned <= "23:30"
    assert alerted != back, (start, expected, duration, returned)


def test_the_alert_gives_every_number_in_the_phone_cell(tmp_path, server):
    school = place(tmp_path, [visit(phone_taken="mum: 07700 900123 / 0121 496 0000")], server)
    school.run("run-scheduled", CHECK)
    assert "Phone taken on the visit: 07700 900123 (also 0121 496 0000)" in body(
        only(server, "overdue_alert", "V1")
    )


def test_a_huge_number_in_a_duration_formatted_cell_never_stops_the_alerts(tmp_path, server):
    """calamine turns a duration-formatted cell into a timedelta, and 10^12 days overflows it: the sheet
    is read again as plain numbers, the cell is a finding, and the other visit's alert still goes."""
    import openpyxl

    school = place(tmp_path, [out_today(2, start=(9, 0), end=(10, 0)), visit(visit_id="V3")], server)
    book = openpyxl.load_workbook(school.workbook)
    sheet = book["Home Visits"]
    headers = [c.value for c in sheet[1]]
    cell = sheet.cell(row=3, column=headers.index("Expected duration (mins)") + 1)
    cell.value, cell.number_format = 1e12, "[h]:mm:ss"
    book.save(school.workbook)
    result = school.run("run-scheduled", CHECK)
    assert sorted(delivered(server)) == [("V2", "overdue_alert"), ("V3", "overdue_alert")], result.err


def test_a_row_copied_with_yesterdays_visit_id_still_gets_its_own_alert(tmp_path, server):
    yesterday = out_today(1, start=(9, 0), end=(10, 0), day=TODAY - dt.timedelta(days=1))
    school = place(tmp_path, [yesterday], server)
    school.run("run-scheduled", london(2026, 11, 22, 10, 45))
    school.run("run-scheduled", london(2026, 11, 22, 11, 20))
    assert kinds(server) == ["overdue_alert", "smt_alert"]
    today = visit()  # copied for today's visit, Visit ID V1 left as it was
    school.write([{**yesterday, "returned_at": "22/11/2026 11:30"}, today])
    result = school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert", "smt_alert", "overdue_alert"], result.err
    assert "V1" in server.messages[-1].message["Subject"]


@pytest.mark.parametrize("typed", ["23:00", "24/11/2026", "23/11/2027 10:31", "08:00"])
def test_an_escalated_at_still_to_come_or_before_the_start_is_not_an_alert_that_went(tmp_path, server, typed):
    school = place(tmp_path, [visit(escalated_at=typed)], server)
    school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert"]


def test_a_row_reused_for_the_next_visit_under_the_same_id_gets_its_own_alerts(tmp_path, server):
    last_week = out_today(1, start=(9, 0), end=(10, 0), day=TODAY - dt.timedelta(days=7))
    school = place(tmp_path, [last_week], server)
    school.run("run-scheduled", london(2026, 11, 16, 10, 45))
    school.run("run-scheduled", london(2026, 11, 16, 11, 20))
    assert kinds(server) == ["overdue_alert", "smt_alert"]
    school.write([visit()])  # the same row, overwritten with today's visit, Visit ID V1 kept
    school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert", "smt_alert", "overdue_alert"]
    school.run("run-scheduled", CHECK + dt.timedelta(minutes=31))
    assert kinds(server) == ["overdue_alert", "smt_alert", "overdue_alert", "smt_alert"]
    assert len(set(message_ids(server))) == 4


@pytest.mark.parametrize("typed", ["abandoned", "aborted", "not done", "Done?", "in progress"])
def test_a_status_that_may_mean_staff_are_still_out_keeps_the_visit_watched(tmp_path, server, typed):
    school = place(tmp_path, [visit(status=typed)], server)
    school.run("run-scheduled", CHECK)
    assert kinds(server) == ["overdue_alert"]


def test_with_both_a_return_time_and_a_duration_the_sooner_one_counts(tmp_path, server):
    school = place(tmp_path, [visit(expected_return="21:00", expected_duration=60)], server)
    school.run("run-scheduled", london(2026, 11, 23, 10, 30))  # 09:00 + 60 minutes + 30 grace: not yet
    assert kinds(server) == []
    school.run("run-scheduled", london(2026, 11, 23, 10, 31))
    assert "expected back by Monday 23 November 2026 at 10:00" in body(only(server, "overdue_alert", "V1"))
