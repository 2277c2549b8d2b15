"""The cell parsers as a package: every name callers import from homevisits.cells is still there and is
the one its kind's module defines, and importing the package stays light (no NumPy, pandas or
phonenumbers until a column is parsed or an unusual number checked)."""

import json
import subprocess
import sys

import homevisits.cells as cells
from homevisits.cells import basics, column, moments, phones, words


def test_the_names_callers_import_are_still_in_homevisits_cells():
    imported = (
        *("ParsedColumn", "fold_word", "is_blank", "parse_cells", "choice_lookup", "printable"),
        *("EMPTY_WORDS", "parse_date", "parse_text", "parse_one", "parse_phone", "parse_column"),
        *("parse_time", "parse_datetime", "parse_duration", "parse_email", "parse_yesno", "parse_choice"),
        *("PARSERS", "_results", "_checked_number", "_numbers_in"),
    )
    missing = [name for name in imported if not hasattr(cells, name)]
    assert missing == []


def test_each_name_is_the_one_its_module_defines():
    assert cells.is_blank is basics.is_blank and cells.printable is basics.printable
    assert cells.fold_word is basics.fold_word and cells.EMPTY_WORDS is basics.EMPTY_WORDS
    assert cells.parse_date is moments.parse_date and cells.parse_duration is moments.parse_duration
    assert cells.parse_phone is phones.parse_phone and cells._checked_number is phones._checked_number
    assert cells.parse_text is words.parse_text and cells.choice_lookup is words.choice_lookup
    assert cells.parse_cells is column.parse_cells and cells._results is column._results
    by_kind = {
        "text": words.parse_text,
        "date": moments.parse_date,
        "time": moments.parse_time,
        "datetime": moments.parse_datetime,
        "duration": moments.parse_duration,
        "phone": phones.parse_phone,
        "email": words.parse_email,
        "yesno": words.parse_yesno,
    }
    parsers = cells.PARSERS
    assert parsers == by_kind  # the same parsers
    assert list(parsers) == list(by_kind)  # in the same order


def test_importing_the_cells_package_loads_no_heavy_library():
    script = "import sys, json, homevisits.cells\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {"numpy", "pandas", "phonenumbers"}, sorted(
        loaded & {"numpy", "pandas", "phonenumbers"}
    )


def test_plain_text_is_never_what_the_expression_calls_untidy():
    """column._plain_text stands in for _NOT_PLAIN_TEXT where it says yes: every character that is
    whitespace (other than the space) or that the expression calls unprintable is unprintable to
    str.isprintable, so a printable string can only be untidy by its spaces."""
    untidy = column._NOT_PLAIN_TEXT.search
    for char in map(chr, range(0x110000)):
        if char.isprintable() and char != " ":
            assert not char.isspace() and not untidy(char), hex(ord(char))
    samples = [
        "HV-004136",
        "Ms Smith",
        " Ms Smith",
        "Ms Smith ",
        "Ms  Smith",
        "Ms\tSmith",
        "Ms\u00a0Smith",
        "Ms Smith\n",
        "café au lait",
        "x\u200by",
        "\ud800abcdefg",
        "abcdefg\x85",
        "two words here",
    ]
    for text in samples:
        if column._plain_text(text):
            assert not column._NOT_PLAIN_TEXT.search(text), text
    assert column._plain_text("HV-004136") and not column._plain_text("Ms  Smith")
