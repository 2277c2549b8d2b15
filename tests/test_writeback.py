"""Write-back rules shared by every source: the formula neutraliser, Visit IDs, locating rows."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from homevisits.formula_guard import is_formula_like, neutralise, unneutralise
from homevisits.sources.writeback import CellUpdate, locate, sheet_value
from homevisits.visit_ids import id_key, next_ids

LONDON = ZoneInfo("Europe/London")
TOOL = ("visit_id", "form_sent_at", "escalated_at")
COLUMNS = {"visit_id": 0, "learner_name": 1, "form_sent_at": 5, "escalated_at": 6}
HEADERS = {"visit_id": "Visit ID", "form_sent_at": "Form sent at", "escalated_at": "Escalated at"}

# Text that spreadsheets run, or that smuggles a formula sign past a naive check.
DANGEROUS = [
    "=1+1",
    "+44 7700 900123",
    "-2",
    "@SUM(A1)",
    "\t=1",
    "\r\n",
    "\n",
    "\0x",
    '  =HYPERLINK("http://example.org")',
    "\u00a0=1",  # no-break space
    "\u3000=1",  # ideographic space
    "\u200b=1",  # zero-width space
    "\ufeff@x",  # byte-order mark
    "＝1+1",  # full-width equals: NFKC makes it '='
    "﹢1",  # small plus sign
    "=cmd|' /C calc'!A0",
]
SAFE = [
    "HV-0042",
    "23/11/2026 09:05",
    "Ada Example",
    "",
    "   ",
    "'=already neutralised",
    "1+1",
    "a=b",
    "e-mail",
]


@pytest.mark.parametrize("text", DANGEROUS)
def test_dangerous_text_is_neutralised(text):
    assert is_formula_like(text)
    safe = neutralise(text)
    assert safe == "'" + text
    assert not is_formula_like(safe)
    assert unneutralise(safe) == text


@pytest.mark.parametrize("text", SAFE)
def test_safe_text_is_left_alone(text):
    assert not is_formula_like(text)
    assert neutralise(text) == text


@given(st.text() | st.text().map(lambda t: "'" + t))
@example("=")
@example("\x00")
@example("\u2028-")
@example("'=x")
def test_neutraliser_is_idempotent_and_always_safe(text):
    once = neutralise(text)
    assert neutralise(once) == once
    assert not is_formula_like(once)
    if unneutralise(text) == text:  # text not already in neutralised form: the reader gets it back exactly
        assert unneutralise(once) == text


@given(st.text().filter(lambda t: not is_formula_like(t)))
def test_neutraliser_leaves_safe_text_unchanged(text):
    assert neutralise(text) == text


def test_sheet_values_are_numbers_or_safe_text():
    moment = dt.datetime(2026, 11, 23, 9, 5, 30, tzinfo=dt.UTC)
    assert sheet_value(moment, LONDON) == "23/11/2026 09:05"
    summer = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)
    assert sheet_value(summer, LONDON) == "01/07/2026 09:00"  # BST on the school's clock
    assert sheet_value(dt.date(2026, 11, 23), LONDON) == "23/11/2026"
    assert sheet_value(None, LONDON) == ""
    assert sheet_value(3, LONDON) == 3
    assert sheet_value("=2+2", LONDON) == "'=2+2"


def test_visit_ids_continue_after_the_highest():
    assert next_ids(["HV-0007", "hv-12", None, 42.0, "V3", "'=x"], 2) == ["HV-0013", "HV-0014"]
    assert next_ids([], 1) == ["HV-0001"]
    assert id_key(42.0) == "42"
    assert id_key("  hv-0042 ") == "HV-0042"
    assert id_key("") is None


def _locate(updates, ids, unchanged=lambda row: True, columns=COLUMNS):
    return locate(
        updates, ids=ids, columns=columns, headers=HEADERS, tool_fields=TOOL, row_unchanged=unchanged
    )


def test_rows_are_found_by_visit_id_wherever_they_are_now():
    ids = {2: "HV-0003", 3: "HV-0001", 4: "HV-0002", 5: None}
    placed, skipped = _locate(
        [CellUpdate("HV-0001", "form_sent_at", "x"), CellUpdate("hv-0002 ", "escalated_at", "y")], ids
    )
    assert [(p.row, p.column, p.update.value) for p in placed] == [(3, 5, "x"), (4, 6, "y")]
    assert skipped == []


def test_a_missing_or_repeated_visit_id_is_reported_not_written():
    ids = {2: "HV-0001", 3: "HV-0001", 4: "HV-0002"}
    placed, skipped = _locate(
        [CellUpdate("HV-0001", "form_sent_at", "x"), CellUpdate("HV-0009", "form_sent_at", "x")], ids
    )
    assert placed == []
    assert [s.reason for s in skipped] == [
        "Visit ID HV-0001 is in 2 rows (2, 3): give each visit its own ID",
        "no row has Visit ID HV-0009 any more",
    ]


def test_a_new_id_goes_only_into_an_unchanged_row_without_one():
    ids = {2: None, 3: None, 4: "HV-0001", 5: "HV-0005"}
    updates = [
        CellUpdate("HV-0002", "visit_id", "HV-0002", row=2),
        CellUpdate("HV-0003", "visit_id", "HV-0003", row=3),  # changed since the read
        CellUpdate("HV-0004", "visit_id", "HV-0004", row=4),  # has an ID now
        CellUpdate("HV-0005", "visit_id", "HV-0005", row=6),  # the ID is taken
        CellUpdate("HV-0002", "form_sent_at", "sent"),  # follows the new ID in the same batch
    ]
    placed, skipped = _locate(updates, ids, unchanged=lambda row: row != 3)
    assert [(p.row, p.column, p.update.value) for p in placed] == [(2, 0, "HV-0002"), (2, 5, "sent")]
    assert [s.update.visit_id for s in skipped] == ["HV-0003", "HV-0004", "HV-0005"]
    assert "changed or moved" in skipped[0].reason
    assert "was given Visit ID HV-0001" in skipped[1].reason
    assert "already used (row 5)" in skipped[2].reason


def test_a_new_id_its_emails_could_not_carry_is_never_written():
    ids = {2: None, 3: None}
    updates = [
        CellUpdate("HV 2", "visit_id", "HV 2", row=2),
        CellUpdate("x", "visit_id", "=?utf-8?q?=0D=0A?=", row=3),
    ]
    placed, skipped = _locate(updates, ids)
    assert placed == []
    assert [s.reason for s in skipped] == [
        "'HV 2' is not a Visit ID",
        "'=?utf-8?q?=0D=0A?=' is not a Visit ID",
    ]


def test_only_the_tools_own_columns_can_be_written():
    with pytest.raises(ValueError, match="learner_name"):
        _locate([CellUpdate("HV-0001", "learner_name", "Someone Else")], {2: "HV-0001"})


def test_without_a_visit_id_column_nothing_can_be_located():
    columns = {k: v for k, v in COLUMNS.items() if k != "visit_id"}
    placed, skipped = _locate([CellUpdate("HV-0001", "form_sent_at", "x")], {}, columns=columns)
    assert placed == []
    assert skipped[0].reason.startswith("the sheet has no 'Visit ID' column")


# ---------------------------------------------------------------- the layout the read found (issue 13)


def test_the_layout_names_the_header_row_the_tool_columns_and_their_headers():
    from homevisits.schema import load_schema
    from homevisits.sheet import RawSheet, find_layout

    rows = [["Home visits log"], [], ["Visit ID", "Learner name", "Date of visit", "Form sent at"], ["HV-1"]]
    layout = find_layout(RawSheet("log.xlsx", "Visits", rows, first_row=3), load_schema())
    assert (layout.header_pos, layout.header_row) == (2, 5)
    assert layout.positions == {"visit_id": 0, "learner_name": 1, "visit_date": 2, "form_sent_at": 3}
    assert {"visit_id", "form_sent_at", "escalated_at", "returned_at"} <= set(layout.tool_fields)
    assert "learner_name" not in layout.tool_fields
    assert (
        layout.headers["visit_date"] == "Date of visit" and layout.headers["escalated_at"] == "Escalated at"
    )


@pytest.mark.parametrize(
    ("header_now", "sentence"),
    [
        (
            ["Notes", "Visit ID", "Learner name", "Form sent at"],
            "('Visit ID' is now column B, it was column A)",
        ),
        (["Visit ID", "Learner name", "Remarks"], "('Form sent at' is no longer there, it was column C)"),
        (
            ["Visit ID", "Form sent at", "Learner name"],
            "('Form sent at' is now column B, it was column C)",
        ),
        (
            ["Visit ID", "Learner name", "Form sent at", "RA sent"],
            "(Two columns hold Form sent at",
        ),
    ],
)
def test_a_header_row_that_moved_a_written_column_stops_the_write(header_now, sentence):
    from homevisits.errors import HomevisitsError
    from homevisits.schema import load_schema
    from homevisits.sheet import LayoutChanged, RawSheet, find_layout

    layout = find_layout(
        RawSheet("log", "Visits", [["Visit ID", "Learner name", "Form sent at"]]), load_schema()
    )
    with pytest.raises(LayoutChanged) as stopped:
        layout.check(header_now, ["form_sent_at"])
    message = str(stopped.value)
    assert message.startswith("The sheet's columns were moved or renamed since it was read ")
    assert sentence in message and message.endswith(": nothing was written; the next run will try again.")
    assert isinstance(stopped.value, HomevisitsError) and "\n" not in message


def test_columns_the_write_does_not_touch_may_move():
    from homevisits.schema import load_schema
    from homevisits.sheet import RawSheet, find_layout

    layout = find_layout(
        RawSheet("log", "Visits", [["Visit ID", "Learner name", "Form sent at"]]), load_schema()
    )
    layout.check(["Visit ID", "Learner", "Form sent at", "Escalated at"], ["form_sent_at"])  # no error


def test_an_excel_write_back_goes_by_the_read_layout_not_one_found_again(tmp_path):
    """The pipeline's layout travels with the write: a snapshot taken later whose columns moved (here
    a column inserted at A and the source read again) is refused, and the file is left as it is."""
    from homevisits.config import from_mapping
    from homevisits.pipeline import load
    from homevisits.sheet import LayoutChanged
    from workbooks import ALL_HEADERS, NOW, visit, write_workbook

    rows = [visit(2, "planned", visit_id="HV-0001", form_sent_at=None)]
    workbook = write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS)
    checked = load(
        from_mapping({"policy": "omg_education", "source": {"path": str(workbook)}}, tmp_path / "a.toml"), NOW
    )
    assert checked.layout is not None and checked.layout.mapping is checked.mapping
    write_workbook(workbook, rows, columns=["Who rang", *ALL_HEADERS])
    before = workbook.read_bytes()
    checked.source.read()
    with pytest.raises(LayoutChanged, match=r"'Visit ID' is now column B, it was column A"):
        checked.write_back([CellUpdate("HV-0001", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert workbook.read_bytes() == before
    write_workbook(workbook, rows, columns=ALL_HEADERS)  # as it was read: the same write goes through
    checked.source.read()
    result = checked.write_back([CellUpdate("HV-0001", "form_sent_at", dt.datetime(2026, 11, 23, 9, 5))])
    assert [(p.row, p.column) for p in result.written] == [(2, ALL_HEADERS.index("Form sent at"))]
