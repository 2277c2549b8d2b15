"""Alerts by text through GOV.UK Notify: the real ``notifications-python-client`` against a loopback
stand-in of the Notify API (tests/notify_standin.py), the email side against aiosmtpd on 127.0.0.1.

A visit 09:00 to 10:00 today (Monday 23 November 2026), OMG Education (30 minutes' grace), checked
at 10:45 unless the test says otherwise; the line manager's mobile is in the sheet's
Line manager mobile column, SMT's in [sms] smt.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from homevisits import checkin, sms
from homevisits import config as config_module
from homevisits.errors import HomevisitsError
from jobs_fixtures import (
    KILLED,
    MANAGER,
    SMT,
    School,
    body,
    delivered,
    london,
    only,
    out_today,
    smtp_mail,
    toml_value,
)
from notify_standin import API_KEY, SECRET, SERVICE_ID, TEMPLATE_ID, notify_standin

CHECK = london(2026, 11, 23, 10, 45)
MANAGER_MOBILE = "+447700900111"
SMT_MOBILE = "+447700900001"
STAFF_PHONE = "07700 900503"


@pytest.fixture
def notify(monkeypatch):
    monkeypatch.setenv("HOMEVISITS_NOTIFY_API_KEY", API_KEY)
    monkeypatch.setattr(sms, "RETRY", sms.TextRetry(attempts=3, first_wait=0.01, max_wait=0.02))
    with notify_standin() as standin:
        yield standin


def visit(**changes):
    fields = {"line_manager_mobile": "07700 900111", "phone_taken": STAFF_PHONE, "lead_staff": "Sam Staff"}
    fields.update(changes)
    return out_today(1, start=(9, 0), end=(10, 0), **fields)


def place(tmp_path: Path, rows, server, standin, **sms_settings) -> School:
    school = School(tmp_path).write(rows).configure(smtp_mail(server))
    table = {
        "provider": "notify",
        "template_id": TEMPLATE_ID,
        "base_url": standin.base_url if standin is not None else "http://127.0.0.1:9",
        "smt": [SMT_MOBILE],
    }
    table.update(sms_settings)
    lines = ["", "[sms]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    with school.config.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return school


def texts(ledger: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, recipients, sent_at, provider_id) of every text in the ledger, oldest first."""
    with sqlite3.connect(ledger) as db:
        return db.execute(
            "SELECT kind, recipients, sent_at, provider_id FROM messages WHERE kind LIKE '%_text' ORDER BY id"
        ).fetchall()


def text_bodies(standin) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for text in standin.sent:
        found.setdefault(text.phone_number, []).append(text.body)
    return found


# ---------------------------------------------------------------- alerts by text


def test_the_overdue_alert_goes_by_text_and_email_and_smt_by_both_at_the_second_stage(
    tmp_path, server, notify
):
    school = place(tmp_path, [visit()], server, notify)
    first = school.run("run-scheduled", CHECK)
    assert first.status == 0, first.err
    assert delivered(server) == {("V1", "overdue_alert"): 1}
    assert text_bodies(notify) == {
        MANAGER_MOBILE: [
            "URGENT home visit V1: Sam Staff not back (due 10:00, 45 min overdue). "
            f"Call Sam on {STAFF_PHONE}. Steps and address in your email."
        ]
    }
    assert "Learner 1" not in notify.sent[0].body
    assert notify.sent[0].reference == "overdue_text:V1"
    [(kind, recipients, sent_at, provider_id)] = texts(school.ledger)
    assert (kind, recipients, provider_id) == ("overdue_text", f'["{MANAGER_MOBILE}"]', notify.sent[0].id)
    assert sent_at is not None
    # the next run sends nothing again; 31 minutes after the alert, SMT by text and email
    again = school.run("run-scheduled", london(2026, 11, 23, 10, 50))
    assert again.status == 0 and len(notify.sent) == 1, again.err
    second = school.run("run-scheduled", london(2026, 11, 23, 11, 16))
    assert second.status == 0, second.err
    assert delivered(server) == {("V1", "overdue_alert"): 1, ("V1", "smt_alert"): 1}
    assert text_bodies(notify)[SMT_MOBILE] == [
        "URGENT (SMT) home visit V1: Sam Staff not back (due 10:00, 76 min overdue). "
        f"Call Sam on {STAFF_PHONE}. Steps and address in your email."
    ]
    assert [t[0] for t in texts(school.ledger)] == ["overdue_text", "smt_text"]
    assert not notify.rejected


def test_a_text_refused_for_good_is_reported_and_blocks_nothing(tmp_path, server, notify):
    notify.refuse.add(MANAGER_MOBILE)
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 1
    assert "text refused for good: V1 overdue_text" in result.out
    assert "1 refused for good" in result.err
    assert delivered(server)[("V1", "overdue_alert")] == 1  # the email went all the same
    assert delivered(server)[("V1", "admin_report")] == 1  # the admin is told
    [(kind, _, sent_at, _)] = texts(school.ledger)
    assert kind == "overdue_text" and sent_at is None
    # never retried; the second stage still comes on time
    later = school.run("run-scheduled", london(2026, 11, 23, 11, 16))
    assert delivered(server)[("V1", "smt_alert")] == 1, later.err
    assert [t.phone_number for t in notify.sent] == [SMT_MOBILE]


def test_notify_down_the_email_still_goes_the_run_exits_1_and_the_text_goes_next_run(
    tmp_path, server, notify
):
    notify.down = True
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 1
    assert delivered(server) == {("V1", "overdue_alert"): 1}
    assert "text queued for the next run: V1 overdue_text (GOV.UK Notify 500" in result.out
    tries = [r for r in notify.requests if r == ("POST", "/v2/notifications/sms")]
    assert len(tries) == 3  # bounded: RETRY.attempts
    notify.down = False
    after = school.run("run-scheduled", london(2026, 11, 23, 10, 50))
    assert after.status == 0, after.err
    assert [t.phone_number for t in notify.sent] == [MANAGER_MOBILE]
    assert delivered(server) == {("V1", "overdue_alert"): 1}  # the email is not sent twice


def test_429_then_accepted_within_the_same_run(tmp_path, server, notify):
    notify.faults += [429, 500]
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0, result.err
    assert [t.phone_number for t in notify.sent] == [MANAGER_MOBILE]


def test_a_403_is_refused_for_good_not_retried(tmp_path, server, notify):
    notify.faults += [403]
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 1
    assert "GOV.UK Notify 403: Invalid token: API key not found" in result.out
    assert len([r for r in notify.requests if r[0] == "POST"]) == 1


def test_the_line_manager_reached_only_by_text_counts_as_reached(tmp_path, server, notify):
    """The line manager's email is refused for good, the text is accepted: the stage is delivered,
    so SMT is alerted at the usual time, not at once."""
    server.handler.rcpt_replies[MANAGER] = "550 5.1.1 no such user"
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert ("V1", "smt_alert") not in delivered(server), result.err
    assert [t.phone_number for t in notify.sent] == [MANAGER_MOBILE]
    later = school.run("run-scheduled", london(2026, 11, 23, 11, 16))
    assert delivered(server)[("V1", "smt_alert")] == 1, later.err


def test_the_line_manager_reached_by_neither_alerts_smt_at_once(tmp_path, server, notify):
    server.handler.rcpt_replies[MANAGER] = "550 5.1.1 no such user"
    notify.refuse.add(MANAGER_MOBILE)
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert delivered(server)[("V1", "smt_alert")] == 1, result.err
    assert [t.phone_number for t in notify.sent] == [SMT_MOBILE]


def test_a_visit_id_that_is_not_header_safe_is_named_by_its_row(tmp_path, server, notify):
    school = place(tmp_path, [visit(visit_id="V1 =?utf-8?q?=0D=0AFalse_alarm?=")], server, notify)
    school.run("run-scheduled", CHECK)
    [text] = notify.sent
    assert text.body.startswith("URGENT home visit row 2: Sam Staff not back")


def test_no_mobile_no_text(tmp_path, server, notify):
    school = place(tmp_path, [visit(line_manager_mobile=None)], server, notify, smt=[])
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0 and notify.sent == [] and texts(school.ledger) == []


# ---------------------------------------------------------------- settings


def test_an_unknown_sms_setting_says_did_you_mean(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, templat_id="x")
    result = school.run("run-scheduled", CHECK)
    assert result.status == 2
    assert "[sms] has no setting templat_id: did you mean template_id?" in result.err
    assert "Traceback" not in result.err


def test_the_api_key_only_from_the_environment(tmp_path, server, notify, monkeypatch):
    monkeypatch.delenv("HOMEVISITS_NOTIFY_API_KEY")
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 2
    assert "the environment variable HOMEVISITS_NOTIFY_API_KEY is not set" in result.err
    bad = place(tmp_path, [visit()], server, notify, api_key="secret")
    assert "[sms] has no setting api_key: did you mean api_key_env?" in bad.run("run-scheduled", CHECK).err


def test_smt_mobiles_must_be_mobiles():
    config = config_module.from_mapping({"sms": {"provider": "outbox", "smt": ["0113 496 0000"]}})
    with pytest.raises(HomevisitsError, match="not a UK mobile number"):
        sms.sms_settings(config)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("07700 900503", "+447700900503"),
        ("+44 7700 900503", "+447700900503"),
        ("0113 496 0000", None),
        ("x", None),
    ],
)
def test_e164(typed, expected):
    assert sms.e164(typed) == expected


def test_the_outbox_provider_writes_texts_to_a_folder(tmp_path, server):
    school = place(tmp_path, [visit()], server, None, provider="outbox", outbox="texts")
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0, result.err
    [path] = (tmp_path / "texts").iterdir()
    assert path.read_text(encoding="utf-8").startswith(f"To: {MANAGER_MOBILE}\n\nURGENT home visit V1:")
    assert "V1" not in path.name


# ---------------------------------------------------------------- check-in by text

STAFF_MOBILE = "+447700900503"


def written(school: School, visit_id: str, field: str) -> dt.datetime | None:
    """A time homevisits wrote into the sheet (a date-time cell, or text in the sheet's own style)."""
    value = school.cell(visit_id, field)
    return dt.datetime.strptime(value, "%d/%m/%Y %H:%M") if isinstance(value, str) else value


def replies(standin, number: str = STAFF_MOBILE) -> list[str]:
    return [t.body for t in standin.sent if t.phone_number == number]


def test_safe_by_text_is_written_to_the_sheet_answered_and_stops_the_alert(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, " safe! ", at=london(2026, 11, 23, 10, 20))
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0, result.err
    assert written(school, "V1", "returned_at") == london(2026, 11, 23, 10, 20).replace(tzinfo=None)
    assert delivered(server) == {}  # no alert: the return was texted in
    assert replies(notify) == ["Recorded: V1 safe return 10:20."]
    assert "Staff texts: 1 read, 1 recorded in the sheet, 0 from unknown numbers." in result.err
    # processed once: the next run neither writes nor answers again
    again = school.run("run-scheduled", london(2026, 11, 23, 10, 50))
    assert again.status == 0 and len(notify.sent) == 1, again.err


@pytest.mark.parametrize(
    ("typed", "field", "said"),
    [("ARRIVED", "arrived_at", "arrival"), ("in", "arrived_at", "arrival"), ("Left.", "departed_at", "departure"),
     ("OUT", "departed_at", "departure"), ("back", "returned_at", "safe return")],
)  # fmt: skip
def test_arrived_left_safe_words(tmp_path, server, notify, typed, field, said):
    school = place(tmp_path, [visit(arrived_at=None, departed_at=None)], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, typed, at=london(2026, 11, 23, 9, 5))
    result = school.run("run-scheduled", london(2026, 11, 23, 9, 10))
    assert result.status == 0, result.err
    assert written(school, "V1", field) == dt.datetime(2026, 11, 23, 9, 5)
    assert replies(notify) == [f"Recorded: V1 {said} 09:05."]


def test_safe_with_two_open_visits_asks_for_the_visit_id_then_takes_it(tmp_path, server, notify):
    rows = [
        visit(),
        out_today(2, start=(9, 30), end=(10, 10), phone_taken=STAFF_PHONE, line_manager_mobile=None),
    ]
    school = place(tmp_path, rows, server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 9, 50))
    first = school.run("run-scheduled", london(2026, 11, 23, 9, 55))
    assert first.status == 0, first.err
    assert replies(notify) == [
        "You have 2 open visits today (V1, V2): text SAFE and the visit ID, e.g. SAFE V1."
    ]
    assert written(school, "V1", "returned_at") is None and written(school, "V2", "returned_at") is None
    notify.text_from(STAFF_MOBILE, "safe v2", at=london(2026, 11, 23, 9, 56))
    second = school.run("run-scheduled", london(2026, 11, 23, 10, 0))
    assert second.status == 0, second.err
    assert written(school, "V2", "returned_at") == dt.datetime(2026, 11, 23, 9, 56)
    assert written(school, "V1", "returned_at") is None
    assert replies(notify)[-1] == "Recorded: V2 safe return 09:56."


def test_a_number_that_belongs_to_nobody_is_counted_never_stored_never_answered(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from("+447700900999", "SAFE V1 my secret words", at=london(2026, 11, 23, 10, 20))
    result = school.run("run-scheduled", CHECK)
    assert notify.sent and all(t.phone_number != "+447700900999" for t in notify.sent)
    assert "1 text(s) from numbers that belong to no visit were ignored" in result.err
    assert written(school, "V1", "returned_at") is None
    assert delivered(server)[("V1", "overdue_alert")] == 1  # still overdue
    dump = b"".join(p.read_bytes() for p in school.ledger.parent.iterdir() if p.is_file())
    assert b"secret" not in dump and b"900999" not in dump


def test_a_text_not_understood_gets_the_help_reply(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, "hello?", at=london(2026, 11, 23, 10, 20))
    school.run("run-scheduled", CHECK)
    assert replies(notify) == [f"Sorry, not understood. {checkin.HELP}"]


def test_received_texts_are_paged_and_each_processed_once(tmp_path, server, notify):
    notify.page_size = 2
    rows = [
        visit(),
        *(out_today(r, start=(9, 0), end=(10, 0), phone_taken=f"07700 90060{r}") for r in (2, 3, 4, 5)),
    ]
    school = place(tmp_path, rows, server, notify, inbound=True)
    for r in (2, 3, 4, 5):
        notify.text_from(f"+44770090060{r}", "SAFE", at=london(2026, 11, 23, 10, r))
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0, result.err
    for r in (2, 3, 4, 5):
        assert written(school, f"V{r}", "returned_at") == dt.datetime(2026, 11, 23, 10, r)
    gets = [r for r in notify.requests if r[1] == "/v2/received-text-messages"]
    assert len(gets) == 3  # 2 + 2 + an empty last page
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 10, 44))
    before = len(notify.sent)
    school.run("run-scheduled", london(2026, 11, 23, 10, 46))
    assert [(t.phone_number, t.body) for t in notify.sent[before:]] == [
        (STAFF_MOBILE, "Recorded: V1 safe return 10:44."),
        (MANAGER_MOBILE, "Sam Staff confirmed safe at 10:44; no further action."),  # V1 was alerted at 10:45
    ]


def test_a_run_killed_between_reading_and_writing_back_reads_the_text_again(
    tmp_path, server, notify, monkeypatch
):
    from homevisits.sources import excel

    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 10, 20))
    original = excel.ExcelSource.write

    def dies(self, updates, layout=None):
        raise SystemExit(KILLED)

    monkeypatch.setattr(excel.ExcelSource, "write", dies)
    with pytest.raises(SystemExit):
        school.run("run-scheduled", london(2026, 11, 23, 10, 25))
    monkeypatch.setattr(excel.ExcelSource, "write", original)
    assert notify.sent == [] and written(school, "V1", "returned_at") is None
    result = school.run("run-scheduled", CHECK)
    assert result.status == 0, result.err
    assert written(school, "V1", "returned_at") == dt.datetime(2026, 11, 23, 10, 20)
    assert replies(notify) == ["Recorded: V1 safe return 10:20."]


def test_safe_after_the_alert_tells_the_people_alerted(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    school.run("run-scheduled", CHECK)
    assert [t.phone_number for t in notify.sent] == [MANAGER_MOBILE]
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 10, 52))
    result = school.run("run-scheduled", london(2026, 11, 23, 10, 55))
    assert result.status == 0, result.err
    assert replies(notify) == ["Recorded: V1 safe return 10:52."]
    assert replies(notify, MANAGER_MOBILE)[-1] == "Sam Staff confirmed safe at 10:52; no further action."
    notice = only(server, "safe_notice", "V1")
    assert notice.rcpt_tos == [MANAGER]
    assert notice.message["Subject"] == "Safe return confirmed: home visit V1"
    assert body(notice).startswith("Sam Staff confirmed safe at 10:52; no further action.")
    school.run("run-scheduled", london(2026, 11, 23, 11, 0))
    assert len(server.messages) == 2 and len(notify.sent) == 3  # told once


# ---------------------------------------------------------------- duress


def test_the_duress_word_alerts_line_manager_and_smt_at_once_and_the_reply_looks_ordinary(
    tmp_path, server, notify
):
    school = place(tmp_path, [visit()], server, notify, inbound=True, duress_word="pineapple")
    notify.text_from(STAFF_MOBILE, "Pineapple.", at=london(2026, 11, 23, 9, 20))
    result = school.run("run-scheduled", london(2026, 11, 23, 9, 21))  # long before any due time
    assert result.status == 0, result.err
    received = only(server, "duress_alert", "V1")
    assert received.message["Subject"].startswith("DURESS ")
    assert set(received.rcpt_tos) == {MANAGER, SMT}
    text = body(received)
    assert text.startswith("DURESS: Sam Staff texted the school's duress word at 09:20.")
    assert "1 Test Street" in text  # the address, in the email only
    alarms = {t.phone_number: t.body for t in notify.sent if t.phone_number != STAFF_MOBILE}
    assert set(alarms) == {MANAGER_MOBILE, SMT_MOBILE}
    assert all(
        b.startswith("DURESS home visit V1: Sam Staff texted the duress word at 09:20.")
        for b in alarms.values()
    )
    assert all("Test Street" not in b for b in alarms.values())
    assert replies(notify) == ["Thanks, noted."]
    again = school.run("run-scheduled", london(2026, 11, 23, 9, 25))
    assert again.status == 0 and len(server.messages) == 1 and len(notify.sent) == 3, again.err


def test_a_dry_run_says_what_would_be_texted_and_texts_nothing(tmp_path, server, notify):
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 10, 20))
    result = school.run("run-scheduled", CHECK, "--dry-run")
    assert result.status == 0, result.err
    assert "would text: V1 overdue_alert to 1 mobile(s)" in result.out
    assert notify.sent == [] and server.messages == []
    assert not [r for r in notify.requests if r[0] == "POST"]


def test_a_run_killed_before_the_duress_alert_raises_it_on_the_next_run(
    tmp_path, server, notify, monkeypatch
):
    from homevisits.notify import run as job_run

    school = place(tmp_path, [visit()], server, notify, inbound=True, duress_word="pineapple")
    notify.text_from(STAFF_MOBILE, "pineapple", at=london(2026, 11, 23, 9, 20))
    original = job_run.duress_alerts

    def dies(*args):
        raise SystemExit(KILLED)

    monkeypatch.setattr(job_run, "duress_alerts", dies)
    with pytest.raises(SystemExit):
        school.run("run-scheduled", london(2026, 11, 23, 9, 21))
    monkeypatch.setattr(job_run, "duress_alerts", original)
    assert server.messages == []
    result = school.run("run-scheduled", london(2026, 11, 23, 9, 22))
    assert result.status == 0, result.err
    assert only(server, "duress_alert", "V1")
    assert replies(notify) == ["Thanks, noted."]  # answered once


def test_check_setup_against_notify(notify, tmp_path):
    def settings(**changes):
        table = {
            "provider": "notify",
            "template_id": TEMPLATE_ID,
            "base_url": notify.base_url,
            "inbound": True,
        }
        return sms.sms_settings(config_module.from_mapping({"sms": {**table, **changes}}))

    assert sms.check_setup(settings()) == []
    notify.templates["0b3a9c1e-1111-4c3e-9a61-1d2f3a4b5c6d"] = "Hello ((name)), ((message))"
    assert sms.check_setup(settings(template_id="0b3a9c1e-1111-4c3e-9a61-1d2f3a4b5c6d")) == [
        "The Notify template 0b3a9c1e-1111-4c3e-9a61-1d2f3a4b5c6d must hold exactly ((message)) and nothing "
        "else: edit it in Notify."
    ]
    [missing] = sms.check_setup(settings(template_id="9e3a9c1e-1111-4c3e-9a61-1d2f3a4b5c6d"))
    assert missing.startswith("GOV.UK Notify has no template 9e3a9c1e-1111-4c3e-9a61-1d2f3a4b5c6d")


def test_check_setup_with_a_key_notify_does_not_know(notify, monkeypatch):
    monkeypatch.setenv("HOMEVISITS_NOTIFY_API_KEY", API_KEY[:-36] + "00000000-0000-4000-8000-000000000000")
    table = {"provider": "notify", "template_id": TEMPLATE_ID, "base_url": notify.base_url}
    [problem] = sms.check_setup(sms.sms_settings(config_module.from_mapping({"sms": table})))
    assert problem.startswith(
        "GOV.UK Notify refused the API key in HOMEVISITS_NOTIFY_API_KEY (GOV.UK Notify 403"
    )
    assert notify.rejected == ["403 Invalid token: signature, api token not found"]


@pytest.mark.parametrize(
    ("claims", "secret", "why"),
    [
        ({"iss": SERVICE_ID, "iat": -60}, SECRET, "clock must be accurate to within 30 seconds"),
        ({"iss": "someone-else", "iat": 0}, SECRET, "service not found"),
        ({"iss": SERVICE_ID, "iat": 0}, "00000000-0000-4000-8000-000000000000", "api token not found"),
        ({"iss": SERVICE_ID}, SECRET, "clock must be accurate"),
    ],
)
def test_the_standin_refuses_a_token_notify_would_refuse(notify, claims, secret, why):
    """The stand-in is only worth testing against if it refuses what Notify refuses."""
    import time

    import jwt
    import requests

    if "iat" in claims:
        claims = {**claims, "iat": int(time.time()) + claims["iat"]}
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})
    answer = requests.get(
        f"{notify.base_url}/v2/template/{TEMPLATE_ID}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 403
    assert why in answer.json()["errors"][0]["message"]


def test_the_standin_refuses_bodies_outside_the_documented_ones(notify):
    from notifications_python_client.errors import HTTPError
    from notifications_python_client.notifications import NotificationsAPIClient

    client = NotificationsAPIClient(API_KEY, base_url=notify.base_url)
    with pytest.raises(HTTPError) as refused:
        client.post(
            "/v2/notifications/sms", {"phone_number": STAFF_MOBILE, "template_id": TEMPLATE_ID, "to": "x"}
        )
    assert refused.value.status_code == 400
    assert refused.value.message == [
        {"error": "ValidationError", "message": "Additional properties are not allowed (to was unexpected)"}
    ]
    with pytest.raises(HTTPError) as missing:
        client.send_sms_notification(STAFF_MOBILE, TEMPLATE_ID)
    assert missing.value.message[0]["message"] == "Missing personalisation: message"


def test_a_safe_text_that_could_not_be_written_is_read_again_after_newer_texts(tmp_path, server, notify):
    """The workbook is open in Excel: the SAFE waits, a newer text is processed, the SAFE still lands."""
    school = place(tmp_path, [visit()], server, notify, inbound=True)
    notify.text_from(STAFF_MOBILE, "SAFE", at=london(2026, 11, 23, 10, 20))
    notify.text_from("+447700900999", "hello", at=london(2026, 11, 23, 10, 21))
    owner = tmp_path / "~$home_visits.xlsx"
    owner.write_text("x")
    first = school.run("run-scheduled", london(2026, 11, 23, 10, 25))
    assert "check-in" in first.err and notify.sent == [], first.err
    owner.unlink()
    second = school.run("run-scheduled", CHECK)
    assert second.status == 0, second.err
    assert written(school, "V1", "returned_at") == dt.datetime(2026, 11, 23, 10, 20)
    assert replies(notify) == ["Recorded: V1 safe return 10:20."]
    assert delivered(server) == {}


def test_check_setup_has_a_texts_line(notify, monkeypatch):
    from homevisits.setup_check import check_texts

    table = {"provider": "notify", "template_id": TEMPLATE_ID, "base_url": notify.base_url}
    good = check_texts(config_module.from_mapping({"sms": table}))
    assert good.ok and good.line() == "✓ texts: GOV.UK Notify accepted the key; the template is ((message))."
    monkeypatch.setenv("HOMEVISITS_NOTIFY_API_KEY", API_KEY[:-36] + "00000000-0000-4000-8000-000000000000")
    bad = check_texts(config_module.from_mapping({"sms": table}))
    assert not bad.ok and bad.line().startswith("✗ texts: GOV.UK Notify refused the API key")
