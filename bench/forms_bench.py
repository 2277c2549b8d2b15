"""Forms per second, HTML and PDF, for ``n`` visits read through the real pipeline; and the Word forms
(docxtpl) per second, and PDF-from-Word (LibreOffice, one at a time) per second when it is installed.

Targets (issue 4): HTML at least 500 forms/s; PDF at least 5 forms/s on one core. The Word figures
(issue 16) have no target: they are printed beside the HTML ones.
Run: ``.venv/bin/python bench/forms_bench.py [N]``.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=LONDON)
FORMS = ("risk_assessment", "lone_working_risk_assessment", "home_visit_record", "generic")
TARGETS = {"html_per_s": 500.0, "pdf_per_s": 5.0}


def _row(i: int) -> dict:
    day = dt.date(2026, 4, 1) + dt.timedelta(days=i % 20)
    return {
        "visit_id": f"HV-{i:04d}",
        "learner_name": f"Learner {i} Example",
        "learner_phone": f"07700 900{i % 1000:03d}",
        "parent_name": f"Parent {i} Example",
        "parent_phone": f"0113 496 0{i % 1000:03d}",
        "address": f"{i} Test Street, Birmingham",
        "postcode": "B23 6XX",
        "reason": "Attendance",
        "visit_date": day,
        "start_time": dt.time(9 + i % 9, 15),
        "expected_duration": 45,
        "location_type": "Home" if i % 3 else "Public place",
        "lead_staff": "Jo Teacher",
        "second_staff": "Pat Buddy" if i % 2 else None,
        "phone_taken": "07700 900456",
        "line_manager": "Max Manager",
        "risk_level": ("LOW", "MEDIUM")[i % 2],
        "dangerous_animals": "yes" if i % 5 == 0 else "no",
        "parent_consent": "yes",
        "approved_by": "Max Manager",
        "safeguarding_informed": "yes",
        "safe_word_agreed": "yes",
        "status": "Planned",
    }


def build_visits(n: int, folder: Path):
    """``n`` visits written to a workbook and read back the way every command reads a sheet."""
    from openpyxl import Workbook

    from homevisits.schema import find_header_row, load_schema, map_headers
    from homevisits.sources import excel
    from homevisits.visits import build_visits as build

    schema = load_schema()
    book = Workbook()
    sheet = book.active
    sheet.append([c.header for c in schema.columns])
    for i in range(n):
        row = _row(i)
        sheet.append([row.get(c.field) for c in schema.columns])
    path = folder / "bench.xlsx"
    book.save(path)
    raw = excel.read(path)
    header_pos = find_header_row(raw.rows, schema)
    return build(raw, schema, map_headers(raw.rows[header_pos], schema), header_pos, LONDON)


WORD_FORMS = (
    "omg_appendix_a_risk_assessment.docx",
    "one_mat_appendix_1_lone_working.docx",
    "one_mat_appendix_2_parent_copy.docx",
    "visit_record_with_signatures.docx",
)


def run(n: int = 200, pdf_n: int | None = None, word_n: int | None = None, word_pdf_n: int = 6) -> dict:
    """Render ``n`` HTML forms, ``pdf_n`` (default ``n``) PDFs, ``word_n`` (default ``n``) Word forms and,
    with LibreOffice, ``word_pdf_n`` PDFs from Word; return the rates."""
    from homevisits import forms, word_forms, word_pdf

    pdf_n = n if pdf_n is None else pdf_n
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        visits = build_visits(n, folder)
        records = visits.records()
        extra = {"sent_to": "Jamal Miah"}
        forms.render_form(
            FORMS[0], records[0], school="Bench Academy", now=NOW, extra=extra
        )  # warm the cache

        start = time.perf_counter()
        pages = [
            forms.render_form(FORMS[i % len(FORMS)], record, school="Bench Academy", now=NOW, extra=extra)
            for i, record in enumerate(records)
        ]
        html_s = time.perf_counter() - start

        forms.render_pdf(pages[0], folder / "warm.pdf", visit_id="HV-0000")  # fonts and imports once
        bar = (
            forms.Progress(pdf_n, label="pdf")
            if sys.stderr.isatty() and pdf_n >= forms.PROGRESS_MIN
            else None
        )
        start = time.perf_counter()
        for i in range(pdf_n):
            forms.render_pdf(pages[i % n], folder / f"{i}.pdf", visit_id=records[i % n]["visit_id"])
            if bar:
                bar.step()
        if bar:
            bar.done()
        pdf_s = time.perf_counter() - start

        word_n = n if word_n is None else word_n
        word_forms.render_word(WORD_FORMS[0], records[0], school="Bench Academy", now=NOW, extra=extra)
        start = time.perf_counter()
        documents = [
            word_forms.render_word(
                WORD_FORMS[i % len(WORD_FORMS)], records[i % n], school="Bench Academy", now=NOW, extra=extra
            )
            for i in range(word_n)
        ]
        word_s = time.perf_counter() - start

        word_pdf_s = None
        if word_pdf.available() and word_pdf_n:
            start = time.perf_counter()
            for i in range(word_pdf_n):
                docx = folder / f"word-{i}.docx"
                docx.write_bytes(documents[i % word_n])
                word_pdf.docx_to_pdf(docx, docx.with_suffix(".pdf"))
            word_pdf_s = time.perf_counter() - start
    word = {
        "word_n": word_n,
        "word_seconds": round(word_s, 3),
        "word_per_s": round(word_n / word_s, 1) if word_s else float("inf"),
    }
    if word_pdf_s is not None:
        word |= {
            "word_pdf_n": word_pdf_n,
            "word_pdf_seconds": round(word_pdf_s, 2),
            "word_pdf_per_s": round(word_pdf_n / word_pdf_s, 2),
        }
    return {
        "n": n,
        "html_seconds": round(html_s, 4),
        "html_per_s": round(n / html_s, 1) if html_s else float("inf"),
        "pdf_n": pdf_n,
        "pdf_seconds": round(pdf_s, 3),
        "pdf_per_s": round(pdf_n / pdf_s, 2) if pdf_s else float("inf"),
        **word,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 200
    result = run(n)
    ok = True
    for key, label in (("html_per_s", "HTML"), ("pdf_per_s", "PDF")):
        met = result[key] >= TARGETS[key]
        ok &= met
        print(
            f"forms {label:4}: {result[key]:>8} forms/s for {n} visits (target >= {TARGETS[key]:g}) {'ok' if met else 'SLOW'}"
        )
    print(f"forms Word: {result['word_per_s']:>8} forms/s for {result['word_n']} visits (docxtpl)")
    if "word_pdf_per_s" in result:
        print(
            f"forms PDF from Word: {result['word_pdf_per_s']} forms/s for {result['word_pdf_n']} (LibreOffice)"
        )
    else:
        print("forms PDF from Word: not measured (LibreOffice is not installed)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
