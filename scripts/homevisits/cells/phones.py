"""UK phone numbers: a plain mobile read by its own rule, any other number checked by
:mod:`uk_numbers` and, failing that, by ``phonenumbers`` (imported on first use)."""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any

from .. import uk_numbers
from .basics import Parsed, _whole, is_blank

# ---------------------------------------------------------------- phones

_PHONE_JUNK = re.compile(r"[\s()\-./\u00a0]")
_UK_MOBILE = re.compile(r"07[1-57-9]\d{8}")


def parse_phone(raw: Any, date1904: bool = False) -> Parsed:
    """A UK phone number, formatted the way people read it (``07700 900123``, ``0113 496 0000``).

    Restores the leading zero Excel strips from a mobile typed as a number.
    """
    if is_blank(raw):
        return None, None
    if isinstance(raw, (bool, dt.date | dt.time | dt.timedelta)):
        return None, "not a phone number"
    if isinstance(raw, int | float):
        if not _whole(float(raw)) or raw < 0:
            return None, "not a phone number"
        text = str(int(raw))
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        return None, "not a phone number"
    return _phone_from_text(text)


class Phone(str):
    """A phone number as read (``07400 123456``), with any further numbers the cell held in ``others``
    (``0121 496 0000``), so an alert can show every number staff wrote."""

    others: tuple[str, ...] = ()

    def __new__(cls, number: str, others: tuple[str, ...] = ()) -> Phone:
        phone = super().__new__(cls, number)
        phone.others = others
        return phone


def _phone_from_text(text: str) -> Parsed:
    parsed = _one_number(text)
    if parsed[1] is None or not re.search(r"\d", text):
        return parsed
    found = _numbers_in(text)
    return (Phone(found[0], tuple(found[1:])), None) if found else parsed


def _one_number(text: str) -> Parsed:
    """A cell holding one number and nothing else (spaces, brackets, +44 and dots allowed)."""
    digits = _PHONE_JUNK.sub("", text.replace("(0)", ""))
    if digits.startswith("+440"):  # "+44 07400 123456": the national 0 kept after the country code
        digits = digits[3:]
    elif digits.startswith("+44"):
        digits = "0" + digits[3:]
    elif digits.startswith("0044"):
        digits = "0" + digits[4:]
    elif digits.startswith("44") and len(digits) == 12:
        digits = "0" + digits[2:]
    elif digits.isdigit() and len(digits) == 10 and digits[0] in "1237":
        digits = "0" + digits  # Excel dropped the leading zero
    if _UK_MOBILE.fullmatch(digits):
        return f"{digits[:5]} {digits[5:]}", None
    return _checked_number(digits)


@lru_cache(maxsize=4096)
def _numbers_in(text: str) -> list[str]:
    """Every phone number in a cell of words and numbers (``mum: 07400 123456``, ``0121 496 0000 ext 123``,
    ``07400 123456 / 0121 496 0000``), found by ``phonenumbers.PhoneNumberMatcher``; labels and
    extensions are left out, and each number is checked as a cell holding only it would be."""
    import phonenumbers

    found: list[str] = []
    for match in phonenumbers.PhoneNumberMatcher(text, "GB", leniency=phonenumbers.Leniency.POSSIBLE):
        number = match.number
        if number.country_code == 44:
            digits = "0" + str(number.national_number)
        else:
            digits = f"+{number.country_code}{number.national_number}"
        shown, problem = _one_number(digits)
        if problem is None and shown not in found:
            found.append(shown)
    return found


@lru_cache(maxsize=65536)
def _checked_number(digits: str) -> Parsed:
    """A number that is not a plain UK mobile, checked and formatted by ``phonenumbers`` (once per number:
    a log writes the same landline many ways). A plain UK number that GB's own patterns show valid is
    decided by :func:`uk_numbers.national`, in microseconds; phonenumbers parses only the rest."""
    if not re.fullmatch(r"\+?\d{6,15}", digits):
        return None, "not a phone number"
    shown = uk_numbers.national(digits)
    if shown is not None:
        return shown, None
    import phonenumbers  # imported on first use: most numbers are mobiles and never need it

    try:
        number = phonenumbers.parse(digits, "GB")
    except phonenumbers.NumberParseException:
        return None, "not a phone number"
    if not phonenumbers.is_valid_number(number):
        return None, "not a valid UK phone number (check the digits)"
    style = phonenumbers.PhoneNumberFormat
    if number.country_code == 44:
        return phonenumbers.format_number(number, style.NATIONAL), None
    return phonenumbers.format_number(number, style.INTERNATIONAL), None
