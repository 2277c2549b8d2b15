"""One [timings] table per profile (issue 13 item 3), the school's clock everywhere, and the status
meanings as tags in the schema (item 2)."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest

from homevisits import mail, state
from homevisits.cli import main
from homevisits.config import DEFAULT_TIMEZONE, load_config
from homevisits.errors import HomevisitsError
from homevisits.notify.options import deadline_hours
from homevisits.policy import POLICY_DIR, load_policy, policy_names
from homevisits.schema import load_schema
from homevisits.settings import TABLES
from homevisits.timings import Timings
from test_forms import FULL, text_of, write_workbook

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "sheets_schema" / "home_visits.yaml"


def timings_lines(profile: str) -> list[str]:
    """The lines of a bundled profile's [timings] table, as written."""
    text = (POLICY_DIR / f"{profile}.toml").read_text(encoding="utf-8")
    block = text.split("\n[timings]\n", 1)[1].split("\n[", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------- one table per profile


@pytest.mark.parametrize("profile", policy_names())
def test_every_profile_states_every_timing_and_where_it_comes_from(profile):
    lines = timings_lines(profile)
    assert sorted(line.split("=")[0].strip() for line in lines) == sorted(TABLES["timings"])
    for line in lines:
        _, _, comment = line.partition("#")
        comment = comment.strip()
        assert comment.startswith("project default") or re.match(r"^(§|[A-Z])", comment), (profile, line)
    table = tomllib.loads((POLICY_DIR / f"{profile}.toml").read_text(encoding="utf-8"))["timings"]
    assert load_policy(profile).timings == Timings.of(table)


def test_the_profiles_keep_the_timings_their_rules_had():
    timings = {name: load_policy(name).timings for name in policy_names()}
    assert {n: t.form_deadline_hours for n, t in timings.items()} == {
        "attendance_academy": 0,
        "erdington_academy": 0,
        "omg_education": 24,
        "one_mat": 0,
        "st_edwards": 0,
    }
    assert {n: t.grace_minutes for n, t in timings.items()} == {
        "attendance_academy": 30,
        "erdington_academy": 0,
        "omg_education": 30,
        "one_mat": 30,
        "st_edwards": 0,
    }
    assert (timings["st_edwards"].office_start, timings["st_edwards"].office_end) == (
        dt.time(8, 30),
        dt.time(16, 30),
    )
    assert (timings["one_mat"].office_start, timings["one_mat"].office_end) == (dt.time(8), dt.time(18))


def test_the_defaults_are_the_declarations():
    defaults = Timings()
    for key, setting in TABLES["timings"].items():
        value = getattr(defaults, key)
        shown = value.strftime("%H:%M") if isinstance(value, dt.time) else value
        assert shown == setting.default, key
    assert Timings.of({"day_end": "16:15", "grace_minutes": 5}).day_end == dt.time(16, 15)


def copied(tmp_path: Path, profile: str, old: str, new: str) -> Path:
    text = (POLICY_DIR / f"{profile}.toml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "our_policy.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("profile", "old", "new", "sentence"),
    [
        (
            "one_mat",
            "[rules.HV011]\n",
            '[rules.HV011]\noffice_end = "17:00"\n',
            "our_policy.toml: [rules.HV011] office_end has moved to [timings] office_end.",
        ),
        (
            "st_edwards",
            "[rules.HV010]\n",
            "[rules.HV010]\nweekends = false\n",
            "our_policy.toml: [rules.HV010] weekends has moved to [timings] weekends_out_of_hours.",
        ),
        (
            "omg_education",
            "alert_hours = 24           #",
            "alert_hour = 24           #",
            "our_policy.toml: [timings] has no setting alert_hour: did you mean alert_hours?",
        ),
    ],
)
def test_a_timing_in_the_wrong_place_is_one_sentence(tmp_path, profile, old, new, sentence):
    with pytest.raises(HomevisitsError) as caught:
        load_policy(str(copied(tmp_path, profile, old, new)))
    assert str(caught.value) == sentence


# ---------------------------------------------------------------- report, job and config agree


def _school(tmp_path: Path, policy: str, extra: str = "") -> Path:
    rows = [{**FULL, "visit_id": "HV-0001", "status": "Planned", "risk_level": "LOW", "arrived_at": None}]
    write_workbook(tmp_path / "log.xlsx", rows)
    config = tmp_path / "homevisits.toml"
    config.write_text(
        f'policy = "{policy}"\nschool = "Example Academy"\n{extra}\n[source]\npath = "log.xlsx"\n'
        '\n[mail]\ntransport = "outbox"\nfrom = "homevisits@school.example"\n'
        'allowed_domains = ["school.example"]\n',
        encoding="utf-8",
    )
    return config


def _report_deadline(config: Path, out: Path) -> str:
    assert main(["report", "--config", str(config), "--now", "2026-04-01T09:00", "--out", str(out)]) == 0
    page = text_of(next(out.glob("*.html")).read_text(encoding="utf-8"))
    return re.search(r"Deadline: ([^.]*)\.", page).group(1)


def _job_deadline(config: Path) -> float:
    from homevisits.pipeline import load

    checked = load(load_config(str(config)), dt.datetime(2026, 4, 1, 9, tzinfo=dt.UTC))
    return deadline_hours(checked.policy)


@pytest.mark.parametrize("profile", policy_names())
def test_report_and_job_agree_on_the_deadline(tmp_path, monkeypatch, profile):
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    config = _school(tmp_path, profile)
    hours = _job_deadline(config)
    assert hours == load_policy(profile).timings.form_deadline_hours
    said = _report_deadline(config, tmp_path / "out")
    assert said == (f"{hours:g} hours before the visit starts" if hours else "before the visit starts")


def test_a_schools_timings_override_its_profile_for_report_and_job(tmp_path, monkeypatch):
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    config = _school(
        tmp_path, "attendance_academy", "\n[timings]\nform_deadline_hours = 48\ngrace_minutes = 5\n"
    )
    assert _job_deadline(config) == 48
    assert _report_deadline(config, tmp_path / "out") == "48 hours before the visit starts"
    from homevisits.pipeline import load

    policy = load(load_config(str(config)), dt.datetime(2026, 4, 1, 9, tzinfo=dt.UTC)).policy
    assert policy.timings.grace_minutes == 5 and policy.timings.alert_hours == 24  # the rest: the profile's


def test_a_timing_left_in_schedule_says_where_it_moved(tmp_path):
    config = tmp_path / "homevisits.toml"
    config.write_text("[schedule]\nfinal_reminder_hours = 3\n", encoding="utf-8")
    with pytest.raises(HomevisitsError) as caught:
        load_config(str(config))
    assert str(caught.value) == (
        "homevisits.toml: [schedule] final_reminder_hours has moved to [timings] final_reminder_hours."
    )


# ---------------------------------------------------------------- the school's clock


def test_the_default_zone_is_defined_once():
    source = Path(__file__).resolve().parents[1] / "scripts" / "homevisits"
    named = [p.name for p in source.rglob("*.py") if '"Europe/London"' in p.read_text(encoding="utf-8")]
    assert DEFAULT_TIMEZONE == "Europe/London"
    assert "config.py" in named and "forms.py" not in named and "mail.py" not in named
    assert "options.py" not in named and "cli.py" not in named


def test_form_times_follow_the_configs_timezone(tmp_path, monkeypatch):
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    config = _school(tmp_path, "omg_education", 'timezone = "America/New_York"')
    out = tmp_path / "forms"
    assert main(["forms", "--config", str(config), "--visit", "HV-0001", "--out", str(out)]) == 0
    page = text_of((out / "HV-0001-risk_assessment.html").read_text(encoding="utf-8"))
    # 14:30 typed in New York is 19:30 in London: the form keeps the school's own clock.
    assert "14:30" in page and "19:30" not in page


def test_form_filters_and_mail_subjects_follow_the_given_timezone():
    from homevisits import forms

    late = dt.datetime(2026, 4, 2, 2, 30, tzinfo=dt.UTC)  # 03:30 in London, 22:30 the day before in New York
    page = forms.render_form(
        "generic", {**FULL, "start_at": late}, school="X", now=late, timezone="America/New_York"
    )
    assert "22:30" in text_of(page) and "03:30" not in text_of(page)
    assert mail.subject("form", "HV-0001", late, timezone="America/New_York") == (
        "Home visit HV-0001 on Wed 1 Apr 2026: risk assessment form"
    )
    assert (
        mail.subject("form", "HV-0001", late) == "Home visit HV-0001 on Thu 2 Apr 2026: risk assessment form"
    )


def test_word_forms_follow_the_given_timezone():
    import io

    from docx import Document

    from homevisits import word_forms
    from test_word_forms import all_text

    late = dt.datetime(2026, 4, 2, 2, 30, tzinfo=dt.UTC)
    visit = {**FULL, "start_at": late, "arrived_at": late, "returned_at": late}
    form = "omg_appendix_a_risk_assessment.docx"
    school = all_text(
        Document(
            io.BytesIO(word_forms.render_word(form, visit, school="X", now=late, timezone="America/New_York"))
        )
    )
    london = all_text(Document(io.BytesIO(word_forms.render_word(form, visit, school="X", now=late))))
    assert "22:30" in school and "03:30" not in school
    assert "03:30" in london


# ---------------------------------------------------------------- status meanings from the schema


def test_state_reads_the_status_meanings_from_the_schema():
    status = load_schema()["status"]
    assert set(status.meanings) == set(status.choices)
    assert state.CANCELLED == status.meaning("cancelled") == ("Cancelled", "Not carried out")
    assert state.HAPPENED == ("Completed", "No answer") and state.DONE == ("Completed",)
    assert state.PLANNED == ("Planned",) and state.NO_ANSWER == ("No answer",)
    assert status.lookup["postponed"] == "Cancelled" and state.is_cancelled(status.lookup["postponed"])


def test_one_definition_of_cancelled():
    """The called-off values are listed nowhere in the code (the schema tags them), and the rules,
    reports and forms never compare a Status with a literal value."""
    source = Path(__file__).resolve().parents[1] / "scripts" / "homevisits"
    listed = re.compile(r"""["']Cancelled["']\s*,\s*["']Not carried out["']""")
    assert [p.name for p in source.rglob("*.py") if listed.search(p.read_text(encoding="utf-8"))] == []
    compared = re.compile(r"""status["'\]]*\)?\s*[!=]=\s*["']|isin\(\(\s*["'](Completed|No answer|Planned)""")
    rules = [f"rules/{p.name}" for p in sorted((source / "rules").glob("*.py"))]
    assert rules, "the rule modules were not found"
    for name in (
        *rules,
        "reports.py",
        "summary.py",
        "summary_files.py",
        "forms.py",
        "state.py",
        "safe_return.py",
    ):
        assert not compared.search((source / name).read_text(encoding="utf-8")), name
    from homevisits.summary import statuses

    assert statuses() == ("Planned", "Completed", "No answer", "Cancelled", "Not carried out")


def test_a_meaning_for_a_value_that_is_not_a_choice_is_one_sentence(tmp_path):
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    broken = tmp_path / "home_visits.yaml"
    broken.write_text(
        text.replace("      No answer: [happened, no_answer]", "      No reply: [happened]"), encoding="utf-8"
    )
    with pytest.raises(HomevisitsError) as caught:
        load_schema(broken)
    assert str(caught.value) == (
        "Column status in home_visits.yaml gives a meaning to No reply, which is not one of its choices."
    )
