"""Property tests: any cell values in any header layout are read without an exception, and every
cell that cannot be understood is reported exactly once by HV002 with its sheet row and column.

The workbook is written with openpyxl and read back by the real pipeline. The oracle for "cannot
be understood" reads the same file cell by cell (python-calamine, as a school's file would arrive)
and asks the column's own parser, so what is tested here is everything around it: finding the
header row under titles and blank rows, mapping shuffled, aliased and unknown headers, numbering
rows, skipping blank ones, and reporting each bad cell once under the header the sheet shows.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from homevisits.cells import is_blank, parse_one
from homevisits.policy import load_policy, policy_names
from homevisits.schema import fold_header
from workbooks import SCHEMA, london, run_check, write_workbook

POLICIES = policy_names()
INDEX = SCHEMA.header_index()
NOW = london(2026, 11, 23, 12, 0)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MESSY = [
    "01/13/2026",
    "31/02/2026",
    "03/04/2026",
    "Fri 3rd April 2026",
    "3 Apr 2026",
    "14.30",
    "2.30pm",
    "25:00",
    "1430",
    "45 mins",
    "1:30",
    "1.5 hours",
    "+44 7700 900123",
    "(0113) 496 0000",
    "12345",
    "y",
    "Yes ",
    "✓",
    "x",
    "maybe",
    " Med",
    "H",
    "Purple",
    "done",
    "canceled",
    "nobody home",
    "-",
    "N/A",
    "TBC",
    "   ",
    "name@school.example",
    "not an email",
    "Ünïcödé ✓ 日本語",
    "line one\nline two",
]


def _safe_text(text: str) -> bool:
    """Text that is not itself a known header (a title or a cell must not pose as the header row)."""
    return fold_header(text) not in INDEX


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=40).filter(_safe_text)
LONG_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=300, max_size=3000
).filter(_safe_text)
CELLS = st.one_of(
    st.none(),
    st.sampled_from(MESSY),
    TEXT,
    LONG_TEXT,
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.booleans(),
    st.dates(min_value=dt.date(1901, 1, 1), max_value=dt.date(2199, 12, 31)),
    st.datetimes(min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(2199, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.times().map(lambda t: t.replace(microsecond=0)),
)
UNKNOWN_HEADERS = st.sampled_from(["Notes 2", "Misc", "Column Z", "Extra info", "Tutor group", "Zzz", "#"])


def _spellings(field: str) -> list[str]:
    """Ways a sheet may write a field's header: canonical, shouted, spaced, or one of its own aliases."""
    column = SCHEMA[field]
    options = [column.header, column.header.upper(), "  " + column.header.lower().replace(" ", "  ") + " "]
    options += [a for a in column.aliases if INDEX.get(fold_header(a)) == field]
    return options


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Any]:
    policy = draw(st.sampled_from(POLICIES))
    profile = load_policy(policy)
    fields = list(profile.needed_columns())
    for group in profile.needed_alternatives():
        if not any(name in fields for name in group):
            fields.append(draw(st.sampled_from(group)))
    others = [f for f in SCHEMA.fields if f not in fields]
    fields += draw(st.lists(st.sampled_from(others), unique=True, max_size=8))
    headers = {f: draw(st.sampled_from(_spellings(f))) for f in fields}
    unknown = draw(st.lists(UNKNOWN_HEADERS, unique=True, max_size=3))
    order = draw(st.permutations([*headers.values(), *unknown]))
    titles = draw(st.lists(st.lists(TEXT, min_size=1, max_size=2), max_size=3))
    blank_before = draw(st.integers(min_value=0, max_value=2))
    rows = draw(
        st.lists(
            st.one_of(st.none(), st.fixed_dictionaries({}, optional={h: CELLS for h in order})),
            min_size=1,
            max_size=6,
        )
    )
    return {
        "policy": policy,
        "fields": {h: f for f, h in headers.items()},
        "order": order,
        "titles": titles,
        "blank_before": blank_before,
        "rows": rows,
        "epoch1904": draw(st.booleans()),
    }


def _expected_problems(path: Path, layout: dict[str, Any], header_line: int) -> tuple[list[tuple], int]:
    """(sheet row, header) of every mapped cell its column's parser cannot read; and the visit count."""
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    try:
        cells = book.get_sheet_by_index(0).to_python(skip_empty_area=False)
    finally:
        book.close()
    for (r, c), number in _negative_numbers(path).items():  # calamine makes a time of them; Excel shows ####
        if isinstance(cells[r][c], dt.date | dt.time | dt.timedelta):
            cells[r][c] = number
    bad: list[tuple[int, str]] = []
    visits = 0
    for number, raw_row in enumerate(cells[header_line:], start=header_line + 1):
        if all(is_blank(c) or _default(c) for c in raw_row):
            continue  # blank, or only tick-box defaults, 0 and formulas showing blank: not a visit
        visits += 1
        for position, header in enumerate(layout["order"]):
            field = layout["fields"].get(header)
            if field is None:
                continue
            raw = raw_row[position] if position < len(raw_row) else None
            raw = None if raw == "" else raw
            column = SCHEMA[field]
            problem = parse_one(column.type, raw, lookup=column.lookup, date1904=layout["epoch1904"])[1]
            if problem is not None:
                bad.append((number, " ".join(header.split())))
    return sorted(bad), visits


def _negative_numbers(path: Path) -> dict[tuple[int, int], float]:
    """(row, column), 0-based, of each number cell of the first sheet holding a negative value."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as book:
        xml = book.read("xl/worksheets/sheet1.xml").decode()
    found = {}
    for ref, attrs, value in re.findall(
        r'<c r="([A-Z]+\d+)"([^>]*)>(?:<f>[^<]*</f>)?<v>(-[^<]+)</v></c>', xml
    ):
        if 't="' not in attrs or 't="n"' in attrs:
            letters = re.match(r"[A-Z]+", ref)[0]
            column = 0
            for letter in letters:
                column = column * 26 + ord(letter) - 64
            found[(int(ref[len(letters) :]) - 1, column - 1)] = float(value)
    return found


def _default(cell: Any) -> bool:
    """A tick box's TRUE/FALSE, a 0, or the same typed as text."""
    if isinstance(cell, bool):
        return True
    if isinstance(cell, int | float):
        return cell == 0
    return isinstance(cell, str) and " ".join(cell.split()).lower().strip(" .") in ("true", "false", "0")


@PROPERTY
@given(layouts())
def test_any_cells_any_layout_never_crash_and_bad_cells_are_reported_once(layout):
    with tempfile.TemporaryDirectory() as folder:
        path = write_workbook(
            Path(folder) / "log.xlsx",
            layout["rows"],
            columns=layout["order"],
            title_rows=layout["titles"],
            blank_before=layout["blank_before"],
            epoch1904=layout["epoch1904"],
        )
        checked = run_check(path, layout["policy"], NOW)
        header_line = layout["blank_before"] + len(layout["titles"]) + 1
        expected, visits = _expected_problems(path, layout, header_line)

    event(f"bad cells: {min(len(expected), 3)}{'+' if len(expected) > 3 else ''}")
    event(f"1904 dates: {layout['epoch1904']}")
    assert checked.visits.header_row == header_line
    assert len(checked.visits) == visits
    reported = sorted((f.row, f.column) for f in checked.findings if f.rule == "HV002")
    assert reported == expected
    rows = set(checked.visits.frame["row"].tolist())
    for finding in checked.findings:
        # a visit's row, or (a header the tool could not place) the header row itself
        assert (
            finding.row is None
            or finding.row in rows
            or (finding.rule, finding.row) == ("HV029", header_line)
        )
        assert finding.severity in ("alert", "error", "warning", "info")
        assert finding.message and finding.fix and finding.clause
    report = checked.report().as_dict()
    assert report["rows"] == visits
    assert sum(report["summary"].values()) == len(checked.findings)


@PROPERTY
@given(st.lists(CELLS, min_size=1, max_size=8), st.sampled_from(POLICIES))
def test_any_values_in_every_typed_column(values, policy):
    """The same values down every column of the catalogue: each bad cell once, and nothing raises."""
    headers = [c.header for c in SCHEMA.columns]
    rows = [dict.fromkeys(headers, v) for v in values]
    layout = {
        "order": headers,
        "fields": {c.header: c.field for c in SCHEMA.columns},
        "epoch1904": False,
    }
    with tempfile.TemporaryDirectory() as folder:
        path = write_workbook(Path(folder) / "log.xlsx", rows, columns=headers)
        checked = run_check(path, policy, NOW)
        expected, visits = _expected_problems(path, layout, 1)
    assert len(checked.visits) == visits
    assert sorted((f.row, f.column) for f in checked.findings if f.rule == "HV002") == expected
