"""The JSON report is written by hand for speed: it must be exactly what json.dumps would write."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from homevisits.findings import Finding, Report, to_json

TEXT = st.text(max_size=30)  # quotes, backslashes, %, control characters, emoji...
FINDING = st.builds(
    Finding,
    rule=st.sampled_from(["HV001", "HV002", "HV0%s"]),
    severity=st.sampled_from(["alert", "error", "warning", "info"]),
    row=st.none() | st.integers(1, 10**6),
    visit_id=st.none() | TEXT,
    column=st.none() | TEXT,
    message=TEXT,
    fix=TEXT,
    clause=TEXT,
    field=st.none() | TEXT,
    values=st.none()
    | st.dictionaries(
        TEXT,
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | TEXT
        | st.lists(st.integers() | TEXT, max_size=3),
        max_size=4,
    ),
)


@settings(max_examples=300, deadline=None)
@given(findings=st.lists(FINDING, max_size=12), batch=st.integers(1, 5))
def test_json_report_is_exactly_what_json_dumps_writes(findings, batch):
    from homevisits.findings import json_chunks

    report = Report(source="log.xlsx", policy="omg_education", checked_at="2026-11-23T09:00:00+00:00",
                    rows=3, findings=findings)  # fmt: skip
    written = "".join(json_chunks(report, batch=batch))
    assert json.loads(written) == report.as_dict()
    expected = [json.dumps(f.as_dict(), ensure_ascii=False) for f in findings]
    assert written.split('"findings": [\n', 1)[1].rsplit("\n]}", 1)[0].replace(",\n", ", ") == ", ".join(
        expected
    )
    assert json.loads(to_json(report)) == report.as_dict()  # the one-call form says the same


# ---------------------------------------------------------------- findings are data: rule, field, values


def test_findings_carry_field_and_values_and_word_the_schools_own_headers(tmp_path):
    from workbooks import ALL_HEADERS, NOW, run_check, visit, write_workbook

    rows = [
        visit(2),
        visit(3, approved_by=None),
        visit(4, approved_by="Sam Teacher"),  # the lead staff member approving their own visit
        visit(5, returned_at="12:40"),  # due back 11:30: confirmed 70 minutes late
        visit(6, "cancelled", cancellation_reason=None),
    ]
    log = write_workbook(
        tmp_path / "log.xlsx", rows, columns=ALL_HEADERS, rename={"approved_by": "Manager approval"}
    )
    checked = run_check(log, "omg_education", NOW)
    by_row = {(f.rule, f.row): f for f in checked.findings}

    unapproved = by_row["HV007", 3]
    assert (unapproved.field, unapproved.column, unapproved.values) == (
        "approved_by",
        "Manager approval",
        {"approved_by": None},
    )
    assert (
        unapproved.fix
        == "Discuss the visit with your line manager and record their name in Manager approval."
    )
    own = by_row["HV007", 4]
    assert own.values == {"approved_by": "Sam Teacher", "lead_staff": "Sam Teacher"}
    assert own.message == "The visit is approved by Sam Teacher, who is also leading it."

    late = by_row["HV023", 5]
    assert late.field == "returned_at"
    assert late.values == {
        "returned_at": "2026-11-17T12:40:00+00:00",
        "due_at": "2026-11-17T11:30:00+00:00",
        "minutes_late": 70,
    }
    assert (
        late.message
        == "Safe return was confirmed Tue 17 Nov 2026 12:40, 70 minutes after the expected return."
    )
    assert all(f.blocks_form for f in checked.findings)

    report = json.loads(to_json(checked.report()))
    [entry] = [f for f in report["findings"] if f["rule"] == "HV023"]
    assert entry["field"] == "returned_at" and entry["values"]["minutes_late"] == 70


def test_a_check_finding_names_the_status_that_made_it(tmp_path):
    from workbooks import ALL_HEADERS, NOW, run_check, visit, write_workbook

    rows = [visit(2), visit(3, "cancelled", status="Not carried out", cancellation_reason=None)]
    checked = run_check(
        write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS), "attendance_academy", NOW
    )
    [finding] = [f for f in checked.findings if f.rule == "HV026"]
    assert finding.values == {"status": "Not carried out", "cancellation_reason": None}
    assert finding.message == "The visit is Not carried out with no reason recorded."
    assert (finding.field, finding.column) == ("cancellation_reason", "Cancellation reason")


def test_the_form_deadline_does_not_stop_the_form_it_is_about(tmp_path):
    from workbooks import ALL_HEADERS, NOW, run_check, visit, write_workbook

    rows = [visit(2), visit(3, "planned", form_sent_at=None, approved_by=None)]
    checked = run_check(
        write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS), "omg_education", NOW
    )
    assert {(f.rule, f.blocks_form) for f in checked.findings} == {("HV009", False), ("HV007", True)}


def test_templates_show_values_as_the_school_reads_them():
    from zoneinfo import ZoneInfo

    from homevisits.findings import Fill, render

    fill = Fill({"outcome": "What happened"}, "Visit date", 7, ZoneInfo("Europe/London"))
    values = {
        "due": "2026-06-01T13:30:00+00:00",  # summer time: 14:30 in London
        "day": "2026-04-03",
        "others": [3, 4],
        "one": [9],
        "why": ["starts after 18:00", "is at the weekend"],
        "place": None,
        "seen": True,
        "minutes": 90.0,
    }
    template = (
        "{due:when}|{day:date}|{others:rows}|{one:rows}|{why:and}|{place:or no place}|{place}|{seen}|"
        "{minutes:g}|{column}|{header[outcome]}|row {row}"
    )
    assert render(template, values, fill) == (
        "Mon 01 Jun 2026 14:30|03/04/2026|rows 3, 4|row 9|starts after 18:00 and is at the weekend|no place|"
        "blank|YES|90|Visit date|What happened|row 7"
    )


# ---------------------------------------------------------------- written in bulk, as one by one


@settings(max_examples=200, deadline=None)
@given(findings=st.lists(FINDING, max_size=30))
def test_findings_are_put_in_order_as_sorted_by_sort_key_would_equal_keys_keeping_their_order(findings):
    from homevisits.findings import in_order, sort_key

    expected = sorted(findings, key=sort_key)
    assert [id(f) for f in in_order(findings)] == [id(f) for f in expected]


def test_findings_sharing_values_and_messages_are_written_as_json_dumps_writes_each():
    from homevisits.findings import json_chunks

    alike = {"cell": 'yes "sir" 100%', "reason": "not YES or NO"}
    message = "'x' in Consent could not be read."
    findings = [
        Finding("HV002", "error", row, None if row % 2 else f"HV-{row}", "Consent", message, "Fix.",
                "Policy 4.1", "parent_consent", alike if row % 3 else {"cell": str(row)})
        for row in range(1, 40)
    ]  # fmt: skip
    findings.append(Finding("HV010", "alert", None, None, None, "Sheet-wide.", "Fix.", "4.2"))
    report = Report(source="log.xlsx", policy="p", checked_at="2026-11-23T09:00:00+00:00", rows=40,
                    findings=findings)  # fmt: skip
    written = "".join(json_chunks(report, batch=7))
    body = written.split('"findings": [\n', 1)[1].rsplit("\n]}", 1)[0].replace(",\n", ", ")
    assert body == ", ".join(json.dumps(f.as_dict(), ensure_ascii=False) for f in findings)


def test_many_findings_are_worded_as_each_would_be_alone():
    from zoneinfo import ZoneInfo

    from homevisits.findings import Text, Wording

    texts = {
        "bad": Text("'{cell}' in {column} could not be read: {reason}.", "Correct {column}."),
        "row": Text("Row {row} lists {others:rows}.", "See row {row}."),
    }
    headers = {"visit_date": "Visit date"}
    tz = ZoneInfo("Europe/London")
    values = [{"cell": "32/01", "reason": "no such day"}, {"cell": "x", "reason": "no date"}] * 3
    rows = [2, 3, 4, 5, 6, 7]
    alone = Wording(texts, headers, tz)
    assert Wording(texts, headers, tz).many("bad", values, "Visit date", rows) == [
        alone("bad", v, "Visit date", r) for v, r in zip(values, rows, strict=True)
    ]
    listed = [{"others": [1, 2]}, {"others": [1, 2]}, {"others": [3]}]  # a list: no key, each worded
    assert Wording(texts, headers, tz).many("row", listed, None, [8, 9, 9]) == [
        ("Row 8 lists rows 1, 2.", "See row 8."),
        ("Row 9 lists rows 1, 2.", "See row 9."),
        ("Row 9 lists row 3.", "See row 9."),
    ]


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_an_instant_is_worded_as_strftime_words_it(moment):
    """findings._when spells out what strftime("%a %d %b %Y %H:%M") gives, without it."""
    from zoneinfo import ZoneInfo

    from homevisits.findings import _when

    tz = ZoneInfo("Europe/London")
    instant = moment.replace(tzinfo=dt.UTC).isoformat()
    want = dt.datetime.fromisoformat(instant).astimezone(tz).strftime("%a %d %b %Y %H:%M")
    assert _when.__wrapped__(instant, tz) == want
