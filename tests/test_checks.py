"""Checks declared as data (``[[checks]]``): the README's own example run as an admin runs it, the
``when`` vocabulary, and every way a declaration can be wrong (one sentence, exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from homevisits import cli
from homevisits.checks import WhenError, bundled, parse_when
from homevisits.errors import HomevisitsError
from homevisits.policy import POLICY_DIR, load_policy
from homevisits.schema import load_schema
from workbooks import ALL_HEADERS, found, run_check, visit, write_workbook

ROOT = Path(__file__).resolve().parents[1]
NOW_ISO = "2026-11-23T12:00"
FIELDS = {c.field: c for c in load_schema().columns}


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n## ", start)
    nxt = text.find("\n### ", start + 1)
    return text[start : min(e for e in (end, nxt, len(text)) if e > 0)]


def readme_example() -> tuple[str, list[str]]:
    """The ``[[checks]]`` block and the text output lines the README shows for the ID card check."""
    section = readme_section("Adding a check of your own")
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    toml = next(body for kind, body in blocks if kind == "toml")
    output = next(body for kind, body in blocks if kind == "")
    return toml, [line for line in output.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("HOMEVISITS_")]:
        monkeypatch.delenv(name)


def id_card_school(tmp_path: Path) -> Path:
    """What the README says to do: a column "ID card worn", a copy of the profile with the check, a config."""
    rows = [
        visit(2, **{"ID card worn": "YES"}),
        visit(3, **{"ID card worn": "NO"}),
        visit(4, "planned", **{"ID card worn": None}),  # not yet happened: nothing to say
        visit(5, "cancelled", **{"ID card worn": None}),
        visit(6, "no_answer", **{"ID card worn": "y"}),
    ]
    write_workbook(tmp_path / "logs" / "home_visits.xlsx", rows, columns=[*ALL_HEADERS, "ID card worn"])
    block, _ = readme_example()
    profile = (POLICY_DIR / "attendance_academy.toml").read_text(encoding="utf-8")
    (tmp_path / "our_policy.toml").write_text(profile + "\n" + block, encoding="utf-8")
    config = tmp_path / "homevisits.toml"
    config.write_text(
        'policy = "our_policy.toml"\ntimezone = "Europe/London"\n[source]\npath = "logs/home_visits.xlsx"\n',
        encoding="utf-8",
    )
    return config


def test_the_readme_id_card_check_works_as_shown(tmp_path, capsys):
    config = id_card_school(tmp_path)
    status = cli.main(["validate", "--config", str(config), "--now", NOW_ISO, "--format", "json"])
    out, err = capsys.readouterr()
    assert status == 1 and "Traceback" not in err
    findings = json.loads(out)["findings"]
    assert [(f["rule"], f["severity"], f["row"], f["visit_id"], f["column"]) for f in findings] == [
        ("AA001", "error", 3, "V3", "ID card worn")
    ]
    [finding] = findings
    assert finding["clause"] == (
        "Attendance Academy §3.4: identification cards are worn at all times, clearly displayed on the front of clothing"
    )
    assert finding["field"] == "id_card_worn"
    assert finding["values"] == {"status": "Completed", "id_card_worn": False}
    assert finding["message"] == "ID card worn is not recorded as YES for a visit that went ahead."
    assert not [f for f in findings if f["rule"] == "HV029"]  # the column is read, not "not read"

    status = cli.main(["validate", "--config", str(config), "--now", NOW_ISO])
    out, _ = capsys.readouterr()
    _, shown = readme_example()
    lines = out.splitlines()
    for line in shown:
        assert line in lines


def test_check_setup_places_the_school_s_own_column_as_validate_reads_it(tmp_path, capsys):
    """check-setup reads the header row with the policy's own columns, as validate does: "ID card
    worn" is placed, not listed as never read; without the check it is."""
    config = id_card_school(tmp_path)
    cli.main(["check-setup", "--config", str(config)])
    [headers] = [line for line in capsys.readouterr()[0].splitlines() if line[2:].startswith("headers:")]
    assert headers.startswith("✓ headers:") and "ID card worn" not in headers
    config.write_text(config.read_text().replace('"our_policy.toml"', '"attendance_academy"'))
    cli.main(["check-setup", "--config", str(config)])
    [headers] = [line for line in capsys.readouterr()[0].splitlines() if line[2:].startswith("headers:")]
    assert "Not placed (kept, never read): 'ID card worn'" in headers


def test_without_the_check_the_column_is_reported_as_not_read(tmp_path, capsys):
    config = id_card_school(tmp_path)
    config.write_text(config.read_text().replace('"our_policy.toml"', '"attendance_academy"'))
    cli.main(["validate", "--config", str(config), "--now", NOW_ISO, "--format", "json"])
    findings = json.loads(capsys.readouterr()[0])["findings"]
    assert [(f["rule"], f["severity"]) for f in findings] == [("HV029", "info")]
    assert "'ID card worn'" in findings[0]["message"]


# ---------------------------------------------------------------- the when vocabulary


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("live", ("state", "live")),
        ("done or no_answer", ("or", ("state", "done"), ("state", "no_answer"))),
        ("status == 'Completed'", ("equals", "status", ("Completed",))),
        ('status != "Planned"', ("not", ("equals", "status", ("Planned",)))),
        ("status in ('No answer', 'Completed')", ("equals", "status", ("No answer", "Completed"))),
        ("laptop_taken is yes", ("yes", "laptop_taken")),
        ("outcome is not empty", ("not", ("empty", "outcome"))),
        (
            "live and not (started or note_left is yes)",
            ("and", ("state", "live"), ("not", ("or", ("state", "started"), ("yes", "note_left")))),
        ),
        (
            "cancelled or planned and happened",
            ("or", ("state", "cancelled"), ("and", ("state", "planned"), ("state", "happened"))),
        ),
    ],
)
def test_when_parses_the_vocabulary(text, tree):
    assert parse_when(text, FIELDS)[0] == tree


@pytest.mark.parametrize(
    ("text", "problem", "position"),
    [
        ("live and", "expected a state or a field but found the end", 8),
        ("live and __import__('os')", "__import__ is neither a field nor a state", 9),
        ("status = 'Completed'", "'=' is not part of the vocabulary", 7),
        ("status == Completed", "expected a value in quotes but found 'Completed'", 10),
        ("status == 'Completed", "a quote is not closed", 10),
        ("(live", "expected ')' but found the end", 5),
        ("live started", "expected and, or or the end but found 'started'", 5),
        ("outcom is empty", "outcom is neither a field nor a state (did you mean outcome?)", 0),
        ("note_left is yess", "expected yes or empty but found 'yess'", 13),
        ("note_left yes", "expected is, ==, != or in after note_left but found 'yes'", 10),
        ("outcome is yes", "outcome is not a yes/no column, so it is never yes", 0),
        (
            "status == 'Complted'",
            "'Complted' is not a status of the list (Planned, Completed, Cancelled, Not carried out, No answer): "
            "did you mean 'Completed'?",
            10,
        ),
        (
            "status in ('Completed', 'Nope')",
            "'Nope' is not a status of the list (Planned, Completed, Cancelled, Not carried out, No answer)",
            24,
        ),
    ],
)
def test_a_bad_when_says_what_and_where(text, problem, position):
    with pytest.raises(WhenError) as caught:
        parse_when(text, FIELDS)
    assert (caught.value.problem, caught.value.position) == (problem, position)


# ---------------------------------------------------------------- declarations that are wrong


GOOD = """
[[checks]]
id = "AA001"
field = "outcome"
when = "status == 'Completed'"
message = "No outcome."
fix = "Write it in {header[outcome]}."
clause = "§4.1"
"""


def profile_with(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "our_policy.toml"
    text = (POLICY_DIR / "attendance_academy.toml").read_text(encoding="utf-8")
    path.write_text(text + "\n" + block, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        (("fix =", "fixx ="), "our_policy.toml: check AA001 has no key fixx: did you mean fix?"),
        (
            ("when = \"status == 'Completed'\"", "when = \"status == 'Completed' and outcom is yes\""),
            "our_policy.toml: check AA001 when = \"status == 'Completed' and outcom is yes\" cannot be read: "
            "outcom is neither a field nor a state (did you mean outcome?) at character 27.",
        ),
        (
            ('clause = "§4.1"', ""),
            "our_policy.toml: check AA001 needs clause (the part of the policy it enforces).",
        ),
        (
            ('field = "outcome"', 'field = "outcom"'),
            "our_policy.toml: check AA001 checks outcom, which is not a column: did you mean outcome?",
        ),
        (
            ('id = "AA001"', 'id = "HV021"'),
            "our_policy.toml declares check HV021 twice: give each check its own id.",
        ),
        (
            ('id = "AA001"', 'id = "HV003"'),
            "our_policy.toml declares check HV003, but HV003 is already a rule",
        ),
        (
            ("fix = ", 'severity = "bad"\nfix = '),
            "our_policy.toml: check AA001 severity must be one of 'alert', 'error', 'warning', 'info' (it is 'bad').",
        ),
        (
            ("fix = ", 'fails_if = "no"\nfix = '),
            "our_policy.toml: check AA001 fails_if must be one of 'empty', 'not yes' (it is 'no').",
        ),
        (
            ('"No outcome."', '"No {outcome_text}."'),
            "our_policy.toml: check AA001 message names {outcome_text}, which it cannot fill in: use {column}, "
            "{header[<field>]}, {row}, {outcome}, {status}.",
        ),
        (
            ('"No outcome."', '"No {outcome:bold}."'),
            "our_policy.toml: check AA001 message shows {outcome:bold}, a format homevisits does not have: "
            "use {outcome}, {outcome:or <words when blank>}",
        ),
        (
            ("fix = ", 'fails_if = "not yes"\nfix = '),
            'our_policy.toml: check AA001 fails_if = "not yes" needs a yes/no column, and outcome is text.',
        ),
        (
            ("fix = ", 'header = "Outcome"\nfix = '),
            "our_policy.toml: check AA001 sets header or type, which only a column of the school's own takes",
        ),
    ],
)
def test_a_wrong_check_is_one_sentence(tmp_path, change, sentence):
    old, new = change
    assert old in GOOD
    path = profile_with(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(HomevisitsError) as caught:
        load_policy(str(path))
    assert sentence in str(caught.value)


def test_a_wrong_check_stops_validate_with_exit_2(tmp_path, capsys):
    profile_with(tmp_path, GOOD.replace("when = \"status == 'Completed'\"", 'when = "status == Completed"'))
    write_workbook(tmp_path / "log.xlsx", [visit(2)], columns=ALL_HEADERS)
    (tmp_path / "homevisits.toml").write_text(
        'policy = "our_policy.toml"\n[source]\npath = "log.xlsx"\n', encoding="utf-8"
    )
    status = cli.main(["validate", "--config", str(tmp_path / "homevisits.toml"), "--now", NOW_ISO])
    _, err = capsys.readouterr()
    assert status == 2
    assert (
        'check AA001 when = "status == Completed" cannot be read: expected a value in quotes but found '
        "'Completed' at character 11." in err
    )
    assert "Traceback" not in err


def test_a_declared_check_finds_what_it_says(tmp_path):
    path = profile_with(tmp_path, GOOD)
    rows = [visit(2), visit(3, outcome=None), visit(4, "no_answer", outcome=None)]
    log = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    checked = run_check(log, str(path), __import__("workbooks").NOW)
    assert [f for f in found(checked.findings) if f[0] == "AA001"] == [("AA001", "error", 3, "V3", "Outcome")]
    [finding] = [f for f in checked.findings if f.rule == "AA001"]
    assert (finding.message, finding.fix, finding.field) == ("No outcome.", "Write it in Outcome.", "outcome")
    assert finding.values == {"status": "Completed", "outcome": None}


def test_an_old_profile_naming_a_check_under_rules_still_runs_it(tmp_path):
    """A school's copy from before HV021 became a check: [rules.HV021] finds the bundled declaration."""
    text = (POLICY_DIR / "attendance_academy.toml").read_text(encoding="utf-8")
    start = text.index("[[checks]]")
    path = tmp_path / "old.toml"
    path.write_text(
        text[:start] + '[rules.HV021]\nclause = "§4.1: records are completed"\n', encoding="utf-8"
    )
    policy = load_policy(str(path))
    assert policy.rules["HV021"].clause == "§4.1: records are completed"
    assert policy.rules["HV021"].check.fields == bundled()["HV021"].fields
    log = write_workbook(tmp_path / "log.xlsx", [visit(2), visit(3, outcome=None)], columns=ALL_HEADERS)
    checked = run_check(log, str(path), __import__("workbooks").NOW)
    assert found(checked.findings) == [("HV021", "error", 3, "V3", "Outcome")]


def test_every_bundled_check_cites_its_clause_and_words_its_own_fix():
    for path in sorted(POLICY_DIR.glob("*.toml")):
        policy = load_policy(path.stem)
        for config in policy.rules.values():
            if config.check:
                assert config.check.clause and config.check.fix, (path.stem, config.id)
    fixes = {load_policy(p.stem).rules["HV021"].check.fix for p in POLICY_DIR.glob("*.toml")}
    assert len(fixes) == 5  # each school's fix follows its own policy


def test_the_html_page_names_a_check_of_the_schools_own_by_its_title(tmp_path, capsys):
    config = id_card_school(tmp_path)
    page = tmp_path / "findings.html"
    status = cli.main(
        ["validate", "--config", str(config), "--now", NOW_ISO, "--format", "html", "--output", str(page)]
    )
    assert status == 1
    text = page.read_text(encoding="utf-8")
    assert "ID card not worn" in text and "AA001" in text


def test_a_bundled_check_words_an_unreadable_cell_and_the_time_before_the_visit_its_own_way(tmp_path):
    from workbooks import NOW

    rows = [
        visit(2),
        visit(3, phone_taken="12345"),  # unreadable: HV002 says so, and HV016 says it is no number
        visit(4, phone_taken=None),
        visit(5, "planned", safeguarding_informed=None),  # not started yet: a reminder
        visit(6, safeguarding_informed="NO"),
    ]
    log = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    findings = run_check(log, "one_mat", NOW).findings
    said = {(f.rule, f.row): (f.severity, f.message, f.fix) for f in findings if f.rule in ("HV012", "HV016")}
    assert said["HV016", 3][1] == (
        "The phone taken on the visit is not a valid number, so nobody could call the staff member."
    )
    assert (
        said["HV016", 4][1]
        == "The phone taken on the visit is not recorded, so nobody could call the staff member."
    )
    assert said["HV012", 5] == (
        "info",
        "Before leaving, tell the safeguarding team and school reception where you are going.",
        "Inform them on the day, before you leave, then record YES in Safeguarding team informed.",
    )
    assert said["HV012", 6][0] == "error"
    assert said["HV012", 6][2].endswith("record YES in Safeguarding team informed.")


def test_the_status_tags_in_when_read_as_the_schema_tags_them():
    """``done`` and ``no_answer`` are the schema's tags (state.py): every spelling staff type reads alike,
    and they pick the same rows as naming the Status in full."""
    import pandas as pd

    from homevisits.checks import evaluate, parse_when
    from homevisits.rules import Context

    class Table:  # the two things evaluate reads from a visits table: the frame and its Status column
        frame = pd.DataFrame(
            {"status": ["Completed", "No answer", "Planned", None, "Cancelled", "Not carried out"]}
        )

    ctx = Context(visits=Table(), params={}, now=pd.Timestamp("2026-12-01", tz="UTC"))
    for tag, spelled in (("done", "status == 'Completed'"), ("no_answer", "status == 'No answer'")):
        tagged, named = (evaluate(parse_when(text, FIELDS)[0], ctx).tolist() for text in (tag, spelled))
        assert tagged == named and sum(tagged) == 1
    assert evaluate(parse_when("cancelled", FIELDS)[0], ctx).tolist() == [False] * 4 + [True, True]


def test_init_sheet_adds_the_school_s_own_column(tmp_path, capsys):
    """init-sheet sets up a new log with the columns the policy reads, its own checks' among them."""
    import openpyxl

    config = id_card_school(tmp_path)
    (tmp_path / "logs" / "home_visits.xlsx").unlink()
    assert cli.main(["init-sheet", "--config", str(config)]) == 0
    headers = [
        cell.value
        for cell in next(openpyxl.load_workbook(tmp_path / "logs" / "home_visits.xlsx").active.rows)
    ]
    assert "ID card worn" in headers and "Status" in headers
