"""`validate` stays quick to start: the heavy libraries load only where they are needed."""

import json
import subprocess
import sys

HEAVY = ("weasyprint", "gspread", "google", "matplotlib", "jinja2", "openpyxl", "phonenumbers")


def test_validate_does_not_import_heavy_libraries(tmp_path):
    import openpyxl

    from homevisits.schema import load_schema

    book = tmp_path / "log.xlsx"
    workbook = openpyxl.Workbook()
    headers = [column.header for column in load_schema().columns]
    workbook.active.append(headers)
    row = {
        "Visit ID": "HV-1",
        "Learner name": "Ada Example",
        "Visit date": "23/11/2026",
        "Start time": "10:00",
    }
    workbook.active.append([row.get(h) for h in headers])
    workbook.save(book)
    script = (
        "import sys, json, contextlib, io\n"
        "from homevisits.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['validate', '--source', {str(book)!r}, '--policy', 'attendance_academy',"
        " '--now', '2026-11-23T09:00', '--format', 'json'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), f"validate imported {sorted(loaded & set(HEAVY))}"
