"""Build the bundled Word forms in templates/forms/*.docx from the seeds' own forms (python-docx).

Run ``make word-forms`` (or ``.venv/bin/python scripts/make_word_forms.py``) after editing this file
(``--readme`` rewrites the README's table of placeholders from ``homevisits.word_forms``),
check each with ``homevisits forms --check-template``, and commit the .docx files with it. Every label
is the school's own wording (quoted facts from the policies in shared/seeds); every value is a
placeholder from ``homevisits.word_forms.placeholders()``, each typed as one run so Word keeps it whole.

    omg_appendix_a_risk_assessment.docx  OMG Education, Appendix A: Risk Assessment Form for Home Visits
    one_mat_appendix_1_lone_working.docx ONE MAT, Appendix 1: Lone Working Risk Assessment - Home Visit
    one_mat_appendix_2_parent_copy.docx  ONE MAT, Appendix 2: Home Visit Form - Parent/Carer Copy
    visit_record_with_signatures.docx    St Edwards and the attendance academy: the record of the visit
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import zipfile
from pathlib import Path

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

OUT = Path(__file__).resolve().parents[1] / "templates" / "forms"
STAMP = dt.datetime(2026, 12, 1, 0, 0)  # fixed, so a rebuild differs only where the forms do
GREY = RGBColor(0x55, 0x55, 0x55)

YES_NO = "{{ yes_no_boxes(%s) }}"
CONTACT_MADE = (
    '{{ choices(["YES", "NO"], "YES" if visit.status == "Completed" else '
    '("NO" if visit.status == "No answer" else none)) }}'
)


# ---------------------------------------------------------------- building blocks


def new_document(title: str, subtitle: str, *, landscape: bool = False):
    document = Document()
    section = document.sections[0]
    section.page_height, section.page_width = Cm(29.7), Cm(21.0)
    if landscape:
        section.orientation = WD_ORIENT.LANDSCAPE
        section.page_width, section.page_height = section.page_height, section.page_width
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(1.8))
    style = document.styles["Normal"]
    style.font.name = "Liberation Sans"
    style.font.size = Pt(10.5)
    style.paragraph_format.space_after = Pt(2)
    props = document.core_properties
    props.title, props.author, props.last_modified_by = title, "homevisits", "homevisits"
    props.subject = props.keywords = props.comments = props.category = ""
    props.created = props.modified = STAMP
    props.revision = 1

    head = document.add_paragraph()
    run = head.add_run("{{ school }}")
    run.bold = True
    run.font.size = Pt(11)
    heading = document.add_paragraph()
    run = heading.add_run(title)
    run.bold = True
    run.font.size = Pt(16)
    line = document.add_paragraph()
    if subtitle:
        line.add_run(subtitle + "    ").font.color.rgb = GREY
    line.add_run("Visit ID: ").bold = True
    line.add_run("{{ ref }}")

    footer = section.footer.paragraphs[0]
    footer.add_run(
        "{{ school }} · " + title + " · Visit {{ ref }} · filled in {{ now|uk_datetime }}"
    ).font.size = Pt(8)
    return document


def heading(document, text: str) -> None:
    paragraph = document.add_paragraph()
    paragraph.paragraph_format.space_before = Pt(8)
    run = paragraph.add_run(text)
    run.bold = True
    run.font.size = Pt(12)


def note(document, text: str) -> None:
    paragraph = document.add_paragraph()
    run = paragraph.add_run(text)
    run.italic = True
    run.font.size = Pt(9)


def only_if(document, condition: str, text: str) -> None:
    """A bold line printed only when ``condition`` holds (docxtpl's ``{%p %}`` lines vanish when filled)."""
    document.add_paragraph(f"{{%p if {condition} %}}")
    document.add_paragraph().add_run(text).bold = True
    document.add_paragraph("{%p endif %}")


def _shade(cell, fill: str = "EEEEEE") -> None:
    shading = OxmlElement("w:shd")
    shading.set(qn("w:val"), "clear")
    shading.set(qn("w:color"), "auto")
    shading.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shading)


def _write(cell, text: str, *, bold: bool = False) -> None:
    """A cell's text: one run per line; a placeholder is always one run of its own."""
    lines = text.split("\n")
    paragraph = cell.paragraphs[0]
    for i, line in enumerate(lines):
        if i:
            paragraph = cell.add_paragraph()
        run = paragraph.add_run(line)
        run.bold = bold


def _columns(table, widths) -> None:
    """Fixed column widths, in the grid Word and LibreOffice lay out from and in every cell."""
    table.autofit = False
    for col, width in zip(table._tbl.tblGrid.iterchildren(qn("w:gridCol")), widths, strict=True):
        col.set(qn("w:w"), str(int(Cm(width).twips)))
    for row in table.rows:
        for cell, width in zip(row.cells, widths, strict=True):
            cell.width = Cm(width)


def fields(document, rows: list[tuple[str, str]], widths: tuple[float, float] = (7.0, 10.4)) -> None:
    """Label | value rows: the school's label shaded on the left, the placeholder on the right."""
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for label, value in rows:
        cells = table.add_row().cells
        _write(cells[0], label, bold=True)
        _shade(cells[0])
        _write(cells[1], value)
    _columns(table, widths)


def grid(document, header: list[str], rows: list[list[str]], widths: list[float]) -> None:
    table = document.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        _write(cell, text, bold=True)
        _shade(cell)
    for row in rows:
        for cell, text in zip(table.add_row().cells, row, strict=True):
            _write(cell, text)
    _columns(table, widths)


def signatures(document, people: list[tuple[str, str]]) -> None:
    """Signature, printed name and date for each person, with room to sign."""
    table = document.add_table(rows=0, cols=3)
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for who, name in people:
        cells = table.add_row().cells
        _write(cells[0], f"Signature of {who}:\n\n")
        _write(cells[1], f"Name (print):\n{name}")
        _write(cells[2], "Date:\n\n")
    _columns(table, (7.4, 6.0, 4.0))


# ---------------------------------------------------------------- the forms


def omg_appendix_a():
    """OMG Education, Home Visits Policy, Appendix A (seed 000), field by field."""
    document = new_document("Risk Assessment Form for Home Visits", "OMG Education · Appendix A")
    fields(
        document,
        [
            ("Name of learner:", "{{ visit.learner_name }}"),
            ("Name of staff member:", "{{ visit.lead_staff }}"),
            ("Phone number that will be taken on the visit:", "{{ visit.phone_taken }}"),
            ("Date and time of visit:", "{{ date_and_time(visit.visit_date, visit.start_time) }}"),
            ("Time of expected return:", "{{ return_due|hhmm }}"),
            ("Address of visit:", "{{ [visit.address, visit.postcode]|joined }}"),
            ("Phone number of learner:", "{{ visit.learner_phone }}"),
            ("Phone number of parent/carer:", "{{ visit.parent_phone }}"),
        ],
    )
    heading(document, "Risk")
    fields(
        document,
        [
            (
                "Having reviewed all the available information about this learner, I consider the risk of a "
                "home visit to be",
                '{{ choices(["LOW", "MEDIUM", "HIGH"], visit.risk_level) }}',
            ),
        ],
    )
    note(
        document,
        "If low risk, the visit can go ahead at home; if medium risk, then the visit should go ahead in a "
        "public place such as a library or café. High-risk visits should not be carried out",
    )
    heading(document, "Approval")
    fields(
        document,
        [
            (
                "If applicable, have confirmed with the parent/carer that they are happy for the visit to go "
                "ahead.",
                YES_NO % "visit.parent_consent",
            ),
            ("Approved by (line manager name)", "{{ visit.approved_by }}"),
        ],
    )
    note(
        document,
        "Email this form to {{ sent_to if sent_to else 'the safeguarding contact' }} at least 24 hours before "
        "the visit is due to take place (clause 10).",
    )
    return document


# ONE MAT Appendix 1's hazard table, row by row as the policy prints it (seed 001).
HAZARDS = [
    [
        "Aggressive or violent parent/student/family member",
        "Member of staff may be harmed",
        "Major injury may occur",
        "Remote possibility",
        "Low",
        "Refer to home visit policy\n"
        "Risk reduced by informing safeguarding team prior to visit: {{ visit.safeguarding_informed|yes_no }}\n"
        "2 person visit if aware of home circumstances: {{ visit.second_staff }}\n"
        "Inform reception and sign out so others aware\n"
        "Take mobile phone for communication: {{ visit.phone_taken }}",
    ],
    [
        "Driving",
        "Member of staff may be harmed",
        "Vehicle breakdown\nAccident\nIntruder in vehicle when unattended\nUse of mobile phone\nFatigue",
        "Remote possibility",
        "Low",
        "Maintain vehicle properly\nBelong to a breakdown organisation\nCarry torch, phone etc for emergency\n"
        "Advise team or partner where you are going\nPhone in if plan changes\n"
        "Do not leave valuables in car (e.g. laptop)\nAvoid risky areas",
    ],
    [
        "Movement through public areas e.g. to/from car parks",
        "Member of staff may be harmed",
        "Attack\nTheft of property",
        "remote",
        "Low",
        "Back down from confrontation\nCall for help\nUse attack alarm\n"
        "Keep valuables secure and out of sight or disguised\nSurrender valuables if personal safety is at risk\n"
        "Use staff bus or public transport if available\nPost incident support",
    ],
    [
        "Illness or injury/ accident",
        "Member of staff may be harmed or injured",
        "Illness or injury\nTake mobile communications",
        "Remote",
        "Low",
        "Alert Emergency services if appropriate\nAlert team members if able to\nEnsure access to phone\n"
        "Take prescribed medication as directed or as needed\nComplete injury at work protocol on return",
    ],
    [
        "Attack by dog or other animal",
        "Member of staff may be harmed or injured",
        "Major injury may occur",
        "Remote",
        "Low",
        "Avoid contact with animals\nSeek local advice before entering premises with animals\n"
        "Appropriate behaviour near animals – avoid alarming them, e.g. sudden movements\n"
        "Dangerous animals recorded in the log: {{ visit.dangerous_animals|yes_no }}",
    ],
]


def one_mat_appendix_1():
    """ONE MAT Academies Trust, Home Visits Policy, Appendix 1 (seed 001)."""
    document = new_document(
        "Lone Working Risk Assessment – Home Visit", "ONE MAT Academies Trust · Appendix 1", landscape=True
    )
    fields(
        document,
        [
            ("Staff:", '{{ [visit.lead_staff, visit.second_staff]|joined(" and ") }}'),
            ("Date:", "{{ date_and_time(visit.visit_date, visit.start_time) }}"),
            ("Any vulnerable persons particularly at risk:", "{{ vulnerable_persons }}"),
            ("Safeguarding team aware of visit:", YES_NO % "visit.safeguarding_informed"),
            (
                "Safe Word:",
                "Agreed: {{ yes_no_boxes(visit.safe_word_agreed) }}  (the word itself is never written on this form)",
            ),
        ],
        widths=(8.0, 17.6),
    )
    only_if(
        document,
        "not pair",
        "No second member of staff is recorded: home visits should be conducted in pairs.",
    )
    only_if(
        document,
        "evening",
        "This visit runs after {{ evening_from|hhmm }}: it is strongly recommended that no one makes an "
        "evening home visit.",
    )
    only_if(
        document,
        "animals is sameas true",
        "A dangerous animal is recorded at this address: ask for it to be kept in another room; "
        "no animals in the room where the meeting takes place.",
    )
    grid(
        document,
        ["Hazards", "People", "Severity of harm", "Likelihood", "Risk Level", "Controls"],
        HAZARDS,
        [4.2, 3.4, 4.0, 2.6, 2.0, 9.4],
    )
    heading(document, "Authorisation")
    fields(
        document,
        [("Authorised by the Principal and/or DSL:", "{{ visit.authorised_by }}")],
        widths=(8.0, 17.6),
    )
    note(document, "If you are concerned about your safety do not visit.")
    return document


def one_mat_appendix_2():
    """ONE MAT Appendix 2: the Home Visit Form as the duplicate book's parent/carer copy (seed 001 §5-§6).

    Only what the policy asks the form to hold (who, when, where, why, who was seen, a short report,
    signatures); none of the school's safeguarding notes, which a parent/carer copy must not carry.
    """
    document = new_document("Home Visit Form – Parent/Carer Copy", "ONE MAT Academies Trust · Appendix 2")
    fields(
        document,
        [
            ("Pupil:", "{{ visit.learner_name }}"),
            ("Parent/carer:", "{{ visit.parent_name }}"),
            ("Address:", "{{ [visit.address, visit.postcode]|joined }}"),
            ("Date of visit:", "{{ visit.visit_date }}"),
            ("Time of arrival:", "{{ visit.arrived_at|hhmm }}"),
            ("Time of departure:", "{{ visit.departed_at|hhmm }}"),
            ("Member(s) of staff:", '{{ [visit.lead_staff, visit.second_staff]|joined(" and ") }}'),
            ("Purpose of the visit:", "{{ visit.reason }}"),
            ("Who was seen:", "{{ who_was_seen }}"),
        ],
    )
    heading(document, "Report of the visit")
    fields(
        document,
        [
            ("What was discussed:", "{{ blank }}\n{{ blank }}\n{{ blank }}"),
            ("Agreed next steps:", "{{ follow_up }}\n{{ blank }}"),
        ],
    )
    heading(document, "Signatures")
    signatures(
        document, [("parent/carer", "{{ visit.parent_name }}"), ("member of staff", "{{ visit.lead_staff }}")]
    )
    note(
        document,
        "Parent/Carer Copy: the duplicate stays in the Home Visit book held by the Attendance officer. "
        "If you have any questions about this visit, contact {{ school }}.",
    )
    return document


def visit_record():
    """The record of a visit St Edwards (§1: times of arrival and departure) and the attendance academy
    (2.2 staff phone, 2.3 time, location, pupil and signatures, 3.2-3.6, CPOMS) ask for (seeds 003, 004)."""
    document = new_document("Home Visit Record", "Record of the visit, with signatures")
    fields(
        document,
        [
            ("Pupil:", "{{ visit.learner_name }}"),
            ("Date:", "{{ visit.visit_date }}"),
            ("Location:", "{{ [visit.address, visit.postcode]|joined }}"),
            ("Planned time:", "{{ visit.start_time|hhmm }}"),
            ("Time of arrival:", "{{ visit.arrived_at|hhmm }}"),
            ("Time of departure:", "{{ visit.departed_at|hhmm }}"),
            ("Member(s) of staff:", '{{ [visit.lead_staff, visit.second_staff]|joined(" and ") }}'),
            ("Staff phone number:", "{{ visit.phone_taken }}"),
            ("Purpose agreed with manager:", "{{ visit.reason }}"),
            ("Manager:", "{{ visit.line_manager }}"),
        ],
    )
    heading(document, "At the door")
    fields(
        document,
        [
            ("Parent/carer present (do not enter if not):", '{{ choices(["YES", "NO"]) }}'),
            (
                "Parent/carer not there: waited no longer than 10 minutes (30 if they said they were late):",
                '{{ choices(["YES", "NO"]) }}',
            ),
            ("Dangerous animals recorded:", YES_NO % "visit.dangerous_animals"),
            ("Animals kept in a separate room:", '{{ choices(["YES", "NO", "N/A"]) }}'),
            ("Contact made:", CONTACT_MADE),
        ],
    )
    heading(document, "After the visit")
    fields(
        document,
        [
            ("Outcome:", "{{ visit.outcome }}\n{{ blank }}"),
            (
                "Cancellation reason (safety reasons go to the head teacher):",
                "{{ visit.cancellation_reason }}",
            ),
            ("Recorded on:", '{{ choices(["CPOMS", "MyConcern", "Bromcom", "Other"], visit.logged_on) }}'),
        ],
    )
    heading(document, "Signatures")
    signatures(
        document,
        [("parent/carer", "{{ visit.parent_name }}"), ("member of staff", "{{ visit.lead_staff }}")],
    )
    return document


FORMS = {
    "omg_appendix_a_risk_assessment.docx": omg_appendix_a,
    "one_mat_appendix_1_lone_working.docx": one_mat_appendix_1,
    "one_mat_appendix_2_parent_copy.docx": one_mat_appendix_2,
    "visit_record_with_signatures.docx": visit_record,
}


def _fix_zip_times(path: Path) -> None:
    """The same forms make the same bytes: every part of the .docx gets the fixed time stamp."""
    with zipfile.ZipFile(path) as archive:
        parts = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts:
            archive.writestr(
                zipfile.ZipInfo(name, date_time=STAMP.timetuple()[:6]), data, zipfile.ZIP_DEFLATED
            )


README = OUT.parents[1] / "README.md"
START, END = "<!-- word-placeholders:start -->\n", "\n<!-- word-placeholders:end -->"


def write_readme_table(readme: Path = README) -> None:
    """Put the placeholder table the code makes between the README's markers."""
    from homevisits.word_forms import placeholder_table

    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END.lstrip("\n"), 1)
    readme.write_text(head + START + placeholder_table() + END + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write the .docx files to")
    parser.add_argument("--readme", action="store_true", help="only rewrite the README's placeholder table")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme_table()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in FORMS.items():
        path = args.out / name
        build().save(str(path))
        _fix_zip_times(path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
