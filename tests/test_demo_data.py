"""The demo workbook: built around a fixed ``now``, read back through the real pipeline, every rule shown."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from homevisits.demo_data import (
    ALIAS_HEADERS,
    BAD_CELLS,
    DEMO_CASES,
    DEMO_CLEAN,
    SHEET_NAME,
    build_demo_workbook,
    demo_visits,
)
from homevisits.schema import find_header_row, load_schema, map_headers
from homevisits.sources import excel
from homevisits.visits import build_visits

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 3, 24, 11, 20, tzinfo=LONDON)  # a Tuesday; the clocks go forward on the 29th
LATER_NOW = dt.datetime(2026, 11, 23, 14, 5, tzinfo=LONDON)
ALL_RULES = [f"HV{n:03d}" for n in (*range(1, 29), 31) if n != 18]
DEMO_ROWS = 45  # visits in the demo log (one of them pasted twice: V-142), whatever ``now`` is
HAVE_POLICY = importlib.util.find_spec("homevisits.policy") is not None


def parsed(path: Path):
    schema = load_schema()
    raw = excel.read(path)
    header_pos = find_header_row(raw.rows, schema)
    mapping = map_headers(raw.rows[header_pos], schema)
    return raw, header_pos, mapping, build_visits(raw, schema, mapping, header_pos, LONDON)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = build_demo_workbook(tmp_path_factory.mktemp("demo") / "demo" / "home_visits.xlsx", NOW)
    return path, *parsed(path)


def visit_ids_of(visits, rows):
    by_row = dict(zip(visits.frame["row"], visits.frame["visit_id"], strict=True))
    return [by_row[r] for r in rows]


def test_the_workbook_looks_like_a_school_log(demo):
    from openpyxl import load_workbook

    path, *_ = demo
    assert path.is_file() and not list(path.parent.glob(".*partial"))
    book = load_workbook(path)
    assert book.sheetnames == [SHEET_NAME]
    sheet = book[SHEET_NAME]
    assert "invented" in sheet["A1"].value
    assert all(cell.value is None for cell in sheet[2])
    headers = [cell.value for cell in sheet[3]]
    assert len(headers) == 44  # 43 + Line manager mobile (texts)
    assert {"Date of visit", "Time of expected return", "Visit ID", "Status"} <= set(headers)


def test_every_column_maps_from_the_header_row_under_the_title(demo):
    _, raw, header_pos, mapping, visits = demo
    assert raw.worksheet == SHEET_NAME
    assert header_pos == 2  # title, blank, header
    assert set(mapping.positions) == set(load_schema().fields)
    assert mapping.unmapped == []
    for name, header in ALIAS_HEADERS.items():
        assert mapping.headers[name] == header
    assert len(visits) == DEMO_ROWS
    assert visits.frame["row"].iloc[0] == 4
    assert len(raw.rows) - 3 == len(visits) + 1  # one blank line among the visits is skipped


def test_only_the_bad_cells_are_reported(demo):
    _, _, _, _, visits = demo
    found = set(
        zip(
            visit_ids_of(visits, [p.row for p in visits.problems]),
            [p.field for p in visits.problems],
            strict=True,
        )
    )
    assert found == BAD_CELLS
    raws = {p.field: p.raw for p in visits.problems}
    assert raws == {"visit_date": raws["visit_date"], "phone_taken": "12345"}
    assert {p.raw for p in visits.problems if p.field == "visit_date"} == {"01/13/2026", "tomorrow-ish"}


def test_every_cell_reads_as_staff_meant_it(demo):
    """Messy spellings (3/4/26, 2.30pm, 7700900123, a tick, ' Med', 'nobody home'...) parse to what was meant."""
    _, _, _, _, visits = demo
    plan = [v for v in demo_visits(NOW) if v is not None]
    schema = load_schema()
    assert len(plan) == len(visits)
    checked = 0
    for position, visit in enumerate(plan):
        record = visits.record(position)
        for column in schema.columns:
            meant = visit.meant[column.field]
            got = record[column.field]
            if column.type == "datetime":
                if visit.meant["visit_date"] is None:
                    continue  # a bare time has no date to sit on
                got = got.replace(tzinfo=None) if got is not None else None
            assert got == meant, (visit.meant["visit_id"], column.field, got, meant)
            checked += 1
    assert checked > 40 * 40


def test_the_sheet_holds_the_habits_people_type(demo):
    _, raw, header_pos, mapping, _ = demo
    body = [row for row in raw.rows[header_pos + 1 :] if any(c not in (None, "") for c in row)]

    def column(name):
        return [row[mapping.positions[name]] for row in body]

    dates = column("visit_date")
    assert any(isinstance(d, dt.date) for d in dates)
    assert any(isinstance(d, float) and 40000 < d < 60000 for d in dates)  # a serial number
    assert any(isinstance(d, str) and re.fullmatch(r"\d{1,2}/\d{1,2}/\d{2}", d) for d in dates)
    assert any(
        isinstance(d, str) and re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}(st|nd|rd|th) [A-Z][a-z]+ \d{4}", d)
        for d in dates
    )
    times = column("start_time") + column("expected_return")
    assert any(isinstance(t, dt.time) for t in times)
    assert any(isinstance(t, str) and re.fullmatch(r"\d{1,2}\.\d{2}[ap]m", t) for t in times)
    assert any(isinstance(t, float) and t >= 100 for t in times)  # 1430 typed as a number
    assert any(isinstance(t, str) and re.fullmatch(r"\d{1,2}\.\d{2}", t) for t in times)
    durations = column("expected_duration")
    assert "1h" in durations and any(isinstance(d, str) and d.endswith(" mins") for d in durations)
    phones = column("phone_taken") + column("parent_phone") + column("learner_phone")
    assert any(isinstance(p, float) and 7_700_900_000 <= p <= 7_700_900_999 for p in phones)
    assert any(isinstance(p, str) and p.startswith("+44 7700 900") for p in phones)
    yes_no = column("safeguarding_informed") + column("safe_word_agreed") + column("parent_consent")
    assert {"y", "✓", "TRUE"} <= {y for y in yes_no if isinstance(y, str)}
    assert {" Med", "h"} <= set(column("risk_level"))
    assert {"booked", "done", "nobody home"} <= set(column("status"))


def test_no_real_looking_contact_details(demo):
    _, raw, header_pos, mapping, _ = demo
    for row in raw.rows[header_pos + 1 :]:
        for name in ("learner_phone", "parent_phone", "phone_taken"):
            value = row[mapping.positions[name]] if row else None
            if value in (None, "", "12345"):
                continue
            digits = re.sub(r"\D", "", str(int(value)) if isinstance(value, float) else value)
            digits = "0" + digits[2:] if digits.startswith("44") else digits
            digits = digits if digits.startswith("0") else "0" + digits
            assert re.fullmatch(r"07700900\d{3}|01134960\d{3}", digits), value
        for name in ("staff_email", "line_manager_email"):
            value = row[mapping.positions[name]] or None
            assert value is None or value.endswith("@school.example") or value.endswith("@school.example>")
        postcode = row[mapping.positions["postcode"]] or None
        assert postcode is None or postcode.endswith("XX")


@pytest.mark.parametrize("now", [NOW, LATER_NOW], ids=["march", "november"])
def test_dates_follow_now(tmp_path, now):
    _, _, _, visits = parsed(build_demo_workbook(tmp_path / "demo.xlsx", now))
    frame = visits.frame.set_index("visit_id")
    instant = pd.Timestamp(now).tz_convert("UTC")
    today = pd.Timestamp(now.date())

    def one(vid, name):
        value = frame.loc[vid, name]
        return value.iloc[0] if isinstance(value, pd.Series) else value

    assert one("V-132", "visit_date") == today
    assert (
        one("V-132", "return_due_at") + pd.Timedelta(minutes=30) < instant
    )  # overdue for the safe-return call
    assert one("V-131", "start_at") <= instant < one("V-131", "return_due_at")  # under way
    assert instant < one("V-134", "start_at") < instant + pd.Timedelta(hours=24)  # form deadline passed
    assert one("V-135", "start_at") > instant + pd.Timedelta(hours=24)  # form due soon
    assert 18 <= (today - one("V-101", "visit_date")).days <= 30
    completed = frame[frame["status"] == "Completed"].drop(index="V-141")
    assert (completed["visit_date"].dropna() < today).all()
    assert one("V-141", "visit_date") > today


def test_the_same_now_builds_the_same_workbook(tmp_path):
    from homevisits.demo_data import demo_rows

    assert demo_rows(NOW) == demo_rows(NOW)
    assert demo_rows(NOW) != demo_rows(LATER_NOW)


def test_demo_cases_name_every_rule_and_real_rows():
    ids = {v.meant["visit_id"] for v in demo_visits(NOW) if v is not None}
    assert sorted(DEMO_CASES) == ALL_RULES
    assert all(vids and set(vids) <= ids for vids in DEMO_CASES.values())
    assert set(DEMO_CLEAN) <= ids
    assert not set(DEMO_CLEAN) & {vid for vids in DEMO_CASES.values() for vid in vids}


# ---------------------------------------------------------------- with the rules (policy.py)

needs_policy = pytest.mark.skipif(not HAVE_POLICY, reason="homevisits.policy (the rules) is not written yet")


@pytest.fixture(scope="module")
def findings_by_profile(demo):
    from homevisits.policy import check, load_policy, policy_names

    _, _, _, _, visits = demo
    names = policy_names()
    assert len(names) == 5
    return {name: check(visits, load_policy(name), NOW) for name in names}


@needs_policy
@pytest.mark.parametrize("rule", ALL_RULES)
def test_each_rule_fires_on_its_demo_visits(findings_by_profile, rule):
    fired = {f.visit_id for findings in findings_by_profile.values() for f in findings if f.rule == rule}
    assert set(DEMO_CASES[rule]) <= fired, f"{rule} did not fire on {set(DEMO_CASES[rule]) - fired}"


@needs_policy
def test_clean_visits_break_nothing(findings_by_profile):
    for name, findings in findings_by_profile.items():
        for f in findings:
            if f.visit_id in DEMO_CLEAN:
                assert f.severity not in ("error", "alert"), (name, f)
                assert name != "omg_education", f


@needs_policy
def test_the_overdue_visit_is_an_alert_naming_staff_and_phone(findings_by_profile):
    alerts = [f for f in findings_by_profile["omg_education"] if f.severity == "alert"]
    assert [(f.rule, f.visit_id) for f in alerts] == [("HV022", "V-132")]
    assert "07700 900" in alerts[0].message


def run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HOMEVISITS_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "homevisits", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_policy
def test_validate_the_demo_under_omg_education(demo, tmp_path):
    pytest.importorskip("homevisits.cli")
    path = demo[0]
    now = NOW.isoformat()
    done = run_cli(
        "validate",
        "--source",
        str(path),
        "--policy",
        "omg_education",
        "--now",
        now,
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == len(demo[4])
    assert report["summary"]["alert"] >= 1 and report["summary"]["error"] >= 10
    from homevisits.policy import load_policy

    rules = {f["rule"] for f in report["findings"]}
    # the demo shows every rule the profile enables, except the two about the sheet itself: every header
    # of the demo log is placed and it has no phantom rows (HV029), and an Excel file has no locale (HV030)
    assert rules == set(load_policy("omg_education").rules) - {"HV029", "HV030"}


def expected_findings(visits, rules):
    """(rule, sheet row) of every finding DEMO_CASES promises for ``rules``: a visit's every row
    (V-142 is on two)."""
    rows: dict[str, list[int]] = {}
    for row, vid in zip(visits.frame["row"], visits.frame["visit_id"], strict=True):
        rows.setdefault(vid, []).append(int(row))
    return sorted((rule, row) for rule in rules for vid in DEMO_CASES[rule] for row in rows[vid])


@needs_policy
def test_omg_education_finds_exactly_the_demo_cases(demo, findings_by_profile):
    from homevisits.policy import load_policy

    visits = demo[4]
    enabled = [rule for rule in ALL_RULES if rule in load_policy("omg_education").rules]
    found = sorted((f.rule, f.row) for f in findings_by_profile["omg_education"])
    assert found == expected_findings(visits, enabled)


@needs_policy
@pytest.mark.parametrize("now", [NOW, LATER_NOW], ids=["march", "november"])
def test_validate_with_no_config_builds_the_demo_around_now_and_checks_it(tmp_path, monkeypatch, capsys, now):
    """The demo workbook is built from --now (not the real clock): the answer is exact."""
    from homevisits.cli import main
    from homevisits.policy import load_policy

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    code = main(["validate", "--now", now.isoformat(), "--format", "json"])
    out, err = capsys.readouterr()
    workbook = tmp_path / "demo" / "home_visits.xlsx"
    assert workbook.is_file()
    assert code == 1, err
    report = json.loads(out)
    assert report["rows"] == DEMO_ROWS
    assert report["checked_at"] == now.isoformat(timespec="seconds")
    *_, visits = parsed(workbook)
    assert visits.records() == parsed(build_demo_workbook(tmp_path / "again.xlsx", now))[3].records()
    enabled = [rule for rule in ALL_RULES if rule in load_policy("omg_education").rules]
    found = sorted((f["rule"], f["row"]) for f in report["findings"])
    assert found == expected_findings(visits, enabled)


def test_the_demo_workbook_script_takes_now(tmp_path, capsys):
    from homevisits.demo_data import main

    target = tmp_path / "built.xlsx"
    assert main([str(target), "--now", "2026-03-24T11:20"]) == 0
    assert capsys.readouterr().out == f"{target}\n"
    assert (
        parsed(target)[3].records() == parsed(build_demo_workbook(tmp_path / "same.xlsx", NOW))[3].records()
    )
    assert main([str(tmp_path / "x.xlsx"), "--now", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("homevisits: --now 'soon' is not an ISO 8601 date and time")
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("built", ["23:30", "23:50", "23:58", "00:01"])
def test_a_demo_built_before_midnight_still_has_one_overdue_visit_just_after(tmp_path, built):
    """The demo's visits under way stay under way across midnight: built late in the evening and run a
    few minutes later (the next day), only V-132 is overdue, as at any other hour."""
    from homevisits.policy import check, load_policy

    day = dt.date(2026, 12, 1) if built.startswith("23") else dt.date(2026, 12, 2)
    moment = dt.datetime.combine(day, dt.time.fromisoformat(built), tzinfo=LONDON)
    path = build_demo_workbook(tmp_path / "home_visits.xlsx", moment)
    for later in (dt.timedelta(minutes=5), dt.timedelta(minutes=25)):
        findings = check(parsed(path)[3], load_policy("omg_education"), moment + later)
        assert sorted(f.visit_id for f in findings if f.rule == "HV022" and f.severity == "alert") == [
            "V-132"
        ]
