"""A school's setup can never be silently wrong: typed settings, the sealed demo, rehearsals that never
send, homevisits init, the watched scheduled job (status, heartbeat) and the ledger's log.

Real workbooks, the real command, aiosmtpd and a plain HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import http.server
import io
import json
import re
import threading
from pathlib import Path

import pytest

from homevisits import cli, heartbeat
from homevisits.config import from_mapping, load_config
from homevisits.errors import HomevisitsError
from homevisits.policy import load_policy
from jobs_fixtures import NOW, School, london, out_today, planned, send_at_now, smtp_mail

THURSDAY = dt.date(2026, 11, 26)
POLICIES = Path(__file__).resolve().parents[1] / "policies"


def run(argv: list[str], cwd: Path | None = None, monkeypatch=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def school(tmp_path: Path, rows, server, **schedule) -> School:
    return School(tmp_path).write(rows).configure(smtp_mail(server), schedule or None)


# ---------------------------------------------------------------- typed settings


@pytest.mark.parametrize(
    ("toml", "sentence"),
    [
        (
            "[timings]\nsmt_after_minuts = 30\n",
            "[timings] has no setting smt_after_minuts: did you mean smt_after_minutes?",
        ),
        ("[schedule]\nwindow_day = 7\n", "[schedule] has no setting window_day: did you mean window_days?"),
        ('[source]\nworksheeet = "Log"\n', "[source] has no setting worksheeet: did you mean worksheet?"),
        ('[mail]\nform_to = ["a@school.example"]\n', "[mail] has no setting form_to: did you mean forms_to?"),
        (
            '[mail]\nforms_too = ["a@school.example"]\n',
            "[mail] has no setting forms_too: did you mean forms_to?",
        ),
        (
            '[schedule]\nwindow_days = "14"\n',
            '[schedule] window_days must be a number, e.g. window_days = 14 (it is "14").',
        ),
        ("[timings]\nreminder_hours = -1\n", "[timings] reminder_hours must be at least 0 (it is -1)."),
        (
            "[schedule]\nreminder_hours = 12\n",
            "homevisits.toml: [schedule] reminder_hours has moved to [timings] reminder_hours.",
        ),
        (
            "[schedule]\nsmt_after_minutes = 20\n",
            "homevisits.toml: [schedule] smt_after_minutes has moved to [timings] smt_after_minutes.",
        ),
        ('[timings]\noffice_end = "6pm"\n', '[timings] office_end must be a time of day as "HH:MM"'),
        ("[mail]\nport = 70000\n", "[mail] port must be at most 65535 (it is 70000)."),
        ('[mail]\nsecurity = "tls"\n', '[mail] security must be one of "starttls", "ssl", "none"'),
        ('[schedule]\nheartbeat_url = "hc-ping.com/x"\n', "[schedule] heartbeat_url must be a web address"),
        ('[school]\nnam = "X"\n', "[school] has no setting nam: did you mean name?"),
        (
            '[school.safeguarding_contact]\nemial = "x"\n',
            "[school.safeguarding_contact] has no setting emial: did you mean email?",
        ),
        ('polcy = "one_mat"\n', "homevisits.toml has no setting polcy: did you mean policy?"),
    ],
)
def test_every_table_of_the_config_is_checked(tmp_path, toml, sentence):
    config = tmp_path / "homevisits.toml"
    config.write_text(toml, encoding="utf-8")
    with pytest.raises(HomevisitsError) as caught:
        load_config(str(config))
    assert sentence in str(caught.value)
    assert str(caught.value).startswith("homevisits.toml")
    status, out, err = run(["validate", "--config", str(config)])
    assert status == 2 and out == "" and err.count("\n") == 1 and sentence in err


def test_known_keys_of_other_issues_are_accepted_and_typed(tmp_path):
    data = {
        "school": {
            "name": "Erdington Academy",
            "safeguarding_contact": {"name": "Alex Khan", "email": "dsl@school.example"},
            "phone_wording": "a charged school mobile phone",
        },
        "source": {"drive_file": "https://drive.google.com/file/d/abc/view"},
        "schedule": {"heartbeat_url": "https://hc-ping.com/1234"},
        "timings": {"smt_after_minutes": 20},
        "mail": {"forms_to": "dsl@school.example", "from": "homevisits@school.example"},
    }
    config = from_mapping(data, tmp_path / "homevisits.toml")
    assert config.school == "Erdington Academy"
    assert config.typed.school.safeguarding_contact.email == "dsl@school.example"
    assert config.typed.school.phone_wording == "a charged school mobile phone"
    assert config.typed.source.drive_file.startswith("https://drive")
    assert config.typed.schedule.heartbeat_url == "https://hc-ping.com/1234"
    assert config.typed.timings.smt_after_minutes == 20 and config.typed.schedule.window_days == 14
    assert config.typed.mail.forms_to == ("dsl@school.example",) and config.typed.mail.sender.startswith(
        "home"
    )
    assert from_mapping({"school": "St Edwards"}).typed.school.name == "St Edwards"


def copied_profile(tmp_path: Path, extra: str, rule: str | None = None) -> Path:
    text = (POLICIES / "omg_education.toml").read_text(encoding="utf-8")
    if rule:
        table = f"[{rule}]" if rule == "timings" else f"[rules.{rule}]"
        start = text.index(f"{table}\n")
        end = text.find("\n[", start + 1)
        end = len(text) if end < 0 else end
        block = text[start:end]
        for line in extra.splitlines():  # a key the block has is replaced, a new one added
            key = line.split("=")[0].strip()
            block = re.sub(rf"(?m)^{key} = .*\n?", "", block)
            block = block.replace(f"{table}\n", f"{table}\n{line}\n", 1)
        text = text[:start] + block + text[end:]
    else:
        text = extra + "\n" + text
    path = tmp_path / "our_policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("extra", "rule", "sentence"),
    [
        (
            "form_deadline_hour = 96",
            "timings",
            "our_policy.toml: [timings] has no setting form_deadline_hour: did you mean form_deadline_hours?",
        ),
        ('form_deadline_hours = "96"', "timings", "[timings] form_deadline_hours must be a number"),
        ("grace_minutes = -5", "timings", "[timings] grace_minutes must be at least 0 (it is -5)."),
        ('day_end = "5pm"', "timings", '[timings] day_end must be a time of day as "HH:MM"'),
        (
            "deadline_hours = 24",
            "HV009",
            "our_policy.toml: [rules.HV009] deadline_hours has moved to [timings] form_deadline_hours.",
        ),
        (
            "grace_minutes = 30",
            "HV022",
            "our_policy.toml: [rules.HV022] grace_minutes has moved to [timings] grace_minutes.",
        ),
        (
            "grace_minutes = 30",
            "HV023",
            "our_policy.toml: [rules.HV023] grace_minutes has moved to [timings] grace_minutes.",
        ),
        (
            'day_end = "16:00"',
            "HV022",
            "our_policy.toml: [rules.HV022] day_end has moved to [timings] day_end.",
        ),
        ("stale_days = 2.5", "HV027", "[rules.HV027] stale_days must be a whole number"),
        ("grace_minutes = 30", "HV003", "[rules.HV003] has no parameter grace_minutes"),
        (
            'required_column = ["visit_id"]',
            None,
            "our_policy.toml has no setting required_column: did you mean required_columns?",
        ),
        ('form = ["risk_assessment"]', None, "our_policy.toml has no setting form: did you mean forms?"),
    ],
)
def test_a_copied_profile_with_a_typo_is_one_sentence(tmp_path, extra, rule, sentence):
    path = copied_profile(tmp_path, extra, rule)
    with pytest.raises(HomevisitsError) as caught:
        load_policy(str(path))
    assert sentence in str(caught.value)


def test_each_rule_declares_what_its_profile_sets(tmp_path):
    for profile in POLICIES.glob("*.toml"):  # the bundled profiles use only declared parameters
        load_policy(profile.stem)
    path = copied_profile(tmp_path, 'max_visit_minutes = 90\nday_end = "16:30"', "timings")
    timings = load_policy(str(path)).timings
    assert timings.max_visit_minutes == 90 and timings.day_end == dt.time(16, 30)


# ---------------------------------------------------------------- the demo is sealed


def test_make_demo_ignores_the_schools_config_and_never_mails_its_staff(tmp_path, monkeypatch, server):
    from homevisits import demo

    place = school(tmp_path, [out_today(1), planned(2, THURSDAY)], server)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOMEVISITS_CONFIG", str(place.config))
    before = place.workbook.read_bytes()
    with contextlib.redirect_stdout(io.StringIO()):
        assert demo.run() == 0
    assert server.messages == []  # the school's SMTP server never heard from the demo
    assert place.workbook.read_bytes() == before and not place.ledger.exists()
    assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) == 4
    assert (tmp_path / "demo" / "state" / "ledger.sqlite").is_file()


@pytest.mark.parametrize("command", ["send-forms", "check-returns", "run-scheduled"])
def test_sending_without_a_config_refuses_and_creates_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    status, out, err = run([command])
    assert status == 2 and out == ""
    assert err.startswith(f"homevisits: {command} needs your school's settings") and err.count("\n") == 1
    assert "homevisits init" in err
    assert list(tmp_path.iterdir()) == []
    workbook = tmp_path / "log.xlsx"
    School(tmp_path).write([out_today(1)]).workbook.rename(workbook)
    assert run([command, "--source", str(workbook)])[0] == 2  # a sheet alone is no school's mail settings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.xlsx"]


def test_the_demo_fallback_says_demo_data_in_every_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    status, out, err = run(["validate"])
    assert status == 1
    assert out.startswith("DEMO DATA, invented visits: home_visits.xlsx (Home Visits):")
    assert "DEMO DATA" in err and "homevisits init" in err
    run(["validate", "--format", "html", "--output", str(tmp_path / "page.html")])
    assert "DEMO DATA, invented visits" in (tmp_path / "page.html").read_text(encoding="utf-8")
    status, out, _ = run(["validate", "--format", "json"])
    assert json.loads(out)["source"].startswith("DEMO DATA")
    run(["forms", "--visit", "V-134", "--out", str(tmp_path / "forms")])
    form = next((tmp_path / "forms").glob("V-134-*.html")).read_text(encoding="utf-8")
    assert "DEMO DATA" in form
    run(["report", "--out", str(tmp_path / "reports")])
    page = next((tmp_path / "reports").glob("*.html")).read_text(encoding="utf-8")
    assert "DEMO DATA" in page


def test_a_sheet_named_on_the_command_line_is_not_demo_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    workbook = School(tmp_path).write([out_today(1)]).workbook
    status, out, err = run(["validate", "--source", str(workbook), "--now", NOW.isoformat()])
    assert status == 0, err
    assert "DEMO" not in out + err and out.startswith("home_visits.xlsx")


# ---------------------------------------------------------------- init


def test_init_writes_a_starter_config_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(["init", "--policy", "st_edwards", "--source", "logs/visits.xlsx"])
    assert status == 0 and "check-setup" in out
    written = (tmp_path / "homevisits.toml").read_text(encoding="utf-8")
    config = load_config(str(tmp_path / "homevisits.toml"))  # valid as written
    assert config.policy == "st_edwards" and config.source["path"] == "logs/visits.xlsx"
    assert "OMG Education" not in config.school
    (tmp_path / "homevisits.toml").write_text(written + "# mine\n", encoding="utf-8")
    status, _, err = run(["init"])
    assert status == 2 and "already exists" in err
    assert (tmp_path / "homevisits.toml").read_text(encoding="utf-8").endswith("# mine\n")
    status, _, _ = run(
        ["init", "--config", "other.toml", "--source", "https://docs.google.com/spreadsheets/d/k/edit"]
    )
    other = load_config(str(tmp_path / "other.toml"))
    assert "path" not in other.source and other.source["spreadsheet"].endswith("/k/edit")


# ---------------------------------------------------------------- a rehearsal never sends


@pytest.mark.parametrize("command", ["send-forms", "check-returns", "run-scheduled"])
@pytest.mark.parametrize("flag", ["--now", "--dry-run"])
def test_a_rehearsal_sends_nothing_and_writes_nothing(tmp_path, server, command, flag):
    place = school(tmp_path, [out_today(1), planned(2, THURSDAY)], server)
    before = place.workbook.read_bytes()
    moment = london(2026, 11, 23, 12, 45)
    argv = [command, "--config", str(place.config)]
    argv += ["--now", moment.isoformat()] if flag == "--now" else ["--dry-run"]
    status, out, err = run(argv)
    assert status == 0, err
    assert server.messages == []
    assert place.workbook.read_bytes() == before
    assert not place.ledger.exists() and not (tmp_path / "state" / heartbeat.FILE_NAME).exists()
    if flag == "--now":
        assert "is a rehearsal: nothing is sent" in err
        assert "would send:" in out  # the plan, as the real run would carry it out


def test_a_rehearsal_leaves_an_existing_ledger_as_it_was(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server)
    assert place.run("check-returns", london(2026, 11, 23, 12, 1)).status == 0  # the first stage, for real
    before = place.ledger.read_bytes()
    argv = ["run-scheduled", "--config", str(place.config), "--now", london(2026, 11, 23, 12, 40).isoformat()]
    status, out, _ = run(argv)
    assert status == 0 and "would send: V1 smt_alert to 2 recipients" in out
    assert place.ledger.read_bytes() == before  # opened read-only (SQLite may add its empty -wal/-shm)
    wal = place.ledger.with_name(place.ledger.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert not (tmp_path / "state" / heartbeat.FILE_NAME).exists()
    assert [m.message["X-Homevisits-Kind"] for m in server.messages] == ["overdue_alert"]


def test_demo_and_a_config_do_not_mix(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server)
    status, _, err = run(["validate", "--demo", "--config", str(place.config)])
    assert status == 2 and "--demo uses the bundled demo workbook and settings" in err
    for command in ("status", "log"):
        status, _, err = run([command, "--config", str(tmp_path / "missing.toml")])
        assert status == 2 and "does not exist" in err


def test_the_test_only_variable_lets_a_fake_clock_send(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server)
    argv = ["check-returns", "--config", str(place.config), "--now", london(2026, 11, 23, 12, 1).isoformat()]
    with send_at_now():
        assert run(argv)[0] == 0
    assert [m.message["X-Homevisits-Kind"] for m in server.messages] == ["overdue_alert"]


# ---------------------------------------------------------------- the scheduled job is watched


class Heartbeats(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def heartbeat_server():
    handler = type("Recording", (Heartbeats,), {"seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for serve_forever to look again: every poll_interval (0.5 s by default)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/ping/abc", handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_run_scheduled_records_its_run_and_pings_the_heartbeat(tmp_path, server):
    with heartbeat_server() as (url, seen):
        place = school(tmp_path, [out_today(1)], server, heartbeat_url=url)
        assert place.run("run-scheduled", london(2026, 11, 23, 12, 1)).status == 0
        assert seen == [("GET", "/ping/abc")]
        last = heartbeat.read(tmp_path / "state")
        assert last.finished_at == london(2026, 11, 23, 12, 1) and last.status == 0
        assert place.run("check-returns", london(2026, 11, 23, 12, 40)).status == 0  # by hand: not the job
        assert seen == [("GET", "/ping/abc")]
        (tmp_path / "home_visits.xlsx").unlink()  # the next run cannot read the sheet
        assert place.run("run-scheduled", london(2026, 11, 23, 12, 50)).status == 2
        assert seen == [("GET", "/ping/abc"), ("GET", "/ping/abc/fail")]
        assert heartbeat.read(tmp_path / "state").finished_at == london(2026, 11, 23, 12, 1)


def test_an_unreachable_heartbeat_is_a_warning_and_the_alert_still_goes(tmp_path, server):
    import socket

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{spare.getsockname()[1]}/ping"
        place = school(tmp_path, [out_today(1)], server, heartbeat_url=closed)
        result = place.run("run-scheduled", london(2026, 11, 23, 12, 1))
    assert result.status == 0
    assert "warning: the heartbeat URL in [schedule] could not be reached" in result.err
    assert [m.message["X-Homevisits-Kind"] for m in server.messages] == ["overdue_alert"]


def test_status_and_validate_say_when_the_job_last_ran(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server)
    argv = ["status", "--config", str(place.config), "--now", london(2026, 11, 23, 12, 0).isoformat()]
    status, out, _ = run(argv)
    assert status == 1 and out.startswith(
        "WARNING: The scheduled job (homevisits run-scheduled) has never run"
    )
    assert "No ledger yet" in out
    assert place.run("run-scheduled", london(2026, 11, 23, 12, 1)).status == 0
    status, out, _ = run([*argv[:3], "--now", london(2026, 11, 23, 12, 10).isoformat()])
    assert status == 0 and out.startswith("The scheduled job last ran Mon 23 Nov 2026 12:01, 9 minutes ago.")
    assert "1 sent, 0 queued for the next run, 0 refused for good, 0 withdrawn" in out
    late = london(2026, 11, 23, 12, 17).isoformat()
    status, out, _ = run([*argv[:3], "--now", late])
    assert status == 1 and out.startswith(
        "WARNING: The scheduled job last ran Mon 23 Nov 2026 12:01, 16 minutes ago"
    )
    _, text, _ = run(["validate", "--config", str(place.config), "--now", late])
    assert "WARNING: The scheduled job last ran Mon 23 Nov 2026 12:01, 16 minutes ago" in text
    page = tmp_path / "check.html"
    run(["validate", "--config", str(place.config), "--now", late, "--output", str(page)])
    assert "Warning: The scheduled job last ran Mon 23 Nov 2026 12:01, 16 minutes ago" in page.read_text(
        "utf-8"
    )


# ---------------------------------------------------------------- log


def test_log_lists_the_ledger_by_visit_id_only(tmp_path, server):
    rows = [out_today(1), out_today(2, visit_id="-V2", start=(9, 0), end=(10, 0))]
    place = school(tmp_path, rows, server)
    assert place.run("run-scheduled", london(2026, 11, 23, 12, 1)).status == 0
    assert place.run("run-scheduled", london(2026, 11, 23, 12, 40)).status == 0
    before = place.ledger.read_bytes()
    argv = ["log", "--config", str(place.config)]
    status, out, _ = run(argv)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "Queued",
        "Sent",
        "Visit",
        "Kind",
        "Stage",
        "To",
        "Status",
        "Attempts",
        "Withdrawn",
        "Why",
    ]
    assert any("V1" in line and "overdue alert" in line and "1 line manager" in line for line in lines)
    assert any("V1" in line and "smt alert" in line and "2 SMT" in line for line in lines)
    assert "@" not in out and "Sam Teacher" not in out and "Test Street" not in out
    _, only_v1, _ = run([*argv, "--visit", "v1"])
    assert {line.split()[4] for line in only_v1.splitlines()[1:-1]} == {"V1"}
    _, later, _ = run([*argv, "--since", "24/11/2026"])
    assert later == "No messages match.\n"
    _, table, _ = run([*argv, "--format", "csv"])
    cells = list(csv.reader(io.StringIO(table)))
    assert cells[0][2] == "Visit" and all(not c.startswith(("=", "-")) for row in cells for c in row)
    assert any(row[2] == "'-V2" for row in cells[1:])
    assert place.ledger.read_bytes() == before  # read-only


def test_log_without_a_ledger_says_so(tmp_path, server):
    place = school(tmp_path, [out_today(1)], server)
    status, out, err = run(["log", "--config", str(place.config)])
    assert status == 0 and out == "" and "there is no ledger at" in err
    assert not place.ledger.exists()


# ---------------------------------------------------------------- small ones


ROOT = Path(__file__).resolve().parents[1]


def test_validate_prints_text_into_a_pipe_and_make_validate_explains_exit_1(tmp_path):
    import subprocess
    import sys

    place = School(tmp_path).write([out_today(1, approved_by=None)])
    place.config.write_text(
        'policy = "omg_education"\n[source]\npath = "home_visits.xlsx"\n', encoding="utf-8"
    )
    args = ["validate", "--config", str(place.config), "--now", NOW.isoformat()]
    done = subprocess.run(
        [sys.executable, "-m", "homevisits", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and done.stdout.startswith("home_visits.xlsx (Home Visits): 1 visits checked")
    made = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "validate", "ARGS=" + " ".join(args[1:])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert "(homevisits exited 1: the check worked and found errors or alerts to fix)" in made.stdout
    assert "Error 1" not in made.stdout + made.stderr


def test_password_protected_and_damaged_workbooks_are_plain_sentences(tmp_path):
    good = School(tmp_path).write([out_today(1)]).workbook.read_bytes()
    locked = tmp_path / "locked.xlsx"
    locked.write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096
    )  # how Excel saves an encrypted workbook
    status, _, err = run(["validate", "--source", str(locked)])
    assert status == 2 and err.count("\n") == 1
    assert "locked.xlsx is password-protected (encrypted)" in err and "Encrypt with Password" in err
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(good[: len(good) // 2])
    status, _, err = run(["validate", "--source", str(cut)])
    assert status == 2 and err.count("\n") == 1
    assert "cut.xlsx is damaged or incomplete" in err and "EOCD" not in err and "Zip" not in err


def test_an_unexpected_os_error_is_one_sentence(tmp_path):
    workbook = School(tmp_path).write([planned(2, THURSDAY)]).workbook
    status, _, err = run(
        ["forms", "--source", str(workbook), "--out", "/proc/nope", "--now", NOW.isoformat()]
    )
    assert status == 2
    assert (
        err.strip().splitlines()[-1] == "homevisits: cannot write to /proc/nope: No such file or directory."
    )
    assert "Traceback" not in err and "FileNotFoundError" not in err


def test_the_missing_columns_error_mentions_init_sheet(tmp_path):
    from workbooks import write_workbook

    workbook = write_workbook(tmp_path / "log.xlsx", [out_today(1)], columns=["Visit ID", "Learner name"])
    status, _, err = run(["validate", "--source", str(workbook)])
    assert status == 2 and "homevisits init-sheet adds the missing columns" in err


@pytest.mark.parametrize(
    ("start", "end"),
    [("1/9/25", "2026-08-31"), ("2026-01-01", "2026-08-31"), ("2025-03-15", "2025-08-31")],
)
def test_a_report_from_a_day_alone_ends_within_12_months_or_at_31_august(tmp_path, start, end):
    workbook = School(tmp_path).write([out_today(1)]).workbook
    out = tmp_path / "reports"
    status, _, err = run(["report", "--source", str(workbook), "--from", start, "--out", str(out)])
    assert status == 0, err
    (page,) = out.glob("*.html")
    assert page.name.endswith(f"-to-{end}.html")
