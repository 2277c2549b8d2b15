"""send-forms, check-returns and run-scheduled on real workbooks against a real SMTP server on loopback.

Every deadline is probed just before, at and just after it with an explicit --now; faults are
injected at each message of a batch, and the next run must send exactly what was not accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from email import message_from_bytes
from email.policy import default as default_policy
from types import SimpleNamespace

import pytest

from homevisits.ledger import Ledger, run_lock
from homevisits.notify import context, history, messages, options
from homevisits.policy import load_policy
from homevisits.timings import form_deadline
from jobs_fixtures import (
    ADMIN,
    DOMAINS,
    DSL,
    KILLED,
    MANAGER,
    NOW,
    SMT,
    STAFF,
    TODAY,
    School,
    barrier,
    body,
    delivered,
    london,
    message_ids,
    not_ready,
    only,
    out_today,
    planned,
    smtp_mail,
    start_child,
)
from smtp_fixtures import RecordingHandler, dead_port, smtp_server
from workbooks import run_check

THURSDAY = dt.date(2026, 11, 26)  # visits at 10:00: the form is due Wednesday 25 November at 10:00
FRIDAY = dt.date(2026, 11, 27)
DEADLINE = london(2026, 11, 25, 10, 0)
MINUTE = dt.timedelta(minutes=1)
PERSONAL = ("Learner", "Test Street", "07700", "0113", "Sam Teacher", "Pat Manager", "@")


def school(
    tmp_path, rows, server=None, *, policy="omg_education", mail=None, schedule=None, timings=None
) -> School:
    place = School(tmp_path, policy).write(rows)
    return place.configure(mail or smtp_mail(server), schedule, timings)


def no_personal_data(text: str) -> None:
    for word in PERSONAL:
        assert word not in text, f"{word!r} printed"


# ---------------------------------------------------------------- deadlines (pure)


@pytest.mark.parametrize(
    ("start", "deadline_utc", "wall_clock"),
    [
        # The Mondays after the clocks change, as the issue asks ...
        (london(2026, 3, 30, 9), dt.datetime(2026, 3, 29, 8, tzinfo=dt.UTC), "Sunday 29 March 2026 at 09:00"),
        (
            london(2026, 10, 26, 9),
            dt.datetime(2026, 10, 25, 9, tzinfo=dt.UTC),
            "Sunday 25 October 2026 at 09:00",
        ),
        # ... and visits on the day itself, whose 24 hours hold 23 or 25 on the wall clock.
        (
            london(2026, 3, 29, 10),
            dt.datetime(2026, 3, 28, 9, tzinfo=dt.UTC),
            "Saturday 28 March 2026 at 09:00",
        ),
        (
            london(2026, 10, 25, 10),
            dt.datetime(2026, 10, 24, 10, tzinfo=dt.UTC),
            "Saturday 24 October 2026 at 11:00",
        ),
    ],
)
def test_the_deadline_is_24_elapsed_hours_across_clock_changes(
    tmp_path, server, start, deadline_utc, wall_clock
):
    deadline = form_deadline(start, 24)
    assert deadline == deadline_utc and start - deadline == dt.timedelta(hours=24)
    assert (start.astimezone(dt.UTC) - deadline).total_seconds() == 24 * 3600
    place = school(
        tmp_path, [not_ready(1, start.date(), start=(start.hour, 0), end=(start.hour + 1, 0))], server
    )
    assert place.run("send-forms", deadline - MINUTE).status == 0
    final = only(server, "final_reminder")
    assert f"Deadline: {wall_clock} (OMG Education policy" in body(final)
    assert place.run("send-forms", deadline).status == 0  # at the deadline: not passed yet
    assert place.run("send-forms", deadline + MINUTE).status == 0
    assert f"by its deadline, {wall_clock}." in body(only(server, "deadline_missed"))
    assert list(delivered(server)) == [("V1", "final_reminder"), ("V1", "deadline_missed")]


# ---------------------------------------------------------------- send-forms


def test_a_ready_row_gets_its_form_once_and_form_sent_at_is_written_back(tmp_path, server):
    place = school(tmp_path, [planned(1, THURSDAY)], server)
    result = place.run("send-forms", NOW)
    assert (result.status, result.out) == (0, "sent: V1 form to 3 recipients\n")
    no_personal_data(result.out + result.err)
    received = only(server, "form", "V1")
    message = received.message
    assert received.rcpt_tos == [DSL, STAFF, MANAGER]
    assert (message["To"], message["Cc"]) == (DSL, f"{STAFF}, {MANAGER}")
    assert message["Subject"] == "Home visit V1 on Thu 26 Nov 2026: risk assessment form"
    assert "Learner" not in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert "Learner 1" in html and "1 Test Street" in html
    (pdf,) = [part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "V1-risk_assessment.pdf" and pdf.get_content().startswith(b"%PDF")
    text = body(received)
    assert "the form is due by\nWednesday 25 November 2026 at 10:00" in text
    assert place.cell("V1", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 0)
    with Ledger(place.ledger) as ledger:
        (entry,) = ledger.entries()
        assert (entry.key, entry.status, entry.message_id) == ("form:V1", "sent", message["Message-ID"])
        assert entry.written_back_at is not None
    again = place.run("run-scheduled", NOW + dt.timedelta(minutes=5))
    assert (again.status, again.out) == (0, "")
    assert len(server.messages) == 1
    assert not [f for f in run_check(place.workbook, "omg_education", NOW).findings if f.rule == "HV009"]


def test_a_planned_row_whose_status_nobody_filled_in_still_gets_its_form(tmp_path, server):
    place = school(tmp_path, [planned(1, THURSDAY, status=None)], server)
    result = place.run("send-forms", NOW)
    assert (result.status, result.out) == (0, "sent: V1 form to 3 recipients\n")
    assert place.cell("V1", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 0)


def test_a_row_that_is_not_ready_gets_a_reminder_listing_exactly_its_findings(tmp_path, server):
    place = school(tmp_path, [not_ready(1, THURSDAY)], server)
    assert place.run("send-forms", NOW).status == 0
    reminder = only(server, "reminder", "V1")
    assert reminder.rcpt_tos == [STAFF, MANAGER]
    assert (reminder.message["To"], reminder.message["Cc"]) == (STAFF, MANAGER)
    text = body(reminder)
    assert "Deadline: Wednesday 25 November 2026 at 10:00 (OMG Education policy, §10" in text
    findings = [
        f
        for f in run_check(place.workbook, "omg_education", NOW).findings
        if f.severity in ("error", "alert") and f.rule != "HV009"
    ]
    assert sorted(f.rule for f in findings) == ["HV006", "HV007"]
    listed = [line for line in text.splitlines() if line.startswith("  - ")]
    assert listed == [f"  - {f.column}: {f.message} {f.fix}" for f in findings]
    assert "form" not in {kind for _, kind in delivered(server)}


def test_reminders_once_per_interval_a_final_one_and_the_missed_deadline_once(tmp_path, server):
    place = school(tmp_path, [not_ready(1, THURSDAY)], server)
    hours = dt.timedelta(hours=1)
    timeline = [
        (DEADLINE - 46 * hours, "reminder"),  # NOW
        (DEADLINE - 45 * hours, None),
        (DEADLINE - 22 * hours - MINUTE, None),  # 23 h 59 min after the first
        (DEADLINE - 22 * hours, "reminder"),  # 24 h after the first
        (DEADLINE - 21 * hours, None),
        (DEADLINE - 6 * hours, None),  # 6 hours left: not less than 6
        (DEADLINE - 6 * hours + MINUTE, "final_reminder"),
        (DEADLINE - hours, None),
        (DEADLINE, None),  # at the deadline: neither another reminder nor the missed deadline
        (DEADLINE + MINUTE, "deadline_missed"),
        (DEADLINE + 3 * hours, None),
        (DEADLINE + 24 * hours, None),
    ]
    seen = 0
    for moment, expected in timeline:
        result = place.run("run-scheduled", moment)
        assert result.status == 0
        new = [m.message["X-Homevisits-Kind"] for m in server.messages[seen:]]
        assert new == ([expected] if expected else []), moment
        seen = len(server.messages)
    missed = only(server, "deadline_missed", "V1")
    assert (missed.message["To"], missed.message["Cc"]) == (MANAGER, STAFF)
    assert "the visit must not go ahead as planned" in body(missed).replace("\n", " ")
    assert "Subject" in missed.message and "Learner" not in missed.message["Subject"]
    final = only(server, "final_reminder", "V1")
    assert "FINAL REMINDER" in body(final)


@pytest.mark.parametrize(
    ("moment", "kind"),
    [(DEADLINE - MINUTE, "form"), (DEADLINE, "form"), (DEADLINE + MINUTE, "deadline_missed")],
)
def test_a_ready_form_goes_up_to_the_deadline_and_never_after(tmp_path, server, moment, kind):
    place = school(tmp_path, [planned(1, THURSDAY)], server)
    assert place.run("send-forms", moment).status == 0
    assert list(delivered(server)) == [("V1", kind)]
    assert place.run("send-forms", moment + dt.timedelta(hours=1)).status == 0
    assert len(server.messages) == 1


def test_a_row_fixed_after_its_reminder_gets_its_form(tmp_path, server):
    place = school(tmp_path, [not_ready(1, THURSDAY)], server)
    place.run("send-forms", NOW)
    School(tmp_path).write([planned(1, THURSDAY)])  # the staff member fixed the row
    assert place.run("send-forms", NOW + dt.timedelta(minutes=5)).status == 0
    assert list(delivered(server)) == [("V1", "reminder"), ("V1", "form")]


def test_visits_that_need_no_form_email_get_nothing(tmp_path, server):
    rows = [
        planned(1, THURSDAY, risk_level="HIGH"),
        planned(2, THURSDAY, status="Cancelled", cancellation_reason="Family asked to rearrange"),
        planned(3, THURSDAY, form_sent_at="20/11/2026 09:00"),
        planned(4, TODAY + dt.timedelta(days=15)),  # outside the 14-day window
        out_today(5, start=(13, 0), end=(14, 0)),  # under way: its form went days ago
    ]
    place = school(tmp_path, rows, server)
    dry = place.run("send-forms", NOW, "--dry-run")
    assert (dry.status, dry.out) == (0, "Nothing would be sent.\n")
    assert place.run("send-forms", NOW).status == 0
    assert server.messages == []
    wider = school(tmp_path, rows, server, schedule={"window_days": 16})
    assert wider.run("send-forms", NOW).status == 0
    assert list(delivered(server)) == [("V4", "form")]


@pytest.mark.parametrize("age_hours", [1, 30])  # inside the reminder interval, and older than it
def test_a_reminder_queued_by_a_crashed_run_is_sent_and_never_doubled(tmp_path, server, age_hours):
    place = school(tmp_path, [not_ready(1, THURSDAY)], server)
    queued_at = NOW - dt.timedelta(hours=age_hours)
    with Ledger(place.ledger, sender="homevisits@school.example") as ledger:
        crashed = ledger.queue(
            f"reminder:V1:{queued_at:%Y-%m-%dT%H:%M}", "V1", "reminder", [STAFF, MANAGER], queued_at
        )
    assert place.run("send-forms", NOW).status == 0
    assert message_ids(server) == {crashed.message_id: 1}
    assert (server.messages[0].message["To"], server.messages[0].message["Cc"]) == (STAFF, MANAGER)
    assert place.run("send-forms", NOW + dt.timedelta(hours=2)).status == 0
    assert len(server.messages) == 1


# ---------------------------------------------------------------- check-returns


def test_overdue_alert_after_the_grace_period_then_smt_each_once(tmp_path, server):
    place = school(tmp_path, [out_today(1, location_details="Front door, blue gate")], server)
    timeline = [
        (london(2026, 11, 23, 12, 0), None),  # 11:30 + 30 minutes grace: not yet
        (london(2026, 11, 23, 12, 1), "overdue_alert"),
        (london(2026, 11, 23, 12, 20), None),
        (london(2026, 11, 23, 12, 31), None),  # 30 minutes after the alert: not after it yet
        (london(2026, 11, 23, 12, 32), "smt_alert"),
        (london(2026, 11, 23, 13, 30), None),
    ]
    seen = 0
    for moment, expected in timeline:
        assert place.run("check-returns", moment).status == 0
        new = [m.message["X-Homevisits-Kind"] for m in server.messages[seen:]]
        assert new == ([expected] if expected else []), moment
        seen = len(server.messages)
    alert = only(server, "overdue_alert", "V1")
    assert alert.rcpt_tos == [MANAGER]
    assert alert.message["Subject"] == "URGENT: no safe return confirmed for home visit V1 on Mon 23 Nov 2026"
    text = body(alert)
    for line in (
        "Staff member: Sam Teacher",
        "Phone taken on the visit: 07700 900123",
        "Address: 1 Test Street, Birmingham, B23 6XX",
        "Location type: Home",
        "Location details: Front door, blue gate",
        "Second member of staff: Alex Colleague",
        "Line manager: Pat Manager",
        "Learner's phone: 07700 900456",
        "Parent/carer's phone: 0113 496 0000",
        "They were expected back by Monday 23 November 2026 at 11:30: 31 minutes ago.",
        'When the member of staff is safe, record the time in "Returned safely at" in row 2',
    ):
        assert line in text
    steps = load_policy("omg_education").param("HV022", "escalation")
    numbered = [line.strip() for line in text.splitlines() if line.strip()[:2] in ("1.", "2.", "3.", "4.")]
    assert numbered == [f"{n}. {step}" for n, step in enumerate(steps, start=1)]
    assert place.cell("V1", "escalated_at") == dt.datetime(2026, 11, 23, 12, 1)
    smt = only(server, "smt_alert", "V1")
    assert smt.rcpt_tos == [SMT, MANAGER]
    assert (
        "The line manager (Pat Manager) was alerted at Monday 23 November 2026 at 12:01 and the sheet "
        "still shows no safe return." in body(smt)
    )
    assert "1. Call Pat Manager: have they heard from Sam Teacher?" in body(smt)


def test_escalated_at_typed_by_staff_counts_as_the_first_stage(tmp_path, server):
    place = school(tmp_path, [out_today(1, escalated_at="23/11/2026 12:05")], server)
    assert place.run("check-returns", london(2026, 11, 23, 12, 30)).status == 0
    assert server.messages == []
    assert place.run("check-returns", london(2026, 11, 23, 12, 36)).status == 0
    assert list(delivered(server)) == [("V1", "smt_alert")]


def test_no_alert_for_cancelled_returned_or_long_past_visits(tmp_path, server):
    rows = [
        out_today(1, status="Cancelled", cancellation_reason="Learner unwell"),
        out_today(2, status="Not carried out", cancellation_reason="Staff unwell"),
        out_today(3, returned_at="11:40"),
        out_today(4, day=TODAY - dt.timedelta(days=1), start=(11, 0), end=(11, 29)),  # due back over 24 h ago
    ]
    place = school(tmp_path, rows, server)
    for moment in (london(2026, 11, 23, 12, 1), london(2026, 11, 23, 16, 0)):
        assert place.run("check-returns", moment).status == 0
    assert server.messages == []


def test_a_policy_without_the_safe_return_rule_has_nothing_to_check(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server, policy="attendance_academy")
    dry = place.run("check-returns", london(2026, 11, 23, 13, 0), "--dry-run")
    assert dry.status == 0
    name = load_policy("attendance_academy").name
    assert f"The {name} policy has no safe-return rule (HV022): check-returns has nothing to do." in dry.out
    assert place.run("run-scheduled", london(2026, 11, 23, 13, 0)).status == 0
    assert server.messages == []


# ---------------------------------------------------------------- a batch, and faults at each message


def batch() -> list[dict]:
    """Four messages in one run at NOW, in the order they go: alert, missed deadline, form, reminder."""
    return [
        planned(4, FRIDAY, parent_consent=None),
        planned(3, THURSDAY),
        planned(2, TODAY + dt.timedelta(days=1), start=(11, 0), end=(12, 0)),
        out_today(1, start=(10, 0), end=(11, 0)),
    ]


EXPECTED = {("V1", "overdue_alert"), ("V2", "deadline_missed"), ("V3", "form"), ("V4", "reminder")}
ORDER = ["V1", "V2", "V3", "V4"]
FAULTS = {
    "4xx": ("data_replies", "451 4.3.0 Try again later"),
    "5xx": ("data_replies", "554 5.7.1 Rejected for good"),
    "drop": ("drop_after_data", None),  # the whole message arrived; the server hung up without a reply
    "cut": ("cut_during_data", None),  # the connection died in the middle of the message
}


def test_a_batch_goes_in_order_of_urgency_with_one_connection(tmp_path, server):
    place = school(tmp_path, batch(), server)
    result = place.run("run-scheduled", NOW)
    assert result.status == 0
    assert [m.message["X-Homevisits-Visit"] for m in server.messages] == ORDER
    assert set(delivered(server)) == EXPECTED and server.handler.connections == 1
    assert place.cell("V3", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 0)
    assert place.cell("V1", "escalated_at") == dt.datetime(2026, 11, 23, 12, 0)
    no_personal_data(result.out)


@pytest.mark.parametrize("position", [1, 2, 3, 4])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_at_any_message_loses_none_and_repeats_none(tmp_path, fault, position):
    handler = RecordingHandler()
    setting, value = FAULTS[fault]
    getattr(handler, setting).update({position: value} if value else {position})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, batch(), server)
        first = place.run("run-scheduled", NOW)
        assert first.status == 1
        handler.data_replies.clear()
        handler.drop_after_data.clear()
        handler.cut_during_data.clear()
        # The line manager's alert refused for good: SMT hears in the same run, and every run says so.
        chain_broken = fault == "5xx" and position == 1
        second = place.run("run-scheduled", NOW + dt.timedelta(minutes=5))
        assert second.status == (1 if chain_broken else 0)
        third = place.run("run-scheduled", NOW + dt.timedelta(minutes=10))
        assert (third.status, third.out) == (1 if chain_broken else 0, "")
    refused = ORDER[position - 1]
    if fault == "5xx":  # refused for good: never retried, and the admin is told once
        wanted = {key: 1 for key in EXPECTED if key[0] != refused}
        wanted[(refused, "admin_report")] = 1
        if chain_broken:
            wanted[(refused, "smt_alert")] = 1
        report = only(server, "admin_report")
        assert report.rcpt_tos == [ADMIN] and f"  - Visit {refused}, " in body(report)
    else:
        wanted = dict.fromkeys(EXPECTED, 1)  # nothing lost, nothing repeated
    assert delivered(server) == wanted
    assert all(n == 1 for n in message_ids(server).values())
    with Ledger(place.ledger) as ledger:
        assert ledger.pending() == [] and ledger.needs_write_back() == []
    assert (place.cell("V3", "form_sent_at") is None) == (fault == "5xx" and refused == "V3")
    assert (place.cell("V1", "escalated_at") is None) == (fault == "5xx" and refused == "V1")


def test_a_retry_goes_to_the_recipients_the_ledger_holds_after_the_alerts(tmp_path):
    handler = RecordingHandler(data_replies={1: "451 4.3.0 Try again later"})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, [planned(2, THURSDAY), out_today(1)], server)
        assert place.run("run-scheduled", london(2026, 11, 23, 11, 0)).status == 1  # the form: not this time
        place.write([planned(2, THURSDAY, staff_email="new.teacher@school.example"), out_today(1)])
        assert place.run("run-scheduled", london(2026, 11, 23, 12, 1)).status == 0
    assert [m.message["X-Homevisits-Kind"] for m in server.messages] == ["overdue_alert", "form"]
    assert server.messages[1].rcpt_tos == [DSL, STAFF, MANAGER]  # as queued, with the same Message-ID


def test_a_mail_server_that_is_down_keeps_everything_for_the_next_run(tmp_path):
    with dead_port() as port:
        place = school(tmp_path, batch(), mail=smtp_mail(SimpleNamespace(host="127.0.0.1", port=port)))
        down = place.run("run-scheduled", NOW)
    assert down.status == 1
    assert "Could not connect to the mail server" in down.err and "queued for the next run" in down.err
    assert place.cell("V3", "form_sent_at") is None
    with smtp_server() as server:
        place.configure(smtp_mail(server))
        assert place.run("run-scheduled", NOW + dt.timedelta(minutes=5)).status == 0
        assert place.run("run-scheduled", NOW + dt.timedelta(minutes=10)).status == 0
    assert delivered(server) == dict.fromkeys(EXPECTED, 1)


@pytest.mark.parametrize("position", [1, 2, 3, 4])
def test_killed_between_acceptance_and_the_ledger_resends_only_that_message(tmp_path, server, position):
    place = school(tmp_path, batch(), server)
    child = start_child(place.argv("run-scheduled", NOW), tmp_path / "child.log", kill_at=position)
    child.join(timeout=120)
    assert child.exitcode == KILLED
    assert len(server.messages) == position  # the server had accepted message N when the process died
    caught = str(server.messages[-1].message["Message-ID"])
    assert place.run("run-scheduled", NOW + dt.timedelta(minutes=5)).status == 0
    assert place.run("run-scheduled", NOW + dt.timedelta(minutes=10)).status == 0
    assert set(delivered(server)) == EXPECTED
    repeated = {mid: n for mid, n in message_ids(server).items() if n > 1}
    assert repeated == {caught: 2}  # the only duplicate: the same message, with the same Message-ID
    assert len(server.messages) == len(EXPECTED) + 1


class SlowHandler(RecordingHandler):
    """Takes a moment over each message, so two runs started together really overlap."""

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        await asyncio.sleep(0.2)
        return await super().handle_DATA(server, session, envelope)


def test_two_runs_at_once_send_each_message_once(tmp_path):
    with smtp_server(handler=SlowHandler()) as server:
        place = school(tmp_path, batch(), server)
        gate = barrier(2)
        children = [
            start_child(place.argv("run-scheduled", NOW), tmp_path / f"run{n}.log", barrier=gate)
            for n in (1, 2)
        ]
        for child in children:
            child.join(timeout=120)
        assert [child.exitcode for child in children] == [0, 0]
    assert delivered(server) == dict.fromkeys(EXPECTED, 1)
    logs = [(tmp_path / f"run{n}.log").read_text() for n in (1, 2)]
    assert sum(log.count("sent: ") for log in logs) == len(EXPECTED)


def test_a_run_while_another_is_in_progress_does_nothing_and_exits_0(tmp_path, server):
    place = school(tmp_path, batch(), server)
    with run_lock(place.ledger):
        result = place.run("run-scheduled", NOW)
    assert result.status == 0
    assert result.out == "" and "Another homevisits run is in progress" in result.err
    assert server.messages == [] and not place.ledger.exists()


# ---------------------------------------------------------------- queued messages the sheet overtook


def entry(place: School, key: str):
    with Ledger(place.ledger) as ledger:
        return ledger.get(key)


def pending(place: School) -> list:
    with Ledger(place.ledger) as ledger:
        return ledger.pending()


@pytest.mark.parametrize(
    ("change", "reason", "then"),
    [
        ({}, None, ["smt_alert"]),  # nothing changed: a genuine retry, and SMT 30 minutes after it
        ({"returned_at": "12:03"}, "returned safely", []),
        ({"status": "Cancelled", "cancellation_reason": "Learner unwell"}, "visit cancelled", []),
        ({"status": "Not carried out", "cancellation_reason": "Staff unwell"}, "visit not carried out", []),
        ({"escalated_at": "23/11/2026 12:02"}, "Escalated at filled in", ["smt_alert"]),
        ({"end": (12, 30)}, "not overdue", ["overdue_alert"]),  # back by 12:30: overdue at 13:00
    ],
)
def test_an_alert_queued_while_the_server_was_down_is_withdrawn_if_the_sheet_overtook_it(
    tmp_path, change, reason, then
):
    with dead_port() as port:
        place = school(tmp_path, [out_today(1)], mail=smtp_mail(SimpleNamespace(host="127.0.0.1", port=port)))
        assert place.run("check-returns", london(2026, 11, 23, 12, 1)).status == 1
    (queued,) = pending(place)
    place.write([out_today(1, **change)])
    with smtp_server() as server:
        place.configure(smtp_mail(server))
        result = place.run("check-returns", london(2026, 11, 23, 12, 5))
        assert result.status == 0
        if reason is None:
            assert result.out == "sent: V1 overdue_alert to 1 recipient\n"
            assert message_ids(server) == {queued.message_id: 1}  # the same Message-ID
            assert entry(place, queued.key).status == "sent"
        else:
            assert result.out == f"withdrawn: V1 overdue_alert ({reason})\n"
            no_personal_data(result.out + result.err)
            assert server.messages == [] and pending(place) == []
            withdrawn = entry(place, queued.key)
            assert (withdrawn.status, withdrawn.withdrawn_reason) == ("withdrawn", reason)
            assert withdrawn.withdrawn_at == london(2026, 11, 23, 12, 5) and withdrawn.sent_at is None
        later = place.run("check-returns", london(2026, 11, 23, 13, 1))
    assert later.status == 0 and "withdrawn" not in later.out
    assert [m.message["X-Homevisits-Kind"] for m in server.messages] == (
        ["overdue_alert"] if not reason else []
    ) + then
    assert message_ids(server)[queued.message_id] == (0 if reason else 1)  # never sent once withdrawn


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "Cancelled", "cancellation_reason": "Family asked to rearrange"}, "visit cancelled"),
        ({"risk_level": "HIGH"}, "HIGH risk"),
        ({"form_sent_at": "23/11/2026 11:30"}, "Form sent at filled in"),
    ],
)
def test_a_form_queued_before_the_row_changed_is_withdrawn_and_never_sent(tmp_path, change, reason):
    handler = RecordingHandler(data_replies={1: "451 4.3.0 Try again later"})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, [planned(1, THURSDAY)], server)
        assert place.run("send-forms", NOW).status == 1
        (queued,) = pending(place)
        place.write([planned(1, THURSDAY, **change)])
        dry = place.run("send-forms", NOW + dt.timedelta(minutes=5), "--dry-run")
        assert (dry.status, dry.out) == (0, f"would withdraw: V1 form ({reason})\n")
        assert entry(place, queued.key).status == "pending"  # --dry-run changes nothing
        result = place.run("send-forms", NOW + dt.timedelta(minutes=5))
        assert (result.status, result.out) == (0, f"withdrawn: V1 form ({reason})\n")
        again = place.run("run-scheduled", NOW + dt.timedelta(minutes=10))
        assert (again.status, again.out) == (0, "")
        assert server.messages == []
        assert (entry(place, "form:V1").status, entry(place, "form:V1").withdrawn_reason) == (
            "withdrawn",
            reason,
        )
        typed = change.get("form_sent_at")
        assert place.cell("V1", "form_sent_at") == typed  # as typed, or still empty
        if typed:
            return
        place.write([planned(1, THURSDAY)])  # the visit is back on as it was: a new form, a new Message-ID
        assert place.run("send-forms", NOW + dt.timedelta(minutes=15)).status == 0
    form = only(server, "form", "V1")
    assert form.message["Message-ID"] != queued.message_id
    assert entry(place, "form:V1#2").status == "sent" and entry(place, "form:V1").status == "withdrawn"
    assert place.cell("V1", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 15)


@pytest.mark.parametrize(
    ("before", "after", "lines"),
    [
        (not_ready(1, THURSDAY), planned(1, THURSDAY), ["withdrawn: V1 reminder (row ready)"]),
        (  # the visit moved from tomorrow 11:00 (its deadline passed) to Friday
            planned(1, TODAY + dt.timedelta(days=1), start=(11, 0), end=(12, 0)),
            planned(1, FRIDAY),
            ["withdrawn: V1 deadline_missed (deadline not passed)"],
        ),
    ],
)
def test_a_chase_the_row_no_longer_calls_for_is_withdrawn_and_the_form_goes_at_once(
    tmp_path, before, after, lines
):
    handler = RecordingHandler(data_replies={1: "451 4.3.0 Try again later"})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, [before], server)
        assert place.run("send-forms", NOW).status == 1
        place.write([after])
        result = place.run("send-forms", NOW + dt.timedelta(minutes=5))
    assert result.status == 0
    assert result.out.splitlines() == [*lines, "sent: V1 form to 3 recipients"]
    assert list(delivered(server)) == [("V1", "form")]


@pytest.mark.parametrize("admin", [True, False])
def test_a_recipient_refused_for_good_while_the_others_got_the_message_is_reported_once(tmp_path, admin):
    handler = RecordingHandler(rcpt_replies={MANAGER: "550 5.1.1 No such user"})
    with smtp_server(handler=handler) as server:
        place = school(
            tmp_path, [planned(1, THURSDAY)], mail=smtp_mail(server, admin=[ADMIN] if admin else [])
        )
        first = place.run("send-forms", NOW)
        second = place.run("run-scheduled", NOW + dt.timedelta(minutes=5))
    assert first.status == 1
    assert first.out.splitlines()[0] == "sent: V1 form to 3 recipients"
    assert "V1 form: the mail server refused 1 of 3 recipients for good (550 5.1.1)" in first.err
    no_personal_data(first.out + first.err)  # no address printed: the admin gets them by email
    assert only(server, "form", "V1").rcpt_tos == [DSL, STAFF]
    assert place.cell("V1", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 0)
    assert entry(place, "form:V1").refused == ((MANAGER, "550 5.1.1"),)
    assert (second.status, second.out, second.err) == (0, "", "")
    if not admin:
        assert "set admin in [mail] to be told by email" in first.err
        assert list(delivered(server)) == [("V1", "form")]
        return
    assert "the admin is told" in first.err
    report = only(server, "admin_report")
    assert (
        report.rcpt_tos == [ADMIN] and report.message["Subject"] == "homevisits could not deliver 1 message"
    )
    text = body(report)
    assert (
        "  - Visit V1, form, sent at Monday 23 November 2026 at 12:00\n"
        f"    Not delivered to: {MANAGER} (550 5.1.1)\n"
    ) in text
    for word in ("Learner", "Test Street", "07700", "0113", "B23"):
        assert word not in text
    assert [str(m.message["X-Homevisits-Kind"]) for m in server.messages] == ["form", "admin_report"]


def test_a_recipient_refused_for_now_keeps_the_whole_message_for_the_next_run(tmp_path):
    handler = RecordingHandler(rcpt_replies={MANAGER: "450 4.2.1 Mailbox busy"})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, [planned(1, THURSDAY)], server)
        first = place.run("send-forms", NOW)
        (queued,) = pending(place)
        handler.rcpt_replies.clear()
        second = place.run("send-forms", NOW + dt.timedelta(minutes=5))
    assert first.status == 1 and first.out == "queued for the next run: V1 form to 3 recipients (450 4.2.1)\n"
    assert (second.status, second.out) == (0, "sent: V1 form to 3 recipients\n")
    assert message_ids(server) == {queued.message_id: 1}
    assert server.messages[0].rcpt_tos == [DSL, STAFF, MANAGER] and entry(place, queued.key).refused == ()


# ---------------------------------------------------------------- privacy and safety


def test_an_address_outside_the_allowed_domains_is_not_mailed_and_reported(tmp_path, server):
    place = school(tmp_path, [planned(1, THURSDAY, staff_email="sam.teacher@gmail.example")], server)
    result = place.run("send-forms", NOW)
    assert result.status == 1
    form = only(server, "form", "V1")
    assert form.rcpt_tos == [DSL, MANAGER] and "gmail" not in form.data.decode()
    report = only(server, "admin_report")
    assert report.rcpt_tos == [ADMIN]
    assert "  - Visit V1: sam.teacher@gmail.example (outside allowed_domains)" in body(report)
    assert "gmail" not in result.out + result.err
    assert "1 address(es) from the sheet are outside allowed_domains" in result.err
    assert place.run("send-forms", NOW + dt.timedelta(minutes=5)).status == 0
    assert len(server.messages) == 2


def test_without_the_usual_recipient_the_message_goes_to_the_next_in_line(tmp_path, server):
    rows = [
        out_today(1, line_manager_email=None),  # SMT is alerted at once, and told why
        not_ready(2, THURSDAY, staff_email=None),  # the reminder goes to the line manager
    ]
    place = school(tmp_path, rows, server)
    result = place.run("run-scheduled", london(2026, 11, 23, 12, 1))
    assert result.status == 1  # the line manager's stage reached nobody: every run says so
    assert "V1 (row 2): the line manager's alert reached nobody" in result.err
    assert not [m for m in server.messages if m.message["X-Homevisits-Kind"] == "overdue_alert"]
    smt = only(server, "smt_alert", "V1")
    assert smt.rcpt_tos == [SMT]
    assert (
        "The line manager (Pat Manager) could NOT be reached: nobody to send it to: the sheet has no line "
        "manager email for this visit. You are the first to be told." in body(smt)
    )
    report = only(server, "admin_report")
    assert report.rcpt_tos == [ADMIN] and "Visit V1" in body(report)
    reminder = only(server, "reminder", "V2")
    assert (reminder.rcpt_tos, reminder.message["Cc"]) == ([MANAGER], None)


def test_a_message_nobody_can_receive_is_reported_once(tmp_path, server):
    place = school(
        tmp_path, [not_ready(1, THURSDAY, staff_email=None, line_manager_email="pat@gmail.example")], server
    )
    result = place.run("send-forms", NOW)
    assert result.status == 1 and "refused for good: V1 reminder to 0 recipients" in result.out
    reports = [body(m) for m in server.messages]
    assert len(reports) == 2 and all(m.rcpt_tos == [ADMIN] for m in server.messages)
    assert any("nobody to send it to" in text for text in reports)
    assert any("Visit V1: pat@gmail.example (outside allowed_domains)" in text for text in reports)
    assert place.run("send-forms", NOW + dt.timedelta(hours=1)).status == 0
    assert len(server.messages) == 2


def test_cr_lf_in_the_sheet_cannot_inject_a_header_or_reach_a_subject(tmp_path, server):
    evil = "\r\nBcc: thief@evil.example"
    rows = [
        planned(1, THURSDAY, learner_name="Eve Learner" + evil, lead_staff="Sam" + evil),
        out_today(2, learner_name="Eve Learner" + evil, staff_email=STAFF + evil),
    ]
    place = school(tmp_path, rows, server)
    assert place.run("run-scheduled", london(2026, 11, 23, 12, 1)).status == 0
    assert set(delivered(server)) == {("V1", "form"), ("V2", "overdue_alert")}
    for received in server.messages:
        assert all("evil" not in address for address in received.rcpt_tos)
        head = received.data.split(b"\r\n\r\n", 1)[0].decode()
        assert not [line for line in head.split("\r\n") if line.lower().startswith("bcc")]
        assert "Eve" not in received.message["Subject"] and "Learner" not in received.message["Subject"]


def test_cr_lf_in_values_given_straight_to_the_planner_cannot_inject_a_header(tmp_path):
    """The same, below the sheet: raw values with line breaks, composed and built without the reader's cleaning."""
    policy = load_policy("omg_education")
    settings = options.Settings(forms_to=(DSL,), smt=(SMT,), admin=(ADMIN,), allowed_domains=tuple(DOMAINS))
    ctx = context.Context(policy, settings, history.History(), NOW.astimezone(dt.UTC), {})
    visit = {
        "visit_id": "V1\r\nBcc: thief@evil.example",
        "row": 2,
        "start_at": london(2026, 11, 26, 10),
        "return_due_at": london(2026, 11, 26, 11),
        "learner_name": "Eve\r\nBcc: thief@evil.example",
        "lead_staff": "Sam\r\nBcc: thief@evil.example",
        "staff_email": f"{STAFF}\r\nBcc: thief@evil.example",
        "line_manager_email": MANAGER,
    }
    for kind in ("reminder", "overdue_alert"):
        planned_message = messages.compose(kind, visit, ctx, f"{kind}:V1")
        refused = ((f"{STAFF} Bcc: thief@evil.example", "not an email address"),)
        assert planned_message.not_mailed == (
            refused if kind == "reminder" else ()
        )  # alerts go to the manager
        raw = messages.build(planned_message, "<x@school.example>", settings, NOW, None).as_bytes()
        parsed = message_from_bytes(raw, policy=default_policy)
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        assert not [line for line in head.split("\r\n") if line.lower().startswith("bcc")]
        assert "Eve" not in parsed["Subject"] and "thief" not in str(parsed["To"]) + str(parsed["Cc"])


# ---------------------------------------------------------------- the outbox, --dry-run, IDs, write-back


def test_the_outbox_gets_each_message_once_and_a_second_run_adds_nothing(tmp_path):
    mail = {
        "transport": "outbox",
        "outbox": "outbox",
        "from": "homevisits@school.example",
        "forms_to": [DSL],
        "smt": [SMT],
        "allowed_domains": DOMAINS,
    }
    place = school(tmp_path, batch(), mail=mail)
    assert place.run("run-scheduled", NOW).status == 0
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert [name.rsplit("_", 1)[0] for name in files] == [
        "V1_overdue-alert",
        "V2_deadline-missed",
        "V3_form",
        "V4_reminder",
    ]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").iterdir()}
    again = place.run("run-scheduled", NOW + dt.timedelta(minutes=5))
    assert (again.status, again.out) == (0, "")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").iterdir()} == stamps


def test_dry_run_prints_visit_ids_only_and_changes_nothing(tmp_path, server):
    place = school(tmp_path, [*batch(), planned(5, THURSDAY, visit_id=None)], server)
    before = hashlib.sha256(place.workbook.read_bytes()).hexdigest()
    for command in ("run-scheduled", "send-forms", "check-returns"):
        result = place.run(command, NOW, "--dry-run")
        assert result.status == 0
        no_personal_data(result.out + result.err)
    result = place.run("run-scheduled", NOW, "--dry-run")
    assert result.out.splitlines() == [
        "would send: V1 overdue_alert to 1 recipient",
        "would send: V2 deadline_missed to 2 recipients",
        "would send: V3 form to 3 recipients",
        "would send: V4 reminder to 2 recipients",
        "1 row(s) have no Visit ID: a run gives them one (their alerts go meanwhile, by sheet row), "
        "and the run after handles their forms",
    ]
    assert server.messages == [] and not (tmp_path / "state").exists()
    assert hashlib.sha256(place.workbook.read_bytes()).hexdigest() == before


def test_explain_gives_each_message_its_reason_and_the_run_then_sends_that_plan(tmp_path, server):
    place = school(tmp_path, [*batch(), planned(5, THURSDAY, visit_id=None)], server)
    explained = place.run("run-scheduled", NOW, "--explain")  # --explain implies --dry-run
    assert explained.status == 0, explained.err
    no_personal_data(explained.out + explained.err)
    lines = explained.out.splitlines()
    assert [line for line in lines if line.startswith("would send: ")] == [
        "would send: V1 overdue_alert to 1 recipient",
        "would send: V2 deadline_missed to 2 recipients",
        "would send: V3 form to 3 recipients",
        "would send: V4 reminder to 2 recipients",
    ]
    assert lines[lines.index("would send: V3 form to 3 recipients") + 1] == (
        "  why: form: row ready, due in 46 h, deadline Wed 25 Nov 10:00"
    )
    assert "left alone: row 6 forms: no Visit ID" in lines
    assert server.messages == [] and not (tmp_path / "state").exists()
    assert place.run("run-scheduled", NOW).status == 0
    sent = [
        (str(m.message["X-Homevisits-Visit"]), str(m.message["X-Homevisits-Kind"])) for m in server.messages
    ]
    assert sent == [tuple(line.split()[2:4]) for line in lines if line.startswith("would send: ")]


def test_a_row_without_a_visit_id_gets_one_and_is_handled_from_the_next_run(tmp_path, server):
    place = school(tmp_path, [planned(1, THURSDAY, visit_id=None)], server)
    first = place.run("run-scheduled", NOW)
    assert (first.status, first.out) == (0, "")
    assert "Gave 1 row(s) a Visit ID" in first.err
    assert place.cell("HV-0001", "form_sent_at") is None
    assert place.run("run-scheduled", NOW + dt.timedelta(minutes=5)).status == 0
    assert list(delivered(server)) == [("HV-0001", "form")]
    assert place.cell("HV-0001", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 5)


def test_a_write_back_that_fails_is_redone_next_run(tmp_path, server):
    place = school(tmp_path, [planned(1, THURSDAY)], server)
    owner = tmp_path / "~$home_visits.xlsx"  # someone has the workbook open in Excel
    owner.write_text("x")
    first = place.run("run-scheduled", NOW)
    assert first.status == 0 and "the sheet was not updated" in first.err and "open in Excel" in first.err
    assert place.cell("V1", "form_sent_at") is None
    owner.unlink()
    second = place.run("run-scheduled", NOW + dt.timedelta(minutes=5))
    assert (second.status, second.out) == (0, "")
    assert len(server.messages) == 1
    assert place.cell("V1", "form_sent_at") == dt.datetime(2026, 11, 23, 12, 0)  # when the server took it


def test_a_broken_form_template_does_not_hold_up_the_alerts(tmp_path, server):
    profile = tmp_path / "our_policy.toml"
    text = load_policy("omg_education").path.read_text(encoding="utf-8")
    profile.write_text('template_dir = "our_forms"\n' + text, encoding="utf-8")
    (tmp_path / "our_forms").mkdir()
    (tmp_path / "our_forms" / "risk_assessment.html.j2").write_text('{% extends "missing.html.j2" %}')
    place = school(tmp_path, [planned(2, THURSDAY), out_today(1)], server, policy=str(profile))
    result = place.run("run-scheduled", london(2026, 11, 23, 12, 1))
    assert result.status == 2 and "TemplateNotFound" in result.err
    assert list(delivered(server)) == [("V1", "overdue_alert")]
    assert place.cell("V1", "escalated_at") == dt.datetime(2026, 11, 23, 12, 1)


def test_a_queued_message_whose_visit_left_the_sheet_is_reported_not_sent(tmp_path):
    handler = RecordingHandler(data_replies={1: "451 4.3.0 Try again later"})
    with smtp_server(handler=handler) as server:
        place = school(tmp_path, [not_ready(1, THURSDAY)], server)
        assert place.run("send-forms", NOW).status == 1
        place.write([planned(2, THURSDAY, form_sent_at="20/11/2026 09:00")])  # the row was deleted
        result = place.run("send-forms", NOW + dt.timedelta(minutes=5))
    assert result.status == 1
    assert "refused for good: V1 reminder" in result.out
    assert list(delivered(server)) == [("V1", "admin_report")]
    assert "the visit is no longer in the sheet" in body(only(server, "admin_report"))


def test_settings_that_cannot_work_say_what_to_fix(tmp_path, server):
    place = school(tmp_path, batch(), server, timings={"reminder_hours": "daily"})
    result = place.run("run-scheduled", NOW)
    assert result.status == 2 and "[timings] reminder_hours must be a number" in result.err
    place.configure({"transport": "outbox", "from": "homevisits@school.example"})
    result = place.run("run-scheduled", NOW)
    assert result.status == 2 and "allowed_domains" in result.err
    (tmp_path / "home_visits.xlsx").unlink()
    place.configure(smtp_mail(server))
    assert place.run("run-scheduled", NOW).status == 2
    assert server.messages == []


def test_the_ledger_records_recipients_and_no_learner_data(tmp_path, server):
    place = school(tmp_path, batch(), server)
    place.run("run-scheduled", NOW)
    dump = "\n".join(sqlite3.connect(place.ledger).iterdump())
    assert "Learner" not in dump and "Test Street" not in dump and "07700" not in dump
    assert STAFF in dump and MANAGER in dump
