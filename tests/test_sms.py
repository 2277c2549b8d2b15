"""Alerts by text through GOV.UK Notify: the real ``notifications-python-client`` against a loopback
stand-in of the Notify API (tests/notify_standin.py), the email side against aiosmtpd on 127.0.0.1.

A visit 09:00 to 10:00 today (Monday 23 November 2026), OMG Education (30 minutes' grace), checked
at 10:45 unless the test says otherwise; the line manager's mobile is in the sheet's
Line manager mobile column, SMT's in [sms] smt.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from homevisits import config as config_module
from homevisits import sms
from homevisits.errors import HomevisitsError
from jobs_fixtures import MANAGER, School, delivered, london, out_today, smtp_mail, toml_value
from notify_standin import API_KEY, TEMPLATE_ID, notify_standin
from smtp_fixtures import smtp_server

CHECK = london(2026, 11, 23, 10, 45)
MANAGER_MOBILE = "+447700900111"
SMT_MOBILE = "+447700900001"
STAFF_PHONE = "07700 900503"


@pytest.fixture
def server():
    with smtp_server() as running:
        yield running


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
    assert "[sms] has an unknown setting templat_id (did you mean template_id?)" in result.err
    assert "Traceback" not in result.err


def test_the_api_key_only_from_the_environment(tmp_path, server, notify, monkeypatch):
    monkeypatch.delenv("HOMEVISITS_NOTIFY_API_KEY")
    school = place(tmp_path, [visit()], server, notify)
    result = school.run("run-scheduled", CHECK)
    assert result.status == 2
    assert "the environment variable HOMEVISITS_NOTIFY_API_KEY is not set" in result.err
    bad = place(tmp_path, [visit()], server, notify, api_key="secret")
    assert "unknown setting api_key" in bad.run("run-scheduled", CHECK).err


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
