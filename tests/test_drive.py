"""The Excel log on a Google Shared Drive: the real google-auth session against the loopback Drive stand-in."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
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
from homevisits.sources.drive import (
    DriveSource,
    SheetOrDriveFile,
    drive_file_id,
    is_drive_url,
    is_office_mode,
)
from homevisits.sources.excel import read as read_excel
from homevisits.sources.gsheet import GoogleSheet
from homevisits.sources.writeback import CellUpdate
from homevisits.visit_ids import assign_ids
from jobs_fixtures import DOMAINS, DSL, SENDER, SMT, planned, send_at_now, toml_value
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


DATED = dict.fromkeys(("form_sent_at", "escalated_at"), "dd/mm/yyyy hh:mm")  # as init-sheet sets them up


def workbook_bytes(tmp_path: Path, rows, name="log.xlsx") -> bytes:
    return write_workbook(
        tmp_path / name, rows, columns=ALL_HEADERS, sheet=TAB, column_formats=DATED
    ).read_bytes()


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
    maybe = source_of({"spreadsheet": SHEET_KEY})  # a Sheet, unless the Sheets API says otherwise
    assert isinstance(maybe, SheetOrDriveFile) and maybe.drive is None
    with pytest.raises(HomevisitsError, match=r"\[source\] sets both spreadsheet and drive_file"):
        source_of({"spreadsheet": SHEET_KEY, "drive_file": FILE_ID})
    config = from_mapping({"source": {"path": "log.xlsx"}}, tmp_path / "homevisits.toml")
    for url in (DRIVE_URL, OFFICE_URL):
        overridden = apply_overrides(config, source=url, worksheet=None, policy=None)
        assert overridden.source == {"drive_file": url}
    with pytest.raises(
        HomevisitsError, match=r"\[source\] has no setting drive_fle: did you mean drive_file\?"
    ):
        from_mapping({"source": {"drive_fle": FILE_ID}}, tmp_path / "homevisits.toml")


# ---------------------------------------------------------------- read


def test_validate_reads_the_xlsx_on_the_shared_drive_exactly_as_the_local_workbook(
    api, key_file, tmp_path, private_tmp, monkeypatch
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
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    source = {"drive_file": DRIVE_URL, "worksheet": TAB, "credentials": str(key_file)}
    drive = load(from_mapping({"source": source}, tmp_path / "b.toml"), NOW)
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
    code, out, err = run(
        ["validate", "--source", OFFICE_URL, "--worksheet", TAB, "--now", NOW.isoformat(), "--format", "json"]
    )
    report = json.loads(out)
    assert code == 0, err
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
    """The command; a sending one with --now really sends, on the fake clock (HOMEVISITS_SEND_AT_NOW)."""
    out, err = io.StringIO(), io.StringIO()
    with send_at_now(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- refusals and errors, one sentence each


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        (
            {"read_only": True},
            "Home Visits Excel Sheet.xlsx is locked on Google Drive (a read-only content restriction): nothing "
            "was written; unlock it in Drive",
        ),
        (
            {"can_edit": False},
            f"The service account {EMAIL} may only read Home Visits Excel Sheet.xlsx on Google Drive: nothing was "
            f"written; add {EMAIL} to the Shared Drive as a Content manager and run again.",
        ),
    ],
)
def test_a_file_the_tool_may_not_change_is_refused_before_any_change(
    api, key_file, tmp_path, private_tmp, settings, sentence
):
    original = workbook_bytes(tmp_path, log_rows())
    api.add_file(FILE_ID, original, **settings)
    source = connect(api, key_file)
    assert len(source.read().rows) == 5  # reading is fine: validate works on a locked file
    with pytest.raises(HomevisitsError) as refused:
        source.write([CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert str(refused.value).startswith(sentence)
    assert api.content(FILE_ID) == original
    assert api.drive_counts() == {"files.get": 1, "files.download": 1}
    assert list(private_tmp.iterdir()) == []


def test_a_file_not_shared_with_the_service_account_names_its_email(api, key_file, tmp_path):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()), members={"someone.else@school.example"})
    with pytest.raises(HomevisitsError) as error:
        connect(api, key_file).read()
    assert str(error.value) == (
        f"Google Drive has no file {FILE_ID} that the service account {EMAIL} can see: check [source] drive_file, "
        f"and add {EMAIL} to the Shared Drive as a Content manager."
    )


def test_a_wrong_id_is_the_same_404_sentence(api, key_file):
    with pytest.raises(
        HomevisitsError, match=rf"^Google Drive has no file {FILE_ID} that the service account"
    ):
        connect(api, key_file).read()


def test_drive_api_not_enabled_and_permission_refused_are_explained(api, key_file, tmp_path):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    api.drive_api_enabled = False
    with pytest.raises(HomevisitsError) as disabled:
        connect(api, key_file).read()
    assert str(disabled.value) == (
        "The Google Drive API is not enabled for the service account's project: enable it in Google Cloud "
        "(APIs & Services, Library, Google Drive API) and run again."
    )
    api.drive_api_enabled = True
    api.fail(
        403, kind="files.download", message="The user does not have sufficient permissions for this file."
    )
    with pytest.raises(HomevisitsError) as refused:
        connect(api, key_file).read()
    assert str(refused.value) == (
        f"The service account {EMAIL} may not read Home Visits Excel Sheet.xlsx on Google Drive: add {EMAIL} to "
        "the Shared Drive as a Content manager (Manage members) and run again."
    )


def test_an_excel_file_given_as_a_google_sheet_says_to_use_drive_file(api, key_file, tmp_path):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    sheet = GoogleSheet(FILE_ID, TAB, key_file, endpoint=api.url, sleep=lambda s: None)
    with pytest.raises(HomevisitsError) as error:
        sheet.read()
    assert str(error.value) == (
        f"{FILE_ID} is an Excel file stored on Google Drive, not a Google Sheet: set [source] drive_file to its "
        "URL or id instead of spreadsheet (see the README's Shared Drive steps)."
    )
    assert api.counts["values.get"] == 1 and not api.violations


@pytest.mark.parametrize("given", [FILE_ID, f"https://docs.google.com/spreadsheets/d/{FILE_ID}/edit#gid=1"])
def test_the_id_or_a_plain_sheets_url_of_an_xlsx_is_found_out_and_read_from_drive(
    api, key_file, tmp_path, monkeypatch, given
):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, [planned(2, THURSDAY)]))
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    code, out, err = run(
        ["validate", "--source", given, "--worksheet", TAB, "--now", NOW.isoformat(), "--format", "json"]
    )
    assert code == 0, err
    assert json.loads(out)["source"] == "Home Visits Excel Sheet.xlsx (Home Visits)"
    # The Sheets API's refusal, then the Drive source with its own sign-in (the drive scope).
    assert api.sheets_counts() == {"values.get": 1, "files.get": 1, "files.download": 1}
    assert api.scopes == [
        "https://www.googleapis.com/auth/spreadsheets",
        "https://www.googleapis.com/auth/spreadsheets https://www.googleapis.com/auth/drive",
    ]
    source = open_source({"spreadsheet": given, "worksheet": TAB}, tmp_path)
    source.read()
    result = source.write([CellUpdate("V2", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert result.ok and isinstance(source.drive, DriveSource)
    assert by_id(cells_of(api.content(FILE_ID), tmp_path))["V2"][SENT] == dt.datetime(2026, 11, 23, 9, 5)


@pytest.mark.parametrize(
    ("name", "mime_type", "sentence"),
    [
        (
            "Home visits notes",
            "application/vnd.google-apps.document",
            "Home visits notes on Google Drive is a Google Doc, not an Excel workbook or a Google Sheet: point "
            "[source] drive_file at the home-visits log.",
        ),
        (
            "Visits 2019.xls",
            "application/vnd.ms-excel",
            "Visits 2019.xls on Google Drive is an old-format Excel file (.xls): open it in Excel and save it as "
            "an .xlsx workbook, then point [source] drive_file at that.",
        ),
        (
            "visits.csv",
            "text/csv",
            "visits.csv on Google Drive is not an Excel workbook (text/csv): point [source] drive_file at the "
            ".xlsx home-visits log.",
        ),
    ],
)
def test_a_file_that_is_not_an_excel_log_is_one_sentence(api, key_file, name, mime_type, sentence):
    api.add_file(FILE_ID, b"not a workbook", name=name, mime_type=mime_type)
    with pytest.raises(HomevisitsError) as error:
        connect(api, key_file).read()
    assert str(error.value) == sentence
    assert "files.download" not in api.counts


def test_a_failed_upload_says_it_may_have_gone_through_and_leaves_no_copy(
    api, key_file, tmp_path, private_tmp
):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    source = connect(api, key_file)
    source.read()
    api.fail(503, kind="files.upload", times=10)
    with pytest.raises(HomevisitsError) as error:
        source.write([CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert str(error.value) == (
        "Google Drive did not answer (503 service unavailable): the next run will try again. The upload may or "
        "may not have gone through: the next run reads the file again."
    )
    assert api.counts["files.upload"] == 1  # an upload Google may have applied is never simply repeated
    assert list(private_tmp.iterdir()) == []


def test_throttled_reads_are_retried_within_the_budget(api, key_file, tmp_path):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    api.fail(429, kind="files.get")
    api.fail(403, kind="files.get", reason="userRateLimitExceeded", message="User rate limit exceeded.")
    api.fail(503, kind="files.download")
    waits: list[float] = []
    source = DriveSource(DRIVE_URL, TAB, key_file, endpoint=api.url, sleep=waits.append, rng=lambda: 0.5)
    assert len(source.read().rows) == 5
    assert api.drive_counts() == {"files.get": 3, "files.download": 2}
    assert waits == [0.75, 1.5, 0.75]  # doubling within a request, afresh for the next
    api.fail(
        403, kind="files.get", reason="userRateLimitExceeded", message="User rate limit exceeded.", times=9
    )
    with pytest.raises(
        HomevisitsError,
        match=r"^Google Drive is limiting how often the tool may call it \(403\) after 7 tries",
    ):
        source.read()


def test_a_save_between_the_metadata_and_the_download_is_read_again(api, key_file, tmp_path):
    rows = log_rows()
    api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    one = workbook_bytes(tmp_path, [*rows, visit(6, "planned", visit_id="HV-0042")], name="one.xlsx")
    two = workbook_bytes(tmp_path, [*rows, visit(6, "planned", visit_id="HV-0043")], name="two.xlsx")

    def saves(api, content, then=None):
        api.save_as_someone_else(FILE_ID, content)
        if then is not None:
            api.before("files.download", then)

    api.before("files.download", lambda api: saves(api, one))
    source = connect(api, key_file)
    assert [r[ID] for r in source.read().rows[1:]][-1] == "HV-0042"  # their version, whole
    assert source.meta["headRevisionId"] == api.files[FILE_ID].head.id
    assert api.drive_counts() == {"files.get": 2, "files.download": 2}
    api.before("files.download", lambda api: saves(api, two, lambda api: saves(api, one)))
    with pytest.raises(
        HomevisitsError, match=r"^Home Visits Excel Sheet.xlsx changed on Google Drive while it "
    ):
        source.read()


def test_private_copies_are_owner_only_and_gone_on_every_exit(private_tmp):
    from homevisits.sources.drive import private_copy

    with private_copy(b"PK workbook", "Home Visits.xlsx") as path:
        assert path.read_bytes() == b"PK workbook"
        assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(RuntimeError), private_copy(b"PK", "log.xlsx"):
        raise RuntimeError("stopped half-way")
    assert list(private_tmp.iterdir()) == []


# ---------------------------------------------------------------- the commands an admin runs


def test_forms_and_validate_write_findings_on_the_drive_file(api, key_file, tmp_path, monkeypatch):
    rows = [
        planned(2, THURSDAY),
        visit(3, "planned", risk_level="HIGH"),
        visit(4, "done", visit_date="31/02/2026"),
    ]
    drive_file = api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    config = school_config(tmp_path, key_file)
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    code, out, err = run(
        ["forms", "--config", str(config), "--now", NOW.isoformat(), "--out", str(tmp_path / "f")]
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["V2-risk_assessment.html"]
    assert len(drive_file.revisions) == 1  # forms change nothing on Drive
    api.reset_counts()

    argv = [
        "validate",
        "--config",
        str(config),
        "--now",
        NOW.isoformat(),
        "--format",
        "json",
        "--write-findings",
    ]
    code, out, err = run(argv)
    report = json.loads(out)
    assert code == 1 and report["summary"]["error"] >= 2
    tab = read_excel(_saved(api, tmp_path), "Policy check").rows
    assert tab[0][:3] == ["Severity", "Row", "Visit ID"]
    assert sorted((r[4], r[2]) for r in tab[1:]) == sorted(
        (f["rule"], f["visit_id"]) for f in report["findings"]
    )
    assert f"Wrote {len(tab) - 1} finding(s) to the 'Policy check' tab." in err
    assert by_id(cells_of(api.content(FILE_ID), tmp_path)).keys() == {
        "V2",
        "V3",
        "V4",
    }  # the log is as it was
    assert drive_file.revisions[0].keep_forever and len(drive_file.revisions) == 2
    assert api.drive_counts() == {
        "files.get": 2,
        "files.download": 1,
        "revisions.update": 1,
        "files.upload": 1,
    }


def _saved(api, tmp_path: Path) -> Path:
    path = tmp_path / "saved.xlsx"
    path.write_bytes(api.content(FILE_ID))
    return path


# ---------------------------------------------------------------- the stand-ins check what they receive


def test_a_request_google_would_not_recognise_fails_the_test(api, key_file, tmp_path):
    api.add_file(FILE_ID, workbook_bytes(tmp_path, log_rows()))
    source = connect(api, key_file)
    source.read()
    for url, params in (
        (
            f"https://www.googleapis.com/drive/v3/files/{FILE_ID}",
            {"supportsAllDrives": "true", "fields": "id", "keepForever": "true"},
        ),
        (f"https://www.googleapis.com/drive/v3/filez/{FILE_ID}", {}),
        (
            f"https://sheets.googleapis.com/v4/spreadsheets/{SHEET_KEY}/values/A1",
            {"valueRenderOption": "RAW"},
        ),
    ):
        with pytest.raises(Exception, match="400"):
            source.http.request("get", url, params=params)
    revision = f"https://www.googleapis.com/drive/v3/files/{FILE_ID}/revisions/{api.files[FILE_ID].head.id}"
    with pytest.raises(Exception, match="400"):
        source.http.request("patch", revision, json={"keepForever": True, "pinned": True})
    assert not api.files[FILE_ID].head.keep_forever  # refused, not carried out
    assert api.violations == [
        "drive.files.get has no query parameter 'keepForever'",
        f"GET /drive/v3/filez/{FILE_ID} is not a method of drive:v3",
        "sheets.spreadsheets.values.get parameter 'valueRenderOption' is 'RAW', not one of FORMATTED_VALUE, "
        "UNFORMATTED_VALUE, FORMULA",
        "Revision has no field 'pinned'",
    ]
    with pytest.raises(AssertionError, match="requests Google would not recognise"):
        api.__exit__(None, None, None)
    api.violations.clear()  # the fixture's own exit: this test's violations were the point


def test_after_a_clash_a_new_visit_id_goes_only_into_a_row_still_as_read(api, key_file, tmp_path):
    rows = [
        *log_rows(2),
        visit(4, "planned", visit_id=None),
        visit(5, "planned", visit_id=None, learner_name="B"),
    ]
    api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    source = connect(api, key_file)
    raw = source.read()
    updates = assign_ids([4, 5], [r[ID] for r in raw.rows[1:]])
    # Someone changes row 5 (the second visit without an ID) and saves, before homevisits uploads.
    theirs = workbook_bytes(tmp_path, [*rows[:3], {**rows[3], "Learner name": "Changed"}], name="theirs.xlsx")
    api.before("revisions.update", lambda api: api.save_as_someone_else(FILE_ID, theirs))
    result = source.write(updates)
    assert [(p.update.value, p.row) for p in result.written] == [("HV-0003", 4)]
    assert [s.reason for s in result.skipped] == [
        "row 5 changed or moved since the sheet was read; the next run will try again"
    ]
    after = cells_of(api.content(FILE_ID), tmp_path)
    assert [r[ID] for r in after[1:]] == ["HV-0001", "HV-0002", "HV-0003", ""]
    assert after[4][ALL_HEADERS.index("Learner name")] == "Changed"


def test_init_sheet_adds_the_missing_columns_to_the_drive_file(api, key_file, tmp_path, monkeypatch):
    few = ["Visit ID", "Learner name", "Visit date", "Start time"]
    row = {
        "Visit ID": "HV-0001",
        "Learner name": "Ada Example",
        "Visit date": THURSDAY,
        "Start time": "10:00",
    }
    content = write_workbook(tmp_path / "few.xlsx", [row], columns=few, sheet=TAB).read_bytes()
    drive_file = api.add_file(FILE_ID, content)
    monkeypatch.setenv("HOMEVISITS_SHEETS_ENDPOINT", api.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    code, out, err = run(["init-sheet", "--all", "--source", DRIVE_URL, "--worksheet", TAB])
    assert code == 0, err
    assert out.startswith(f"Added {len(ALL_HEADERS) - 4} missing column(s) after the last one: ")
    header = cells_of(api.content(FILE_ID), tmp_path)[0]
    assert header[:4] == few and set(header) == set(ALL_HEADERS)
    assert drive_file.revisions[0].keep_forever and len(drive_file.revisions) == 2
    code, out, err = run(["init-sheet", "--all", "--source", DRIVE_URL, "--worksheet", TAB])
    assert (code, out) == (0, "The log already has every column: nothing changed.\n")
    assert len(drive_file.revisions) == 2  # nothing to add: no upload


def test_a_version_saved_meanwhile_with_a_column_inserted_is_not_written_and_says_so(
    api, key_file, tmp_path, private_tmp
):
    """Issue 13: the write goes by the columns the read found. Staff insert a column before the tool's
    and save while homevisits edits its copy: the newer version puts 'Form sent at' elsewhere, so
    nothing is uploaded and one sentence says why (their save stands)."""
    from homevisits.sheet import LayoutChanged

    rows = log_rows()
    api.add_file(FILE_ID, workbook_bytes(tmp_path, rows))
    source = connect(api, key_file)
    source.read()
    inserted = ["Who rang", *ALL_HEADERS]
    theirs = write_workbook(
        tmp_path / "theirs.xlsx", rows, columns=inserted, sheet=TAB, column_formats=DATED
    ).read_bytes()
    api.before("revisions.update", lambda api: api.save_as_someone_else(FILE_ID, theirs))
    with pytest.raises(LayoutChanged) as stopped:
        source.write([CellUpdate("HV-0002", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert str(stopped.value) == (
        "The sheet's columns were moved or renamed since it was read ('Visit ID' is now column B, it was "
        "column A): nothing was written; the next run will try again."
    )
    assert api.content(FILE_ID) == theirs and "files.upload" not in api.counts
    assert list(private_tmp.iterdir()) == []
