"""The Excel log on a Google Shared Drive: the real google-auth session against the loopback Drive stand-in."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from drive_standin import GOOGLE_SHEET, DriveStandIn
from homevisits import cli
from homevisits.config import from_mapping
from homevisits.errors import HomevisitsError
from homevisits.pipeline import apply_overrides, load
from homevisits.sources import open_source
from homevisits.sources.drive import DriveSource, drive_file_id, is_drive_url, is_office_mode
from homevisits.sources.excel import read as read_excel
from homevisits.sources.gsheet import GoogleSheet
from homevisits.sources.writeback import CellUpdate, assign_ids
from jobs_fixtures import DOMAINS, DSL, SENDER, SMT, planned, toml_value
from workbooks import ALL_HEADERS, NOW, found, visit, write_workbook

FILE_ID = "1XlsxOnTheSharedDrive0123456789abcdefghij"
SHEET_KEY = "1NativeSheetKey0123456789abcdefghijklmnop"
TAB = "Home Visits"
EMAIL = "homevisits@school-project.iam.gserviceaccount.com"
DRIVE_URL = f"https://drive.google.com/file/d/{FILE_ID}/view?usp=drive_link"
OFFICE_URL = f"https://docs.google.com/spreadsheets/d/{FILE_ID}/edit?usp=sharing&ouid=1234&rtpof=true&sd=true"
ID, SENT = ALL_HEADERS.index("Visit ID"), ALL_HEADERS.index("Form sent at")
THURSDAY = dt.date(2026, 11, 26)


@pytest.fixture
def api():
    with DriveStandIn() as server:
        yield server


@pytest.fixture
def key_file(api, tmp_path):
    return api.service_account_file(tmp_path)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Where the private copies go, to check none is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def workbook_bytes(tmp_path: Path, rows, name="log.xlsx") -> bytes:
    return write_workbook(tmp_path / name, rows, columns=ALL_HEADERS, sheet=TAB).read_bytes()


def log_rows(count=4):
    return [visit(n + 2, "planned" if n % 2 else "done", visit_id=f"HV-{n + 1:04d}") for n in range(count)]


def connect(api, key_file, file=DRIVE_URL, **settings) -> DriveSource:
    return DriveSource(file, TAB, key_file, endpoint=api.url, sleep=lambda s: None, **settings)


def cells_of(content: bytes, tmp_path: Path) -> list[list]:
    """Every cell of the log tab of a workbook's bytes, as the Excel reader sees it."""
    path = tmp_path / "check.xlsx"
    path.write_bytes(content)
    return read_excel(path, TAB).rows


def by_id(rows):
    return {r[ID]: r for r in rows[1:] if r and r[ID]}


# ---------------------------------------------------------------- which source, from which URL


def test_drive_urls_office_mode_urls_and_ids_name_the_file():
    for text in (
        DRIVE_URL,
        OFFICE_URL,
        f"https://drive.google.com/open?id={FILE_ID}",
        f"https://drive.google.com/uc?id={FILE_ID}&export=download",
        f"https://drive.google.com/file/u/0/d/{FILE_ID}/view",
        FILE_ID,
    ):
        assert drive_file_id(text) == FILE_ID, text
    assert is_office_mode(OFFICE_URL) and is_drive_url(OFFICE_URL) and is_drive_url(DRIVE_URL)
    native = f"https://docs.google.com/spreadsheets/d/{SHEET_KEY}/edit#gid=0"
    assert not is_office_mode(native) and not is_drive_url(native) and not is_drive_url(FILE_ID)
    with pytest.raises(HomevisitsError, match="is not a Google Drive file URL or id"):
        drive_file_id("https://example.org/nothing")


def test_the_config_and_source_option_pick_the_drive_source(tmp_path):
    def source_of(settings):
        return open_source(settings, tmp_path)

    assert isinstance(source_of({"drive_file": DRIVE_URL}), DriveSource)
    assert isinstance(source_of({"spreadsheet": OFFICE_URL}), DriveSource)  # an .xlsx opened in Sheets
    assert isinstance(source_of({"spreadsheet": SHEET_KEY}), GoogleSheet)
    with pytest.raises(HomevisitsError, match=r"\[source\] sets both spreadsheet and drive_file"):
        source_of({"spreadsheet": SHEET_KEY, "drive_file": FILE_ID})
    config = from_mapping({"source": {"path": "log.xlsx"}}, tmp_path / "homevisits.toml")
    for url in (DRIVE_URL, OFFICE_URL):
        overridden = apply_overrides(config, source=url, worksheet=None, policy=None)
        assert overridden.source == {"drive_file": url}
    with pytest.raises(HomevisitsError, match=r"unknown \[source\] setting drive_fle"):
        from_mapping({"source": {"drive_fle": FILE_ID}}, tmp_path / "homevisits.toml")


# ---------------------------------------------------------------- read


def test_validate_reads_the_xlsx_on_the_shared_drive_exactly_as_the_local_workbook(
    api, key_file, tmp_path, private_tmp
):
    rows = [
        visit(2, "done"),
        visit(3, "planned", risk_level="HIGH"),
        visit(4, "done", visit_date="31/02/2026", start_time="2.30pm"),
        visit(5, "cancelled", visit_id=None),
    ]
    local = write_workbook(tmp_path / "local.xlsx", rows, columns=ALL_HEADERS, sheet=TAB)
    api.add_file(FILE_ID, local.read_bytes())
    excel = load(from_mapping({"source": {"path": str(local), "worksheet": TAB}}, tmp_path / "a.toml"), NOW)
    os.environ["HOMEVISITS_SHEETS_ENDPOINT"] = api.url
    try:
        drive = load(
            from_mapping(
                {"source": {"drive_file": DRIVE_URL, "worksheet": TAB, "credentials": str(key_file)}},
                tmp_path / "b.toml",
            ),
            NOW,
        )
    finally:
        del os.environ["HOMEVISITS_SHEETS_ENDPOINT"]
    assert found(drive.findings) == found(excel.findings)
    assert {f.rule for f in drive.findings} >= {"HV002", "HV003"}
    assert drive.visits.records() == excel.visits.records()
    assert drive.report().source == "Home Visits Excel Sheet.xlsx (Home Visits)"
    assert api.drive_counts() == {"files.get": 1, "files.download": 1}
    assert api.sheets_counts() == api.drive_counts()  # nothing else: no Sheets API request
    (meta,) = [r for r in api.log if r.kind == "files.get"]
    assert meta.query == {
        "fields": [
            "id,name,mimeType,md5Checksum,headRevisionId,modifiedTime,capabilities(canEdit),contentRestrictions"
        ],
        "supportsAllDrives": ["true"],
    }
    assert api.scopes == [
        "https://www.googleapis.com/auth/spreadsheets https://www.googleapis.com/auth/drive"
    ]
    assert list(private_tmp.iterdir()) == []


def test_an_office_mode_url_given_as_the_source_is_read_from_drive(api, key_file, tmp_path, monkeypatch):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", "--source", OFFICE_URL, "--worksheet", TAB, "--now", NOW.isoformat()])
    report = json.loads(out.getvalue())
    assert code == 0, err.getvalue()
    assert report["rows"] == 4 and report["source"] == "Home Visits Excel Sheet.xlsx (Home Visits)"
    assert api.drive_counts() == {"files.get": 1, "files.download": 1}
    assert "values.get" not in api.counts


def test_a_native_google_sheet_given_as_a_drive_file_keeps_the_sheets_source(api, key_file, tmp_path):
    rows = log_rows()
    api.add_book(SHEET_KEY, {TAB: [ALL_HEADERS, *[[r.get(h) for h in ALL_HEADERS] for r in rows]]})
    api.add_file(SHEET_KEY, name="Home visits log", mime_type=GOOGLE_SHEET)
    source = connect(api, key_file, f"https://drive.google.com/file/d/{SHEET_KEY}/view")
    raw = source.read()
    assert [r[ID] for r in raw.rows[1:]] == ["HV-0001", "HV-0002", "HV-0003", "HV-0004"]
    assert isinstance(source.sheet, GoogleSheet)
    result = source.write([CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert result.ok and api.values(SHEET_KEY, TAB)[2][SENT] == "23/11/2026 09:05"
    assert api.drive_counts() == {"files.get": 1}  # no download, no upload: the Sheets API did the rest
    assert api.counts["values.get"] == 1 and api.counts["values.batchUpdate"] == 1
    assert source.requests_made == api.api_requests()


# ---------------------------------------------------------------- write back


def test_write_back_changes_only_the_tools_cells_and_keeps_the_old_version(
    api, key_file, tmp_path, private_tmp
):
    rows = [*log_rows(), visit(6, "planned", visit_id=None)]
    original = workbook_bytes(tmp_path, rows)
    drive_file = api.add_file(FILE_ID, original)
    first = drive_file.head.id
    source = connect(api, key_file)
    raw = source.read()
    updates = [CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))]
    updates += assign_ids([6], [r[ID] for r in raw.rows[1:]])
    result = source.write(updates)

    assert result.ok and len(result.written) == 2
    before, after = cells_of(original, tmp_path), cells_of(api.content(FILE_ID), tmp_path)
    assert after[2][SENT] == dt.datetime(2026, 11, 23, 9, 5) and after[5][ID] == "HV-0005"
    changed = {
        (r, c)
        for r in range(len(before))
        for c in range(len(before[0]))
        if before[r][c] != (after[r][c] if c < len(after[r]) else "")
    }
    assert changed == {(2, SENT), (5, ID)}
    assert drive_file.revisions[0].id == first and len(drive_file.revisions) == 2
    assert drive_file.revisions[0].keep_forever and not drive_file.revisions[1].keep_forever
    assert api.drive_counts() == {
        "files.get": 2,
        "files.download": 1,
        "revisions.update": 1,
        "files.upload": 1,
    }
    (upload,) = [r for r in api.log if r.kind == "files.upload"]
    assert upload.query == {
        "uploadType": ["media"],
        "supportsAllDrives": ["true"],
        "fields": [
            "id,name,mimeType,md5Checksum,headRevisionId,modifiedTime,capabilities(canEdit),contentRestrictions"
        ],
    }
    assert drive_file.name == "Home Visits Excel Sheet.xlsx"
    assert list(private_tmp.iterdir()) == []


def test_a_save_by_someone_else_before_the_upload_is_followed_and_kept(api, key_file, tmp_path):
    rows = log_rows()
    drive_file = api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    source = connect(api, key_file)
    source.read()
    # While homevisits edits its copy, a member of staff inserts a visit at the top and saves.
    theirs = workbook_bytes(tmp_path, [visit(2, "planned", visit_id="HV-0009"), *rows], name="theirs.xlsx")
    api.before("revisions.update", lambda api: api.save_as_someone_else(FILE_ID, theirs))
    result = source.write([CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])

    assert result.ok
    saved, after = cells_of(theirs, tmp_path), cells_of(api.content(FILE_ID), tmp_path)
    assert by_id(after)["HV-0002"][SENT] == dt.datetime(2026, 11, 23, 9, 5)  # on its visit, now row 4
    assert [r[ID] for r in after[1:4]] == ["HV-0009", "HV-0001", "HV-0002"]
    changed = [
        (r, c) for r, cells in enumerate(saved) for c, value in enumerate(cells) if after[r][c] != value
    ]
    assert changed == [(3, SENT)]  # everything else is their version
    assert [r.keep_forever for r in drive_file.revisions] == [True, True, False]
    assert api.drive_counts() == {
        "files.get": 3,
        "files.download": 2,
        "revisions.update": 2,
        "files.upload": 1,
    }


def test_two_saves_meanwhile_leave_the_cells_for_the_next_run(api, key_file, tmp_path, private_tmp):
    rows = log_rows()
    api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    source = connect(api, key_file)
    source.read()
    one = workbook_bytes(tmp_path, [*rows, visit(6, "planned", visit_id="HV-0010")], name="one.xlsx")
    two = workbook_bytes(tmp_path, [*rows, visit(6, "planned", visit_id="HV-0011")], name="two.xlsx")
    saves_twice(api, one, two)
    update = CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))
    result = source.write([update])

    assert result.written == []
    ((skipped, reason),) = [(s.update, s.reason) for s in result.skipped]
    assert skipped == update
    assert reason.startswith("Someone saved Home Visits Excel Sheet.xlsx on Google Drive while homevisits")
    assert "the next run will write it" in reason
    assert api.content(FILE_ID) == two  # their save stands
    assert "files.upload" not in api.counts
    assert list(private_tmp.iterdir()) == []


def test_run_scheduled_sends_and_writes_back_to_the_drive_file(api, key_file, tmp_path, monkeypatch):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, [planned(2, THURSDAY)]))
    config = school_config(tmp_path, key_file)
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    code, out, err = run(["run-scheduled", "--config", str(config), "--now", NOW.isoformat()])
    assert (code, out) == (0, "sent: V2 form to 3 recipients\n"), err
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    after = by_id(cells_of(api.content(FILE_ID), tmp_path))
    assert after["V2"][SENT] == dt.datetime(2026, 11, 23, 12, 0)
    assert api.drive_counts() == {
        "files.get": 2,
        "files.download": 1,
        "revisions.update": 1,
        "files.upload": 1,
    }
    api.reset_counts()
    code, out, err = run(
        ["run-scheduled", "--config", str(config), "--now", (NOW + dt.timedelta(minutes=5)).isoformat()]
    )
    assert (code, out) == (0, ""), err
    assert api.drive_counts() == {"files.get": 1, "files.download": 1}  # nothing new: no upload


def test_run_scheduled_leaves_the_write_back_for_the_next_run_after_two_clashes(
    api, key_file, tmp_path, monkeypatch
):
    rows = [planned(2, THURSDAY)]
    api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    config = school_config(tmp_path, key_file)
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    theirs = [
        workbook_bytes(tmp_path, [*rows, visit(3, "done", visit_id=f"V{n}")], name=f"{n}.xlsx")
        for n in (8, 9)
    ]
    saves_twice(api, *theirs)
    code, out, err = run(["run-scheduled", "--config", str(config), "--now", NOW.isoformat()])
    assert (code, out) == (0, "sent: V2 form to 3 recipients\n")
    assert (
        "homevisits: not written to the sheet: Someone saved Home Visits Excel Sheet.xlsx on Google Drive"
        in err
    )
    assert api.content(FILE_ID) == theirs[1] and "files.upload" not in api.counts
    # The next run sends nothing again and writes what the ledger still holds into the newest version.
    later = (NOW + dt.timedelta(minutes=5)).isoformat()
    code, out, err = run(["run-scheduled", "--config", str(config), "--now", later])
    assert (code, out) == (0, ""), err
    after = by_id(cells_of(api.content(FILE_ID), tmp_path))
    assert after["V2"][SENT] == dt.datetime(2026, 11, 23, 12, 0) and "V9" in after
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def saves_twice(api, first: bytes, second: bytes) -> None:
    """Staff save the workbook just before each of homevisits' two attempts to upload."""

    def save_first(api):
        api.save_as_someone_else(FILE_ID, first)
        api.before("revisions.update", lambda api: api.save_as_someone_else(FILE_ID, second))

    api.before("revisions.update", save_first)


def school_config(tmp_path: Path, key_file: Path) -> Path:
    mail = {
        "transport": "outbox",
        "outbox": "outbox",
        "from": SENDER,
        "forms_to": [DSL],
        "smt": [SMT],
        "allowed_domains": DOMAINS,
    }
    lines = ['policy = "omg_education"', 'school = "Test School"', "", "[source]"]
    lines += [
        f"drive_file = {toml_value(DRIVE_URL)}",
        f'worksheet = "{TAB}"',
        f"credentials = {toml_value(key_file.name)}",
    ]
    lines += ["", "[mail]", *(f"{k} = {toml_value(v)}" for k, v in mail.items())]
    lines += ["", "[state]", 'ledger = "state/ledger.sqlite"']
    config = tmp_path / "homevisits.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()
