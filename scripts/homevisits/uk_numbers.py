"""UK phone numbers decided by the GB numbering plan that phonenumbers itself ships, a few regular
expressions per number instead of a full parse.

phonenumbers takes about 50 microseconds to parse, validate and format one number, and a log where
every family has its own landline holds thousands of them. Its metadata for region GB (the national
number pattern and possible lengths of each type of number, and the national formats) says the same
for a plain national number in a few microseconds. Only what those patterns confirm is decided here:
anything else (a number GB's own patterns do not cover, such as Guernsey's, Jersey's or the Isle of
Man's; an invalid number; a foreign one) is left to phonenumbers, so the answer is always
phonenumbers' own (tests/test_uk_numbers.py checks that on generated numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# The types phonenumbers' number_type tries, in its order; a number of any of them is valid.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
# A GB number written nationally: the trunk 0, then a first digit that is not 0 (00 is the
# international prefix), then the national significant number of 9 or 10 digits in all.
_NATIONAL = re.compile(r"0[1-9]\d{8,9}")


@dataclass(frozen=True)
class _Format:
    leading: re.Pattern[str] | None  # the most detailed leading-digits pattern, matched at the start
    pattern: re.Pattern[str]
    national: str  # the replacement, with the national prefix rule applied to its first group


@dataclass(frozen=True)
class _Plan:
    general: tuple[re.Pattern[str], tuple[int, ...]]
    types: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...]
    formats: tuple[_Format, ...]


@lru_cache(maxsize=1)
def _plan() -> _Plan:
    """GB's patterns, compiled once, from the phonenumbers release pinned in requirements.txt."""
    from phonenumbers import PhoneMetadata

    metadata = PhoneMetadata.metadata_for_region("GB")

    def desc(number_desc) -> tuple[re.Pattern[str], tuple[int, ...]]:
        return re.compile(number_desc.national_number_pattern), tuple(number_desc.possible_length)

    types = tuple(
        desc(number_desc)
        for number_desc in (getattr(metadata, name) for name in _TYPES)
        if number_desc is not None and number_desc.national_number_pattern
    )
    formats = []
    for number_format in metadata.number_format:
        rule = number_format.national_prefix_formatting_rule
        # As phonenumbers formats nationally: the rule ("0\\1") put in place of the first group.
        national = number_format.format.replace("\\1", rule, 1) if rule else number_format.format
        leading = number_format.leading_digits_pattern
        formats.append(
            _Format(re.compile(leading[-1]) if leading else None, re.compile(number_format.pattern), national)
        )
    return _Plan(desc(metadata.general_desc), types, tuple(formats))


def prepare() -> None:
    """Compile GB's patterns now rather than at the first number that needs them (the check does it
    while the sheet is still being read)."""
    _plan()


def _matches(number: str, desc: tuple[re.Pattern[str], tuple[int, ...]]) -> bool:
    """phonenumbers' own test of a number against one type: a possible length, and the whole pattern."""
    pattern, lengths = desc
    return (not lengths or len(number) in lengths) and pattern.fullmatch(number) is not None


def national(digits: str) -> str | None:
    """``01134960000`` as phonenumbers writes a valid GB number nationally (``0113 496 0000``); None
    when GB's patterns alone do not show it valid (the caller then asks phonenumbers)."""
    if not _NATIONAL.fullmatch(digits):
        return None
    plan = _plan()
    number = digits[1:]
    if not _matches(number, plan.general) or not any(_matches(number, desc) for desc in plan.types):
        return None
    for number_format in plan.formats:
        if (number_format.leading is None or number_format.leading.match(number)) and (
            number_format.pattern.fullmatch(number)
        ):
            return number_format.pattern.sub(number_format.national, number)
    return None  # no national format: phonenumbers decides how it is shown
