"""Every rule HV001-HV031 under every profile, on real workbooks run through the real pipeline.

Each case is a small sheet: a clean visit on row 2 plus rows that break (or nearly break) one rule.
A case runs under all five profiles; its expected findings are filtered to the rules that profile
enables, so the same case also shows a rule stays silent where a school has not turned it on.
Findings are compared as data, ``(rule, severity, row, visit_id, column)``; messages are checked
only for the facts the issue says they must name (a deadline, a person, a phone, a row).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from homevisits.findings import SEVERITIES
from homevisits.policy import load_policy, policy_names
from homevisits.rules import rule_titles
from workbooks import (
    ALL_HEADERS,
    FUTURE,
    NOW,
    PAST,
    at,
    found,
    header_of,
    london,
    run_check,
    visit,
    write_workbook,
)

RULES = rule_titles()  # every rule id: the rule functions and the checks the bundled profiles declare
POLICIES = policy_names()
PROFILES = {name: load_policy(name) for name in POLICIES}
SATURDAY = dt.date(2026, 11, 21)


def enabled(rule_id: str) -> list[str]:
    return [name for name in POLICIES if rule_id in PROFILES[name].rules]


def severity(policy: str, rule_id: str) -> str:
    return PROFILES[policy].rules[rule_id].severity


# ---------------------------------------------------------------- building visits


def sheet(tmp_path, rows: list[dict[str, Any]], name: str = "log.xlsx", **options: Any):
    return write_workbook(tmp_path / name, rows, columns=options.pop("columns", ALL_HEADERS), **options)


def checked(tmp_path, policy: str, rows: list[dict[str, Any]], now: dt.datetime = NOW, **options: Any):
    return run_check(sheet(tmp_path, rows, **options), policy, now)


def check(tmp_path, policy: str, rows: list[dict[str, Any]], now: dt.datetime = NOW, **options: Any):
    return found(checked(tmp_path, policy, rows, now, **options).findings)


def only(results: list[tuple], rule_id: str) -> list[tuple]:
    return [f for f in results if f[0] == rule_id]


def expect(policy: str, entries: list[tuple]) -> list[tuple]:
    """Expected findings under ``policy``: entries of rules it enables, severity filled in, report order."""
    rules = PROFILES[policy].rules
    out = [
        (rule_id, sev or severity(policy, rule_id), row, vid, column)
        for rule_id, sev, row, vid, column in entries
        if rule_id in rules
    ]
    return sorted(out, key=lambda f: (SEVERITIES.index(f[1]), f[2] or 0, f[0], f[4] or ""))


def messages(tmp_path, policy, rows, rule_id, now=NOW, **options) -> dict[int, str]:
    """Row -> message of ``rule_id``'s findings."""
    return {
        f.row: f.message
        for f in checked(tmp_path, policy, rows, now, **options).findings
        if f.rule == rule_id
    }


# ---------------------------------------------------------------- one case per rule, under every profile

H = header_of
CASES: dict[str, tuple[list[dict[str, Any]], list[tuple]]] = {
    "HV001": (
        [visit(2), visit(3, address=None), visit(4, "cancelled", address=None)],
        [("HV001", None, 3, "V3", "Address")],
    ),
    "HV002": (
        [
            visit(2),
            visit(
                3, start_time="25:00", risk_level="Purple", parent_phone="12345", dangerous_animals="maybe"
            ),
        ],
        [
            ("HV002", None, 3, "V3", "Dangerous animals"),
            ("HV002", None, 3, "V3", "Parent/carer phone"),
            ("HV002", None, 3, "V3", "Risk level"),
            ("HV002", None, 3, "V3", "Start time"),
        ],
    ),
    "HV003": (
        [
            visit(2),
            visit(3, risk_level="HIGH"),
            visit(4, "planned", risk_level="h"),
            visit(5, "cancelled", risk_level="HIGH"),
        ],
        [("HV003", None, 3, "V3", "Risk level"), ("HV003", None, 4, "V4", "Risk level")],
    ),
    "HV004": (
        [
            visit(2, risk_level="MEDIUM", location_type="library"),
            visit(3, risk_level=" Med", location_type="Home"),
            visit(4, risk_level="MEDIUM", location_type=None),
            visit(5, "cancelled", risk_level="MEDIUM", location_type="Home"),
        ],
        [("HV004", None, 3, "V3", "Location type"), ("HV004", None, 4, "V4", "Location type")],
    ),
    "HV005": (
        [
            visit(2, expected_return=None),
            visit(3, expected_return=None, expected_duration=None),
            visit(4, "cancelled", expected_return=None, expected_duration=None),
        ],
        [("HV005", None, 3, "V3", "Expected return")],
    ),
    "HV006": (
        [
            visit(2),
            visit(3, parent_consent="NO"),
            visit(4, parent_consent=None),
            visit(5, parent_consent=None, reason="Emergency safeguarding check"),
            visit(6, "cancelled", parent_consent="NO"),
        ],
        [("HV006", None, 3, "V3", "Parent/carer consent"), ("HV006", None, 4, "V4", "Parent/carer consent")],
    ),
    "HV007": (
        [visit(2), visit(3, approved_by=None), visit(4, approved_by=" sam  TEACHER ")],
        [("HV007", None, 3, "V3", "Approved by"), ("HV007", None, 4, "V4", "Approved by")],
    ),
    "HV008": (
        [visit(2), visit(3, authorised_by=None), visit(4, "cancelled", authorised_by=None)],
        [("HV008", None, 3, "V3", "Authorised by (Principal/DSL)")],
    ),
    "HV009": (
        [
            visit(2),
            visit(3, form_sent_at=None),
            visit(4, "planned", form_sent_at=None),
            visit(5, "cancelled", form_sent_at=None),
            visit(6, "planned", risk_level="HIGH", form_sent_at=None),
        ],
        [
            ("HV009", "error", 3, "V3", "Form sent at"),
            ("HV009", "info", 4, "V4", "Form sent at"),
            ("HV003", None, 6, "V6", "Risk level"),
        ],
    ),
    "HV010": (
        [visit(2), visit(3, second_staff=None, risk_notes=None), visit(4, "cancelled", second_staff=None)],
        [("HV010", None, 3, "V3", "Second staff")],
    ),
    "HV011": (
        [visit(2), visit(3, date=SATURDAY), visit(4, "cancelled", date=SATURDAY)],
        [("HV011", None, 3, "V3", "Start time")],
    ),
    "HV012": (
        [
            visit(2),
            visit(3, safeguarding_informed="NO"),
            visit(4, "planned", safeguarding_informed=None),
            visit(5, "cancelled", safeguarding_informed=None),
        ],
        [
            ("HV012", None, 3, "V3", "Safeguarding team informed"),
            ("HV012", "info", 4, "V4", "Safeguarding team informed"),
        ],
    ),
    "HV013": (
        [
            visit(2),
            visit(3, safe_word_agreed="NO"),
            visit(4, "planned", safe_word_agreed=None),
            visit(5, "cancelled", safe_word_agreed=None),
        ],
        [("HV013", None, 3, "V3", "Safe word agreed"), ("HV013", "warning", 4, "V4", "Safe word agreed")],
    ),
    "HV014": (
        [
            visit(2, laptop_taken="YES", laptop_approved_by="Chris Senior"),
            visit(3, laptop_taken="y"),
            visit(4, laptop_taken="NO"),
        ],
        [("HV014", None, 3, "V3", "Laptop approved by (SMT)")],
    ),
    "HV015": (
        [
            visit(2, "planned"),
            visit(3, "planned", dangerous_animals="YES"),
            visit(4, dangerous_animals="YES"),
            visit(5, "cancelled", dangerous_animals="YES"),
        ],
        [("HV015", None, 3, "V3", "Dangerous animals")],
    ),
    "HV016": (
        [visit(2, phone_taken=7700900123), visit(3, phone_taken=None), visit(4, phone_taken="12345")],
        [
            ("HV016", None, 3, "V3", "Phone taken on visit"),
            ("HV002", None, 4, "V4", "Phone taken on visit"),
            ("HV016", None, 4, "V4", "Phone taken on visit"),
        ],
    ),
    "HV017": (
        [
            visit(2, "planned"),
            visit(3, "planned", expected_return=dt.time(9, 30)),
            visit(4, "planned", end=(15, 0)),
            visit(5, departed_at="10:00"),
        ],
        [
            ("HV017", "error", 3, "V3", "Expected return"),
            ("HV017", "warning", 4, "V4", "Expected return"),
            ("HV017", "error", 5, "V5", "Departed at"),
        ],
    ),
    "HV019": (
        [visit(2), visit(3, visit_id="V2"), visit(4)],
        [("HV019", None, 2, "V2", "Visit ID"), ("HV019", None, 3, "V2", "Visit ID")],
    ),
    "HV020": (
        [visit(2), visit(3, arrived_at=None), visit(4, departed_at=None), visit(5, "planned")],
        [("HV020", None, 3, "V3", "Arrived at"), ("HV020", None, 4, "V4", "Departed at")],
    ),
    "HV021": (
        [visit(2), visit(3, outcome=None), visit(4, "planned"), visit(5, "no_answer")],
        [("HV021", None, 3, "V3", "Outcome")],
    ),
    "HV022": (
        [
            visit(2),
            visit(3, "planned", date=NOW.date(), start=(10, 0), end=(11, 0)),
            visit(4, "cancelled", date=NOW.date(), start=(10, 0), end=(11, 0)),
            visit(5, "planned", date=NOW.date(), start=(10, 0), end=(11, 0), returned_at="10:55"),
        ],
        [("HV022", None, 3, "V3", "Returned safely at")],
    ),
    "HV023": (
        [visit(2), visit(3, returned_at="12:15")],
        [("HV023", None, 3, "V3", "Returned safely at")],
    ),
    "HV024": (
        [
            visit(2, "no_answer"),
            visit(3, "no_answer", note_left=None),
            visit(4, "no_answer", note_left="NO"),
            visit(5, note_left=None),
        ],
        [("HV024", None, 3, "V3", "Note left"), ("HV024", None, 4, "V4", "Note left")],
    ),
    "HV025": (
        [
            visit(2),
            visit(3, safeguarding_concern="YES"),
            visit(4, "cancelled", safeguarding_concern="YES"),
        ],
        [("HV025", None, 3, "V3", "Logged on (CPOMS/MyConcern/Bromcom)")],
    ),
    "HV026": (
        [
            visit(2, "cancelled"),
            visit(3, "cancelled", cancellation_reason=None),
            visit(4, "cancelled", status="Not carried out", cancellation_reason=None),
            visit(5),
        ],
        [
            ("HV026", None, 3, "V3", "Cancellation reason"),
            ("HV026", None, 4, "V4", "Cancellation reason"),
        ],
    ),
    "HV027": (
        [
            visit(2, "planned", date=dt.date(2026, 11, 20)),
            visit(3, date=dt.date(2026, 11, 24)),
            visit(4, date=NOW.date()),
        ],
        [
            # a planned visit days ago has no confirmed return either (an old one: an error, not an alert)
            ("HV022", "error", 2, "V2", "Returned safely at"),
            ("HV027", "warning", 2, "V2", "Status"),
            ("HV027", "error", 3, "V3", "Status"),
        ],
    ),
    "HV028": (
        [
            visit(2),
            visit(3, prior_contact=None),
            visit(4, prior_contact=None, location_type="Public place"),
            visit(5, prior_contact=None, reason="Safe and well check"),
            visit(6, "cancelled", prior_contact=None),
        ],
        [("HV028", None, 3, "V3", "Prior contact attempts")],
    ),
    "HV029": (
        [
            visit(2, **{"Our own remarks": "kept as it is"}),
            {"Laptop taken": False, "Dangerous animals": False, "Expected duration (mins)": 0},
            visit(4),
        ],
        [("HV029", "info", 1, None, None), ("HV029", "info", None, None, None)],
    ),
    "HV031": (
        [
            visit(2, visit_id="HV-0042/b.1_x"),
            visit(3, visit_id="HV-0007 =?utf-8?q?=0D=0A=0D=0AFalse_alarm?="),
            visit(4, visit_id="V 4"),
            visit(5, visit_id="V" * 41),
            visit(6, "cancelled", visit_id="Sam's visit"),
            visit(7, visit_id="V" * 40),
            visit(8, visit_id="Visite-à-7"),
        ],
        [
            ("HV031", None, 3, "HV-0007 =?utf-8?q?=0D=0A=0D=0AFalse_alarm?=", "Visit ID"),
            ("HV031", None, 4, "V 4", "Visit ID"),
            ("HV031", None, 5, "V" * 41, "Visit ID"),
            ("HV031", None, 6, "Sam's visit", "Visit ID"),
            ("HV031", None, 8, "Visite-à-7", "Visit ID"),
        ],
    ),
}
# HV030 reads a Google Sheet's locale: Excel has none, so its cases are in test_gsheet.py.
SHEET_ONLY = {"HV030"}


def test_every_rule_has_a_case_and_every_profile_rule_exists():
    assert set(CASES) | SHEET_ONLY == set(RULES)
    for name, profile in PROFILES.items():
        assert set(profile.rules) <= set(RULES), name
        for rule_id, config in profile.rules.items():
            assert config.clause.strip(), (name, rule_id)


def test_each_case_breaks_its_rule_under_some_profile():
    for rule_id, (_rows, entries) in CASES.items():
        assert any(e[0] == rule_id for e in entries), rule_id
        assert enabled(rule_id), f"{rule_id} is enabled by no profile"
    assert all(enabled(rule_id) == POLICIES for rule_id in SHEET_ONLY | {"HV029"})


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_case(tmp_path, policy, rule_id):
    rows, entries = CASES[rule_id]
    assert check(tmp_path, policy, rows) == expect(policy, entries)


@pytest.mark.parametrize("policy", POLICIES)
def test_clean_visits_have_no_findings(tmp_path, policy):
    rows = [visit(2), visit(3, "planned"), visit(4, "cancelled"), visit(5, "no_answer")]
    assert check(tmp_path, policy, rows) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_findings_carry_the_profile_clause(tmp_path, policy):
    rows, _entries = CASES["HV001"]
    [finding] = checked(tmp_path, policy, rows).findings
    assert finding.clause == f"{PROFILES[policy].name} {PROFILES[policy].rules['HV001'].clause}"
    assert finding.message == "Address is empty."
    assert "Address" in finding.fix


# ---------------------------------------------------------------- HV001 every required field


def _hv001_fields() -> list:
    return [(name, f) for name in enabled("HV001") for f in PROFILES[name].param("HV001", "fields", [])]


@pytest.mark.parametrize(("policy", "field"), _hv001_fields())
def test_hv001_each_required_field(tmp_path, policy, field):
    rows = [visit(2), visit(3, **{field: None}), visit(4, "cancelled", **{field: None})]
    assert check(tmp_path, policy, rows) == [("HV001", "error", 3, "V3", header_of(field))]


@pytest.mark.parametrize("placeholder", ["TBC", "-"])
def test_placeholder_in_authorised_by_is_not_an_authorisation(tmp_path, placeholder):
    rows = [visit(2), visit(3, authorised_by=placeholder)]
    assert check(tmp_path, "one_mat", rows) == [("HV008", "error", 3, "V3", "Authorised by (Principal/DSL)")]


# ---------------------------------------------------------------- HV031


def test_hv029_quotes_the_id_as_clean_text_and_names_the_row(tmp_path):
    rows = [
        visit(2),
        visit(3, visit_id="HV-1 =?utf-8?q?=0D=0A=0D=0AFalse_alarm:_Sam_is_back_safe_and_has_phoned_in?="),
    ]
    assert messages(tmp_path, "omg_education", rows, "HV031") == {
        3: "Visit ID 'HV-1 =?utf-8?q?=0D=0A=0D=0AFalse_alarm:_Sam_is_back_safe_...' can hold only "
        "letters, digits and - _ / . (at most 40 characters): emails about this visit name it as row 3 instead."
    }


def test_two_rules_under_one_id_fail_at_import():
    from homevisits.rules import rule

    with pytest.raises(ValueError, match="HV031 is registered twice"):
        rule("HV031", "Another rule", "error")(lambda ctx: iter(()))


# ---------------------------------------------------------------- HV002


@pytest.mark.parametrize("policy", POLICIES)
def test_hv002_names_the_raw_value_and_never_swaps_day_and_month(tmp_path, policy):
    rows = [visit(2), visit(3, "planned", visit_date="01/13/2026")]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [("HV002", "error", 3, "V3", "Visit date")]
    [finding] = results.findings
    assert "'01/13/2026'" in finding.message and "Visit date" in finding.message
    assert "no month 13" in finding.message
    assert results.visits.record(1)["visit_date"] is None


@pytest.mark.parametrize("policy", enabled("HV020"))
def test_unreadable_visit_date_is_reported_once_not_as_empty_times(tmp_path, policy):
    rows = [visit(2), visit(3, visit_date="01/13/2026")]
    assert check(tmp_path, policy, rows) == [("HV002", "error", 3, "V3", "Visit date")]


# ---------------------------------------------------------------- HV003, HV004


@pytest.mark.parametrize("policy", enabled("HV003"))
def test_hv003_messages(tmp_path, policy):
    rows, _ = CASES["HV003"]
    said = messages(tmp_path, policy, rows, "HV003")
    assert "carried out" in said[3]
    assert "must not go ahead" in said[4]


@pytest.mark.parametrize("policy", enabled("HV004"))
def test_hv004_names_the_place(tmp_path, policy):
    rows, _ = CASES["HV004"]
    said = messages(tmp_path, policy, rows, "HV004")
    assert "'Home'" in said[3]
    assert "no location type" in said[4]


# ---------------------------------------------------------------- HV005


@pytest.mark.parametrize("policy", enabled("HV005"))
def test_hv005_duration_column_alone_is_enough(tmp_path, policy):
    columns = [h for h in ALL_HEADERS if h != "Expected return"]
    rows = [visit(2), visit(3, expected_duration=None)]
    for row in rows:
        del row["Expected return"]
    assert check(tmp_path, policy, rows, columns=columns) == [
        ("HV005", "error", 3, "V3", "Expected duration (mins)")
    ]


# ---------------------------------------------------------------- HV006 exempt reasons


def _exempt_reasons() -> list[tuple[str, str]]:
    return [
        (name, r) for name in enabled("HV006") for r in PROFILES[name].param("HV006", "exempt_reasons", [])
    ]


@pytest.mark.parametrize(("policy", "reason"), _exempt_reasons())
def test_hv006_exempt_reason_needs_no_consent(tmp_path, policy, reason):
    rows = [
        visit(2, parent_consent=None, reason=f"{reason.title()} visit"),
        visit(3, parent_consent="NO", reason=f"Urgent: {reason.upper()}"),
        visit(4, parent_consent="N/A", reason="Catch-up on coursework"),
    ]
    assert check(tmp_path, policy, rows) == [
        ("HV006", severity(policy, "HV006"), 4, "V4", "Parent/carer consent")
    ]


@pytest.mark.parametrize("policy", enabled("HV006"))
def test_hv006_messages_say_what_was_recorded(tmp_path, policy):
    rows, _ = CASES["HV006"]
    said = messages(tmp_path, policy, rows, "HV006")
    assert "recorded as NO" in said[3]
    assert "not recorded" in said[4]


# ---------------------------------------------------------------- HV007 self-approval


@pytest.mark.parametrize("policy", enabled("HV007"))
def test_hv007_self_approval(tmp_path, policy):
    rows = [
        visit(2, approved_by="Pat Manager"),
        visit(3, lead_staff="Pat Manager", approved_by="PAT MANAGER"),
        visit(4, lead_staff="Pat Manager", approved_by="Sam Teacher"),
        visit(5, approved_by=None),
    ]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [
        ("HV007", "error", 3, "V3", "Approved by"),
        ("HV007", "error", 5, "V5", "Approved by"),
    ]
    said = {f.row: f.message for f in results.findings}
    assert "PAT MANAGER" in said[3] and "also leading it" in said[3]
    assert "No line manager has approved" in said[5]


# ---------------------------------------------------------------- HV009 the form deadline


def _form_case(tmp_path, policy, now, day, start, sent_values, **changes):
    rows = [
        visit(
            2 + i,
            "planned",
            date=day,
            start=start,
            end=(start[0] + 1, start[1]),
            form_sent_at=sent,
            **changes,
        )
        for i, sent in enumerate(sent_values)
    ]
    results = checked(tmp_path, policy, rows, now)
    return only(found(results.findings), "HV009"), {
        f.row: f.message for f in results.findings if f.rule == "HV009"
    }


def test_hv009_omg_24_hours_sent_on_time_late_and_missing(tmp_path):
    # visit Thu 26 Nov 2026 10:00 GMT: the form is due 24 hours before, Wed 25 Nov 10:00
    sent = ["25/11/2026 10:00", "25/11/2026 10:01", None, "2026-11-24T18:00"]
    results, said = _form_case(tmp_path, "omg_education", NOW, FUTURE, (10, 0), sent)
    assert results == [
        ("HV009", "error", 3, "V3", "Form sent at"),
        ("HV009", "info", 4, "V4", "Form sent at"),
    ]
    assert "Wed 25 Nov 2026 10:01" in said[3] and "deadline of Wed 25 Nov 2026 10:00" in said[3]
    assert "24 hours before the visit" in said[3]
    assert said[4] == "The risk assessment form is due by Wed 25 Nov 2026 10:00 (24 hours before the visit)."


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (london(2026, 11, 25, 9, 59), "info"),
        (london(2026, 11, 25, 10, 0), "info"),
        (london(2026, 11, 25, 10, 1), "error"),
        (london(2026, 11, 26, 12, 0), "error"),
    ],
)
def test_hv009_omg_not_sent_turns_to_error_once_the_deadline_passes(tmp_path, now, expected):
    results, said = _form_case(tmp_path, "omg_education", now, FUTURE, (10, 0), [None])
    assert results == [("HV009", expected, 2, "V2", "Form sent at")]
    if expected == "error":
        assert "has not been sent and the deadline passed Wed 25 Nov 2026 10:00" in said[2]


@pytest.mark.parametrize(
    "policy", [p for p in enabled("HV009") if PROFILES[p].timings.form_deadline_hours == 0]
)
def test_hv009_zero_hour_profiles_deadline_is_the_start(tmp_path, policy):
    sent = ["26/11/2026 09:59", "26/11/2026 10:00", "26/11/2026 10:01", None]
    now = london(2026, 11, 26, 9, 0)
    results, said = _form_case(tmp_path, policy, now, FUTURE, (10, 0), sent)
    assert results == [
        ("HV009", "error", 4, "V4", "Form sent at"),
        ("HV009", "info", 5, "V5", "Form sent at"),
    ]
    assert "deadline of Thu 26 Nov 2026 10:00 (before the visit)" in said[4]
    assert said[5] == "The risk assessment form is due by Thu 26 Nov 2026 10:00 (before the visit)."
    later, said = _form_case(tmp_path, policy, london(2026, 11, 26, 10, 1), FUTURE, (10, 0), [None])
    assert later == [("HV009", "error", 2, "V2", "Form sent at")]


def test_hv009_deadline_hours_come_from_the_profile():
    hours = {name: PROFILES[name].timings.form_deadline_hours for name in enabled("HV009")}
    assert hours == {"erdington_academy": 0, "omg_education": 24, "one_mat": 0, "st_edwards": 0}


@pytest.mark.parametrize(
    ("day", "start", "deadline_utc", "deadline_shown"),
    [
        # the brief's case: Monday after clocks go forward; 24 elapsed hours earlier is still BST
        (dt.date(2026, 3, 30), (9, 0), "2026-03-29T08:00:00+00:00", "Sun 29 Mar 2026 09:00"),
        # across the change itself: Sunday 09:00 BST minus 24 h is Saturday 08:00 GMT, not 09:00
        (dt.date(2026, 3, 29), (9, 0), "2026-03-28T08:00:00+00:00", "Sat 28 Mar 2026 08:00"),
        # October: Monday after clocks go back
        (dt.date(2026, 10, 26), (9, 0), "2026-10-25T09:00:00+00:00", "Sun 25 Oct 2026 09:00"),
        # across the change: Sunday 12:00 GMT minus 24 h is Saturday 13:00 BST, not 12:00
        (dt.date(2026, 10, 25), (12, 0), "2026-10-24T12:00:00+00:00", "Sat 24 Oct 2026 13:00"),
    ],
)
def test_hv009_24_hours_are_elapsed_hours_across_the_clock_change(
    tmp_path, day, start, deadline_utc, deadline_shown
):
    deadline = dt.datetime.fromisoformat(deadline_utc)
    one_minute = dt.timedelta(minutes=1)
    sent = [deadline.isoformat(), (deadline + one_minute).isoformat(), None]
    now = deadline - dt.timedelta(days=2)
    results, said = _form_case(tmp_path, "omg_education", now, day, start, sent)
    assert results == [
        ("HV009", "error", 3, "V3", "Form sent at"),
        ("HV009", "info", 4, "V4", "Form sent at"),
    ]
    assert f"deadline of {deadline_shown}" in said[3]
    assert said[4].startswith(f"The risk assessment form is due by {deadline_shown} ")
    # the same instants written as the school's wall clock
    shown = deadline.astimezone(london(2026, 1, 1).tzinfo)
    wall = [f"{shown:%d/%m/%Y %H:%M}", f"{shown + one_minute:%d/%m/%Y %H:%M}"]
    results, _ = _form_case(tmp_path, "omg_education", now, day, start, wall)
    assert results == [("HV009", "error", 3, "V3", "Form sent at")]
    # and once the instant has passed, the unsent form is an error
    results, _ = _form_case(tmp_path, "omg_education", deadline + one_minute, day, start, [None])
    assert results == [("HV009", "error", 2, "V2", "Form sent at")]
    results, _ = _form_case(tmp_path, "omg_education", deadline, day, start, [None])
    assert results == [("HV009", "info", 2, "V2", "Form sent at")]


def test_visit_start_is_an_instant_in_london_time(tmp_path):
    rows = [
        visit(2, "planned", date=dt.date(2026, 3, 30), start=(9, 0), end=(10, 0)),
        visit(3, "planned", date=dt.date(2026, 10, 26), start=(9, 0), end=(10, 0)),
    ]
    frame = checked(tmp_path, "omg_education", rows, london(2026, 3, 1, 9)).visits.frame
    assert list(frame["start_at"]) == [
        pd.Timestamp("2026-03-30T08:00Z"),
        pd.Timestamp("2026-10-26T09:00Z"),
    ]


# ---------------------------------------------------------------- HV010 pairs


def test_hv010_always_in_pairs_one_mat(tmp_path):
    rows = [
        visit(2),
        visit(3, second_staff=None),
        visit(4, "planned", second_staff=None),
        visit(5, "cancelled", second_staff=None),
    ]
    results = checked(tmp_path, "one_mat", rows)
    assert found(results.findings) == [
        ("HV010", "error", 3, "V3", "Second staff"),
        ("HV010", "error", 4, "V4", "Second staff"),
    ]
    assert all("made in pairs" in f.message for f in results.findings)


def test_hv010_first_visit_erdington(tmp_path):
    earlier = dt.date(2026, 11, 10)
    rows = [
        visit(2, learner_id="L50", date=earlier),  # L50: first visit in a pair, completed
        visit(3, learner_id="L50", second_staff=None),  # L50 again: alone is fine now
        visit(4, "no_answer", learner_id="L60", date=earlier),  # L60: nobody answered the first time
        visit(5, learner_id="L60", second_staff=None),  # so this is still the first visit
        visit(6, learner_id="L70", second_staff=None),  # L70: the earlier visit is lower down the sheet
        visit(7, learner_id="L70", date=earlier),
        visit(8, learner_id=None, learner_name="Jo Bloggs", postcode="B23 6XX", date=earlier),
        visit(9, learner_id=None, learner_name=" jo  BLOGGS", postcode="b236xx", second_staff=None),
        visit(10, learner_id=None, learner_name="Jo Bloggs", postcode="B44 9XX", second_staff=None),
        visit(11, learner_id="L80", second_staff=None),  # L80: only visit, alone
        visit(12, learner_id="L90", date=earlier, status="Cancelled", cancellation_reason="Ill"),
        visit(13, learner_id="L90", second_staff=None),  # a cancelled earlier visit does not count
    ]
    results = checked(tmp_path, "erdington_academy", rows)
    assert found(results.findings) == [
        ("HV010", "error", row, f"V{row}", "Second staff") for row in (5, 10, 11, 13)
    ]
    assert all("first home visit" in f.message for f in results.findings)


def test_hv010_first_visit_same_day_earlier_visit_counts(tmp_path):
    rows = [
        visit(2, learner_id="L50", start=(9, 0), end=(9, 45)),
        visit(3, learner_id="L50", start=(14, 0), end=(15, 0), second_staff=None),
        visit(4, learner_id="L60", start=(14, 0), end=(15, 0), second_staff=None),
        visit(5, learner_id="L60", start=(16, 0), end=(16, 45)),
    ]
    assert check(tmp_path, "erdington_academy", rows) == [("HV010", "error", 4, "V4", "Second staff")]


def test_hv010_out_of_hours_or_little_info_st_edwards(tmp_path):
    # St Edwards' office hours: 08:30 to 16:30, weekdays
    rows = [
        visit(2, second_staff=None),
        visit(3, second_staff=None, start=(8, 0), end=(9, 0)),
        visit(4, second_staff=None, start=(14, 30), end=(16, 45)),
        visit(5, second_staff=None, date=SATURDAY),
        visit(6, second_staff=None, risk_notes=None),
        visit(7, start=(8, 0), end=(9, 0)),  # out of hours but in a pair
        visit(8, second_staff=None, start=(8, 30), end=(11, 30)),
        visit(9, second_staff=None, start=(13, 30), end=(16, 30)),
    ]
    results = checked(tmp_path, "st_edwards", rows)
    assert found(results.findings) == [
        ("HV010", "error", 3, "V3", "Second staff"),
        ("HV010", "error", 4, "V4", "Second staff"),
        ("HV010", "error", 5, "V5", "Second staff"),
        ("HV010", "error", 6, "V6", "Second staff"),
        ("HV011", "warning", 3, "V3", "Start time"),
        ("HV011", "warning", 4, "V4", "Start time"),
        ("HV011", "warning", 5, "V5", "Start time"),
        ("HV011", "warning", 7, "V7", "Start time"),
    ]
    said = {f.row: f.message for f in results.findings if f.rule == "HV010"}
    assert "starts before 08:30" in said[3]
    assert "ends after 16:30" in said[4]
    assert "at the weekend" in said[5]
    assert "little or nothing is known" in said[6]


# ---------------------------------------------------------------- HV011 out of hours


def _minus(hm: str, minutes: int) -> tuple[int, int]:
    moment = dt.datetime.combine(PAST, dt.time.fromisoformat(hm)) + dt.timedelta(minutes=minutes)
    return moment.hour, moment.minute


@pytest.mark.parametrize("policy", enabled("HV011"))
def test_hv011_office_hours_weekends_and_evenings(tmp_path, policy):
    opens = PROFILES[policy].timings.office_start.strftime("%H:%M")
    closes = PROFILES[policy].timings.office_end.strftime("%H:%M")
    rows = [
        visit(2, start=_minus(opens, 0), end=_minus(opens, 60)),  # starts on the dot: fine
        visit(3, start=_minus(opens, -1), end=_minus(opens, 60)),  # a minute early
        visit(4, start=_minus(closes, -60), end=_minus(closes, 0)),  # back on the dot: fine
        visit(5, start=_minus(closes, -60), end=_minus(closes, 1)),  # a minute late
        visit(6, date=SATURDAY),
        visit(7, date=SATURDAY + dt.timedelta(days=1)),
        visit(8, start=_minus(closes, 30), end=_minus(closes, 90)),  # an evening visit
        visit(9, "cancelled", date=SATURDAY),
    ]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [
        ("HV011", "warning", row, f"V{row}", "Start time") for row in (3, 5, 6, 7, 8)
    ]
    said = {f.row: f.message for f in results.findings}
    assert said[3] == f"The visit starts before {opens}."
    assert said[5] == f"The visit ends after {closes}."
    assert said[6] == said[7] == "The visit is at the weekend."
    assert said[8] == f"The visit starts after {closes}."


@pytest.mark.parametrize("policy", enabled("HV011"))
def test_hv011_evening_start_without_a_return_time(tmp_path, policy):
    rows = [visit(2, "planned", start=(19, 0), end=(20, 0), expected_return=None, expected_duration=None)]
    assert only(check(tmp_path, policy, rows), "HV011") == [("HV011", "warning", 2, "V2", "Start time")]


# ---------------------------------------------------------------- HV017 limits, HV019 rows


@pytest.mark.parametrize("policy", POLICIES)
def test_hv017_maximum_length_from_the_profile(tmp_path, policy):
    limit = int(PROFILES[policy].param("HV017", "max_minutes"))
    rows = [
        visit(2, "planned", start=(10, 0), end=_minus("10:00", limit)),
        visit(3, "planned", start=(10, 0), end=_minus("10:00", limit + 1)),
    ]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [("HV017", "warning", 3, "V3", "Expected return")]
    assert f"{limit + 1} minutes" in results.findings[0].message
    assert f"{limit} minutes" in results.findings[0].message


@pytest.mark.parametrize("policy", POLICIES)
def test_hv019_names_every_other_row(tmp_path, policy):
    rows = [visit(2), visit(3), visit(4, visit_id="V2"), visit(5, visit_id="V2"), visit(6, visit_id=None)]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [("HV019", "error", row, "V2", "Visit ID") for row in (2, 4, 5)]
    said = {f.row: f.message for f in results.findings}
    assert said[2] == "Visit ID V2 is also used on rows 4, 5."
    assert said[4] == "Visit ID V2 is also used on rows 2, 5."
    assert said[5] == "Visit ID V2 is also used on rows 2, 4."


# ---------------------------------------------------------------- HV022 safe return, HV023


def _return_case(policy, **changes):
    # today 14:00-15:00, nobody has confirmed the safe return
    return visit(2, "planned", date=NOW.date(), start=(14, 0), end=(15, 0), **changes)


def _grace(policy: str, rule_id: str = "HV022") -> int:
    return int(PROFILES[policy].timings.grace_minutes)  # one grace for HV022 and HV023: [timings]


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_alert_one_minute_after_return_plus_grace(tmp_path, policy):
    due = london(2026, 11, 23, 15, 0)
    limit = due + dt.timedelta(minutes=_grace(policy))
    rows = [_return_case(policy, lead_staff="Sam Teacher", phone_taken=7700900123)]
    assert only(check(tmp_path, policy, rows, now=limit), "HV022") == []
    results = checked(tmp_path, policy, rows, now=limit + dt.timedelta(minutes=1))
    assert only(found(results.findings), "HV022") == [("HV022", "alert", 2, "V2", "Returned safely at")]
    [alert] = [f for f in results.findings if f.rule == "HV022"]
    steps = PROFILES[policy].param("HV022", "escalation")
    assert "Sam Teacher" in alert.message
    assert "07700 900123" in alert.message
    assert "Mon 23 Nov 2026 15:00" in alert.message
    assert f"Next step: {steps[0]}." in alert.message
    for step in steps[1:]:
        assert step[0].lower() + step[1:] in alert.fix


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_is_data_first_and_worded_from_its_template(tmp_path, policy):
    """The alert carries what it says (due time, grace, staff, phone, next step) and is worded from the
    rule's template at the edge: its message is exactly that template filled with those values."""
    from homevisits.findings import Fill, render
    from homevisits.rules import RULES

    due = london(2026, 11, 23, 15, 0)
    rows = [_return_case(policy, lead_staff="Sam Teacher", phone_taken=7700900123)]
    now = due + dt.timedelta(minutes=_grace(policy) + 1)
    [alert] = [f for f in checked(tmp_path, policy, rows, now=now).findings if f.rule == "HV022"]
    values = alert.values
    assert values["due_at"] == "2026-11-23T15:00:00+00:00" and values["grace_minutes"] == _grace(policy)
    assert (values["staff"], values["phone"]) == ("Sam Teacher", "07700 900123")
    assert values["next_step"] == PROFILES[policy].param("HV022", "escalation")[0]
    text = RULES["HV022"].texts["overdue"]
    fill = Fill({}, "Returned safely at", alert.row, ZoneInfo("Europe/London"))
    assert alert.message == render(text.message, values, fill)
    assert alert.fix == render(text.fix, values, fill) and alert.fix.endswith(
        "Record the time in Returned safely at once they are safe."
    )


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_after_escalation_names_the_following_step(tmp_path, policy):
    rows = [_return_case(policy, escalated_at="15:40")]
    results = checked(tmp_path, policy, rows, now=london(2026, 11, 23, 16, 0))
    [alert] = [f for f in results.findings if f.rule == "HV022"]
    assert alert.severity == "alert"
    assert f"Next step: {PROFILES[policy].param('HV022', 'escalation')[1]}." in alert.message


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_expected_duration_sets_the_return(tmp_path, policy):
    rows = [_return_case(policy, expected_return=None, expected_duration="1h")]
    limit = london(2026, 11, 23, 15, 0) + dt.timedelta(minutes=_grace(policy))
    assert only(check(tmp_path, policy, rows, now=limit), "HV022") == []
    assert only(check(tmp_path, policy, rows, now=limit + dt.timedelta(minutes=1)), "HV022") == [
        ("HV022", "alert", 2, "V2", "Returned safely at")
    ]


@pytest.mark.parametrize("policy", enabled("HV022"))
@pytest.mark.parametrize("status", ["Cancelled", "Not carried out", "canceled"])
def test_hv022_cancelled_visits_never_alert(tmp_path, policy, status):
    rows = [_return_case(policy, status=status, cancellation_reason="Learner ill")]
    for now in (london(2026, 11, 23, 16, 0), london(2026, 11, 23, 23, 59), london(2026, 11, 30, 9, 0)):
        assert check(tmp_path, policy, rows, now=now) == []


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_confirmed_return_is_not_an_alert(tmp_path, policy):
    rows = [_return_case(policy, returned_at="15:45")]
    assert only(check(tmp_path, policy, rows, now=london(2026, 11, 23, 17, 0)), "HV022") == []


@pytest.mark.parametrize("policy", enabled("HV022"))
def test_hv022_old_unconfirmed_return_is_an_error_not_an_alert(tmp_path, policy):
    hours = int(PROFILES[policy].timings.alert_hours)
    limit = london(2026, 11, 23, 15, 0) + dt.timedelta(minutes=_grace(policy))
    rows = [_return_case(policy)]
    assert only(
        check(tmp_path, policy, rows, now=limit + dt.timedelta(hours=hours, minutes=-1)), "HV022"
    ) == [("HV022", "alert", 2, "V2", "Returned safely at")]
    results = checked(tmp_path, policy, rows, now=limit + dt.timedelta(hours=hours, minutes=1))
    assert only(found(results.findings), "HV022") == [("HV022", "error", 2, "V2", "Returned safely at")]
    [old] = [f for f in results.findings if f.rule == "HV022"]
    assert "Sam Teacher" in old.message and "never recorded" in old.message


@pytest.mark.parametrize("policy", enabled("HV023"))
def test_hv023_grace_from_the_profile(tmp_path, policy):
    grace = _grace(policy, "HV023")
    rows = [
        visit(2, returned_at=f"{at(PAST, (11, 30), grace):%H:%M}"),
        visit(3, returned_at=f"{at(PAST, (11, 30), grace + 1):%H:%M}"),
    ]
    results = checked(tmp_path, policy, rows)
    assert found(results.findings) == [("HV023", "warning", 3, "V3", "Returned safely at")]
    assert f"{grace + 1} minutes after the expected return" in results.findings[0].message


# ---------------------------------------------------------------- HV025 the safeguarding system


@pytest.mark.parametrize("policy", enabled("HV025"))
def test_hv025_logged_on_the_right_system(tmp_path, policy):
    [system] = PROFILES[policy].param("HV025", "systems")
    other = "Bromcom"
    rows = [
        visit(2, safeguarding_concern="YES", logged_on=system.lower()),
        visit(3, safeguarding_concern="YES", logged_on=other),
        visit(4, safeguarding_concern="YES"),
        visit(5, safeguarding_concern="NO", logged_on=other),
    ]
    results = checked(tmp_path, policy, rows)
    column = "Logged on (CPOMS/MyConcern/Bromcom)"
    assert found(results.findings) == [
        ("HV025", "error", 3, "V3", column),
        ("HV025", "error", 4, "V4", column),
    ]
    said = {f.row: f.message for f in results.findings}
    assert other in said[3] and system in said[3]
    assert system in results.findings[1].fix


# ---------------------------------------------------------------- HV027 stale status, both directions


@pytest.mark.parametrize("policy", POLICIES)
def test_hv027_still_planned_and_completed_in_the_future(tmp_path, policy):
    days = int(PROFILES[policy].param("HV027", "stale_days"))
    today = NOW.date()
    rows = [
        visit(2, "planned", date=today - dt.timedelta(days=days)),
        visit(3, "planned", date=today - dt.timedelta(days=days + 1)),
        visit(4, date=today + dt.timedelta(days=1)),
        visit(5, date=today),
        visit(6, "no_answer", date=today + dt.timedelta(days=7)),
        visit(7, "planned", date=today - dt.timedelta(days=30), status=None),
        visit(8, "cancelled", date=today - dt.timedelta(days=30)),
    ]
    results = checked(tmp_path, policy, rows)
    assert only(found(results.findings), "HV027") == [
        ("HV027", "error", 4, "V4", "Status"),
        ("HV027", "error", 6, "V6", "Status"),
        ("HV027", "warning", 3, "V3", "Status"),
        ("HV027", "warning", 7, "V7", "Status"),  # a past visit whose Status was never filled in
    ]
    said = {f.row: f.message for f in results.findings if f.rule == "HV027"}
    assert said[7].startswith("No status is recorded, but the visit date")
    stale = today - dt.timedelta(days=days + 1)
    assert f"{stale:%d/%m/%Y}" in said[3] and f"{days} days" in said[3]
    assert f"{today + dt.timedelta(days=1):%d/%m/%Y}" in said[4] and "future" in said[4]


@pytest.mark.parametrize("policy", POLICIES)
def test_messy_but_readable_cells_read_like_tidy_ones(tmp_path, policy):
    messy = visit(
        3,
        "planned",
        visit_date="Thu 26th November 2026",
        start_time="10.00",
        expected_return="11.30am",
        expected_duration="1h30",
        phone_taken="+44 (0)7700 900123",
        parent_phone=1134960000,
        parent_consent="y",
        risk_level=" low",
        status="booked",
        safeguarding_informed="✓",
        safe_word_agreed="Yes ",
        dangerous_animals="n",
        laptop_taken="FALSE",
        location_type="at home",
        form_sent_at="2026-11-20 09:00",
    )
    results = checked(tmp_path, policy, [visit(2, "planned"), messy])
    assert found(results.findings) == []
    tidy, untidy = results.visits.record(0), results.visits.record(1)
    for field in (
        "visit_date",
        "start_time",
        "expected_return",
        "expected_duration",
        "phone_taken",
        "status",
    ):
        assert untidy[field] == tidy[field], field
    assert untidy["parent_phone"] == "0113 496 0000"


# ---------------------------------------------------------------- HV029 every header accounted for


@pytest.mark.parametrize("policy", POLICIES)
def test_hv029_names_each_unplaced_header_with_the_columns_line_that_maps_it(tmp_path, policy):
    rows = [{**{k: v for k, v in visit(2).items() if k != "Expected return"}, "Back by": "11:30"}]
    columns = [h for h in ALL_HEADERS if h != "Expected return"] + ["Back by"]
    results = checked(tmp_path, policy, rows, columns=columns)
    [hit] = [f for f in results.findings if f.rule == "HV029"]
    assert (hit.severity, hit.row, hit.column) == ("warning", 1, None)
    letter = "AR"  # the 44th column: after every column the schema knows
    assert hit.message == (
        f"The header 'Back by' (column {letter}) is not a column homevisits knows, so its cells are not read; "
        "it looks like 'Expected return'."
    )
    assert (
        hit.fix
        == 'If it holds Expected return, add under [columns] in the config: "Back by" = "expected_return".'
    )
    # and with that line, the column is read and the finding goes
    mapped = run_check(tmp_path / "log.xlsx", policy, NOW, columns={"Back by": "expected_return"})
    assert not [f for f in mapped.findings if f.rule == "HV029"]
    assert mapped.visits.record(0)["expected_return"] == dt.time(11, 30)


def test_a_header_twice_is_one_sentence_naming_both_columns(tmp_path):
    from homevisits.errors import HomevisitsError

    rows = [{**visit(2), "State": "Planned"}]
    path = sheet(tmp_path, rows, columns=[*ALL_HEADERS, "State"])
    with pytest.raises(HomevisitsError) as caught:
        run_check(path, "omg_education", NOW)
    assert str(caught.value) == (
        "Two columns hold Status: 'Status' in column AH and 'State' in column AS; homevisits cannot tell which "
        "to read. Rename or remove one of them (or map one to another field under [columns])."
    )


def test_phantom_rows_of_tick_box_defaults_are_not_visits_and_are_counted(tmp_path):
    rows = [visit(2)] + [{"Laptop taken": False, "Safe word agreed": True, "Expected duration (mins)": 0}] * 8
    results = checked(tmp_path, "omg_education", rows)
    assert len(results.visits) == 1
    [note] = [f for f in results.findings if f.rule == "HV029"]
    assert note.severity == "info"
    assert note.message == (
        "8 rows below the header (3, 4, 5, 6, 7 and 3 more) hold only tick-box defaults (TRUE/FALSE), 0 or "
        "formulas showing blank: not read as visits."
    )
