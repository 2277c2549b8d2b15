"""Every cell a person could type: UK dates, times, durations, phones, yes/no, choices."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homevisits import cells
from homevisits.schema import load_schema

APRIL_3 = dt.date(2026, 4, 3)


@pytest.mark.parametrize(
    "raw",
    [
        "03/04/2026",
        "3/4/26",
        "2026-04-03",
        "3 Apr 2026",
        "Fri 3rd April 2026",
        "Friday, 3 April 2026",
        "03.04.2026",
        "3-Apr-26",
        " 03/04/2026 ",
        dt.date(2026, 4, 3),
        dt.datetime(2026, 4, 3, 0, 0),
        46115,
        46115.0,
        "46115",
    ],
)
def test_uk_dates_read_day_first(raw):
    assert cells.parse_date(raw) == (APRIL_3, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("01/13/2026", "no month 13"),
        ("31/02/2026", "no day 31"),
        ("Thu 3rd April 2026", "is a Friday"),
        ("tomorrow-ish", "not a date"),
        ("3 Foo 2026", "not a month"),
        (True, "not a date"),
        (12.5, "not a date"),
    ],
)
def test_bad_dates_are_problems_not_guesses(raw, reason):
    value, problem = cells.parse_date(raw)
    assert value is None
    assert reason in problem


def test_1904_serial_numbers_shift_by_four_years():
    assert cells.parse_date(46115 - 1462, date1904=True) == (APRIL_3, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("14:30", dt.time(14, 30)),
        ("14.30", dt.time(14, 30)),
        ("2.30pm", dt.time(14, 30)),
        ("2:30 p.m.", dt.time(14, 30)),
        ("2pm", dt.time(14)),
        ("12pm", dt.time(12)),
        ("12am", dt.time(0)),
        ("1430", dt.time(14, 30)),
        ("930", dt.time(9, 30)),
        ("noon", dt.time(12)),
        (0.5, dt.time(12)),
        (0.604166666667, dt.time(14, 30)),
        (14.3, dt.time(14, 30)),
        (1430, dt.time(14, 30)),
        (9, dt.time(9)),
        (dt.time(9, 15), dt.time(9, 15)),
        (dt.datetime(1899, 12, 30, 16, 45), dt.time(16, 45)),
        ("03/04/2026 14:30", dt.time(14, 30)),
    ],
)
def test_times(raw, expected):
    assert cells.parse_time(raw) == (expected, None)


@pytest.mark.parametrize("raw", ["25:00", "13pm", "14:75", "0pm", "soon", "03/04/2026", dt.date(2026, 4, 3)])
def test_bad_times(raw):
    value, problem = cells.parse_time(raw)
    assert value is None and problem


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("03/04/2026 14:30", dt.datetime(2026, 4, 3, 14, 30)),
        ("3/4/2026, 2.30pm", dt.datetime(2026, 4, 3, 14, 30)),
        ("Fri 3rd April 2026 at 2pm", dt.datetime(2026, 4, 3, 14)),
        ("2026-04-03T14:30", dt.datetime(2026, 4, 3, 14, 30)),
        (46115.5, dt.datetime(2026, 4, 3, 12)),
        (dt.date(2026, 4, 3), dt.datetime(2026, 4, 3)),  # calamine: a date-time at midnight arrives as a date
        ("14:35", dt.time(14, 35)),  # a bare time: placed on the visit date by the table
    ],
)
def test_date_and_time_in_one_cell(raw, expected):
    assert cells.parse_datetime(raw) == (expected, None)


def test_iso_instant_with_offset_keeps_its_zone():
    value, problem = cells.parse_datetime("2026-04-03T13:30:00Z")
    assert problem is None
    assert value == dt.datetime(2026, 4, 3, 13, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "minutes"),
    [
        ("45", 45),
        ("45 mins", 45),
        ("45m", 45),
        ("1h", 60),
        ("1 hour", 60),
        ("1.5 hours", 90),
        ("1:30", 90),
        ("1h30", 90),
        ("1 hour 30 mins", 90),
        ("half an hour", 30),
        (45, 45),
        (45.0, 45),
        (0.0625, 90),  # an Excel [h]:mm cell
        (dt.timedelta(minutes=90), 90),
        (dt.time(1, 30), 90),
    ],
)
def test_durations(raw, minutes):
    assert cells.parse_duration(raw) == (minutes, None)


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "45 fortnights", "9 days", True])
def test_bad_durations(raw):
    assert cells.parse_duration(raw)[0] is None
    assert cells.parse_duration(raw)[1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("07700 900123", "07700 900123"),
        ("07700900123", "07700 900123"),
        ("+44 7700 900123", "07700 900123"),
        ("+44 (0)7700 900123", "07700 900123"),
        ("(07700) 900-123", "07700 900123"),
        ("0044 7700 900123", "07700 900123"),
        (7700900123, "07700 900123"),  # Excel dropped the leading zero
        (7700900123.0, "07700 900123"),  # ... and calamine made it a float
        ("0113 496 0000", "0113 496 0000"),
        ("1134960000", "0113 496 0000"),
        ("020 7946 0000", "020 7946 0000"),
    ],
)
def test_uk_phones(raw, expected):
    assert cells.parse_phone(raw) == (expected, None)


@pytest.mark.parametrize("raw", ["12345", "not a phone", "0770090012", 3.5, "+44 7700 9001 ext 23"])
def test_bad_phones(raw):
    value, problem = cells.parse_phone(raw)
    assert value is None and problem


@pytest.mark.parametrize("raw", ["y", "Y", "Yes ", "YES", "TRUE", "true", "✓", "✔", "x", "X", True, 1, 1.0])
def test_yes(raw):
    assert cells.parse_yesno(raw) == (True, None)


@pytest.mark.parametrize("raw", ["n", "No", "FALSE", "✗", False, 0, 0.0])
def test_no(raw):
    assert cells.parse_yesno(raw) == (False, None)


@pytest.mark.parametrize("raw", ["", "  ", None, "-", "N/A", "n/a"])
def test_blank_yesno_is_empty_not_a_problem(raw):
    assert cells.parse_yesno(raw) == (None, None)


def test_maybe_is_not_yes_or_no():
    assert cells.parse_yesno("maybe") == (None, "not YES or NO")


SCHEMA = load_schema()


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("risk_level", "low", "LOW"),
        ("risk_level", " Med", "MEDIUM"),
        ("risk_level", "H", "HIGH"),
        ("status", "booked", "Planned"),
        ("status", "done", "Completed"),
        ("status", "visited", "Completed"),
        ("status", "canceled", "Cancelled"),
        ("status", "Nobody home", "No answer"),
        ("location_type", "library", "Public place"),
        ("parent_consent", "y", "YES"),
        ("parent_consent", "n/a", "N/A"),
        ("logged_on", "my concern", "MyConcern"),
    ],
)
def test_choices_through_synonyms(field, raw, expected):
    assert cells.parse_choice(raw, SCHEMA[field].lookup) == (expected, None)


def test_unknown_choice_lists_the_allowed_values():
    value, problem = cells.parse_choice("severe", SCHEMA["risk_level"].lookup)
    assert value is None
    assert problem == "not one of: LOW, MEDIUM, HIGH"


def test_text_keeps_ids_typed_as_numbers_whole():
    assert cells.parse_text(12345.0) == ("12345", None)
    assert cells.parse_text("  Jo   Bloggs ") == ("Jo Bloggs", None)


def test_email_forms():
    assert cells.parse_email("Pat <Pat.Manager@School.Example>") == ("pat.manager@school.example", None)
    assert cells.parse_email("mailto:a@school.example") == ("a@school.example", None)
    assert cells.parse_email("pat at school")[1] == "not an email address"


def test_parse_column_reports_position_raw_and_reason_once_per_bad_cell():
    values, problems = cells.parse_column("date", ["03/04/2026", "01/13/2026", None, "01/13/2026"])
    assert values == [APRIL_3, None, None, None]
    assert [(p, raw) for p, raw, _ in problems] == [(1, "01/13/2026"), (3, "01/13/2026")]


# ---------------------------------------------------------------- properties

ANY_CELL = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.timedeltas(min_value=dt.timedelta(days=-3), max_value=dt.timedelta(days=30)),
    st.sampled_from(
        ["03/04/2026", "2.30pm", "1h30", "+44 7700 900123", "✓", " Med", "01/13/2026", "٣/٤/٢٠٢٦"]
    ),
    # a date and time typed day first, real or not (31/02, month 13, 24:00, year 1949)
    st.builds(
        "{}/{}/{}{}{}:{:02d}".format,
        st.sampled_from(["1", "01", "29", "30", "31", "32", "0"]),
        st.sampled_from(["2", "02", "4", "12", "13", "0"]),
        st.integers(1940, 2110),
        st.sampled_from([" ", "T", "  ", " T "]),
        st.integers(0, 25),
        st.integers(0, 61),
    ),
)
KINDS = [*cells.PARSERS, "choice"]


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(KINDS), raw=ANY_CELL)
def test_no_cell_raises_and_each_answer_is_a_value_or_a_reason(kind, raw):
    values, problems = cells.parse_column(kind, [raw], lookup=SCHEMA["status"].lookup)
    assert len(values) == 1
    if problems:
        assert values == [None]
        (position, got, reason), *rest = problems
        assert position == 0 and not rest and reason
        # the cell as it was, less what cannot be printed (control characters, lone surrogates)
        assert got is raw or (isinstance(raw, str) and got == cells.printable(raw) != raw)
    if isinstance(raw, str):
        assert all(cells.printable(str(v)) == str(v) for v in values if v is not None)
    if cells.is_blank(raw):
        assert values == [None] and problems == []


def _same(a, b):
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    column=st.lists(ANY_CELL | st.sampled_from([1, 1.0, 0, True, False]), max_size=30),
)
def test_a_column_reads_exactly_as_its_cells_one_by_one(kind, column):
    """Grouping equal cells (True == 1 == 1.0, None beside NaN) never changes what any cell reads as."""
    lookup = SCHEMA["status"].lookup
    alone = [cells.parse_one(kind, raw, lookup=lookup) for raw in column]
    values, problems = cells.parse_column(kind, column, lookup=lookup)
    assert len(values) == len(column)
    assert all(_same(got, want) for got, (want, _) in zip(values, alone, strict=True))
    assert [(i, reason) for i, _, reason in problems] == [
        (i, reason) for i, (_, reason) in enumerate(alone) if reason is not None
    ]
    assert all(got is column[i] or got == cells.printable(column[i]) for i, got, _ in problems)


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2100, 12, 31)),
    st.sampled_from(["%d/%m/%Y", "%d/%m/%y", "%Y-%m-%d", "%d %b %Y", "%a %d %B %Y", "%d.%m.%Y"]),
)
def test_any_date_written_the_uk_way_reads_back(date, style):
    text = date.strftime(style)
    expected = date
    if style == "%d/%m/%y":
        expected = date.replace(year=2000 + date.year % 100)
    assert cells.parse_date(text) == (expected, None)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(13, 31), st.integers(2000, 2099))
def test_us_order_never_swapped(month, day, year):
    value, problem = cells.parse_date(f"{month:02d}/{day:02d}/{year}")
    assert value is None and "no month" in problem


@settings(max_examples=200, deadline=None)
@given(st.times().map(lambda t: t.replace(second=0, microsecond=0)))
def test_any_clock_time_reads_back(time):
    assert cells.parse_time(time.strftime("%H:%M")) == (time, None)
    twelve = time.strftime("%I:%M%p").lstrip("0").lower()
    assert cells.parse_time(twelve) == (time, None)


@settings(max_examples=200, deadline=None)
@given(st.integers(900000, 900999))
def test_drama_mobiles_in_any_layout(number):
    digits = f"07700{number}"
    expected = f"07700 {number}"
    for raw in (
        digits,
        f"+44 {digits[1:5]} {number}",
        int(digits),
        float(digits),
        f"({digits[:5]}) {number}",
    ):
        assert cells.parse_phone(raw) == (expected, None)
