"""The plan, called directly: ``plan(visits, history, settings, now, policy, findings)`` on a small real
workbook and an in-memory ledger history. No SMTP, no ledger file: what a run would withdraw, send
again and send, each with its reason, and the rows it left alone and why.

Forms are planned at NOW (Monday 23 November 2026, 12:00, GMT); returns at CHECK (10:45 the same day)
for a visit 09:00 to 10:00 under OMG Education (24 h form deadline, 30 minutes' grace).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from homevisits.ledger import Entry
from homevisits.notify.history import History
from homevisits.notify.options import Settings
from homevisits.notify.plan import RunPlan, plan
from jobs_fixtures import ADMIN, DOMAINS, DSL, MANAGER, NOW, SENDER, SMT, STAFF, london, not_ready, out_today
from jobs_fixtures import planned as planned_visit
from workbooks import HEADERS, run_check, write_workbook

SETTINGS = Settings(
    forms_to=(DSL,), smt=(SMT,), admin=(ADMIN,), allowed_domains=tuple(DOMAINS), sender=SENDER
)
CHECK = london(2026, 11, 23, 10, 45)
SUNDAY, TUESDAY, THURSDAY = dt.date(2026, 11, 22), dt.date(2026, 11, 24), dt.date(2026, 11, 26)
GRACE = "due back Mon 23 Nov 10:00 + 30 min grace"


def the_plan(
    tmp_path: Path,
    rows,
    now: dt.datetime,
    history=(),
    settings: Settings = SETTINGS,
    jobs=("forms", "returns"),
) -> RunPlan:
    """The plan for these rows at ``now``, from a real workbook read and checked by the pipeline."""
    path = write_workbook(tmp_path / "log.xlsx", rows, columns=list(HEADERS.values()))
    checked = run_check(path, "omg_education", now)
    return plan(
        checked.visits, History(tuple(history)), settings, now, checked.policy, checked.findings, jobs
    )


def sends(result: RunPlan) -> list[tuple[str, str, str]]:
    return [(s.planned.visit_id, s.planned.kind, s.reason) for s in result.send]


def left_alone(result: RunPlan, job: str) -> dict[str, str]:
    return {skip.where: skip.reason for skip in result.skipped if skip.job == job}


def entry(key: str, queued: dt.datetime, *, sent=None, failed=None, error=None, number=1, **changes) -> Entry:
    """A ledger entry as ``Ledger.entries`` returns it: ``key`` is ``<kind>:<visit>``."""
    kind, visit_id = key.split(":")[:2]
    fields = {
        "id": number,
        "key": key,
        "visit_id": visit_id.split("@")[0],
        "kind": kind,
        "recipients": (MANAGER,),
        "message_id": f"<{number}@school.example>",
        "queued_at": queued.astimezone(dt.UTC),
        "attempts": 1,
        "last_attempt_at": queued.astimezone(dt.UTC),
        "sent_at": sent and sent.astimezone(dt.UTC),
        "failed_at": failed and failed.astimezone(dt.UTC),
        "error": error,
        "written_back_at": None,
    }
    fields.update(changes)
    return Entry(**fields)


def overdue(row: int = 1, **changes):
    """The visit 09:00 to 10:00 today (form sent days ago), nobody back yet."""
    return out_today(row, start=(9, 0), end=(10, 0), **changes)


# ---------------------------------------------------------------- forms


def test_each_form_step_is_planned_with_its_reason(tmp_path):
    rows = [
        planned_visit(1, THURSDAY),
        not_ready(2, THURSDAY),
        not_ready(3, TUESDAY, start=(15, 0), end=(16, 0)),
        not_ready(4, TUESDAY),
    ]
    result = the_plan(tmp_path, rows, NOW, jobs=("forms",))
    assert sends(result) == [
        (
            "V4",
            "deadline_missed",
            "deadline_missed: deadline Mon 23 Nov 10:00 passed 2 h ago with no form sent",
        ),
        (
            "V3",
            "final_reminder",
            "final_reminder: 2 problem(s) in the row stop the form, deadline Mon 23 Nov 15:00, under 6 h away",
        ),
        ("V1", "form", "form: row ready, due in 46 h, deadline Wed 25 Nov 10:00"),
        ("V2", "reminder", "reminder: 2 problem(s) in the row stop the form, deadline Wed 25 Nov 10:00"),
    ]
    assert [s.planned.recipients for s in result.send][2] == (DSL, STAFF, MANAGER)
    assert result.withdraw == () and result.resend == () and result.broken is None


def test_rows_the_form_job_leaves_alone_say_why(tmp_path):
    rows = [
        planned_visit(1, THURSDAY, risk_level="HIGH"),
        planned_visit(2, THURSDAY, visit_id=None),
        planned_visit(3, dt.date(2026, 12, 10)),  # 17 days ahead: outside the 14-day window
        planned_visit(4, SUNDAY),  # started 26 h ago
        planned_visit(5, THURSDAY, form_sent_at="20/11/2026 09:00"),
        planned_visit(6, THURSDAY, status="Cancelled"),
        planned_visit(7, THURSDAY, status="Completed"),
        planned_visit(8, dt.date(2026, 11, 23), start=(9, 0), end=(10, 0)),  # began 3 h ago: still owed
        planned_visit(9, THURSDAY, visit_date=None),  # the date cleared: no start to count from
    ]
    result = the_plan(tmp_path, rows, NOW, jobs=("forms",))
    assert left_alone(result, "forms") == {
        "V1 (row 2)": "HIGH risk",
        "row 3": "no Visit ID",
        "V3 (row 4)": "outside the window",
        "V4 (row 5)": "started over a day ago",
        "V5 (row 6)": "form already sent (Form sent at filled in)",
        "V6 (row 7)": "visit cancelled",
        "V7 (row 8)": "visit no longer Planned",
        "V9 (row 10)": "no start date and time",
    }
    assert sends(result) == [
        (
            "V8",
            "deadline_missed",
            "deadline_missed: deadline Sun 22 Nov 09:00 passed 27 h ago with no form sent",
        )
    ]
    assert result.unnamed == 1


def test_a_form_already_sent_or_still_queued_is_not_planned_again(tmp_path):
    rows = [planned_visit(1, THURSDAY), planned_visit(2, THURSDAY)]
    history = [
        entry("form:V1", london(2026, 11, 23, 9, 0), sent=london(2026, 11, 23, 9, 1), number=1),
        entry("form:V2", london(2026, 11, 23, 11, 55), number=2, error="421 try later"),
    ]
    result = the_plan(tmp_path, rows, NOW, history, jobs=("forms",))
    assert result.send == ()
    assert left_alone(result, "forms") == {
        "V1 (row 2)": "form already sent Mon 23 Nov 09:01",
        "V2 (row 3)": "form queued Mon 23 Nov 11:55: retried first",
    }
    [again] = result.resend
    assert (again.entry.key, again.planned.kind, again.planned.recipients) == ("form:V2", "form", (MANAGER,))
    assert (
        again.reason == "retry: queued Mon 23 Nov 11:55, not yet accepted, 1 attempt(s) (last: 421 try later)"
    )
    assert [(planned.key, entry_.key) for planned, entry_ in result.work()] == [("form:V2", "form:V2")]


def test_a_form_refused_for_good_waits_for_the_deadline_message(tmp_path):
    failed = london(2026, 11, 23, 9, 1)
    history = [entry("form:V1", london(2026, 11, 23, 9, 0), failed=failed, error="550 no such user")]
    before = the_plan(tmp_path, [planned_visit(1, THURSDAY)], NOW, history, jobs=("forms",))
    assert before.send == () and left_alone(before, "forms") == {
        "V1 (row 2)": "form refused for good (the admin was told): the line manager hears at the deadline"
    }
    late = the_plan(tmp_path, [planned_visit(1, TUESDAY)], NOW, history, jobs=("forms",))
    assert sends(late) == [
        (
            "V1",
            "deadline_missed",
            "deadline_missed: deadline Mon 23 Nov 10:00 passed 2 h ago with no form sent",
        )
    ]


def test_reminders_are_spaced_and_a_queued_one_goes_first(tmp_path):
    recent = [
        entry("reminder:V1:2026-11-23T09:00", london(2026, 11, 23, 9, 0), sent=london(2026, 11, 23, 9, 0))
    ]
    result = the_plan(tmp_path, [not_ready(1, THURSDAY)], NOW, recent, jobs=("forms",))
    assert result.send == () and left_alone(result, "forms") == {
        "V1 (row 2)": "reminded Mon 23 Nov 09:00; the next one 24 h after that"
    }
    queued = [entry("reminder:V1:2026-11-23T09:00", london(2026, 11, 23, 9, 0))]
    result = the_plan(tmp_path, [not_ready(1, THURSDAY)], NOW, queued, jobs=("forms",))
    assert left_alone(result, "forms") == {"V1 (row 2)": "a reminder is queued: retried first"}
    assert [again.entry.key for again in result.resend] == ["reminder:V1:2026-11-23T09:00"]
    final = [entry("final_reminder:V1", london(2026, 11, 23, 11, 0), sent=london(2026, 11, 23, 11, 0))]
    result = the_plan(
        tmp_path, [not_ready(1, TUESDAY, start=(15, 0), end=(16, 0))], NOW, final, jobs=("forms",)
    )
    assert left_alone(result, "forms") == {
        "V1 (row 2)": "final reminder already sent; 2 problem(s) in the row stop the form, deadline Mon 23 Nov 15:00"
    }


def test_without_forms_to_a_ready_form_has_nobody_to_go_to(tmp_path):
    settings = Settings(smt=(SMT,), allowed_domains=tuple(DOMAINS), sender=SENDER)
    result = the_plan(tmp_path, [planned_visit(1, THURSDAY)], NOW, settings=settings, jobs=("forms",))
    assert result.send == () and left_alone(result, "forms") == {
        "V1 (row 2)": "row ready, but [mail] forms_to is not set: nobody to send the form to"
    }


# ---------------------------------------------------------------- overdue returns


def test_an_overdue_return_is_alerted_with_what_the_sheet_could_not_tell(tmp_path):
    rows = [
        overdue(1),
        overdue(2, returned_at="back soon"),
        overdue(3, returned_at="10:05"),
        overdue(4, returned_at="14:00"),
        overdue(5, returned_at="08:00"),
        out_today(6, start=(11, 0), end=(12, 0)),
        overdue(7, status="Cancelled"),
    ]
    result = the_plan(tmp_path, rows, CHECK, jobs=("returns",))
    assert sends(result) == [
        ("V1", "overdue_alert", f"overdue_alert: {GRACE}, no safe return recorded"),
        (
            "V2",
            "overdue_alert",
            f"overdue_alert: {GRACE}, no readable return (Returned safely at reads 'back soon', which is not a "
            "time: treated as not back.)",
        ),
        (
            "V4",
            "overdue_alert",
            f"overdue_alert: {GRACE}, no readable return (Returned safely at reads 14:00, which is still to "
            "come: treated as not back.)",
        ),
        (
            "V5",
            "overdue_alert",
            f"overdue_alert: {GRACE}, no readable return (Returned safely at reads 08:00, before the visit "
            "started at 09:00: treated as not back.)",
        ),
    ]
    assert left_alone(result, "returns") == {
        "V3 (row 4)": "returned safely",
        "V6 (row 7)": "not overdue",  # no alert before the visit has even begun
        "V7 (row 8)": "visit cancelled",
    }
    assert all(s.planned.to == (MANAGER,) for s in result.send)


def test_no_alert_before_the_due_time_plus_grace(tmp_path):
    assert the_plan(tmp_path, [overdue(1)], london(2026, 11, 23, 10, 29), jobs=("returns",)).send == ()
    late = the_plan(tmp_path, [overdue(1)], london(2026, 11, 24, 10, 31), jobs=("returns",))
    assert late.send == () and left_alone(late, "returns") == {"V1 (row 2)": "overdue for too long"}


@pytest.mark.parametrize(
    ("blank", "now", "due", "why"),
    [
        (
            {"expected_return": None, "expected_duration": None},
            london(2026, 11, 23, 11, 45),
            "11:00",
            "Expected return is blank; Expected duration (mins) is blank: treated as due back by 11:00 "
            "(120 minutes after the start, the longest visit).",
        ),
        (
            {"expected_return": None, "expected_duration": None, "start_time": None},
            london(2026, 11, 23, 17, 45),
            "17:00",
            "Expected return is blank; Expected duration (mins) is blank; Start time is blank: treated as due "
            "back by 17:00 on the visit day.",
        ),
    ],
)
def test_a_fallback_due_time_alerts_and_says_why(tmp_path, blank, now, due, why):
    result = the_plan(tmp_path, [overdue(1, **blank)], now, jobs=("returns",))
    reason = f"overdue_alert: due back Mon 23 Nov {due} + 30 min grace, no safe return recorded; {why}"
    assert sends(result) == [("V1", "overdue_alert", reason)]
    assert result.doubts == (f"V1 (row 2): {why}",)
    early = the_plan(tmp_path, [overdue(1, **blank)], now - dt.timedelta(minutes=16), jobs=("returns",))
    assert early.send == () and left_alone(early, "returns") == {"V1 (row 2)": "not overdue"}


def test_smt_is_alerted_after_the_delay_from_the_line_managers_alert(tmp_path):
    alerted = london(2026, 11, 23, 10, 35)
    history = [entry("overdue_alert:V1", alerted, sent=alerted)]
    waiting = the_plan(tmp_path, [overdue(1)], london(2026, 11, 23, 11, 5), history, jobs=("returns",))
    assert waiting.send == () and left_alone(waiting, "returns") == {
        "V1 (row 2)": "line manager alerted Mon 23 Nov 10:35; SMT from Mon 23 Nov 11:05"
    }
    result = the_plan(tmp_path, [overdue(1)], london(2026, 11, 23, 11, 6), history, jobs=("returns",))
    assert sends(result) == [
        (
            "V1",
            "smt_alert",
            f"smt_alert: {GRACE}, no safe return recorded; line manager alerted Mon 23 Nov 10:35, 31 min ago",
        )
    ]
    assert result.send[0].planned.to == (SMT,) and result.send[0].planned.cc == (MANAGER,)
    done = [
        *history,
        entry("smt_alert:V1", london(2026, 11, 23, 11, 6), sent=london(2026, 11, 23, 11, 6), number=2),
    ]
    assert left_alone(the_plan(tmp_path, [overdue(1)], london(2026, 11, 23, 11, 30), done), "returns") == {
        "V1 (row 2)": "SMT alert sent"
    }


def test_a_refused_line_manager_alert_brings_smt_in_at_once(tmp_path):
    refused = london(2026, 11, 23, 10, 35)
    history = [entry("overdue_alert:V1", refused, failed=refused, error="550 5.1.1 no such user")]
    result = the_plan(tmp_path, [overdue(1)], london(2026, 11, 23, 10, 40), history, jobs=("returns",))
    assert sends(result) == [
        (
            "V1",
            "smt_alert",
            f"smt_alert: {GRACE}, no safe return recorded; the line manager's alert was refused (550 5.1.1 no such user)",
        )
    ]
    assert (
        result.send[0].planned.cc == ()
    )  # the manager's mailbox refused: SMT's alert is not held back by it


def test_no_line_manager_address_brings_smt_in_in_the_same_plan(tmp_path):
    result = the_plan(tmp_path, [overdue(1, line_manager_email=None)], CHECK, jobs=("returns",))
    nobody = "nobody to send it to: the sheet has no line manager email for this visit"
    assert sends(result) == [
        ("V1", "overdue_alert", f"overdue_alert: {GRACE}, no safe return recorded"),
        (
            "V1",
            "smt_alert",
            f"smt_alert: {GRACE}, no safe return recorded; the line manager's alert can reach nobody ({nobody})",
        ),
    ]
    assert [s.planned.recipients for s in result.send] == [(), (SMT,)]
    assert result.describe(SETTINGS) == [
        f"would not send: V1 overdue_alert ({nobody})",
        "would send: V1 smt_alert to 1 recipient",
    ]


@pytest.mark.parametrize(
    ("typed", "planned_kind"),
    [
        ("23/11/2026 10:35", None),  # the first stage done by hand: SMT waits for its delay
        ("23/11/2026 11:30", "overdue_alert"),  # still to come: a doubt, not an alert that went
        ("23/11/2026 08:30", "overdue_alert"),  # before the visit began: about something else
    ],
)
def test_escalated_at_counts_only_from_the_start_up_to_now(tmp_path, typed, planned_kind):
    result = the_plan(tmp_path, [overdue(1, escalated_at=typed)], CHECK, jobs=("returns",))
    assert [kind for _, kind, _ in sends(result)] == ([planned_kind] if planned_kind else [])
    if planned_kind is None:
        assert left_alone(result, "returns") == {
            "V1 (row 2)": "line manager alerted Mon 23 Nov 10:35; SMT from Mon 23 Nov 11:05"
        }


def test_an_alert_queued_before_this_visit_began_belongs_to_an_earlier_one(tmp_path):
    yesterday = london(2026, 11, 22, 10, 35)
    history = [
        entry("overdue_alert:V1", yesterday, sent=yesterday),
        entry("smt_alert:V1", yesterday, sent=yesterday, number=2),
    ]
    result = the_plan(tmp_path, [overdue(1)], CHECK, history, jobs=("returns",))
    assert [(s.planned.key, s.planned.kind) for s in result.send] == [
        ("overdue_alert:V1@2026-11-23T09:00", "overdue_alert")
    ]


def test_a_visit_id_on_two_rows_is_tracked_per_row(tmp_path):
    rows = [overdue(1), overdue(2, visit_id="V1", start_time=dt.time(8, 0), expected_return=dt.time(9, 30))]
    sent = london(2026, 11, 23, 10, 35)
    history = [entry("overdue_alert:V1", sent, sent=sent)]  # under the bare ID: no single visit's alert
    result = the_plan(tmp_path, rows, CHECK, history, jobs=("returns",))
    refs = [s.planned.visit_id for s in result.send]
    assert [s.planned.kind for s in result.send] == ["overdue_alert", "overdue_alert"]
    assert len(set(refs)) == 2 and all(ref.startswith("V1~") for ref in refs)
    assert [s.planned.key for s in result.send] == [f"overdue_alert:{ref}" for ref in refs]  # not "V1"


def test_a_row_without_a_visit_id_is_alerted_by_its_fingerprint(tmp_path):
    result = the_plan(tmp_path, [overdue(1, visit_id=None)], CHECK)
    [alert] = result.send
    assert alert.planned.kind == "overdue_alert" and alert.planned.visit_id.startswith("unnamed-")
    assert len(alert.planned.visit_id) == len("unnamed-") + 12 and alert.planned.row == 2
    assert left_alone(result, "forms") == {"row 2": "no Visit ID"}  # never its fingerprint
    again = the_plan(tmp_path, [overdue(1, visit_id=None)], CHECK)
    assert again.send[0].planned.visit_id == alert.planned.visit_id  # the same reference every run
    sent = [entry(f"overdue_alert:{alert.planned.visit_id}", CHECK, sent=CHECK)]
    later = the_plan(tmp_path, [overdue(1, visit_id=None)], CHECK + dt.timedelta(minutes=5), sent)
    assert later.send == ()


# ---------------------------------------------------------------- withdrawals


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"status": "Cancelled"}, "visit cancelled"), ({"returned_at": "10:20"}, "returned safely")],
)
def test_a_queued_alert_is_withdrawn_when_the_visit_is_cancelled_or_returned(tmp_path, changes, reason):
    history = [entry("overdue_alert:V1", london(2026, 11, 23, 10, 35), error="421 busy")]
    result = the_plan(tmp_path, [overdue(1, **changes)], CHECK, history)
    assert [(w.entry.key, w.reason) for w in result.withdraw] == [("overdue_alert:V1", reason)]
    assert result.resend == () and result.send == ()
    assert result.describe(SETTINGS) == [f"would withdraw: V1 overdue_alert ({reason})"]


def test_a_queued_form_is_withdrawn_when_the_visit_is_cancelled_and_planned_anew_when_it_is_back(tmp_path):
    history = [entry("form:V1", london(2026, 11, 23, 11, 55))]
    cancelled = the_plan(tmp_path, [planned_visit(1, THURSDAY, status="Cancelled")], NOW, history)
    assert [(w.entry.key, w.reason) for w in cancelled.withdraw] == [("form:V1", "visit cancelled")]
    assert cancelled.send == ()
    kept = the_plan(tmp_path, [planned_visit(1, THURSDAY)], NOW, history)
    assert kept.withdraw == () and [r.entry.key for r in kept.resend] == ["form:V1"]
    withdrawn = [entry("form:V1", london(2026, 11, 23, 11, 0), withdrawn_at=london(2026, 11, 23, 11, 5))]
    back = the_plan(tmp_path, [planned_visit(1, THURSDAY)], NOW, withdrawn)
    assert [(s.planned.key, s.planned.kind) for s in back.send] == [("form:V1#2", "form")]


def test_the_clock_alone_never_withdraws(tmp_path):
    history = [entry("overdue_alert:V1", london(2026, 11, 23, 10, 35))]
    result = the_plan(tmp_path, [overdue(1)], london(2026, 11, 24, 10, 45), history)  # now overdue too long
    assert result.withdraw == () and [r.entry.key for r in result.resend] == ["overdue_alert:V1"]


def test_the_explained_plan_names_visit_ids_and_rows_only(tmp_path):
    rows = [overdue(1), planned_visit(2, THURSDAY, visit_id=None)]
    lines = the_plan(tmp_path, rows, CHECK).describe(SETTINGS, explain=True)
    assert lines[:2] == [
        "would send: V1 overdue_alert to 1 recipient",
        f"  why: overdue_alert: {GRACE}, no safe return recorded",
    ]
    assert "left alone: row 3 forms: no Visit ID" in lines
    assert not [line for line in lines if "Learner" in line or "Sam" in line or "unnamed-" in line]


def test_alerts_kept_under_a_fingerprint_belong_to_the_visit_id_the_row_is_given(tmp_path):
    """What a run's carry_over does to the ledger, a dry run does to its history (it writes nothing)."""
    first = the_plan(tmp_path, [overdue(1, visit_id=None)], CHECK)
    fingerprint = first.send[0].planned.visit_id
    history = History((entry(f"overdue_alert:{fingerprint}", CHECK, sent=CHECK),))
    named = run_check(
        write_workbook(tmp_path / "log.xlsx", [overdue(1)], columns=list(HEADERS.values())),
        "omg_education",
        CHECK,
    )
    carried = history.carried_over(named.visits)
    assert [e.visit_id for e in carried.entries] == ["V1"] and history.entries[0].visit_id == fingerprint
    later = CHECK + dt.timedelta(minutes=5)
    assert plan(named.visits, carried, SETTINGS, later, named.policy, named.findings).send == ()
    assert [
        s.planned.kind
        for s in plan(named.visits, history, SETTINGS, later, named.policy, named.findings).send
    ] == ["overdue_alert"]


def test_many_rows_left_alone_for_one_reason_are_one_line(tmp_path):
    rows = [planned_visit(row, THURSDAY, status="Completed") for row in range(1, 8)]
    lines = the_plan(tmp_path, rows, NOW, jobs=("forms",)).describe(SETTINGS, explain=True)
    assert lines == [
        "Nothing would be sent.",
        "left alone: 7 rows forms: visit no longer Planned (V1 (row 2), V2 (row 3), V3 (row 4), ...)",
    ]
