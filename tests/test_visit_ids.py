"""visit_ids.py and cleaning.py: the one test for a header-safe Visit ID, and cell text made safe to show."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homevisits import cleaning
from homevisits.visit_ids import is_header_safe_id, visit_ref


@pytest.mark.parametrize(
    "visit_id", ["HV-0042", "V1", "42", "HV/2026/7", "hv_7.b", "a", "A" * 40, "-V1", "2026.11.23"]
)
def test_letters_digits_and_dash_underscore_slash_dot_up_to_40_are_safe(visit_id):
    assert is_header_safe_id(visit_id)
    assert visit_ref(visit_id, 14) == visit_id


@pytest.mark.parametrize(
    "visit_id",
    [
        "",
        "A" * 41,
        "HV 42",
        "HV-42\n",
        "HV-42\r\nBcc: x@evil.example",
        "=?utf-8?q?HV-42?=",
        "HV-42=?utf-8?q?=0D=0A?=",
        "HV:42",
        "HV<42>",
        '"HV42"',
        "HV-42\t",
        "HV-４２",  # full-width digits
        "Visite-à-7",
        "HV-42\ud800",
        "-",
        "./.",
        None,
        42,
    ],
)
def test_anything_else_is_named_by_its_row(visit_id):
    assert not is_header_safe_id(visit_id)
    assert visit_ref(visit_id, 14) == "row-14"
    assert visit_ref(visit_id, 14, " ") == "row 14"


def test_without_a_row_an_unsafe_id_becomes_a_digest_that_shows_nothing_of_it():
    ref = visit_ref("Ava Example\r\nBcc: x@evil.example")
    assert ref.startswith("id-") and len(ref) == 11 and is_header_safe_id(ref)
    assert ref == visit_ref("Ava Example\r\nBcc: x@evil.example") != visit_ref("Ava Example")
    assert visit_ref("\ud800").startswith("id-")
    assert visit_ref(None) == visit_ref("") == "unnamed"
    assert visit_ref(None, 0) == "unnamed" and visit_ref(None, True) == "unnamed"


@given(st.one_of(st.text(), st.lists(st.integers(0xD800, 0xDFFF).map(chr)).map("".join)))
def test_a_reference_is_always_header_safe(text):
    assert is_header_safe_id(visit_ref(text)) and is_header_safe_id(visit_ref(text, 7))


# ---------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ("a\r\nb\rc\nd\te", "a b c d e"),
        ("x \ud800 y \udfff", "x \ufffd y \ufffd"),
        ("\x00nul\x1b[31mred\x7fdel\x85nel\x9bcsi", "nul [31mred del nel csi"),
        ("line\u2028sep\u2029par", "line sep par"),
        ("evil\u202etxt.exe\u2066x\u2069", "evil txt.exe x"),
        ("  many   spaces  ", "many spaces"),
        (42, "42"),
    ],
)
def test_one_line_never_holds_a_break_a_control_or_a_lone_surrogate(raw, line):
    assert cleaning.one_line(raw) == line
    line.encode("utf-8")  # always encodable


def test_a_body_keeps_its_lines_and_tabs_and_nothing_else():
    raw = "one\r\ntwo\rthree\u2028four\x85five\n\tsix \ud83d\x00\x1b[2J\n"
    assert cleaning.body(raw) == "one\ntwo\nthree\nfour\nfive\n\tsix \ufffd  [2J\n"


# Any character, lone surrogates and control characters drawn as often as the rest.
ANY_TEXT = st.lists(
    st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.integers(0, 0x9F).map(chr))
).map("".join)


@given(ANY_TEXT)
def test_cleaned_text_always_encodes(text):
    cleaning.one_line(text).encode("utf-8")
    cleaning.body(text).encode("utf-8")
    assert "\n" not in cleaning.one_line(text) and "\r" not in cleaning.body(text)


def test_shown_cuts_long_text():
    assert cleaning.shown("x" * 61) == "x" * 57 + "..."
    assert cleaning.shown("a\nb", 40) == "a b"
