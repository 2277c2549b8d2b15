"""The fast check of UK numbers (uk_numbers.py) says exactly what phonenumbers says, wherever it decides.

phonenumbers is the oracle: every number the GB patterns decide must be one phonenumbers calls valid
and writes the same way; anything else is left to phonenumbers, and a cell reads the same with the
fast check as without it.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from homevisits import cells, uk_numbers

# Leading digits of every kind of UK number (geographic, London, mobiles, pagers, 03, 05, 07 personal,
# freephone, premium), and the island prefixes GB's own patterns leave to phonenumbers.
PREFIXES = (
    "011", "0113", "0114", "0115", "0121", "0131", "0141", "0151", "0161", "0191", "01204", "01387",
    "013873", "01481", "01534", "01624", "01632", "016977", "01697", "01768", "01946", "020", "0207",
    "023", "024", "028", "029", "030", "0306", "033", "034", "037", "055", "056", "070", "071", "074",
    "0745", "075", "076", "07624", "07700", "07781", "0779", "0780", "079", "0800", "0808", "0843",
    "0845", "08454", "0870", "0871", "0900", "0909", "098",
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(10**8, 10**10 - 1).map(lambda n: f"0{n}"),
    st.builds(
        lambda prefix, tail, length: (prefix + tail)[:length],
        st.sampled_from(PREFIXES),
        st.text("0123456789", min_size=10, max_size=10),
        st.integers(7, 12),
    ),
)


def phonenumbers_says(digits: str) -> str | None:
    """What phonenumbers alone makes of a number: its national form when valid, else None."""
    try:
        number = phonenumbers.parse(digits, "GB")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


@settings(max_examples=1000, deadline=None)
@given(NUMBERS)
@example("01134960000")
@example("02079460999")
@example("03069990123")
@example("08001111")
@example("0800123456")
@example("01387300000")
def test_every_number_the_fast_check_decides_is_what_phonenumbers_says(digits):
    decided = uk_numbers.national(digits)
    if decided is not None:
        assert decided == phonenumbers_says(digits), digits


@pytest.mark.parametrize(
    ("digits", "shown"),
    [
        ("01134960000", "0113 496 0000"),
        ("02079460123", "020 7946 0123"),
        ("02896496123", "028 9649 6123"),
        ("03069990123", "0306 999 0123"),
        ("01214960999", "0121 496 0999"),
        ("08081570000", "0808 157 0000"),
    ],
)
def test_landlines_and_other_valid_numbers_are_decided_without_phonenumbers(digits, shown):
    assert uk_numbers.national(digits) == shown == phonenumbers_says(digits)


@pytest.mark.parametrize(
    "digits",
    [
        "01632960000",  # Ofcom's fictional area: phonenumbers calls it invalid
        "07700900123",  # drama mobile: not valid to phonenumbers (cells.py reads it by its own rule)
        "0113496000",  # a digit short
        "011349600000",  # a digit too many
        "00441134960000",  # international prefix
        "+33123456789",
        "1134960000",  # no trunk 0
        "",
    ],
)
def test_what_the_gb_patterns_do_not_show_valid_is_left_to_phonenumbers(digits):
    assert uk_numbers.national(digits) is None


def _cell_without_fast_check(raw) -> tuple:
    """The cell read as before the fast check: every number not a plain mobile through phonenumbers."""
    cells._checked_number.cache_clear()
    cells._numbers_in.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uk_numbers, "national", lambda digits: None)
        read = cells.parse_phone(raw)
    cells._checked_number.cache_clear()
    return read


WRITTEN = st.builds(
    lambda digits, style: {
        "plain": digits,
        "spaced": f"{digits[:4]} {digits[4:7]} {digits[7:]}",
        "plus44": f"+44 {digits[1:]}",
        "plus44 (0)": f"+44 (0){digits[1:]}",
        "0044": f"0044{digits[1:]}",
        "number": int(digits) if digits.isdigit() else digits,
        "labelled": f"home: {digits}",
    }[style],
    NUMBERS,
    st.sampled_from(["plain", "spaced", "plus44", "plus44 (0)", "0044", "number", "labelled"]),
)


@settings(max_examples=400, deadline=None)
@given(WRITTEN)
def test_a_phone_cell_reads_the_same_with_and_without_the_fast_check(raw):
    cells._checked_number.cache_clear()
    cells._numbers_in.cache_clear()
    fast = cells.parse_phone(raw)
    slow = _cell_without_fast_check(raw)
    assert fast == slow, raw
    assert getattr(fast[0], "others", ()) == getattr(slow[0], "others", ()), raw


def test_a_landline_column_never_parses_with_phonenumbers(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("phonenumbers.parse called for a number GB's patterns decide")

    cells._checked_number.cache_clear()
    monkeypatch.setattr(phonenumbers, "parse", refuse)
    column = cells.parse_cells("phone", ["0113 496 0000", "+44 20 7946 0123", "(0121) 496 0999", 1134960001])
    cells._checked_number.cache_clear()
    assert column.values == ["0113 496 0000", "020 7946 0123", "0121 496 0999", "0113 496 0001"]
    assert column.problems == []


MOBILES = st.builds(
    lambda digits, style: {
        "plain": digits,
        "spaced": f"{digits[:5]} {digits[5:]}",
        "plus44": f"+44 {digits[1:5]} {digits[5:]}",
        "plus44 tight": f"+44{digits[1:]}",
        "plus44 0": f"+44 {digits}",
        "odd spaces": f" {digits[:4]} {digits[4:]}",
        "number": int(digits),
    }[style],
    st.text("0123456789", min_size=9, max_size=9).map(lambda tail: "07" + tail),
    st.sampled_from(["plain", "spaced", "plus44", "plus44 tight", "plus44 0", "odd spaces", "number"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(MOBILES, WRITTEN, st.sampled_from(["", "n/a", "#N/A", "call office"])), max_size=25)
)
def test_a_phone_column_reads_exactly_as_its_cells_one_by_one(raws):
    """The column's plain-mobile pass (cells._results) gives what parse_phone gives each cell."""
    column = cells.parse_cells("phone", raws)
    one_by_one = [cells.parse_one("phone", raw) for raw in raws]
    assert column.values == [value for value, _ in one_by_one]
    assert [(i, problem) for i, _, problem in column.problems] == [
        (i, problem) for i, (_, problem) in enumerate(one_by_one) if problem is not None
    ]
