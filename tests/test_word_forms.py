"""Word forms: every bundled .docx passes --check-template, fills in for each profile, reads back with
python-docx in the right cells, escapes what staff typed, never prints the safe word or a name in the
file's properties, prints to PDF through LibreOffice (where installed), and goes in the form email."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import zipfile
from pathlib import Path

import pytest
from docx import Document

from homevisits import cli, forms, word_forms, word_pdf
from homevisits.errors import HomevisitsError
from homevisits.policy import load_policy, policy_names
from test_forms import APPENDIX_1, APPENDIX_A, FULL, NOW, read_visits, write_workbook

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = word_forms.word_forms()
HAS_LIBREOFFICE = word_pdf.available()
needs_libreoffice = pytest.mark.skipif(not HAS_LIBREOFFICE, reason="LibreOffice (soffice) is not installed")
BLANK = word_forms.BLANK
SAFE_WORD = "Bluebell"
NASTY = '<b>Ava</b> & {{ 7*7 }} {% if x %}</w:t> "Example"'

# Each bundled Word form: its title, and (label cell, the value the full row puts beside it).
EXPECTED = {
    "omg_appendix_a_risk_assessment.docx": (
        "Risk Assessment Form for Home Visits",
        [
            ("Name of learner:", "Ava Example"),
            ("Name of staff member:", "Jo Teacher"),
            ("Phone number that will be taken on the visit:", "07700 900456"),
            ("Date and time of visit:", "Friday 3 April 2026 at 14:30"),
            ("Time of expected return:", "16:00"),
            ("Address of visit:", "1 Test Street, Birmingham, B23 6XX"),
            ("Phone number of learner:", "07700 900123"),
            ("Phone number of parent/carer:", "0113 496 0123"),
            (
                "Having reviewed all the available information about this learner, I consider the risk of a "
                "home visit to be",
                "☐ LOW   ☒ MEDIUM   ☐ HIGH",
            ),
            (
                "If applicable, have confirmed with the parent/carer that they are happy for the visit to go "
                "ahead.",
                "☒ YES   ☐ NO",
            ),
            ("Approved by (line manager name)", "Max Manager"),
        ],
    ),
    "one_mat_appendix_1_lone_working.docx": (
        "Lone Working Risk Assessment – Home Visit",
        [
            ("Staff:", "Jo Teacher and Pat Buddy"),
            ("Date:", "Friday 3 April 2026 at 14:30"),
            ("Any vulnerable persons particularly at risk:", BLANK),
            ("Safeguarding team aware of visit:", "☒ YES   ☐ NO"),
            ("Safe Word:", "Agreed: ☒ YES   ☐ NO  (the word itself is never written on this form)"),
            ("Authorised by the Principal and/or DSL:", "Dr Dee Sel"),
        ],
    ),
    "one_mat_appendix_2_parent_copy.docx": (
        "Home Visit Form – Parent/Carer Copy",
        [
            ("Pupil:", "Ava Example"),
            ("Parent/carer:", "Sam Example"),
            ("Address:", "1 Test Street, Birmingham, B23 6XX"),
            ("Date of visit:", "Friday 3 April 2026"),
            ("Time of arrival:", "14:32"),
            ("Time of departure:", "15:20"),
            ("Member(s) of staff:", "Jo Teacher and Pat Buddy"),
            ("Purpose of the visit:", "Attendance"),
            ("Who was seen:", BLANK),
        ],
    ),
    "visit_record_with_signatures.docx": (
        "Home Visit Record",
        [
            ("Pupil:", "Ava Example"),
            ("Date:", "Friday 3 April 2026"),
            ("Location:", "1 Test Street, Birmingham, B23 6XX"),
            ("Planned time:", "14:30"),
            ("Time of arrival:", "14:32"),
            ("Time of departure:", "15:20"),
            ("Member(s) of staff:", "Jo Teacher and Pat Buddy"),
            ("Staff phone number:", "07700 900456"),
            ("Purpose agreed with manager:", "Attendance"),
            ("Manager:", "Max Manager"),
            ("Dangerous animals recorded:", "☒ YES   ☐ NO"),
            ("Contact made:", "☒ YES   ☐ NO"),
            ("Recorded on:", "☒ CPOMS   ☐ MyConcern   ☐ Bromcom   ☐ Other"),
        ],
    ),
}

# The seeds' own labels each form must carry (quoted from shared/seeds, field by field).
SEED_LABELS = {
    "omg_appendix_a_risk_assessment.docx": [label for label in APPENDIX_A if not label.startswith("Sent to")],
    "one_mat_appendix_1_lone_working.docx": [
        *APPENDIX_1,
        "Refer to home visit policy",
        "Avoid contact with animals",
    ],
    "one_mat_appendix_2_parent_copy.docx": [
        "Signature of parent/carer:",
        "Signature of member of staff:",
        "Parent/Carer Copy",
    ],
    "visit_record_with_signatures.docx": ["Signature of parent/carer:", "Signature of member of staff:"],
}


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """Row 2: every field; row 3: nearly empty; row 4: HTML and Jinja typed into the text cells."""
    folder = tmp_path_factory.mktemp("word")
    nearly_empty = {"learner_name": "Noor Example", "visit_date": "10/04/2026"}
    nasty = {**FULL, "visit_id": "HV-0099", "learner_name": NASTY, "reason": NASTY, "outcome": "one\ntwo"}
    table = read_visits(write_workbook(folder / "log.xlsx", [FULL, nearly_empty, nasty]))
    assert not table.problems
    return table


def fill(form: str, visit: dict, school: str = "Example Academy", **extra) -> Document:
    data = word_forms.render_word(
        form, visit, school=school, now=NOW, extra={"sent_to": "Jamal Miah", **extra}
    )
    return Document(io.BytesIO(data))


def cells_beside(document: Document) -> dict[str, str]:
    """Label cell text -> the text of the cell to its right, for every two-column row of every table."""
    found = {}
    for table in document.tables:
        for row in table.rows:
            cells = row.cells
            if len(cells) >= 2:
                found.setdefault(cells[0].text.strip(), cells[1].text.strip())
    return found


def all_text(document: Document) -> str:
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts += [cell.text for cell in row.cells]
    for section in document.sections:
        parts += [p.text for p in section.footer.paragraphs]
    return "\n".join(parts)


def xml_of(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())


def forms_command(config: Path, out: Path, *extra: str) -> int:
    argv = ["forms", "--config", str(config), "--visit", "HV-0042", "--out", str(out), *extra]
    return cli.main([*argv, "--now", "2026-04-01T09:00"])


def check(capsys, *paths: Path) -> tuple[int, str]:
    code = cli.main(["forms", *(arg for path in paths for arg in ("--check-template", str(path)))])
    return code, capsys.readouterr().out


# ---------------------------------------------------------------- the bundled forms


def test_the_bundled_word_forms_are_the_four_the_seeds_give():
    assert sorted(EXPECTED) == BUNDLED


def test_the_generator_rebuilds_the_committed_forms(tmp_path):
    """scripts/make_word_forms.py makes exactly what is committed (a rebuild is byte for byte the same)."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_word_forms.py"), "--out", str(tmp_path)], check=True
    )
    for name in BUNDLED:
        assert (tmp_path / name).read_bytes() == (forms.TEMPLATE_DIR / name).read_bytes(), name


@pytest.mark.parametrize("form", BUNDLED)
def test_every_bundled_template_passes_check_template(capsys, form):
    code, out = check(capsys, forms.TEMPLATE_DIR / form)
    assert code == 0, out
    assert out.rstrip().endswith("No problems found.")
    assert "{{" not in out.split("\n", 1)[0]
    assert "visit.learner_name" in out or form == "one_mat_appendix_1_lone_working.docx"
    assert re.search(r"^  ref +paragraph 3", out, re.MULTILINE)  # where each placeholder is


@pytest.mark.parametrize("profile", policy_names())
@pytest.mark.parametrize("form", BUNDLED)
def test_each_form_fills_in_for_each_profile_in_the_right_cells(visits, form, profile):
    policy = load_policy(profile)
    extra = forms.form_settings(policy)
    data = word_forms.render_word(form, visits.record(0), school=policy.name, now=NOW, extra=extra)
    document = Document(io.BytesIO(data))
    title, expected = EXPECTED[form]
    beside = cells_beside(document)
    for label, value in expected:
        assert beside.get(label) == value, (label, beside.get(label))
    text = all_text(document)
    assert title in text and "Visit ID: HV-0042" in text and policy.name in text
    for label in SEED_LABELS[form]:
        assert label in text, label
    assert "{{" not in text and "{%" not in text and "None" not in text.split()


@pytest.mark.parametrize("form", BUNDLED)
def test_a_nearly_empty_row_prints_blank_lines_to_fill_in(visits, form):
    document = fill(form, visits.record(1))
    beside = cells_beside(document)
    text = all_text(document)
    assert "Visit ID: row-3" in text
    assert "Noor Example" in text or form == "one_mat_appendix_1_lone_working.docx"  # it names the staff only
    assert BLANK in text and "None" not in text.split()
    blanks = [label for label, _ in EXPECTED[form][1] if beside.get(label) == BLANK]
    assert len(blanks) >= 2, blanks


def test_the_omg_form_names_the_contact_from_the_profile(visits):
    extra = forms.form_settings(load_policy("omg_education"))
    data = word_forms.render_word(
        "omg_appendix_a_risk_assessment.docx", visits.record(0), school="OMG", now=NOW, extra=extra
    )
    assert "Email this form to Jamal Miah at least 24 hours before" in all_text(Document(io.BytesIO(data)))


def test_the_lone_working_form_follows_the_visit(visits):
    paired = all_text(fill("one_mat_appendix_1_lone_working.docx", visits.record(0)))
    assert "A dangerous animal is recorded at this address" in paired
    assert "No second member of staff is recorded" not in paired
    assert "{%p" not in paired and "endif" not in paired
    alone = {**visits.record(0), "second_staff": None, "dangerous_animals": False}
    text = all_text(fill("one_mat_appendix_1_lone_working.docx", alone))
    assert "No second member of staff is recorded" in text
    assert "A dangerous animal is recorded" not in text
    evening = {**visits.record(0), "start_time": dt.time(18, 30), "start_at": None}
    assert "runs after 18:00" in all_text(fill("one_mat_appendix_1_lone_working.docx", evening))


def test_the_parent_copy_carries_none_of_the_schools_safeguarding_notes(visits):
    record = {**visits.record(0), "outcome": "DSL note: referral to social care", "risk_notes": "YOT"}
    text = all_text(fill("one_mat_appendix_2_parent_copy.docx", record))
    assert "referral" not in text and "YOT" not in text and "Safeguarding concern" not in text
    assert "Signature of parent/carer:" in text and "Sam Example" in text


@pytest.mark.parametrize("form", BUNDLED)
def test_html_and_jinja_typed_in_a_cell_come_out_as_literal_text(visits, form):
    record = visits.record(2)
    assert record["learner_name"] == NASTY
    document = fill(form, record)
    text = all_text(document)
    if form != "one_mat_appendix_1_lone_working.docx":  # it has no learner name, only the reason
        assert NASTY in text
    assert "{{ 7*7 }}" in text or form == "one_mat_appendix_1_lone_working.docx"
    assert "<b>" not in xml_of(word_forms.render_word(form, record, school="X", now=NOW))
    beside = cells_beside(document)
    if "Purpose of the visit:" in beside:
        assert beside["Purpose of the visit:"] == NASTY


def test_a_value_over_two_lines_keeps_its_line_break(visits):
    document = fill(
        "visit_record_with_signatures.docx", {**visits.record(2), "outcome": "one\r\ntwo\x0b\x07"}
    )
    (cell,) = [row.cells[1] for t in document.tables for row in t.rows if row.cells[0].text == "Outcome:"]
    assert cell.text == f"one\ntwo\n{BLANK}"  # control characters Word cannot hold are dropped


@pytest.mark.parametrize("form", BUNDLED)
def test_the_safe_word_is_never_printed(visits, form):
    record = {**visits.record(0), "safe_word": SAFE_WORD, "safeword": SAFE_WORD}
    data = word_forms.render_word(
        form, record, school="X", now=NOW, extra={"safe_word": SAFE_WORD, "sent_to": "Jamal Miah"}
    )
    assert SAFE_WORD not in xml_of(data)


def test_a_schools_template_asking_for_the_safe_word_gets_a_blank_and_a_warning(tmp_path, visits, capsys):
    path = tmp_path / "ours.docx"
    document = Document()
    document.add_paragraph("Safe word: {{ visit.safe_word }}")
    document.save(str(path))
    data = word_forms.render_word(
        str(path), {**visits.record(0), "safe_word": SAFE_WORD}, school="X", now=NOW
    )
    assert SAFE_WORD not in xml_of(data)
    assert f"Safe word: {BLANK}" in all_text(Document(io.BytesIO(data)))
    code, out = check(capsys, path)
    assert code == 1 and "paragraph 1: 'visit.safe_word': the safe word is never printed on a form" in out


@pytest.mark.parametrize("form", BUNDLED)
def test_the_document_properties_carry_the_visit_id_and_the_school_only(visits, form):
    data = word_forms.render_word(form, visits.record(0), school="Example Academy", now=NOW)
    props = Document(io.BytesIO(data)).core_properties
    assert props.title == f"HV-0042 – {EXPECTED[form][0]}"
    assert props.author == "Example Academy" and props.last_modified_by == "Example Academy"
    assert (props.subject, props.keywords, props.comments, props.category) == ("", "", "", "")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        meta = "".join(
            archive.read(n).decode()
            for n in archive.namelist()
            if n.startswith("docProps/") and n.endswith(".xml")
        )
    for name in ("Ava", "Sam Example", "Jo Teacher", "Pat Buddy", "Max Manager", "Test Street", "07700"):
        assert name not in meta, name


# ---------------------------------------------------------------- a school's own template


def _own_template(path: Path, *lines: str) -> Path:
    document = Document()
    document.core_properties.title = "Our home visit form"
    for line in lines:
        document.add_paragraph(line)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Pupil"
    table.rows[0].cells[1].text = "{{ visit.learner_name }}"
    document.save(str(path))
    return path


def test_a_school_points_its_profile_at_its_own_docx(tmp_path, capsys):
    folder = tmp_path / "school"
    folder.mkdir()
    _own_template(
        folder / "Home visit form.docx", "Risk: {{ choices(['LOW', 'MEDIUM', 'HIGH'], visit.risk_level) }}"
    )
    profile = (ROOT / "policies" / "omg_education.toml").read_text(encoding="utf-8")
    profile = profile.replace(
        'forms = ["risk_assessment"]', 'forms = ["risk_assessment", "Home visit form.docx"]'
    )
    (folder / "ours.toml").write_text(profile, encoding="utf-8")
    write_workbook(folder / "log.xlsx", [FULL])
    config = folder / "homevisits.toml"
    config.write_text(
        'policy = "ours.toml"\nschool = "Example Academy"\n[source]\npath = "log.xlsx"\n', encoding="utf-8"
    )
    out = tmp_path / "out"
    code = forms_command(config, out)
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "HV-0042-Home_visit_form.docx",
        "HV-0042-risk_assessment.html",
    ]
    document = Document(str(out / "HV-0042-Home_visit_form.docx"))
    assert cells_beside(document)["Pupil"] == "Ava Example"
    assert "Risk: ☐ LOW   ☒ MEDIUM   ☐ HIGH" in all_text(document)
    assert document.core_properties.title == "HV-0042 – Our home visit form"
    code, report = check(capsys, folder / "Home visit form.docx")
    assert code == 0 and "visit.learner_name  table 1, row 1, cell 2" in report


def test_a_word_form_that_is_not_there_is_one_sentence(tmp_path):
    with pytest.raises(HomevisitsError, match=r"The Word form 'missing.docx' is not there: looked in"):
        word_forms.check_form_names(["missing.docx"], [tmp_path])
    with pytest.raises(HomevisitsError, match="would be written to the same file name"):
        word_forms.check_form_names(["risk_assessment", "risk_assessment.docx"], [_own_dir(tmp_path)])


def _own_dir(tmp_path: Path) -> Path:
    _own_template(tmp_path / "risk_assessment.docx")
    return tmp_path


def test_a_name_without_docx_is_the_html_form_when_there_is_one(tmp_path):
    own = _own_dir(tmp_path)
    assert word_forms.word_template("risk_assessment", [own]) is None  # the HTML form wins
    assert word_forms.word_template("one_mat_appendix_2_parent_copy") == (
        forms.TEMPLATE_DIR / "one_mat_appendix_2_parent_copy.docx"
    )
    assert word_forms.word_template("risk_assessment.docx", [own]) == own / "risk_assessment.docx"


# ---------------------------------------------------------------- --check-template on a broken template


def _broken(path: Path) -> Path:
    """Word's classic breakage, made the way Word makes it: a tag in three runs, a typo, an unclosed if."""
    document = Document()
    document.add_paragraph("Home visit")  # paragraph 1
    split = document.add_paragraph("Learner: ")  # paragraph 2: one tag over three runs (a bold middle)
    split.add_run("{{ visit.")
    split.add_run("learner_name").bold = True
    split.add_run(" }}")
    document.add_paragraph("Staff: {{ visit.lead_stafff }}")  # paragraph 3: not a field
    document.add_paragraph("{% if visit.risk_level == 'HIGH' %}Do not go.")  # paragraph 4: never closed
    table = document.add_table(rows=2, cols=2)
    table.rows[1].cells[1].text = "{{ visit.address"  # table 1, row 2, cell 2: no }}
    table.rows[0].cells[1].text = "{{ scool }} {{ visit.postcode|uk_dat }}"
    document.save(str(path))
    return path


def test_check_template_finds_every_breakage_and_says_where(tmp_path, capsys):
    code, out = check(capsys, _broken(tmp_path / "broken.docx"))
    assert code == 1
    problems = out.split("PROBLEMS", 1)[1]
    expected = [
        "paragraph 2: the tag {{ visit.learner_name }} is split across 3 runs of Word text",
        "paragraph 3: 'visit.lead_stafff' is not a field: did you mean 'visit.lead_staff'?",
        "table 1, row 1, cell 2: 'scool' is not a field: did you mean 'school'?",
        "table 1, row 1, cell 2: '|uk_dat' is not a filter: did you mean 'uk_date'?",
        "table 1, row 2, cell 2: '{{' has no partner in the same paragraph, near '{{ visit.address'",
        "paragraph 4: {% if visit.risk_level == 'HIGH' %} is never closed: add {% endif %} after it",
    ]
    for line in expected:
        assert line in problems, line
    assert problems.startswith(" (6):")
    assert re.search(r"^  visit.learner_name +paragraph 2$", out, re.MULTILINE)


def test_check_template_flags_a_stray_end_and_an_else_outside_an_if(tmp_path, capsys):
    path = tmp_path / "ends.docx"
    document = Document()
    document.add_paragraph(
        "{% for person in [visit.lead_staff, visit.second_staff] %}{{ person }}{% endfor %}"
    )
    document.add_paragraph("{% endif %}")
    document.add_paragraph("{% else %}")
    document.save(str(path))
    code, out = check(capsys, path)
    assert code == 1
    assert "paragraph 2: {% endif %} closes {% if %} but nothing is open" in out
    assert "paragraph 3: {% else %} has no {% if %} open before it" in out
    assert "'person' is not" not in out  # a loop variable is not an unknown name


def test_check_template_on_a_file_that_is_not_word_is_one_sentence(tmp_path, capsys):
    path = tmp_path / "form.docx"
    path.write_text("not a zip", encoding="utf-8")
    assert cli.main(["forms", "--check-template", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("homevisits: ") and "is not a Word .docx file" in err and "Traceback" not in err
    assert cli.main(["forms", "--check-template", str(tmp_path / "nowhere.docx")]) == 2
    assert f"There is no file {tmp_path / 'nowhere.docx'}" in capsys.readouterr().err


def test_rendering_a_broken_template_is_one_sentence_naming_check_template(tmp_path, visits):
    path = tmp_path / "bad.docx"
    document = Document()
    document.add_paragraph("{% if visit.risk_level %}never closed")
    document.save(str(path))
    with pytest.raises(HomevisitsError, match="run 'homevisits forms --check-template"):
        word_forms.render_word(str(path), visits.record(0), school="X", now=NOW)


# ---------------------------------------------------------------- the README table


def test_the_readme_placeholder_table_is_the_one_the_code_makes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- word-placeholders:start -->\n", "\n<!-- word-placeholders:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == word_forms.placeholder_table()
    fields = {name for name, _, _ in word_forms.visit_fields()}
    assert "learner_name" in fields and "safe_word_agreed" in fields
    assert all(f"`{{{{ visit.{name} }}}}`" in table for name in fields)


# ---------------------------------------------------------------- PDF through LibreOffice


def word_pdf_of(form: str, visits, folder: Path) -> Path:
    """The bundled form filled in for row 2 and printed by LibreOffice. One form per test (not all four in
    a module fixture), so the four starts of LibreOffice spread over the workers instead of one taking them all."""
    docx = folder / f"HV-0042-{word_forms.form_key(form)}.docx"
    docx.write_bytes(word_forms.render_word(form, visits.record(0), school="Example Academy", now=NOW))
    return word_pdf.docx_to_pdf(docx, docx.with_suffix(".pdf"))


@needs_libreoffice
@pytest.mark.slow
@pytest.mark.parametrize("form", BUNDLED)
def test_libreoffice_prints_each_word_form_to_pdf(visits, tmp_path, form):
    from pypdf import PdfReader

    reader = PdfReader(word_pdf_of(form, visits, tmp_path))
    pages = {"one_mat_appendix_1_lone_working.docx": 2}.get(form, 1)  # the hazard table runs on
    assert len(reader.pages) == pages
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "Visit ID: HV-0042" in text and EXPECTED[form][0] in " ".join(text.split())
    assert "Jo Teacher" in text and "{{" not in text
    assert reader.metadata.title == f"HV-0042 – {EXPECTED[form][0]}"
    assert reader.metadata.author == "Example Academy"
    box = reader.pages[0].mediabox
    width, height = sorted((round(float(box.width)), round(float(box.height))))
    assert (width, height) == (595, 842)  # A4 (the hazard table in landscape)


def _fake_soffice(tmp_path: Path, script: str) -> str:
    path = tmp_path / "soffice"
    path.write_text("#!/bin/sh\n" + script + "\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def test_a_libreoffice_that_fails_is_one_sentence_with_its_exit_status(tmp_path, monkeypatch):
    docx = _own_template(tmp_path / "x.docx")
    monkeypatch.setenv(
        "HOMEVISITS_SOFFICE", _fake_soffice(tmp_path, "echo 'Error: source file could not be loaded'; exit 3")
    )
    with pytest.raises(
        word_pdf.WordPdfError, match=r"could not make the PDF of x.docx \(exit status 3: Error: source"
    ):
        word_pdf.docx_to_pdf(docx, tmp_path / "x.pdf")
    monkeypatch.setenv("HOMEVISITS_SOFFICE", _fake_soffice(tmp_path, "exit 0"))
    with pytest.raises(word_pdf.WordPdfError, match=r"exited without writing a PDF of x\.docx"):
        word_pdf.docx_to_pdf(docx, tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_a_libreoffice_that_hangs_is_stopped_at_the_timeout(tmp_path, monkeypatch):
    docx = _own_template(tmp_path / "x.docx")
    marker = tmp_path / "child.pid"
    monkeypatch.setenv("HOMEVISITS_SOFFICE", _fake_soffice(tmp_path, f"sleep 60 & echo $! > {marker}; wait"))
    with pytest.raises(word_pdf.WordPdfError, match="took more than 1 seconds"):
        word_pdf.docx_to_pdf(docx, tmp_path / "x.pdf", timeout=1)
    child = int(marker.read_text())
    import time

    for _ in range(50):  # the whole group was ended, not just the shell
        if _ended(child):
            break
        time.sleep(0.1)
    assert _ended(child)


def _ended(pid: int) -> bool:
    """The process is gone, or killed and only waiting to be reaped (a zombie): the orphan of a killed shell
    goes to init, and a container's init can take seconds to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


def test_each_conversion_gets_its_own_profile_folder(tmp_path, monkeypatch):
    docx = _own_template(tmp_path / "x.docx")
    log = tmp_path / "args.log"
    script = (
        f'echo "$@" >> {log}\n'
        'for a in "$@"; do case "$prev" in --outdir) out="$a";; esac; prev="$a"; done\n'
        'printf "%%PDF-1.4 fake" > "$out/x.pdf"'
    )
    monkeypatch.setenv("HOMEVISITS_SOFFICE", _fake_soffice(tmp_path, script))
    word_pdf.docx_to_pdf(docx, tmp_path / "one.pdf")
    word_pdf.docx_to_pdf(docx, tmp_path / "two.pdf")
    first, second = log.read_text().splitlines()
    profiles = [re.search(r"-env:UserInstallation=(\S+)", line).group(1) for line in (first, second)]
    assert profiles[0] != profiles[1] and all(p.startswith("file:///") for p in profiles)
    assert "--headless" in first and "--convert-to pdf:writer_pdf_Export" in first
    assert (tmp_path / "one.pdf").read_bytes().startswith(b"%PDF")


def test_forms_pdf_without_libreoffice_says_so_and_keeps_the_docx(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOMEVISITS_SOFFICE", str(tmp_path / "no-such-soffice"))
    write_workbook(tmp_path / "log.xlsx", [FULL])
    profile = (ROOT / "policies" / "one_mat.toml").read_text(encoding="utf-8")
    (tmp_path / "ours.toml").write_text(profile, encoding="utf-8")
    config = tmp_path / "homevisits.toml"
    config.write_text('policy = "ours.toml"\n[source]\npath = "log.xlsx"\n', encoding="utf-8")
    out = tmp_path / "out"
    code = forms_command(config, out, "--pdf")
    err = capsys.readouterr().err
    assert code == 1
    assert f"homevisits: {word_pdf.NO_LIBREOFFICE}\n" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "HV-0042-lone_working_risk_assessment.html",
        "HV-0042-lone_working_risk_assessment.pdf",
        "HV-0042-one_mat_appendix_2_parent_copy.docx",
    ]


@needs_libreoffice
@pytest.mark.slow
def test_forms_pdf_prints_the_word_form_through_libreoffice(tmp_path, capsys):
    write_workbook(tmp_path / "log.xlsx", [FULL])
    config = tmp_path / "homevisits.toml"
    config.write_text('policy = "one_mat"\n[source]\npath = "log.xlsx"\n', encoding="utf-8")
    out = tmp_path / "out"
    assert forms_command(config, out, "--pdf") == 0, capsys.readouterr().err
    assert (out / "HV-0042-one_mat_appendix_2_parent_copy.pdf").read_bytes().startswith(b"%PDF-")


# ---------------------------------------------------------------- the form email


def test_the_form_email_carries_the_docx_and_its_pdf_when_libreoffice_is_here(tmp_path, monkeypatch):
    from jobs_fixtures import NOW as MONDAY
    from jobs_fixtures import School, body, only, planned, smtp_mail
    from smtp_fixtures import smtp_server

    profile = (ROOT / "policies" / "omg_education.toml").read_text(encoding="utf-8")
    profile = profile.replace(
        'forms = ["risk_assessment"]', 'forms = ["risk_assessment", "omg_appendix_a_risk_assessment.docx"]'
    )
    (tmp_path / "omg_word.toml").write_text(profile, encoding="utf-8")
    thursday = MONDAY.date() + dt.timedelta(days=3)
    with smtp_server() as server:
        place = School(tmp_path, "omg_word.toml").write([planned(1, thursday)]).configure(smtp_mail(server))
        if not HAS_LIBREOFFICE:
            monkeypatch.setenv("HOMEVISITS_SOFFICE", str(tmp_path / "no-such-soffice"))
        result = place.run("send-forms", MONDAY)
        assert result.status == 0, result.err
        message = only(server, "form", "V1").message
        parts = {part.get_filename(): part for part in message.iter_attachments()}
        docx = parts["V1-omg_appendix_a_risk_assessment.docx"]
        assert docx.get_content_type() == word_forms.DOCX_TYPE
        filled = Document(io.BytesIO(docx.get_content()))
        assert cells_beside(filled)["Name of learner:"] == "Learner 1"
        assert filled.core_properties.title == "V1 – Risk Assessment Form for Home Visits"
        assert "Learner 1" in message.get_body(("html",)).get_content()  # the HTML form is still the body
        names = sorted(parts)
        text = body(only(server, "form", "V1"))
        assert "The Word form is attached too (V1-omg_appendix_a_risk_assessment.docx)" in text
        if HAS_LIBREOFFICE:
            assert names == [
                "V1-omg_appendix_a_risk_assessment.docx",
                "V1-omg_appendix_a_risk_assessment.pdf",
                "V1-risk_assessment.pdf",
            ]
            assert parts["V1-omg_appendix_a_risk_assessment.pdf"].get_content().startswith(b"%PDF-")
            assert "V1-risk_assessment.pdf, V1-omg_appendix_a_risk_assessment.pdf" in text
        else:
            assert names == ["V1-omg_appendix_a_risk_assessment.docx", "V1-risk_assessment.pdf"]


def test_without_libreoffice_the_form_email_carries_the_docx_alone(tmp_path, monkeypatch):
    from jobs_fixtures import NOW as MONDAY
    from jobs_fixtures import School, body, only, planned, smtp_mail
    from smtp_fixtures import smtp_server

    monkeypatch.setenv("HOMEVISITS_SOFFICE", str(tmp_path / "no-such-soffice"))
    thursday = MONDAY.date() + dt.timedelta(days=3)
    with smtp_server() as server:
        place = School(tmp_path, "one_mat").write([planned(1, thursday, authorised_by="Dr Dee Sel")])
        place.configure(smtp_mail(server))
        result = place.run("send-forms", MONDAY)
        assert result.status == 0, result.err
        message = only(server, "form", "V1").message
        names = sorted(part.get_filename() for part in message.iter_attachments())
        assert names == ["V1-lone_working_risk_assessment.pdf", "V1-one_mat_appendix_2_parent_copy.docx"]
        assert "The Word form is attached too (V1-one_mat_appendix_2_parent_copy.docx)" in body(
            only(server, "form", "V1")
        )


def test_a_word_form_in_the_configs_template_dir_is_found_by_its_name(tmp_path, capsys):
    (tmp_path / "my_forms").mkdir()
    _own_template(tmp_path / "my_forms" / "our_visit_form.docx")
    profile = (ROOT / "policies" / "omg_education.toml").read_text(encoding="utf-8")
    profile = profile.replace('forms = ["risk_assessment"]', 'forms = ["risk_assessment", "our_visit_form"]')
    (tmp_path / "ours.toml").write_text(profile, encoding="utf-8")
    write_workbook(tmp_path / "log.xlsx", [FULL])
    config = tmp_path / "homevisits.toml"
    config.write_text(
        'policy = "ours.toml"\n[source]\npath = "log.xlsx"\n[forms]\ntemplate_dir = "my_forms"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert forms_command(config, out) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "HV-0042-our_visit_form.docx",
        "HV-0042-risk_assessment.html",
    ]
    assert cells_beside(Document(str(out / "HV-0042-our_visit_form.docx")))["Pupil"] == "Ava Example"


def test_a_schools_template_properties_never_carry_a_name_into_the_filled_form(tmp_path, visits):
    """Whatever the template's own properties hold (docxtpl fills them in like the body), the filled
    file's hold the visit ID, the form's title and the school."""
    path = _own_template(tmp_path / "ours.docx")
    document = Document(str(path))
    props = document.core_properties
    props.title, props.subject, props.language = (
        "{{ visit.learner_name }}",
        "{{ visit.parent_name }}",
        "{{ ref }}",
    )
    props.author, props.comments, props.keywords = "Jo Teacher", "{{ visit.address }}", "Ava"
    for part in document.part.package.parts:
        if str(part.partname) == "/docProps/app.xml":
            part._blob = part.blob.replace(b"</Properties>", b"<Manager>Max Manager</Manager></Properties>")
    document.save(str(path))
    data = word_forms.render_word(str(path), visits.record(0), school="Example Academy", now=NOW)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        meta = "".join(
            archive.read(n).decode()
            for n in archive.namelist()
            if n.startswith("docProps/") and n.endswith(".xml")
        )
    for name in ("Ava", "Sam Example", "Jo Teacher", "Max Manager", "Test Street", "HV-0042</dc:language"):
        assert name not in meta, name
    filled = Document(io.BytesIO(data)).core_properties
    assert (filled.title, filled.author, filled.language) == (
        "HV-0042 – Ours",  # the title was a placeholder: the file name stands in
        "Example Academy",
        "",
    )
