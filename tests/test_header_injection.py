"""Nothing from a cell reaches a mail header (issue 10, item 8), on this Python.

Python 3.11.7 lacks the CVE-2024-6923 fix: given ``=?utf-8?q?=0D=0A...?=`` in a header value, the
email package decodes the encoded word and writes its CR/LF out raw, which let a Visit ID forge the
alert's body ("False alarm: Sam is back safe...") or add a real ``Reply-To``. Each test here runs
the attack the way it would arrive, in a real workbook (or a Google Sheet stand-in) through
``run-scheduled``, against aiosmtpd on 127.0.0.1, and compares the message as the server received
it, header line by header line and the whole body, with the same run on a clean row.
"""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homevisits import mail, transports
from homevisits.notify import context, history, messages, options
from homevisits.policy import load_policy
from homevisits.visit_ids import is_header_safe_id
from jobs_fixtures import (
    ADMIN,
    DOMAINS,
    MANAGER,
    SENDER,
    SMT,
    STAFF,
    School,
    body,
    london,
    out_today,
    planned,
    smtp_mail,
    toml_value,
)
from sheets_standin import SheetsStandIn
from smtp_fixtures import header_lines as unfolded
from smtp_fixtures import smtp_server
from workbooks import ALL_HEADERS, run_check

ALERT_AT = london(2026, 11, 23, 12, 1)  # 11:30 expected back, 30 minutes' grace: the alert is due
SUBJECT = "URGENT: no safe return confirmed for home visit {} on Mon 23 Nov 2026"
ALERT_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Homevisits-Visit",
    "X-Homevisits-Kind",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
]
MESSAGE_ID = re.compile(r"<[A-Za-z0-9._/+-]+@school\.example>")
FALSE_ALARM = (
    "HV-0007 =?utf-8?q?=0D=0A=0D=0AFalse_alarm:_Sam_is_back_safe_and_has_phoned_in._No_action_needed.?="
)
REPLY_TO = "HV-0007 =?utf-8?q?=0D=0AReply-To:_boss@evil.example?="


def header_lines(raw: bytes) -> list[tuple[str, str]]:
    """(name, value) of each header line exactly as a mail server reads them: unfolded, undecoded."""
    return [(name, value.strip()) for name, value in (line.split(":", 1) for line in unfolded(raw))]


def expected_headers(
    visit: str, kind: str = "overdue_alert", cte: str = "quoted-printable"
) -> dict[str, str]:
    """Every header of an overdue alert about ``visit`` (Message-ID: any the ledger gave it)."""
    return {
        "From": f"Home visits <{SENDER}>",
        "To": MANAGER,
        "Subject": SUBJECT.format(visit.replace("-", " ") if visit.startswith("row-") else visit),
        "Date": format_datetime(ALERT_AT),
        "Message-ID": "(from the ledger)",
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "All",
        "X-Homevisits-Visit": visit,
        "X-Homevisits-Kind": kind,
        "Content-Type": 'text/plain; charset="utf-8"',
        "Content-Transfer-Encoding": cte,
        "MIME-Version": "1.0",
    }


def assert_exact_headers(received, visit: str, cte: str = "quoted-printable") -> None:
    lines = header_lines(received.data)
    assert [name for name, _ in lines] == ALERT_HEADERS
    got = dict(lines)
    assert MESSAGE_ID.fullmatch(got.pop("Message-ID")), "Message-ID"
    want = expected_headers(visit, cte=cte)
    del want["Message-ID"]
    assert got == want


def alert_from(tmp_path: Path, server, name: str, status: int = 0, **cells):
    """Run run-scheduled at the alert's moment on a one-row sheet; the alert that arrived first."""
    seen = len(server.messages)
    place = School(tmp_path / name).write([out_today(2, **cells)]).configure(smtp_mail(server))
    result = place.run("run-scheduled", ALERT_AT)
    assert result.status == status, result.err
    new = server.messages[seen:]
    assert [m.message["X-Homevisits-Kind"] for m in new][:1] == ["overdue_alert"]
    return new[0], result


def clean_alert_body(tmp_path: Path, server) -> str:
    received, _ = alert_from(tmp_path, server, "clean")
    assert_exact_headers(received, "V2")
    return body(received)


# ---------------------------------------------------------------- the Visit ID


@pytest.mark.parametrize(
    ("visit_id", "shown"),
    [
        # the forged alert, and the variant that adds a real Reply-To outside the school
        (FALSE_ALARM, "HV-0007 =?utf-8?q?=0D=0A=0D=0AFalse_a..."),
        (REPLY_TO, "HV-0007 =?utf-8?q?=0D=0AReply-To:_bos..."),
        # the same words base64-encoded, upper case, and with no space before the encoded word
        (
            "HV-7=?UTF-8?B?DQoNCkZhbHNlIGFsYXJtOiBTYW0gaXMgYmFjaw==?=",
            "HV-7=?UTF-8?B?DQoNCkZhbHNlIGFsYXJtOiB...",
        ),
        # literal line breaks: CR LF, LF alone, CR alone, a blank line and a body
        ("HV-0007\r\nBcc: thief@evil.example", "HV-0007 Bcc: thief@evil.example"),
        ("HV-0007\nReply-To: boss@evil.example", "HV-0007 Reply-To: boss@evil.example"),
        ("HV-0007\rTo: thief@evil.example", "HV-0007 To: thief@evil.example"),
        ("HV-0007\r\n\r\nFalse alarm: Sam is back safe.", "HV-0007 False alarm: Sam is back safe."),
        # and plain words: a learner's name, and an ID one character too long
        ("Visit to Ava Example", "Visit to Ava Example"),
        ("HV-" + "7" * 38, "HV-" + "7" * 34 + "..."),
    ],
)
def test_a_visit_id_that_is_not_header_safe_names_the_row_instead(tmp_path, server, visit_id, shown):
    clean = clean_alert_body(tmp_path, server)
    received, result = alert_from(tmp_path, server, "attack", visit_id=visit_id)
    assert_exact_headers(received, "row-2")
    assert received.rcpt_tos == [MANAGER]
    expected = clean.replace(
        "safe return from home visit V2.",
        f'safe return from home visit row 2 (its Visit ID cell reads "{shown}", which is not a usable '
        "Visit ID).",
    )
    assert expected != clean
    assert body(received) == expected
    head = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "evil" not in head and "False" not in head and "Ava" not in head
    assert "row-2 overdue_alert" in result.out and "=?" not in result.out


def test_the_forged_alert_row_is_a_finding_and_its_smt_stage_follows(tmp_path, server):
    received, _ = alert_from(tmp_path, server, "attack", visit_id=FALSE_ALARM)
    assert "False alarm: Sam" not in body(received)
    checked = run_check(tmp_path / "attack" / "home_visits.xlsx", "omg_education", ALERT_AT)
    [finding] = [f for f in checked.findings if f.rule == "HV031"]
    assert (finding.row, finding.column, finding.severity) == (2, "Visit ID", "error")
    assert "emails about this visit name it as row 2 instead" in finding.message
    place = School(tmp_path / "attack")
    assert place.run("run-scheduled", ALERT_AT + dt.timedelta(minutes=31)).status == 0
    smt = server.messages[-1]
    assert smt.message["X-Homevisits-Kind"] == "smt_alert" and smt.rcpt_tos == [SMT, MANAGER]
    assert (
        smt.message["Subject"]
        == "URGENT for SMT: still no safe return for home visit row 2 on Mon 23 Nov 2026"
    )
    assert smt.message["X-Homevisits-Visit"] == "row-2"


def test_a_header_safe_visit_id_travels_as_it_is(tmp_path, server):
    received, _ = alert_from(tmp_path, server, "safe", visit_id="HV-0042/b.1_x")
    assert_exact_headers(received, "HV-0042/b.1_x")
    assert "from home visit HV-0042/b.1_x.\n" in body(received)


# ---------------------------------------------------------------- other cells


def test_encoded_words_and_line_breaks_in_other_cells_stay_text_in_the_body(tmp_path, server):
    clean = clean_alert_body(tmp_path, server)
    word = "=?utf-8?q?=0D=0A=0D=0AFalse_alarm:_back_safe?="
    received, _ = alert_from(
        tmp_path,
        server,
        "cells",
        lead_staff=f"Sam Teacher {word}",
        location_details=f"Front door\r\nReply-To: boss@evil.example {word}",
        address=f"1 Test Street, Birmingham\r\n\r\nFalse alarm: {word}",
    )
    assert_exact_headers(received, "V2")
    expected = (
        clean.replace("Sam Teacher", f"Sam Teacher {word}")
        .replace(
            "Location type: Home\n",
            f"Location type: Home\nLocation details: Front door Reply-To: boss@evil.example {word}\n",
        )
        .replace("2 Test Street, Birmingham,", f"1 Test Street, Birmingham False alarm: {word},")
    )
    assert body(received) == expected


# ---------------------------------------------------------------- addresses


def test_an_address_routing_outside_the_school_is_refused_and_reported(tmp_path, server):
    """``pat%evil.example@school.example`` is inside the domain by its letters, but a relay that honours
    ``%`` would send it on to evil.example: it is refused like any address that is not one, the alert
    goes on to SMT, and the admin is told which address was not mailed. Nothing reaches evil.example."""
    place = School(tmp_path).write([out_today(2, line_manager_email="pat%evil.example@school.example")])
    result = place.configure(smtp_mail(server)).run("run-scheduled", ALERT_AT)
    assert result.status == 1
    assert "not email addresses and were not mailed" in result.err
    assert all("%" not in a and "evil" not in a for m in server.messages for a in m.rcpt_tos)
    assert all(m.rcpt_tos in ([SMT], [ADMIN]) for m in server.messages)
    [smt] = [m for m in server.messages if m.message["X-Homevisits-Kind"] == "smt_alert"]
    assert dict(header_lines(smt.data))["To"] == SMT and "Cc" not in dict(header_lines(smt.data))
    reports = [body(m) for m in server.messages if m.message["X-Homevisits-Kind"] == "admin_report"]
    assert any("Visit V2: pat%evil.example@school.example (not an email address)" in r for r in reports)


@pytest.mark.parametrize(
    "address",
    [
        "pat%evil.example@school.example",
        "evil.example!pat@school.example",
        "=?utf-8?q?=0D=0ABcc:_x@evil.example?=@school.example",
        "pat?@school.example",
        "Pat <pat%evil.example@school.example>",
    ],
)
def test_percent_bang_and_encoded_words_in_the_local_part_are_not_addresses(address):
    assert mail.addr_spec(address) is None
    assert mail.check_recipients([address, STAFF], DOMAINS) == ([STAFF], [address])
    to, cc, not_mailed = messages.split_recipients([address], [], DOMAINS)
    assert (to, cc, not_mailed) == ((), (), ((address, "not an email address"),))


# ---------------------------------------------------------------- lone surrogates (Google Sheets)


def test_lone_surrogates_from_a_google_sheet_never_stop_the_alert(tmp_path, server, monkeypatch):
    """Sheets' JSON can carry a lone UTF-16 surrogate (``"\\ud83d"``), which no encoder accepts: in the
    Visit ID and in the cells the alert quotes, it never stops the run or the alert."""
    key, tab = "1HvLogExampleKey0123456789abcdefghijklmnopq", "Home visits"
    rows = [
        out_today(
            2,
            visit_id="V\ud8002",
            lead_staff="Sam \ud83d Teacher",
            location_details="Gate \udc00",
            address="1 \udfff Road",
        )
    ]
    with SheetsStandIn() as api:
        api.add_book(key, {tab: [ALL_HEADERS, *[[row.get(h) for h in ALL_HEADERS] for row in rows]]})
        credentials = api.service_account_file(tmp_path)
        monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
        config = tmp_path / "homevisits.toml"
        settings_ = smtp_mail(server)
        config.write_text(
            'policy = "omg_education"\nschool = "Test School"\n\n[source]\n'
            f'spreadsheet = "https://docs.google.com/spreadsheets/d/{key}/edit"\nworksheet = "{tab}"\n'
            f'credentials = "{credentials.name}"\n\n[mail]\n'
            + "".join(f"{k} = {toml_value(v)}\n" for k, v in settings_.items())
            + '\n[state]\nledger = "state/ledger.sqlite"\n',
            encoding="utf-8",
        )
        place = School(tmp_path)
        result = place.run("run-scheduled", ALERT_AT)
        assert result.status == 0, result.err
        (received,) = server.messages
        assert_exact_headers(received, "V2")
        text = body(received)
        # the reader drops a lone surrogate; the builder would replace one with U+FFFD (test below)
        assert "Staff member: Sam Teacher\n" in text and "\ufffd" not in text
        assert "Location details: Gate\n" in text
        assert "Address: 1 Road, B23 6XX\n" in text
        assert place.run("run-scheduled", ALERT_AT + dt.timedelta(minutes=5)).status == 0
        assert len(server.messages) == 1  # sent once, recorded: nothing left queued


def test_the_builder_cleans_surrogates_and_controls_anywhere(tmp_path):
    message = mail.build_message(
        sender=("Home \ud800 visits\x1b[2J", SENDER),
        to=[("Pat \udfff\u202e Manager", MANAGER)],
        subject="Visit \ud800 HV-1\x00\x85 =?utf-8?q?=0D=0ABcc:_x@evil.example?=",
        text="Line one \ud800\r\nLine two\x1b[31m\x00\rLine three\u2028four\n",
        html="<p>\udc00</p>",
        attachments=[("HV 1 \ud800\r\n=?x?=.pdf", b"%PDF-1.4", "application/pdf")],
        message_id="<1.2@school.example>",
        visit_id="HV-1\r\nBcc: thief@evil.example",
        kind="overdue_alert",
        date=ALERT_AT,
    )
    raw = message.as_bytes(policy=mail.SMTP_POLICY)
    head = header_lines(raw)
    assert [name for name, _ in head] == [
        *ALERT_HEADERS[:9],
        "MIME-Version",
        "Content-Type",
    ]
    values = dict(head)
    assert values["From"] == "Home visits 2J <homevisits@school.example>"
    assert values["To"] == f"Pat Manager <{MANAGER}>"
    assert values["Subject"] == "Visit HV-1 utf-8 q 0D 0ABcc:_x@evil.example"  # text, never decoded
    assert values["X-Homevisits-Visit"].startswith("id-") and len(values["X-Homevisits-Visit"]) == 11
    parsed = message_from_bytes(raw, policy=default_policy)
    plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain == "Line one \ufffd\nLine two [31m \nLine three\nfour\n"
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>\ufffd</p>\n"
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "HV_1_x_.pdf" and attachment.get_content() == b"%PDF-1.4"


# ---------------------------------------------------------------- the property


FRAGMENTS = [
    "=?utf-8?q?",
    "=?UTF-8?B?",
    "?=",
    "=0D=0A",
    "_",
    "\r\n",
    "\r",
    "\n",
    "\t",
    "\x00",
    "\x85",
    "\u2028",
    "\u202e",
    "\ud800",
    "\udfff",
    "Reply-To: boss@evil.example",
    "Bcc:",
    ":",
    "<",
    ">",
    '"',
    " ",
    "HV-0007",
    "/",
    ".",
    "é",
]
VISIT_IDS = st.one_of(
    st.text(max_size=50),
    st.lists(
        st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.integers(0, 0x9F).map(chr)),
        max_size=20,
    ).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=10).map("".join),
    st.from_regex(r"[A-Za-z0-9_./-]{1,45}", fullmatch=True),
)


@pytest.fixture(scope="module")
def relay():
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def relay_transport(relay):
    """One SMTP transport to the relay for all the examples (each opens no connection and TLS context of
    its own): what is checked is each message as delivered, not the opening of the connection."""
    with transports.open_transport(smtp_mail(relay), Path(".")) as transport:
        yield transport


PROPERTY_SETTINGS = options.Settings(
    forms_to=(SENDER,), smt=(SMT,), admin=(ADMIN,), allowed_domains=tuple(DOMAINS), sender=SENDER
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    visit_id=VISIT_IDS, kind=st.sampled_from(["overdue_alert", "smt_alert", "reminder", "deadline_missed"])
)
def test_any_visit_id_gives_exactly_the_expected_headers(relay, relay_transport, visit_id, kind):
    """For any Visit ID text, the delivered message has exactly the expected header names, and every
    header value is fixed text, the only cell text in any of them a header-safe ID."""
    policy = load_policy("omg_education")
    settings_ = PROPERTY_SETTINGS
    ctx = context.Context(policy, settings_, history.History(), ALERT_AT.astimezone(dt.UTC), {})
    visit = {
        "visit_id": visit_id,
        "row": 2,
        "start_at": london(2026, 11, 23, 10),
        "return_due_at": london(2026, 11, 23, 11, 30),
        "lead_staff": "Sam Teacher",
        "staff_email": STAFF,
        "line_manager_email": MANAGER,
    }
    planned = messages.compose(kind, visit, ctx, f"{kind}:x")
    message = messages.build(planned, "<p.1@school.example>", settings_, ALERT_AT, None)
    seen = len(relay.messages)
    relay_transport.send(message)
    (received,) = relay.messages[seen:]
    lines = header_lines(received.data)
    assert [name for name, _ in lines] == [
        *ALERT_HEADERS[:2],
        *(["Cc"] if planned.cc else []),
        *ALERT_HEADERS[2:],
    ]
    got = dict(lines)
    safe = is_header_safe_id(visit_id)
    ref = visit_id if safe else "row-2"
    assert got["X-Homevisits-Visit"] == ref
    assert got["Subject"] == mail.SUBJECTS[kind].format(visit=ref if safe else "row 2", day="Mon 23 Nov 2026")
    assert got["Message-ID"] == "<p.1@school.example>"
    assert got["X-Homevisits-Kind"] == kind and got["Date"] == format_datetime(ALERT_AT)
    assert got["From"] == f"Home visits <{SENDER}>" and got["Auto-Submitted"] == "auto-generated"
    assert got["To"] == ", ".join(planned.to) and got.get("Cc", "") == ", ".join(planned.cc)
    assert set(planned.recipients) <= {MANAGER, SMT, STAFF}
    assert got["Content-Type"] == 'text/plain; charset="utf-8"' and got["MIME-Version"] == "1.0"
    assert got["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")
    assert got["X-Auto-Response-Suppress"] == "All"


# ---------------------------------------------------------------- forms, the outbox and --dry-run


def test_a_planned_visit_with_an_unusable_id_is_chased_by_row_and_never_named_in_a_file(tmp_path):
    """The form waits (HV031 is an error the school must fix), the reminder names row 2 in its
    subject, header and file name, and its body says what to fix; --dry-run names the row too."""
    day = dt.date(2026, 11, 26)
    outbox = {
        "transport": "outbox",
        "outbox": "outbox",
        "from": SENDER,
        "forms_to": [ADMIN],
        "smt": [SMT],
        "allowed_domains": DOMAINS,
    }
    place = School(tmp_path).write([planned(2, day, visit_id=FALSE_ALARM)]).configure(outbox)
    now = london(2026, 11, 23, 12, 0)
    dry = place.run("run-scheduled", now, "--dry-run")
    assert dry.out.splitlines() == ["would send: row-2 reminder to 2 recipients"]
    result = place.run("run-scheduled", now)
    assert result.status == 0 and result.out == "sent: row-2 reminder to 2 recipients\n"
    (eml,) = (tmp_path / "outbox").iterdir()
    assert eml.name.startswith("row-2_reminder_") and eml.name.endswith(".eml")
    raw = eml.read_bytes()
    lines = header_lines(raw)
    assert [name for name, _ in lines] == [*ALERT_HEADERS[:2], "Cc", *ALERT_HEADERS[2:]]
    values = dict(lines)
    assert (
        values["Subject"] == "Action needed: home visit row 2 on Thu 26 Nov 2026, the form cannot be sent yet"
    )
    assert values["X-Homevisits-Visit"] == "row-2" and values["X-Homevisits-Kind"] == "reminder"
    text = message_from_bytes(raw, policy=default_policy).get_body(("plain",)).get_content()
    assert text.startswith(
        'The risk assessment form for home visit row 2 (its Visit ID cell reads "HV-0007 =?utf-8?q?'
        '=0D=0A=0D=0AFalse_a...", which is not a usable Visit ID) on Thursday 26 November 2026 at 10:00'
    )
    assert (
        "  - Visit ID: Visit ID 'HV-0007 =?utf-8?q?=0D=0A=0D=0AFalse_alarm:_Sam_is_back_sa...' can hold "
        "only letters, digits and - _ / . (at most 40 characters): emails about this visit name it as row 2 "
        "instead. Change the Visit ID to letters and digits, e.g. HV-0042, or clear the cell and homevisits "
        "will give the visit a new one." in text.replace("\r\n", "\n")
    )
    assert "False alarm" not in text
