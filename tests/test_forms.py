"""Forms: every template renders, carries every field of the school's own form, escapes, prints to PDF."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import http.server
import io
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from homevisits import forms
from homevisits.errors import HomevisitsError
from homevisits.schema import find_header_row, load_schema, map_headers
from homevisits.sources import excel
from homevisits.visits import build_visits

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=LONDON)
FORMS = ("risk_assessment", "lone_working_risk_assessment", "home_visit_record", "generic")

# ---------------------------------------------------------------- the source forms' own labels

# OMG Education, Home Visits Policy, Appendix A (seed 000), the risk levels aside.
APPENDIX_A = [
    "Risk Assessment Form for Home Visits",
    "Name of learner",
    "Name of staff member",
    "Phone number that will be taken on the visit",
    "Date and time of visit",
    "Time of expected return",
    "Address of visit",
    "Phone number of learner",
    "Phone number of parent/carer",
    "Having reviewed all the available information about this learner, I consider the risk of a home visit to be",
    "LOW",
    "MEDIUM",
    "HIGH",
    "If low risk, the visit can go ahead at home; if medium risk, then the visit should go ahead in a public "
    "place such as a library or café. High-risk visits should not be carried out",
    "If applicable, have confirmed with the parent/carer that they are happy for the visit to go ahead.",
    "YES",
    "NO",
    "Approved by (line manager name)",
    "Sent to Jamal Miah via email (date and time)",
]

# ONE MAT Academies Trust, Home Visits Policy, Appendix 1 (seed 001).
APPENDIX_1 = [
    "Lone Working Risk Assessment – Home Visit",
    "Staff",
    "Date",
    "Any vulnerable persons particularly at risk",
    "Safeguarding team aware of visit",
    "Safe Word",
    "Hazards",
    "People",
    "Severity of harm",
    "Likelihood",
    "Risk Level",
    "Controls",
    "Aggressive or violent parent/student/family member",
    "Driving",
    "Movement through public areas e.g. to/from car parks",
    "Illness or injury/ accident",
    "Attack by dog or other animal",
    "Member of staff may be harmed",
    "Member of staff may be harmed or injured",
    "Major injury may occur",
    "Vehicle breakdown",
    "Accident",
    "Intruder in vehicle when unattended",
    "Use of mobile phone",
    "Fatigue",
    "Attack",
    "Theft of property",
    "Remote possibility",
]

# The after-visit record: ONE MAT Appendix 2, Erdington, St Edwards, the attendance academy (seeds 001-004).
VISIT_RECORD = [
    "Home Visit Form",
    "Time of arrival",  # St Edwards §1: times of arrival and departure
    "Time of departure",
    "Location",  # attendance academy 2.3: time, location, name of the pupil
    "Pupil",
    "Staff phone number",  # attendance academy 2.2
    "Who was seen",
    "Contact made",  # Erdington: whether contact was made
    "Note left",  # Erdington: a note when nobody answers
    "Outcome",
    "Follow-up actions",
    "Safeguarding concern raised",
    "Logged on (CPOMS/MyConcern/Bromcom)",
    "CPOMS",
    "MyConcern",
    "Bromcom",
    "Signature of parent/carer",  # attendance academy 2.3
    "Signature of staff member",
]

GENERIC = [
    "Learner",
    "Date and time",
    "Expected return",
    "Address",
    "Reason for visit",
    "Lead staff",
    "Second staff",
    "Phone taken on visit",
    "Line manager",
    "Parent/carer phone",
    "Risk level",
    "Parent/carer consent",
    "Approved by",
    "Authorised by (Principal/DSL)",
    "Safeguarding team informed",
    "Safe word agreed",
    "Arrived at",
    "Departed at",
    "Returned safely at",
    "Outcome",
    "Safeguarding concern",
    "Logged on",
]

LABELS = {
    "risk_assessment": APPENDIX_A,
    "lone_working_risk_assessment": APPENDIX_1,
    "home_visit_record": VISIT_RECORD,
    "generic": GENERIC,
}

# ---------------------------------------------------------------- a workbook through the real pipeline

FULL = {
    "visit_id": "HV-0042",
    "learner_name": "Ava Example",
    "learner_id": "L-1001",
    "learner_phone": "07700 900123",
    "parent_name": "Sam Example",
    "parent_phone": "0113 496 0123",
    "address": "1 Test Street, Birmingham",
    "postcode": "B23 6XX",
    "reason": "Attendance",
    "visit_date": dt.date(2026, 4, 3),
    "start_time": dt.time(14, 30),
    "expected_return": dt.time(16, 0),
    "expected_duration": 60,
    "location_type": "Public place",
    "location_details": "Central Library",
    "lead_staff": "Jo Teacher",
    "staff_email": "jo.teacher@school.example",
    "second_staff": "Pat Buddy",
    "phone_taken": "07700 900456",
    "line_manager": "Max Manager",
    "line_manager_email": "max.manager@school.example",
    "risk_level": "MEDIUM",
    "risk_notes": "Older sibling known to the YOT.",
    "dangerous_animals": "yes",
    "parent_consent": "yes",
    "approved_by": "Max Manager",
    "authorised_by": "Dr Dee Sel",
    "safeguarding_informed": "yes",
    "safe_word_agreed": "yes",
    "laptop_taken": "no",
    "prior_contact": "Two calls and a text",
    "status": "Completed",
    "arrived_at": "14:32",
    "departed_at": "15:20",
    "returned_at": "15:50",
    "outcome": "Met mum and Ava; agreed an attendance plan.",
    "safeguarding_concern": "no",
    "logged_on": "CPOMS",
    "note_left": "no",
}


def write_workbook(path: Path, rows: list[dict]) -> Path:
    from openpyxl import Workbook

    schema = load_schema()
    book = Workbook()
    sheet = book.active
    sheet.title = "Home Visits"
    sheet.append([column.header for column in schema.columns])
    for row in rows:
        sheet.append([row.get(column.field) for column in schema.columns])
    book.save(path)
    return path


def read_visits(path: Path):
    schema = load_schema()
    raw = excel.read(path)
    header_pos = find_header_row(raw.rows, schema)
    mapping = map_headers(raw.rows[header_pos], schema)
    return build_visits(raw, schema, mapping, header_pos, LONDON)


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """Row 2: every field; row 3: nearly empty (a learner and a date, no Visit ID)."""
    folder = tmp_path_factory.mktemp("book")
    nearly_empty = {"learner_name": "Noor Example", "visit_date": "10/04/2026"}
    table = read_visits(write_workbook(folder / "log.xlsx", [FULL, nearly_empty]))
    assert not table.problems
    return table


def render(form: str, visit: dict, **extra) -> str:
    return forms.render_form(
        form, visit, school="Example Academy", now=NOW, extra={"sent_to": "Jamal Miah", **extra}
    )


def text_of(page: str) -> str:
    """What a reader sees: tags stripped, entities decoded, spaces collapsed."""
    body = page.split("<body>", 1)[1]
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def fold(text: str) -> str:
    return re.sub(r"\s*/\s*", "/", " ".join(text.split()))


# ---------------------------------------------------------------- filters


def test_dates_are_uk_with_weekday_and_times_24_hour_in_london():
    assert forms.uk_date(dt.date(2026, 4, 3)) == "Friday 3 April 2026"
    assert forms.hhmm(dt.time(14, 30)) == "14:30"
    # 13:30 UTC is 14:30 in London in summer time, and 13:30 in winter.
    assert forms.hhmm(dt.datetime(2026, 4, 3, 13, 30, tzinfo=dt.UTC)) == "14:30"
    assert forms.hhmm(dt.datetime(2026, 1, 9, 13, 30, tzinfo=dt.UTC)) == "13:30"
    assert forms.uk_datetime(dt.datetime(2026, 4, 3, 23, 30, tzinfo=dt.UTC)) == "Saturday 4 April 2026, 00:30"
    assert forms.date_and_time(dt.date(2026, 4, 3), dt.time(9, 5)) == "Friday 3 April 2026 at 09:05"
    assert forms.minutes(45) == "45 minutes" and forms.minutes(90) == "1 h 30 min"


def test_missing_values_are_visible_blanks_never_none():
    for filt in (forms.fill, forms.uk_date, forms.hhmm, forms.uk_datetime, forms.yes_no, forms.minutes):
        assert filt(None) == forms.BLANK
    assert forms.fill("  ") == forms.BLANK
    assert forms.yes_no(True) == "YES" and forms.yes_no(False) == "NO"
    assert forms.yes_no("Bluebell") == forms.BLANK
    assert forms.date_and_time(None, dt.time(10, 0)).startswith(forms.BLANK)


# ---------------------------------------------------------------- the environment


def test_autoescape_is_on_for_every_template():
    env = forms.environment()
    names = [n for n in env.list_templates() if n.endswith(".j2")]
    assert {f"{f}.html.j2" for f in FORMS} <= set(names)
    assert "_base.html.j2" in names and "_macros.html.j2" in names
    for name in names:
        assert env.autoescape(name) is True, name


def test_every_bundled_form_is_listed():
    assert set(FORMS) <= set(forms.available_forms())


def test_an_unknown_form_is_a_plain_error():
    with pytest.raises(HomevisitsError, match="no form template 'risk_assesment"):
        forms.render_form("risk_assesment", {}, school="X", now=NOW)
    with pytest.raises(HomevisitsError, match="not a form name"):
        forms.render_form("../secrets", {}, school="X", now=NOW)


# ---------------------------------------------------------------- rendering through the real pipeline


@pytest.mark.parametrize("form", FORMS)
def test_each_form_renders_a_full_row(visits, form):
    visit = visits.record(0)
    page = render(form, visit)
    shown = text_of(page)
    assert "None" not in shown and "nan" not in shown.split()
    assert "HV-0042" in shown and "Example Academy" in shown
    assert "Ava Example" in shown
    assert "Friday 3 April 2026" in shown
    assert "14:30" in shown or form == "home_visit_record"
    assert '<style id="homevisits-print">' in page and "@page" in page and "size: A4" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no remote resources"


@pytest.mark.parametrize("form", FORMS)
def test_each_form_renders_a_nearly_empty_row_with_blanks(visits, form):
    visit = visits.record(1)
    assert visit["visit_id"] is None and visit["lead_staff"] is None
    page = render(form, visit)
    shown = text_of(page)
    assert "None" not in shown
    assert "Noor Example" in shown
    assert "Friday 10 April 2026" in shown
    assert page.count('class="blank"') >= 8
    assert "(none yet)" in shown and "sheet row 3" in shown


@pytest.mark.parametrize("form", FORMS)
def test_every_field_of_the_source_form_is_present(visits, form):
    shown = fold(text_of(render(form, visits.record(1))))
    missing = [label for label in LABELS[form] if fold(label) not in shown]
    assert not missing


def test_risk_assessment_names_the_contact_and_marks_the_risk_level(visits):
    page = render("risk_assessment", visits.record(0))
    assert "Sent to Jamal Miah via email (date and time)" in text_of(page)
    chosen = re.findall(r'class="choice chosen"><span class="box">X</span>(\w+)', page)
    assert chosen == ["MEDIUM", "YES"]
    assert '<tr class="selected"><th>MEDIUM</th>' in page
    default = forms.render_form("risk_assessment", visits.record(0), school="X", now=NOW)
    assert "Sent to the safeguarding contact via email" in text_of(default)


def test_a_high_risk_visit_says_it_must_not_go_ahead():
    page = render("risk_assessment", {"row": 5, "risk_level": "HIGH"})
    assert "must not be carried out" in text_of(page)


# ---------------------------------------------------------------- safety of what is rendered


@pytest.mark.parametrize("form", FORMS)
def test_a_script_in_a_learner_name_prints_as_text(visits, form):
    visit = {**visits.record(0), "learner_name": "<script>alert('x')</script>", "outcome": '"><img src=x>'}
    page = render(form, visit)
    assert "<script>alert" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script>alert('x')</script>" in text_of(page)


@pytest.mark.parametrize("form", FORMS)
def test_the_safe_word_itself_is_never_printed(visits, form):
    visit = {**visits.record(0), "safe_word_agreed": "Bluebell"}
    page = render(form, visit, safe_word="Bluebell")
    assert "Bluebell" not in page


def test_lone_working_controls_follow_the_visit(visits):
    paired = text_of(render("lone_working_risk_assessment", visits.record(0)))
    assert "Two-person visit with Pat Buddy" in paired
    assert "A dangerous animal is recorded at this address." in paired
    assert "Agreed (never written here)" in paired
    assert "Evening visit" not in paired and "Lone visit" not in paired

    alone_evening = {
        **visits.record(0),
        "second_staff": None,
        "dangerous_animals": False,
        "start_time": dt.time(18, 30),
        "start_at": dt.datetime(2026, 4, 3, 18, 30, tzinfo=LONDON),
        "return_due_at": dt.datetime(2026, 4, 3, 19, 30, tzinfo=LONDON),
    }
    page = render("lone_working_risk_assessment", alone_evening)
    shown = text_of(page)
    assert "Lone visit: arrange a second member of staff" in shown
    assert "Evening visit: it runs after 18:00" in shown
    assert "Driving after dark" in shown and "After dark: keep to lit, busy routes." in shown
    assert "No dangerous animal recorded" in shown
    assert page.count('<tr class="raised">') == 3  # aggression (alone), driving and public areas (evening)
    later = text_of(render("lone_working_risk_assessment", alone_evening, evening_from="19:00"))
    assert "Evening visit: it runs after 19:00" in later


def test_the_parent_copy_leaves_out_the_schools_safeguarding_section(visits):
    school = text_of(render("home_visit_record", visits.record(0)))
    parent = text_of(render("home_visit_record", visits.record(0), copy="parent"))
    assert "Safeguarding concern raised" in school and "Safeguarding concern raised" not in parent
    assert "Parent/Carer Copy" in parent
    unsigned = text_of(render("home_visit_record", visits.record(0), signatures=False))
    assert "Signature of" not in unsigned


def test_a_profile_folder_comes_first_in_the_search_path(tmp_path, visits):
    (tmp_path / "risk_assessment.html.j2").write_text(
        '{% extends "_base.html.j2" %}{% block title %}Our own form{% endblock %}'
        "{% block body %}<p>Learner: {{ visit.learner_name }}</p>{% endblock %}",
        encoding="utf-8",
    )
    page = forms.render_form(
        "risk_assessment", visits.record(0), school="X", now=NOW, template_dirs=[tmp_path]
    )
    assert "Our own form" in page and "Learner: Ava Example" in page
    assert "size: A4" in page  # the bundled stylesheet and base still apply
    assert forms.environment([tmp_path]).autoescape("risk_assessment.html.j2")
    assert "Name of learner" in forms.render_form("risk_assessment", visits.record(0), school="X", now=NOW)


# ---------------------------------------------------------------- PDF


@pytest.fixture(scope="module")
def pdfs(visits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pdf")
    out = {}
    for form in FORMS:
        page = render(form, visits.record(0))
        out[form] = forms.render_pdf(page, folder / f"HV-0042-{form}.pdf", visit_id="HV-0042")
    return out


@pytest.mark.parametrize("form", FORMS)
def test_the_pdf_opens_and_holds_the_visit(pdfs, form):
    from pypdf import PdfReader

    reader = PdfReader(pdfs[form])
    assert len(reader.pages) >= 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "HV-0042" in text and "Ava Example" in text
    title = reader.metadata.title
    assert title.startswith("HV-0042 – ") and "Ava" not in title
    assert reader.metadata.author is None


def _pixels_not_white(pdf: Path, out_dir: Path) -> tuple[int, int]:
    """(dark pixels, all pixels) of page 1 rendered at 50 dpi in grey by pdftoppm."""
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "50",
            "-gray",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(out_dir / pdf.stem),
        ],
        check=True,
        capture_output=True,
    )
    data = (out_dir / f"{pdf.stem}.pgm").read_bytes()
    # PGM: "P5\n<width> <height>\n<maxval>\n" then one byte per pixel.
    magic, width, height, maxval, pixels = re.match(
        rb"(P5)\s+(\d+)\s+(\d+)\s+(\d+)\s(.*)", data, re.S
    ).groups()
    size = int(width) * int(height)
    assert magic == b"P5" and int(maxval) == 255 and len(pixels) == size
    return sum(1 for value in pixels if value < 200), size


@pytest.mark.parametrize("form", FORMS)
def test_the_pdf_prints_a_page_that_is_not_blank(pdfs, form, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed (apt-get install -y poppler-utils)")
    dark, size = _pixels_not_white(pdfs[form], tmp_path)
    assert size > 100_000  # A4 at 50 dpi is 413 x 585
    assert dark > size * 0.01


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"body { color: red }")

    def log_message(self, *args):
        pass


def test_the_pdf_renderer_never_fetches_a_remote_url(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = (
            f'<html><head><meta name="form-title" content="Test"><link rel="stylesheet" href="{base}/a.css">'
            f"<style>@import url({base}/b.css); @font-face {{ font-family: X; src: url({base}/f.woff) }}</style>"
            f'</head><body><p>HV-0009</p><img src="{base}/c.png"></body></html>'
        )
        out = forms.render_pdf(page, tmp_path / "x.pdf", visit_id="HV-0009")
    finally:
        server.shutdown()
        server.server_close()
    assert out.exists() and out.stat().st_size > 500
    assert _Recorder.hits == []


# ---------------------------------------------------------------- many forms


def test_write_forms_names_files_by_visit_id_or_row(visits, tmp_path):
    paths = forms.write_forms(
        visits,
        [0, 1],
        ["risk_assessment", "home_visit_record"],
        tmp_path / "out",
        school="X",
        now=NOW,
        pdf=False,
    )
    names = sorted(p.name for p in paths)
    assert names == [
        "HV-0042-home_visit_record.html",
        "HV-0042-risk_assessment.html",
        "row-3-home_visit_record.html",
        "row-3-risk_assessment.html",
    ]
    assert "Ava Example" in (tmp_path / "out" / "HV-0042-risk_assessment.html").read_text(encoding="utf-8")


def test_write_forms_with_pdf_and_awkward_or_repeated_ids(tmp_path):
    rows = [
        {**FULL, "visit_id": "HV/7.a"},
        {**FULL, "visit_id": "HV/7.a", "learner_name": "Bea Example"},
        {**FULL, "visit_id": "HV/7 <a> Cara Example", "learner_name": "Cara Example"},
    ]
    table = read_visits(write_workbook(tmp_path / "log.xlsx", rows))
    paths = forms.write_forms(table, [0, 1, 2], ["generic"], tmp_path / "out", school="X", now=NOW, pdf=True)
    assert [p.name for p in paths] == [
        "HV_7.a-generic.html",
        "HV_7.a-generic.pdf",
        "HV_7.a-row3-generic.html",
        "HV_7.a-row3-generic.pdf",
        # not a header-safe ID (a space, <>, a name): the file is named by the row, never the cell
        "row-4-generic.html",
        "row-4-generic.pdf",
    ]
    assert "Bea Example" in paths[2].read_text(encoding="utf-8")
    page = paths[4].read_text(encoding="utf-8")
    assert "<title>row-4 – " in page and "HV/7 &lt;a&gt; Cara Example" in page  # shown as text


def test_write_forms_checks_the_form_names_before_writing(visits, tmp_path):
    with pytest.raises(HomevisitsError):
        forms.write_forms(visits, [0], ["generic", "nope"], tmp_path / "out", school="X", now=NOW, pdf=False)
    assert not list((tmp_path / "out").glob("*"))


def test_progress_bar_counts_to_the_total():
    stream = io.StringIO()
    bar = forms.Progress(4, stream=stream, width=8)
    for _ in range(4):
        bar.step()
    bar.done()
    assert stream.getvalue().endswith("\rforms [########] 4/4\n")
    assert "\rforms [##......] 1/4" in stream.getvalue()


# ---------------------------------------------------------------- which visits are due


def test_visits_due_for_a_form(tmp_path):
    base = {"learner_name": "A Learner", "risk_level": "LOW", "status": "Planned", "start_time": "10:00"}
    rows = [
        {**base, "visit_id": "due", "visit_date": "03/04/2026"},
        {**base, "visit_id": "high", "visit_date": "03/04/2026", "risk_level": "HIGH"},
        {**base, "visit_id": "sent", "visit_date": "03/04/2026", "form_sent_at": "01/04/2026 08:00"},
        {**base, "visit_id": "done", "visit_date": "03/04/2026", "status": "Completed"},
        {**base, "visit_id": "past", "visit_date": "31/03/2026"},  # began 23 h ago: still owed, late
        {**base, "visit_id": "long past", "visit_date": "30/03/2026"},  # began 47 h ago: no longer
        {**base, "visit_id": "far", "visit_date": "30/04/2026"},
        {**base, "visit_id": "no risk yet", "visit_date": "14/04/2026", "risk_level": None},
        {**base, "visit_id": "no date", "visit_date": None},
        {**base, "visit_id": "no status yet", "visit_date": "07/04/2026", "status": None},
        {**base, "visit_id": "cancelled", "visit_date": "07/04/2026", "status": "Cancelled"},
    ]
    table = read_visits(write_workbook(tmp_path / "log.xlsx", rows))
    due = forms.visits_due_for_form(table, NOW)
    # One definition with the scheduled job (state.form_conditions): a visit that began under a day ago
    # is still owed its form, late. This list used to leave "past" out, the drift issue 13 removes.
    assert [table.record(i)["visit_id"] for i in due] == ["due", "past", "no risk yet", "no status yet"]
    assert [table.record(i)["visit_id"] for i in forms.visits_due_for_form(table, NOW, window_days=5)] == [
        "due",
        "past",
    ]


def test_forms_due_and_the_scheduled_job_owe_the_same_forms(tmp_path):
    """forms --due is the job's own test (state.form_conditions) plus "the sheet shows no form sent"."""
    from homevisits.state import first_failed, form_conditions, form_unsent, passing

    base = {"learner_name": "A Learner", "risk_level": "LOW", "status": "Planned", "start_time": "10:00"}
    rows = [
        {**base, "visit_id": "due", "visit_date": "03/04/2026"},
        {**base, "visit_id": "sent", "visit_date": "03/04/2026", "form_sent_at": "01/04/2026 08:00"},
        {**base, "visit_id": "late", "visit_date": "31/03/2026"},
        {**base, "visit_id": None, "visit_date": "03/04/2026"},
        {**base, "visit_id": "called off", "visit_date": "03/04/2026", "status": "Not carried out"},
    ]
    table = read_visits(write_workbook(tmp_path / "log.xlsx", rows))
    conditions = form_conditions(table, NOW, 14)
    assert passing(conditions) == [0, 1, 2]  # the job looks at the sent one too (its ledger decides)
    assert forms.visits_due_for_form(table, NOW) == passing([*conditions, form_unsent(table)]) == [0, 2]
    assert [first_failed([*conditions, form_unsent(table)], i, clock=True) for i in range(5)] == [
        None,
        "form already sent",
        None,
        "no Visit ID",
        "visit not carried out",
    ]


# ---------------------------------------------------------------- the command


def _config(
    tmp_path: Path,
    rows: list[dict],
    policy: str = "omg_education",
    school: str = 'school = "Example Academy"',
) -> Path:
    write_workbook(tmp_path / "log.xlsx", rows)
    config = tmp_path / "homevisits.toml"
    config.write_text(f'policy = "{policy}"\n{school}\n\n[source]\npath = "log.xlsx"\n', encoding="utf-8")
    return config


def test_forms_command_writes_the_due_forms_as_html_and_pdf(tmp_path, capsys):
    from homevisits.cli import main

    rows = [
        {**FULL, "visit_id": "HV-0001", "status": "Planned", "risk_level": "LOW", "arrived_at": None},
        {**FULL, "visit_id": "HV-0002", "status": "Planned", "risk_level": "HIGH"},
        {**FULL, "visit_id": "HV-0003"},  # completed
    ]
    config = _config(tmp_path, rows)
    code = main(["forms", "--config", str(config), "--due", "--pdf", "--now", "2026-04-01T09:00"])
    assert code == 0
    out_dir = tmp_path / "state" / "forms"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "HV-0001-risk_assessment.html",
        "HV-0001-risk_assessment.pdf",
    ]
    page = (out_dir / "HV-0001-risk_assessment.html").read_text(encoding="utf-8")
    # Another school on OMG Education's profile: never OMG's contact or OMG's phone.
    assert "Sent to the safeguarding contact via email (date and time)" in text_of(page)
    assert "Jamal" not in page and "OMG mobile" not in page
    assert "Example Academy" in page
    assert capsys.readouterr().out.split() == [
        str(out_dir / "HV-0001-risk_assessment.html"),
        str(out_dir / "HV-0001-risk_assessment.pdf"),
    ]


def test_forms_due_names_a_row_owed_a_form_but_for_its_visit_id(tmp_path, capsys):
    from homevisits.cli import main

    rows = [
        {**FULL, "visit_id": "HV-0001", "status": "Planned", "risk_level": "LOW", "arrived_at": None},
        {**FULL, "visit_id": None, "status": "Planned", "risk_level": "LOW", "arrived_at": None},
    ]
    config = _config(tmp_path, rows)
    out = tmp_path / "out"
    assert (
        main(["forms", "--config", str(config), "--due", "--out", str(out), "--now", "2026-04-01T09:00"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["HV-0001-risk_assessment.html"]
    assert "Row(s) 3 would need a form but have no Visit ID yet" in capsys.readouterr().err


def test_forms_command_for_chosen_visits_and_an_unknown_one(tmp_path, capsys):
    from homevisits.cli import main

    config = _config(tmp_path, [FULL, {**FULL, "visit_id": "HV-0043"}], policy="one_mat")
    out = tmp_path / "out"
    assert (
        main(
            [
                "forms",
                "--config",
                str(config),
                "--visit",
                "HV-0043",
                "--out",
                str(out),
                "--now",
                "2026-04-01T09:00",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "HV-0043-lone_working_risk_assessment.html",
        "HV-0043-one_mat_appendix_2_parent_copy.docx",  # Appendix 2, the parent/carer copy, in Word
    ]
    capsys.readouterr()
    assert main(["forms", "--config", str(config), "--visit", "HV-9999", "--out", str(out)]) == 2
    assert "No row has the Visit ID 'HV-9999'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("school", "present", "absent"),
    [
        ('school = "OMG Education"', ["Sent to Jamal Miah via email", "A charged OMG mobile phone"], []),
        (
            '[school]\nname = "Example Academy"\nphone_wording = "The school mobile from reception."\n'
            'safeguarding_contact = { name = "Ann Lead", email = "ann@example.org" }',
            ["Sent to Ann Lead via email", "The school mobile from reception."],
            ["Jamal", "OMG mobile"],
        ),
    ],
)
def test_a_form_names_the_schools_own_contact_and_phone_wording(tmp_path, capsys, school, present, absent):
    from homevisits.cli import main

    rows = [{**FULL, "visit_id": "HV-0001", "status": "Planned", "risk_level": "LOW", "arrived_at": None}]
    config = _config(tmp_path, rows, school=school)
    assert main(["forms", "--config", str(config), "--due", "--now", "2026-04-01T09:00"]) == 0
    text = text_of(
        (tmp_path / "state" / "forms" / "HV-0001-risk_assessment.html").read_text(encoding="utf-8")
    )
    assert all(words in text for words in present) and not any(words in text for words in absent)
