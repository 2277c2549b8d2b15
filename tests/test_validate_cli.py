"""`homevisits validate` as an admin runs it: real workbooks, the real console command, exit codes,
one clear sentence when it cannot check, the JSON contract, and headers as schools really write them.

Most tests run the command's own ``cli.main`` in this process (``homevisits``); the installed command
runs as a process of its own where the process is what is tested: exit 0, 1 and 2 as the shell sees
them, a config named by the environment, and the fast exit that still flushes and runs exit handlers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homevisits import cli
from homevisits.policy import POLICY_DIR
from workbooks import ALL_HEADERS, FUTURE, NOW, PAST, visit, write_workbook

COMMAND = Path(sys.executable).with_name("homevisits")
NOW_ISO = "2026-11-23T12:00"
CONTRACT = {"source", "policy", "checked_at", "rows", "summary", "findings"}
FINDING_KEYS = {
    "rule",
    "severity",
    "row",
    "visit_id",
    "column",
    "message",
    "fix",
    "clause",
    "field",
    "values",
}


def installed_command(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console command in ``cwd``, with no config from the caller's environment: for
    what only the real process shows (its exit status, and its output, as the shell gets them)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOMEVISITS_")}
    environment.update(env or {})
    return subprocess.run(
        [str(COMMAND), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def homevisits(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``homevisits ARGS`` run in this process by the command's own ``cli.main``, in ``cwd`` and with
    no config from the caller's environment; its exit status and output as the process would give
    them (a subprocess for each would cost a second of imports: see installed_command)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("HOMEVISITS_")]:
            patch.delenv(name)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(list(args))
            except SystemExit as exc:  # argparse's own usage errors
                status = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess([str(COMMAND), *args], status, out.getvalue(), err.getvalue())


def config_file(folder: Path, text: str, name: str = "homevisits.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def school(folder: Path, rows: list, policy: str = "omg_education", extra: str = "", **options) -> Path:
    """A school's set-up: logs/home_visits.xlsx and a homevisits.toml naming it; returns the config."""
    write_workbook(
        folder / "logs" / "home_visits.xlsx", rows, columns=options.pop("columns", ALL_HEADERS), **options
    )
    return config_file(
        folder,
        f'policy = "{policy}"\ntimezone = "Europe/London"\n[source]\npath = "logs/home_visits.xlsx"\n{extra}',
    )


def validate_json(capsys, *args: str) -> tuple[int, dict]:
    """cli.main in-process; returns the exit status and the parsed JSON report."""
    status = cli.main(["validate", "--now", NOW_ISO, "--format", "json", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, json.loads(out)


def as_tuples(report: dict) -> list[tuple]:
    return [(f["rule"], f["severity"], f["row"], f["visit_id"], f["column"]) for f in report["findings"]]


@pytest.fixture(autouse=True)
def _no_config_from_outside(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("HOMEVISITS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------- exit status 0 and 1


def test_exit_0_when_nothing_worse_than_warnings_and_info(tmp_path):
    rows = [
        visit(2),
        visit(3, returned_at="12:15"),  # confirmed late: a warning
        visit(4, "planned", form_sent_at=None),  # form due in future: info
    ]
    cfg = school(tmp_path, rows)
    done = installed_command(
        "validate", "--config", str(cfg), "--now", NOW_ISO, "--format", "json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"] == {"alert": 0, "error": 0, "warning": 1, "info": 1}
    assert as_tuples(report) == [
        ("HV023", "warning", 3, "V3", "Returned safely at"),
        ("HV009", "info", 4, "V4", "Form sent at"),
    ]


def test_the_command_leaves_quickly_but_flushes_its_output_and_runs_exit_handlers(tmp_path):
    """command() skips freeing the checked log at exit; everything a normal exit does still happens."""
    cfg = school(tmp_path, [visit(row, risk_level="HIGH") for row in range(2, 402)])
    script = (
        "import atexit, sys\n"
        "from homevisits import cli\n"
        "atexit.register(lambda: print('exit handler ran', file=sys.stderr))\n"
        f"sys.argv = ['homevisits', 'validate', '--config', {str(cfg)!r}, '--now', {NOW_ISO!r}, '--format', 'json']\n"
        "cli.command()\n"
        "print('not reached', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert len(json.loads(done.stdout)["findings"]) == 400  # all of it, through a pipe
    assert done.stderr.splitlines() == ["exit handler ran"]


def test_exit_0_for_a_clean_log_and_text_says_nothing_to_fix(tmp_path):
    cfg = school(tmp_path, [visit(2), visit(3, "planned")])
    done = homevisits("validate", "--config", str(cfg), "--now", NOW_ISO, "--format", "text", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 visits checked against OMG Education" in done.stdout
    assert done.stdout.rstrip().endswith("0 alerts, 0 errors, 0 warnings, 0 infos - nothing to fix.")


def test_exit_1_on_an_error(tmp_path):
    cfg = school(tmp_path, [visit(2), visit(3, risk_level="HIGH")])
    done = installed_command(
        "validate", "--config", str(cfg), "--now", NOW_ISO, "--format", "json", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert as_tuples(json.loads(done.stdout)) == [("HV003", "error", 3, "V3", "Risk level")]


def test_exit_1_on_an_alert_and_text_lists_alerts_first(tmp_path):
    overdue = visit(3, "planned", date=NOW.date(), start=(9, 0), end=(11, 0))
    cfg = school(tmp_path, [visit(2, risk_level="HIGH"), overdue])
    done = homevisits("validate", "--config", str(cfg), "--now", NOW_ISO, "--format", "text", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    text = done.stdout
    assert text.index("ALERTS (1)") < text.index("ERRORS (1)")
    assert "HV022 row 3 V3 [Returned safely at]" in text
    assert "HV003 row 2 V2 [Risk level]" in text
    assert text.rstrip().splitlines()[-1] == "Summary: 1 alert, 1 error, 0 warnings, 0 infos."


# ---------------------------------------------------------------- --format json, --output, html


def test_json_matches_the_contract_exactly(tmp_path, capsys):
    rows = [visit(2), visit(3, approved_by=None), visit(4, "planned", form_sent_at=None)]
    cfg = school(tmp_path, rows)
    status, report = validate_json(capsys, "--config", str(cfg))
    assert status == 1
    assert set(report) == CONTRACT
    assert set(report["summary"]) == {"alert", "error", "warning", "info"}
    assert report["summary"] == {"alert": 0, "error": 1, "warning": 0, "info": 1}
    assert report["source"] == "home_visits.xlsx (Home Visits)"
    assert report["policy"] == "OMG Education"
    assert report["checked_at"] == "2026-11-23T12:00:00+00:00"
    assert report["rows"] == 3
    for finding in report["findings"]:
        assert set(finding) == FINDING_KEYS
        assert all(isinstance(finding[k], str) for k in ("rule", "severity", "message", "fix", "clause"))
        assert isinstance(finding["row"], int)
    assert as_tuples(report) == [
        ("HV007", "error", 3, "V3", "Approved by"),
        ("HV009", "info", 4, "V4", "Form sent at"),
    ]
    assert report["findings"][0]["clause"].startswith("OMG Education §1")


def test_output_writes_the_report_to_a_file(tmp_path):
    cfg = school(tmp_path, [visit(2), visit(3, approved_by=None)])
    target = tmp_path / "reports" / "check.json"
    done = homevisits(
        "validate",
        "--config",
        str(cfg),
        "--now",
        NOW_ISO,
        "--format",
        "json",
        "--output",
        str(target),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    report = json.loads(target.read_text(encoding="utf-8"))
    assert as_tuples(report) == [("HV007", "error", 3, "V3", "Approved by")]
    assert not [p for p in target.parent.iterdir() if p.name != "check.json"]


def test_output_without_format_is_json(tmp_path):
    cfg = school(tmp_path, [visit(2)])
    target = tmp_path / "check.json"
    done = homevisits(
        "validate", "--config", str(cfg), "--now", NOW_ISO, "--output", str(target), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(target.read_text(encoding="utf-8"))) == CONTRACT


def test_html_is_a_page_with_the_sheet_text_escaped(tmp_path, capsys):
    cfg = school(tmp_path, [visit(2), visit(3, approved_by=None, visit_id="<b>V3</b>")])
    status = cli.main(["validate", "--config", str(cfg), "--now", NOW_ISO, "--format", "html"])
    page = capsys.readouterr().out
    assert status == 1
    assert "<html" in page.lower()
    assert "<b>V3</b>" not in page
    assert "&lt;b&gt;V3&lt;/b&gt;" in page


# ---------------------------------------------------------------- exit status 2: one clear sentence


def assert_one_sentence(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    err = done.stderr.strip()
    assert "Traceback" not in err and "unexpected problem" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("homevisits: ") and err.endswith((".", "?")), err
    for needle in needles:
        assert needle in err, err
    return err


def _config_for(tmp_path: Path, path: str, extra: str = "") -> Path:
    return config_file(tmp_path, f'policy = "omg_education"\n[source]\npath = "{path}"\n{extra}')


def test_2_missing_workbook(tmp_path):
    cfg = _config_for(tmp_path, "logs/nowhere.xlsx")
    done = installed_command("validate", "--config", str(cfg), "--now", NOW_ISO, cwd=tmp_path)
    assert_one_sentence(done, "nowhere.xlsx", "does not exist")
    assert not (tmp_path / "logs").exists()


def test_2_missing_workbook_given_by_source_without_a_config(tmp_path):
    done = homevisits("validate", "--source", "nowhere.xlsx", "--now", NOW_ISO, cwd=tmp_path)
    assert not (tmp_path / "nowhere.xlsx").exists()
    assert_one_sentence(done, "nowhere.xlsx", "does not exist")


def test_2_folder_instead_of_a_workbook(tmp_path):
    (tmp_path / "logs.xlsx").mkdir()
    cfg = _config_for(tmp_path, "logs.xlsx")
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "is a folder")


def test_2_csv_file(tmp_path):
    (tmp_path / "log.csv").write_text("Visit ID,Visit date\nV1,23/11/2026\n", encoding="utf-8")
    cfg = _config_for(tmp_path, "log.csv")
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "log.csv", ".xlsx")


@pytest.mark.parametrize("content", [b"this is not a workbook", b"PK\x03\x04 truncated zip"])
def test_2_corrupt_workbook(tmp_path, content):
    (tmp_path / "broken.xlsx").write_bytes(content)
    cfg = _config_for(tmp_path, "broken.xlsx")
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "broken.xlsx")


def test_2_unknown_worksheet(tmp_path):
    cfg = school(tmp_path, [visit(2)])
    done = homevisits("validate", "--config", str(cfg), "--worksheet", "Visits 2025", cwd=tmp_path)
    assert_one_sentence(done, "Visits 2025", "Home Visits")


def test_2_missing_required_columns_names_them_with_the_closest_header(tmp_path):
    columns = [h for h in ALL_HEADERS if h not in ("Lead staff", "Status")] + [
        "Lead Staff Name",
        "Visit Status Now",
    ]
    rows = [visit(2)]
    for row in rows:
        row["Lead Staff Name"] = row.pop("Lead staff")
        row["Visit Status Now"] = row.pop("Status")
    cfg = school(tmp_path, rows, columns=columns)
    err = assert_one_sentence(
        homevisits("validate", "--config", str(cfg), "--now", NOW_ISO, cwd=tmp_path),
        "missing 2 columns",
        "'Lead staff' (is it 'Lead Staff Name'?)",
        "'Status' (is it 'Visit Status Now'?)",
        "[columns]",
    )
    assert "home_visits.xlsx" in err


def test_2_missing_column_that_hv001_requires(tmp_path):
    columns = [h for h in ALL_HEADERS if h != "Parent/carer phone"]
    rows = [visit(2), visit(3)]
    for row in rows:
        del row["Parent/carer phone"]
    cfg = school(tmp_path, rows, columns=columns)
    done = homevisits("validate", "--config", str(cfg), "--now", NOW_ISO, cwd=tmp_path)
    assert_one_sentence(done, "'Parent/carer phone'")


@pytest.mark.parametrize("now", ["tomorrow", "23/11/2026 09:00", "2026-13-01T09:00"])
def test_2_bad_now(tmp_path, now):
    cfg = school(tmp_path, [visit(2)])
    done = homevisits("validate", "--config", str(cfg), "--now", now, cwd=tmp_path)
    assert_one_sentence(done, "--now", "ISO 8601")


def test_2_unknown_policy(tmp_path):
    cfg = school(tmp_path, [visit(2)])
    done = homevisits("validate", "--config", str(cfg), "--policy", "hogwarts", cwd=tmp_path)
    assert_one_sentence(done, "hogwarts", "omg_education")


def test_2_bad_config_toml(tmp_path):
    cfg = config_file(tmp_path, 'policy = "omg_education"\n[source\npath = "x.xlsx"\n')
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "homevisits.toml", "TOML")


def test_2_unknown_config_key(tmp_path):
    cfg = config_file(tmp_path, 'policy = "omg_education"\npolcy = "one_mat"\n[source]\npath = "x.xlsx"\n')
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "polcy")


@pytest.mark.parametrize("section", ["mail", "source"])
def test_2_password_in_the_config(tmp_path, section):
    text = 'policy = "omg_education"\n[source]\npath = "x.xlsx"\n'
    text += f'[{section}]\npassword = "hunter2"\n' if section == "mail" else 'password = "hunter2"\n'
    cfg = config_file(tmp_path, text)
    err = assert_one_sentence(
        homevisits("validate", "--config", str(cfg), cwd=tmp_path), "password", "environment"
    )
    assert "hunter2" not in err


def test_2_config_file_that_does_not_exist(tmp_path):
    done = homevisits("validate", "--config", "nowhere.toml", cwd=tmp_path)
    assert_one_sentence(done, "nowhere.toml")


def test_2_columns_mapping_to_an_unknown_field(tmp_path):
    cfg = school(tmp_path, [visit(2)], extra='[columns]\n"Date of visit" = "visit_day"\n')
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "visit_day", "visit_date")


def test_2_empty_sheet_and_sheet_without_headers(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Home Visits"
    book.save(tmp_path / "empty.xlsx")
    cfg = _config_for(tmp_path, "empty.xlsx")
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "empty")
    write_workbook(tmp_path / "nohead.xlsx", [{"Colour": "red", "Size": 3}])
    cfg = _config_for(tmp_path, "nohead.xlsx")
    assert_one_sentence(homevisits("validate", "--config", str(cfg), cwd=tmp_path), "header row")


def test_config_from_the_environment_variable(tmp_path):
    cfg = school(tmp_path / "school", [visit(2), visit(3, risk_level="HIGH")])
    done = installed_command(
        "validate", "--now", NOW_ISO, "--format", "json", cwd=tmp_path, env={"HOMEVISITS_CONFIG": str(cfg)}
    )
    assert done.returncode == 1, done.stderr
    assert as_tuples(json.loads(done.stdout)) == [("HV003", "error", 3, "V3", "Risk level")]


# ---------------------------------------------------------------- headers as schools write them


def test_header_under_title_rows_and_blank_rows(tmp_path, capsys):
    rows = [visit(5), None, visit(7, approved_by=None), None, None]
    cfg = school(
        tmp_path,
        rows,
        title_rows=[["Home Visits Log 2026/27"], ["Keep this sheet up to date", None, "Owner: office"]],
        blank_before=1,
    )
    # sheet: row 1 blank, rows 2-3 titles, row 4 headers, visits on rows 5 and 7, blank rows between
    status, report = validate_json(capsys, "--config", str(cfg))
    assert report["rows"] == 2
    assert as_tuples(report) == [("HV007", "error", 7, "V7", "Approved by")]
    assert status == 1


def test_headers_matched_ignoring_case_spaces_punctuation_and_through_aliases(tmp_path, capsys):
    rename = {
        "visit_date": "Date of visit",  # alias
        "learner_name": "PUPIL",  # alias, shouted
        "start_time": "  start   TIME ",  # spacing and case
        "parent_consent": "Parent / Carer  Consent",  # punctuation and spacing
        "approved_by": "approved-by",
        "phone_taken": "Phone number that will be taken on the visit",  # OMG's Appendix A wording
        "form_sent_at": "Sent to Jamal Miah via email (date and time)",
        "risk_level": "Risk rating",
        "expected_return": "Time of expected return",
    }
    rows = [
        visit(2),
        visit(3, approved_by=None, parent_consent="NO", phone_taken=None, risk_level="h"),
    ]
    cfg = school(tmp_path, rows, rename=rename)
    status, report = validate_json(capsys, "--config", str(cfg))
    assert status == 1
    assert as_tuples(report) == [
        ("HV003", "error", 3, "V3", "Risk rating"),
        ("HV006", "error", 3, "V3", "Parent / Carer Consent"),
        ("HV007", "error", 3, "V3", "approved-by"),
        ("HV016", "error", 3, "V3", "Phone number that will be taken on the visit"),
    ]


def test_columns_table_maps_a_schools_own_headers(tmp_path, capsys):
    rename = {"visit_date": "When we go", "lead_staff": "Who is going", "approved_by": "OK'd by"}
    rows = [visit(2), visit(3, approved_by=None)]
    extra = (
        '[columns]\n"When we go" = "visit_date"\n"who is going" = "lead_staff"\n"OK\'d by" = "approved_by"\n'
    )
    cfg = school(tmp_path, rows, rename=rename, extra=extra)
    status, report = validate_json(capsys, "--config", str(cfg))
    assert as_tuples(report) == [("HV007", "error", 3, "V3", "OK'd by")]
    assert status == 1
    # without the mapping, the required columns are missing: one clear error naming them
    plain = school(tmp_path / "plain", rows, rename=rename)
    assert cli.main(["validate", "--config", str(plain), "--now", NOW_ISO]) == 2
    err = capsys.readouterr().err
    assert "'Visit date'" in err and "'Lead staff'" in err and "Traceback" not in err


def _serial(day: dt.date, date1904: bool) -> int:
    epoch = dt.date(1904, 1, 1) if date1904 else dt.date(1899, 12, 30)
    return (day - epoch).days


@pytest.mark.parametrize("date1904", [True, False])
def test_serial_numbers_in_a_plain_date_column_respect_the_1904_system(tmp_path, capsys, date1904):
    rows = [
        visit(2, visit_date=_serial(PAST, date1904)),
        visit(3, "planned", visit_date=_serial(FUTURE, date1904), form_sent_at=None),
        visit(4, "planned", visit_date=FUTURE, form_sent_at=None),  # a real date cell in the same workbook
    ]
    cfg = school(tmp_path, rows, epoch1904=date1904, number_format={"visit_date": "0"})
    status, report = validate_json(capsys, "--config", str(cfg))
    assert status == 0
    assert as_tuples(report) == [
        ("HV009", "info", 3, "V3", "Form sent at"),
        ("HV009", "info", 4, "V4", "Form sent at"),
    ]
    deadline = "The risk assessment form is due by Wed 25 Nov 2026 10:00 (24 hours before the visit)."
    assert [f["message"] for f in report["findings"]] == [deadline, deadline]


def test_worksheet_chosen_by_name(tmp_path, capsys):
    rows = [visit(2), visit(3, approved_by=None)]
    write_workbook(
        tmp_path / "log.xlsx", rows, columns=ALL_HEADERS, sheet="Autumn", sheets_before=["Read me", "Lists"]
    )
    cfg = config_file(
        tmp_path, 'policy = "omg_education"\n[source]\npath = "log.xlsx"\nworksheet = "Autumn"\n'
    )
    status, report = validate_json(capsys, "--config", str(cfg))
    assert (status, as_tuples(report)) == (1, [("HV007", "error", 3, "V3", "Approved by")])
    assert report["source"] == "log.xlsx (Autumn)"
    # --worksheet wins over the config, and matches ignoring case
    status, report = validate_json(capsys, "--config", str(cfg), "--worksheet", "autumn")
    assert report["source"] == "log.xlsx (Autumn)"
    # the default is the first worksheet, which here is not the log
    cfg = config_file(tmp_path, 'policy = "omg_education"\n[source]\npath = "log.xlsx"\n', name="first.toml")
    assert cli.main(["validate", "--config", str(cfg), "--now", NOW_ISO]) == 2
    assert "header row" in capsys.readouterr().err


def test_source_and_policy_options_override_the_config(tmp_path, capsys):
    cfg = school(tmp_path, [visit(2)])
    other = write_workbook(
        tmp_path / "other.xlsx", [visit(2), visit(3, second_staff=None)], columns=ALL_HEADERS
    )
    status, report = validate_json(
        capsys, "--config", str(cfg), "--source", str(other), "--policy", "one_mat"
    )
    assert report["policy"] == "ONE MAT Academies Trust"
    assert report["source"].startswith("other.xlsx")
    assert (status, as_tuples(report)) == (1, [("HV010", "error", 3, "V3", "Second staff")])


def test_a_schools_edited_copy_of_a_profile(tmp_path, capsys):
    text = (POLICY_DIR / "omg_education.toml").read_text(encoding="utf-8")
    assert "deadline_hours = 24" in text
    copy = tmp_path / "our_policy.toml"
    copy.write_text(text.replace("deadline_hours = 24", "deadline_hours = 48"), encoding="utf-8")
    cfg = school(tmp_path, [visit(2, "planned", form_sent_at=None)], policy="our_policy.toml")
    status, report = validate_json(capsys, "--config", str(cfg))
    assert status == 0
    assert report["findings"][0]["message"] == (
        "The risk assessment form is due by Tue 24 Nov 2026 10:00 (48 hours before the visit)."
    )


def test_every_shipped_profile_validates_the_same_log(tmp_path, capsys):
    rows = [visit(2), visit(3, "planned")]
    for policy in sorted(p.stem for p in POLICY_DIR.glob("*.toml")):
        cfg = school(tmp_path / policy, rows, policy=policy)
        status, report = validate_json(capsys, "--config", str(cfg))
        assert (status, report["findings"]) == (0, []), policy


def test_output_file_gets_ordinary_permissions(tmp_path):
    import os

    from homevisits.cli import write_output

    target = tmp_path / "report.json"
    mask = os.umask(0o022)
    try:
        write_output("{}", str(target))
    finally:
        os.umask(mask)
    assert target.read_text() == "{}" and (target.stat().st_mode & 0o777) == 0o644
