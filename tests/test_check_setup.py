"""homevisits check-setup: one ✓/✗ line per part of the setup, against a real workbook, aiosmtpd with
STARTTLS and a login, and the loopback Sheets stand-in. Exit 0 only when every check passes."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from homevisits import cli
from jobs_fixtures import HEADERS, School, london, out_today, send_at_now, smtp_mail, toml_value
from sheets_standin import SheetsStandIn
from smtp_fixtures import RecordingHandler, make_ca, server_context, smtp_server, write_ca
from workbooks import ALL_HEADERS, visit

PASSWORD_ENV = "HOMEVISITS_TEST_SMTP_PASSWORD"
SENDER = "homevisits@school.example"
KEY = "1HvLogExampleKey0123456789abcdefghijklmnopq"
TAB = "Home visits"
EMAIL = "homevisits@school-project.iam.gserviceaccount.com"


def check_setup(config: Path, *extra: str) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["check-setup", "--config", str(config), *extra])
    assert err.getvalue() == ""
    return status, out.getvalue().splitlines()


def line(lines: list[str], what: str) -> str:
    (found,) = [entry for entry in lines if entry[2:].startswith(what + ":")]
    return found


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """aiosmtpd with STARTTLS (a certificate from the school's own CA) and a login."""
    ca = make_ca()
    write_ca(ca, tmp_path / "ca.pem")
    handler = RecordingHandler(users={SENDER: "correct horse"})
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    with smtp_server(handler=handler, starttls=server_context(ca), auth=True) as server:
        yield server


def tls_mail(server, **changes):
    settings = smtp_mail(
        server, security="starttls", ca_file="ca.pem", username=SENDER, password_env=PASSWORD_ENV
    )
    settings.update(changes)
    return settings


def test_a_working_setup_passes_every_check_without_sending(tmp_path, tls_server):
    place = School(tmp_path).write([out_today(1)]).configure(tls_mail(tls_server))
    with send_at_now():
        assert place.run("run-scheduled", london(2026, 11, 23, 11, 0)).status == 0
    before, sent = place.workbook.read_bytes(), len(tls_server.messages)
    status, lines = check_setup(place.config, "--now", london(2026, 11, 23, 11, 5).isoformat())
    assert status == 0, lines
    assert [entry[:2] for entry in lines[:-2]] == ["✓ "] * 9
    assert [entry[2:].split(":")[0] for entry in lines[:-2]] == [
        "settings",
        "policy",
        "sheet",
        "sheet writable",
        "headers",
        "locale",
        "mail",
        "state folder",
        "scheduled job",
    ]
    assert "TLS verified, login accepted" in line(lines, "mail") and "no message was sent" in line(
        lines, "mail"
    )
    assert lines[-1] == "Every check passed."
    assert len(tls_server.messages) == sent and tls_server.handler.logins[-1][1] == SENDER
    assert place.workbook.read_bytes() == before  # nothing written


def test_send_test_delivers_one_message(tmp_path, tls_server):
    place = School(tmp_path).write([out_today(1)]).configure(tls_mail(tls_server))
    status, lines = check_setup(place.config, "--send-test", "office@school.example")
    assert "✓ mail: a test message went to office@school.example" in line(lines, "mail")
    (received,) = tls_server.messages
    assert received.rcpt_tos == ["office@school.example"] and received.tls
    assert received.message["Subject"] == "homevisits test message"
    status, lines = check_setup(place.config, "--send-test", "someone@elsewhere.example")
    assert status == 1
    assert line(lines, "mail").startswith(
        "✗ mail: someone@elsewhere.example is not inside [mail] allowed_domains"
    )
    assert len(tls_server.messages) == 1


def test_a_broken_setup_names_each_fault(tmp_path, monkeypatch):
    config = tmp_path / "homevisits.toml"
    config.write_text(
        'policy = "omg_education"\n[source]\nworksheeet = "Log"\npath = "log.xlsx"\n'
        '[schedule]\nwindow_days = "14"\n[timings]\nsmt_after_minuts = 30\n[mail]\nforms_too = ["dsl@school.example"]\n',
        encoding="utf-8",
    )
    status, lines = check_setup(config)
    assert status == 1
    assert lines[:4] == [
        "✗ settings: homevisits.toml: [source] has no setting worksheeet: did you mean worksheet?",
        "✗ settings: homevisits.toml: [mail] has no setting forms_too: did you mean forms_to?",
        '✗ settings: homevisits.toml: [schedule] window_days must be a number, e.g. window_days = 14 (it is "14").',
        "✗ settings: homevisits.toml: [timings] has no setting smt_after_minuts: did you mean smt_after_minutes?",
    ]
    assert lines[-1] == "4 check(s) failed: fix them and run check-setup again."


def test_sheet_mail_state_and_job_faults_each_get_a_line(tmp_path, monkeypatch):
    headers = [h if h != HEADERS["expected_return"] else "Back by" for h in HEADERS.values()]
    place = School(tmp_path)
    from workbooks import write_workbook

    write_workbook(place.workbook, [out_today(1)], columns=headers)
    (tmp_path / "~$home_visits.xlsx").write_bytes(b"owner")  # Excel has it open
    with contextlib.ExitStack() as stack:
        from smtp_fixtures import dead_port

        port = stack.enter_context(dead_port())
        mail = {"transport": "smtp", "host": "127.0.0.1", "port": port, "security": "none", "from": SENDER}
        mail["allowed_domains"] = ["school.example"]
        lines = [
            'policy = "omg_education"',
            "[source]",
            'path = "home_visits.xlsx"',
            'worksheet = "Home Visits"',
        ]
        lines += ["[mail]", *(f"{k} = {toml_value(v)}" for k, v in mail.items())]
        lines += ["[state]", 'dir = "/proc/nope/state"']
        place.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        status, out = check_setup(place.config)
    assert status == 1
    assert line(out, "sheet").startswith("✓ sheet: home_visits.xlsx (Home Visits) reads: 1 rows")
    assert line(out, "sheet writable").startswith("✗ sheet writable: home_visits.xlsx is open in Excel")
    headers_line = line(out, "headers")
    assert headers_line.startswith("✗ headers:")
    assert "Not placed (kept, never read): 'Back by' (is it " in headers_line
    assert 'add "Back by" = "' in headers_line and " under [columns])" in headers_line
    headers.append(HEADERS["status"])  # a second Status column: one sentence naming both
    write_workbook(place.workbook, [out_today(1)], columns=headers)
    (tmp_path / "~$home_visits.xlsx").unlink()
    _, out = check_setup(place.config)
    assert line(out, "headers").startswith("✗ headers: Two columns hold Status")
    assert line(out, "sheet writable").startswith("✓ sheet writable:")
    assert line(out, "mail").startswith("✗ mail: Could not connect to the mail server 127.0.0.1:")
    assert line(out, "state folder").startswith("✗ state folder:")
    assert line(out, "scheduled job").startswith(
        "✗ scheduled job: The scheduled job (homevisits run-scheduled) has never run"
    )


def test_no_config_at_all_says_run_init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check-setup"]) == 1
    assert out.getvalue().startswith("✗ settings: There is no homevisits.toml here: run homevisits init")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def api():
    with SheetsStandIn() as server:
        yield server


def google_school(tmp_path: Path, api, monkeypatch, server, **book) -> Path:
    key_file = api.service_account_file(tmp_path, EMAIL)
    grid = [ALL_HEADERS, *[[row.get(h) for h in ALL_HEADERS] for row in [visit(2, "done")]]]
    api.add_book(KEY, {TAB: grid}, **book)
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    config = tmp_path / "homevisits.toml"
    lines = ['policy = "omg_education"', "[source]", f'spreadsheet = "{KEY}"', f'worksheet = "{TAB}"']
    lines += [f'credentials = "{key_file.name}"', "[mail]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in smtp_mail(server).items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def test_google_sheet_edit_access_is_asked_without_changing_a_cell(tmp_path, api, monkeypatch):
    with smtp_server() as server:
        config = google_school(tmp_path, api, monkeypatch, server)
        before = api.values(KEY, TAB)
        _, lines = check_setup(config)
    assert line(lines, "sheet").startswith("✓ sheet:")
    assert line(lines, "sheet writable") == (
        "✓ sheet writable: the service account may edit the spreadsheet (checked with an empty update)."
    )
    assert line(lines, "locale").startswith("✓ locale: the spreadsheet's locale is en_GB")
    assert api.values(KEY, TAB) == before
    assert api.counts["batchUpdate"] == 1 and api.counts["values.batchUpdate"] == 0


def test_a_viewer_and_a_us_locale_are_each_a_fault(tmp_path, api, monkeypatch):
    with smtp_server() as server:
        config = google_school(tmp_path, api, monkeypatch, server, editors=[], viewers=[EMAIL])
        api.books[KEY].locale = "en_US"
        status, lines = check_setup(config)
    assert status == 1
    assert line(lines, "sheet").startswith("✓ sheet:")
    writable = line(lines, "sheet writable")
    assert writable.startswith("✗ sheet writable:") and EMAIL in writable
    locale = line(lines, "locale")
    assert locale.startswith("✗ locale: the spreadsheet's locale is en_US, not en_GB")
    assert "File → Settings → Locale: United Kingdom" in locale
    assert os.environ.get("HOMEVISITS_SHEETS_ENDPOINT") == api.url
