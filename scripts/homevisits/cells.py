"""Understand one spreadsheet cell the way a person in an English school would.

Every parser takes the raw value as it came from the sheet (calamine: str, float, int, bool,
date, datetime, time, timedelta; Google Sheets: str, float, bool) and returns ``(value, problem)``:
``value`` is the typed value or ``None``; ``problem`` is ``None`` or a short phrase saying why the
cell could not be understood. Nothing here raises on bad input: a bad cell is a finding.

UK conventions throughout: dates are day first and strict (``01/13/2026`` has no month 13 and
is unreadable, never swapped to 13 January), times may be 12- or 24-hour, phones are UK numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import uk_numbers
from .formula_guard import unneutralise

Parsed = tuple[Any, str | None]

EMPTY_WORDS = frozenset({"", "-", "--", "—", "–", "n/a", "na", "none", "nil", "tbc", "?"})
YES_WORDS = frozenset(
    {
        "y",
        "yes",
        "yeah",
        "yep",
        "true",
        "t",
        "1",
        "✓",
        "✔",
        "☑",
        "✅",
        "x",
        "ticked",
        "tick",
        "agreed",
        "done",
        "ok",
    }
)
NO_WORDS = frozenset({"n", "no", "nope", "false", "f", "0", "✗", "✘", "☐", "❌", "not agreed"})

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
WEEKDAYS = {
    name: number
    for number, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "weds", "wednesday"),
            ("thu", "thur", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}

EXCEL_EPOCH_1900 = dt.datetime(1899, 12, 30)
EXCEL_EPOCH_1904 = dt.datetime(1904, 1, 1)
# Serial numbers outside 1950..2100 are not plausible visit dates.
SERIAL_MIN, SERIAL_MAX = 18264, 73051
# A real date cell outside these years is a typing slip (and past 2262 it would not fit pandas).
CELL_YEARS = (1900, 2100)


def _implausible(moment: dt.date) -> str | None:
    low, high = CELL_YEARS
    if low <= moment.year <= high:
        return None
    return f"the year {moment.year} is not plausible (a date between {low} and {high} is expected)"


def is_blank(raw: Any) -> bool:
    """True for an empty cell, including a cell of spaces or a placeholder like ``-`` or ``N/A``."""
    if raw is None:
        return True
    if isinstance(raw, str):
        if len(raw) > 6 and len(raw.strip()) > 6:  # placeholders are short: most text stops here
            return False
        return _fold(raw) in EMPTY_WORDS
    return isinstance(raw, float) and math.isnan(raw)


def _fold(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split()).lower().strip(" .")


fold_word = _fold  # a short cell as compared with words: spaces collapsed, lower case, no full stop


def _whole(number: float) -> bool:
    return math.isfinite(number) and float(number).is_integer()


# ---------------------------------------------------------------- what a cell may not carry

# Terminal escape sequences (CSI such as cursor moves, erase-line and conceal; OSC; two-byte ESC),
# then any other control character, DEL, C1 control or lone UTF-16 surrogate: none can be printed,
# encoded or mailed, so a cell loses them before its value reaches a message, report or workbook.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences, control characters or lone surrogates."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub("", _ESCAPES.sub("", text))


# What a spreadsheet shows when a formula fails: Google sends the text, Excel keeps an error cell.
FORMULA_ERRORS = frozenset(
    {"#N/A", "#REF!", "#NAME?", "#DIV/0!", "#VALUE!", "#NUM!", "#NULL!", "#ERROR!", "#SPILL!", "#CALC!"}
)


def formula_error(raw: Any) -> str | None:
    """The error a cell shows (``#N/A``, ``#REF!``...), or None for any other value."""
    if raw.__class__ is str and raw[:1] == "#":
        text = raw.strip().upper()
        if text in FORMULA_ERRORS or text == "#N/A N/A":
            return text
    return None


# ---------------------------------------------------------------- serial numbers


def from_serial(serial: float, date1904: bool = False) -> dt.datetime | None:
    """An Excel / Sheets serial number (days since the epoch, fraction = time of day) as a datetime."""
    if not math.isfinite(serial):
        return None
    epoch = EXCEL_EPOCH_1904 if date1904 else EXCEL_EPOCH_1900
    low, high = (SERIAL_MIN - 1462, SERIAL_MAX - 1462) if date1904 else (SERIAL_MIN, SERIAL_MAX)
    if not low <= serial <= high:
        return None
    moment = epoch + dt.timedelta(days=serial)
    return _round_to_second(moment)


def _round_to_second(moment: dt.datetime) -> dt.datetime:
    if moment.microsecond >= 500_000:
        moment += dt.timedelta(seconds=1)
    return moment.replace(microsecond=0)


def _time_from_fraction(fraction: float) -> dt.time:
    seconds = round(fraction * 86400) % 86400
    return dt.time(seconds // 3600, seconds % 3600 // 60, seconds % 60)


# ---------------------------------------------------------------- dates

_NUMERIC_DATE = re.compile(r"(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4}|\d{2})(?!\d)")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_WORDS_DATE = re.compile(
    r"(?:(?P<wd>[a-z]+),?\s+)?(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?[\s\-/]+(?P<m>[a-z]+)\.?,?[\s\-/]+(?P<y>\d{4}|\d{2})(?!\d)"
)
_WORDS_DATE_US = re.compile(
    r"(?:(?P<wd>[a-z]+),?\s+)?(?P<m>[a-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})"
)
_WEEKDAY_LEAD = re.compile(r"(?P<wd>[a-z]+)\.?,?\s+(?=\d)")
_TIME_LEAD = re.compile(r"^(?:\s*,\s*|\s+at\s+|\s+|t)")


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if len(text) == 2 else year


def _make_date(year: int, month: int, day: int, weekday: str | None = None) -> Parsed:
    if not 1 <= month <= 12:
        return None, f"there is no month {month} (dates are day first: DD/MM/YYYY)"
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None, f"there is no day {day} in that month"
    if not 1950 <= year <= 2100:
        return None, f"the year {year} is not plausible"
    if weekday is not None:
        expected = WEEKDAYS.get(weekday)
        if expected is None:
            return None, f"'{weekday}' is not a day of the week"
        if expected != date.weekday():
            return None, f"{date:%d %B %Y} is a {date:%A}, not the day written"
    return date, None


def _date_from_text(text: str) -> tuple[Parsed, str]:
    """Parse the date at the start of ``text``; also return what follows it (a time, perhaps)."""
    folded = _fold(text)
    weekday = None
    lead = _WEEKDAY_LEAD.match(folded)
    if lead and lead["wd"] in WEEKDAYS:  # "Fri 03/04/2026": the day is checked against the date
        weekday, folded = lead["wd"], folded[lead.end() :]
    for pattern in (_ISO_DATE, _NUMERIC_DATE):
        match = pattern.match(folded)
        if match:
            a, b, c = match.groups()
            if pattern is _ISO_DATE:
                parsed = _make_date(int(a), int(b), int(c), weekday)
            else:
                parsed = _make_date(_year(c), int(b), int(a), weekday)
            return parsed, folded[match.end() :]
    if weekday is not None:
        folded = lead.string  # a weekday before a date in words: the pattern below reads both
    for pattern in (_WORDS_DATE, _WORDS_DATE_US):
        match = pattern.match(folded)
        if match:
            month = MONTHS.get(match["m"])
            if month is None:
                return (None, f"'{match['m']}' is not a month"), ""
            parsed = _make_date(_year(match["y"]), month, int(match["d"]), match["wd"])
            return parsed, folded[match.end() :]
    if folded.isdigit() and len(folded) == 5:
        moment = from_serial(float(folded))
        if moment is not None:
            return (moment.date(), None), ""
    return (None, "not a date (write it day first, e.g. 03/04/2026)"), ""


def parse_date(raw: Any, date1904: bool = False) -> Parsed:
    """A visit date: a real date cell, a serial number, or text such as ``3/4/26`` or ``Fri 3rd April 2026``."""
    if is_blank(raw):
        return None, None
    if isinstance(raw, dt.date):
        problem = _implausible(raw)
        if problem:
            return None, problem
        return (raw.date() if isinstance(raw, dt.datetime) else raw), None
    if isinstance(raw, bool):
        return None, "not a date"
    if isinstance(raw, int | float):
        moment = from_serial(float(raw), date1904)
        return (moment.date(), None) if moment else (None, "a number that is not a date")
    if isinstance(raw, str):
        parsed, rest = _date_from_text(raw)
        if (
            parsed[1] is None
            and rest.strip(" ,")
            and _time_or_none(_TIME_LEAD.sub("", rest, count=1)) is None
        ):
            return None, "not a date (unexpected text after the date)"
        return parsed
    return None, "not a date"


# ---------------------------------------------------------------- times

_CLOCK = re.compile(
    r"(?P<h>\d{1,2})(?:\s*[:.h]\s*(?P<m>\d{2})(?:\s*:\s*(?P<s>\d{2}))?)?\s*(?P<ampm>am|pm|a\.m\.?|p\.m\.?)?(?:\s*hrs)?"
)
_COMPACT = re.compile(r"(?P<h>\d{1,2})(?P<m>\d{2})\s*(?:hrs|h)?")
_NAMED_TIMES = {"noon": dt.time(12), "midday": dt.time(12), "12 noon": dt.time(12), "midnight": dt.time(0)}


def _time_from_text(text: str) -> Parsed:
    folded = _fold(text)
    if folded in _NAMED_TIMES:
        return _NAMED_TIMES[folded], None
    match = _CLOCK.fullmatch(folded)
    if match is None and folded.isdigit() and len(folded) in (3, 4):
        match = _COMPACT.fullmatch(folded)
    if match is None:
        return None, "not a time (write it like 14:30 or 2.30pm)"
    hour = int(match["h"])
    minute = int(match["m"] or 0)
    second = int(match.groupdict().get("s") or 0)
    ampm = (match.groupdict().get("ampm") or "").replace(".", "")
    if ampm:
        if not 1 <= hour <= 12:
            return None, f"{hour}{ampm} is not a time on a 12-hour clock"
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None, "not a time on the 24-hour clock"
    return dt.time(hour, minute, second), None


def _time_or_none(text: str) -> dt.time | None:
    return _time_from_text(text)[0]


def parse_time(raw: Any, date1904: bool = False) -> Parsed:
    """A time of day: a time cell, an Excel fraction of a day, or text such as ``14.30``, ``2pm``, ``1430``."""
    if is_blank(raw):
        return None, None
    if isinstance(raw, dt.datetime):
        return raw.time().replace(microsecond=0), None
    if isinstance(raw, dt.time):
        return raw.replace(microsecond=0), None
    if isinstance(raw, dt.timedelta):
        seconds = raw.total_seconds()
        return (_time_from_fraction(seconds / 86400), None) if 0 <= seconds < 86400 else (None, "not a time")
    if isinstance(raw, (dt.date, bool)):
        return None, "a date, not a time"
    if isinstance(raw, int | float):
        number = float(raw)
        if not math.isfinite(number) or number < 0:
            return None, "not a time"
        if number < 1:
            return _time_from_fraction(number), None
        if _whole(number) and number <= 23:
            return dt.time(int(number)), None
        if _whole(number) and 100 <= number <= 2359:
            return _time_from_text(f"{int(number):04d}")
        if number < 24:  # 14.3 is what Excel keeps of "14.30"
            hour = int(number)
            minute = round((number - hour) * 100)
            return (dt.time(hour, minute), None) if minute < 60 else (None, "not a time")
        moment = from_serial(number, date1904)
        return (moment.time(), None) if moment else (None, "a number that is not a time")
    if isinstance(raw, str):
        parsed = _time_from_text(raw)
        if parsed[1] is None:
            return parsed
        (_date, date_problem), rest = _date_from_text(raw)
        if date_problem is None and rest.strip(" ,"):  # a date and a time: keep the time
            moment, problem = parse_datetime(raw, date1904)
            if problem is None and isinstance(moment, dt.datetime):
                return moment.time(), None
        return parsed
    return None, "not a time"


# ---------------------------------------------------------------- date and time in one cell


_TIME_ONLY_DAYS = (dt.date(1899, 12, 30), dt.date(1899, 12, 31), dt.date(1904, 1, 1))
_BARE_CLOCK = re.compile(r"\d{1,2}[:.]\d{2}\s*(?:[ap]m)?", re.IGNORECASE)
_QUICK_DATETIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})[ T]+(\d{1,2}):(\d{2})")


def parse_datetime(raw: Any, date1904: bool = False) -> Parsed:
    """A moment: a date with a time, or a bare time (which the caller places on the visit date).

    Returns a naive ``datetime`` (wall-clock time in the school's time zone), a ``time``, or a
    ``datetime`` at midnight when only a date was written.
    """
    if raw.__class__ is dt.datetime and raw.tzinfo is None and 1900 <= raw.year <= 2100:
        return (
            raw.replace(microsecond=0) if raw.microsecond else raw
        ), None  # a real date-time cell: the common case
    if is_blank(raw):
        return None, None
    if isinstance(raw, dt.date):
        if isinstance(raw, dt.datetime) and raw.date() in _TIME_ONLY_DAYS:
            return raw.time().replace(microsecond=0), None  # a time cell Excel keeps on its day zero
        problem = _implausible(raw)
        if problem:
            return None, problem
        if isinstance(raw, dt.datetime):
            if raw.tzinfo is not None:
                return raw, None  # an instant; the table converts it to the school's wall clock
            return raw.replace(microsecond=0), None
        return dt.datetime(raw.year, raw.month, raw.day), None
    if isinstance(raw, dt.time | dt.timedelta):
        return parse_time(raw)
    if isinstance(raw, bool):
        return None, "not a date and time"
    if isinstance(raw, int | float):
        number = float(raw)
        if 0 <= number < 1:
            return _time_from_fraction(number), None
        moment = from_serial(number, date1904)
        return (moment, None) if moment else (None, "a number that is not a date and time")
    if isinstance(raw, str):
        text = raw.strip()
        if _BARE_CLOCK.fullmatch(text):  # the common 14:30 or 2.30pm: a time the table puts on the visit date
            time, problem = _time_from_text(text)
            if problem is None:
                return time, None
        quick = _QUICK_DATETIME.fullmatch(text)
        if quick:  # the common 03/04/2026 14:30
            day, month, year, hour, minute = map(int, quick.groups())
            date, problem = _make_date(year, month, day)
            if problem is None and hour < 24 and minute < 60:
                return dt.datetime(date.year, date.month, date.day, hour, minute), None
        iso = _iso_instant(text)
        if iso is not None:
            problem = _implausible(iso)
            return (None, problem) if problem else (iso, None)
        (date, problem), rest = _date_from_text(text)
        if problem is None:
            rest = _TIME_LEAD.sub("", rest, count=1).strip(" ,")
            if not rest:
                return dt.datetime(date.year, date.month, date.day), None
            time, problem = _time_from_text(rest)
            if problem is None:
                return dt.datetime.combine(date, time), None
            return None, problem
        time, time_problem = _time_from_text(text)
        if time_problem is None:
            return time, None
        return None, "not a date and time (write it like 03/04/2026 14:30)"
    return None, "not a date and time"


def _iso_instant(text: str) -> dt.datetime | None:
    if len(text) < 16 or text[4] != "-" or text[10] not in "T ":
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(microsecond=0)


# ---------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>hours?|hrs?|h|minutes?|mins?|m)\b")


def parse_duration(raw: Any, date1904: bool = False) -> Parsed:
    """A length of time in whole minutes: ``45``, ``45 mins``, ``1h``, ``1.5 hours``, ``1:30``, ``1h30``."""
    if is_blank(raw):
        return None, None
    if isinstance(raw, bool):
        return None, "not a duration"
    if isinstance(raw, dt.timedelta):
        return _minutes(raw.total_seconds() / 60)
    if isinstance(raw, dt.time) and not isinstance(raw, dt.datetime):
        return _minutes(raw.hour * 60 + raw.minute + raw.second / 60)
    if isinstance(raw, int | float):
        number = float(raw)
        if 0 < number < 1:  # an Excel duration cell: a fraction of a day
            return _minutes(number * 1440)
        return _minutes(number)
    if not isinstance(raw, str):
        return None, "not a duration"
    text = _fold(raw)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return _minutes(float(text))
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if clock:
        return _minutes(int(clock[1]) * 60 + int(clock[2]))
    compact = re.fullmatch(r"(\d{1,2})\s*h\s*(\d{1,2})", text)
    if compact:
        return _minutes(int(compact[1]) * 60 + int(compact[2]))
    words = text.replace(" and ", " ").replace(",", " ")
    if words in {"half an hour", "half hour"}:
        return 30, None
    if words in {"an hour", "one hour"}:
        return 60, None
    total, end = 0.0, 0
    for part in _DURATION_PART.finditer(words):
        if words[end : part.start()].strip():
            return None, "not a duration (write minutes, e.g. 45, or 1h30)"
        number = float(part["n"])
        total += number * 60 if part["unit"].startswith("h") else number
        end = part.end()
    if end == 0 or words[end:].strip():
        return None, "not a duration (write minutes, e.g. 45, or 1h30)"
    return _minutes(total)


SHORTEST_VISIT = 5  # minutes: a shorter "duration" is hours typed in a minutes column


def _minutes(value: float) -> Parsed:
    if not math.isfinite(value) or value <= 0:
        return None, "not a positive number of minutes"
    if value < SHORTEST_VISIT:
        return None, f"{value:g} minutes? write {value * 60:g} or {value:g} hours"
    if value > 7 * 24 * 60:
        return None, "longer than a week: not a visit duration"
    return round(value), None


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


# ---------------------------------------------------------------- email, yes/no, choice, text

_EMAIL = re.compile(r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def parse_email(raw: Any, date1904: bool = False) -> Parsed:
    """An email address, lower-cased; ``Name <a@b.org>`` and ``mailto:`` are accepted."""
    if is_blank(raw):
        return None, None
    if not isinstance(raw, str):
        return None, "not an email address"
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    bracketed = re.search(r"<([^<>]+)>", text)
    if bracketed:
        text = bracketed[1].strip()
    if _EMAIL.fullmatch(text):
        return text.lower(), None
    return None, "not an email address"


def parse_yesno(raw: Any, date1904: bool = False) -> Parsed:
    """YES or NO however it is written: ``y``, ``Yes ``, ``TRUE``, ``✓``, ``x``, a tick box, 1/0."""
    if is_blank(raw):
        return None, None
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int | float):
        if raw in (0, 1):
            return bool(raw), None
        return None, "not YES or NO"
    if isinstance(raw, str):
        folded = _fold(raw)
        if folded in YES_WORDS:
            return True, None
        if folded in NO_WORDS:
            return False, None
    return None, "not YES or NO"


def choice_lookup(choices: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Map every folded spelling (and the canonical value itself) to the canonical value."""
    lookup: dict[str, str] = {}
    for canonical, spellings in choices.items():
        lookup[_fold(canonical)] = canonical
        for spelling in spellings or ():
            lookup[_fold(str(spelling))] = canonical
    return lookup


def parse_choice(raw: Any, lookup: Mapping[str, str], date1904: bool = False) -> Parsed:
    """One of a column's allowed values, matched case- and space-insensitively through its synonyms."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None, None
    if isinstance(raw, bool):
        text = "yes" if raw else "no"
    elif isinstance(raw, float) and _whole(raw):
        text = str(int(raw))
    else:
        text = str(raw)
    folded = _fold(text)
    if folded in lookup:
        return lookup[folded], None
    if folded in EMPTY_WORDS:
        return None, None
    allowed = ", ".join(dict.fromkeys(lookup.values()))
    return None, f"not one of: {allowed}"


_UNTIDY = re.compile(r"^\s|\s$|\s\s|[^\S ]")  # space at either end, doubled, or a tab / newline / NBSP


def parse_text(raw: Any, date1904: bool = False) -> Parsed:
    """Free text, trimmed; a whole number keeps no ``.0`` (a Learner ID typed as a number).

    A placeholder (``-``, ``TBC``, ``N/A``) is an empty cell: it does not count as filled in.
    """
    if raw.__class__ is str and len(raw) > 6 and not _UNTIDY.search(raw) and raw[:1] != "'":
        return raw, None  # already tidy and too long for a placeholder: the common case, kept as it is
    if is_blank(raw):
        return None, None
    if isinstance(raw, float) and _whole(raw):
        return str(int(raw)), None
    if isinstance(raw, dt.datetime):
        return raw.strftime("%d/%m/%Y %H:%M"), None
    if isinstance(raw, dt.date):
        return raw.strftime("%d/%m/%Y"), None
    if raw.__class__ is not str:
        raw = str(raw)
    if raw[:1] == "'":  # text the tool wrote with its formula guard: read it as it was meant
        raw = unneutralise(raw)
    text = " ".join(raw.split())
    if not text:
        return None, None
    return (raw if text == raw else text), None  # the sheet's own string when already tidy


PARSERS: dict[str, Callable[..., Parsed]] = {
    "text": parse_text,
    "date": parse_date,
    "time": parse_time,
    "datetime": parse_datetime,
    "duration": parse_duration,
    "phone": parse_phone,
    "email": parse_email,
    "yesno": parse_yesno,
}


def _cell_parser(kind: str, lookup: Mapping[str, str] | None) -> Callable[..., Parsed]:
    """The parser for a column's type, called as ``parse(raw, date1904)``."""
    if kind == "choice":
        table = lookup or {}
        return lambda raw, date1904=False: parse_choice(raw, table)
    return PARSERS[kind]


def _guarded(parse: Callable[..., Parsed]) -> Callable[..., Parsed]:
    """``parse`` for one raw value, after what every cell type shares: a formula error is a problem
    (the same from Google's text and Excel's error cells), and unprintable characters are removed."""

    def guarded(raw: Any, date1904: bool = False) -> Parsed:
        if raw.__class__ is str:
            if raw[:1] == "#":
                error = formula_error(raw)
                if error:
                    return (
                        None,
                        f"the cell shows a formula error ({error}): correct the formula or type the value",
                    )
            if _UNPRINTABLE.search(raw):
                cleaned = printable(raw)
                if not cleaned.strip() and raw.strip():  # never silently blank (whitespace is blank)
                    return None, "the cell holds only control characters, nothing that can be read"
                raw = cleaned
        return parse(raw, date1904)

    return guarded


def parse_one(
    kind: str, raw: Any, *, lookup: Mapping[str, str] | None = None, date1904: bool = False
) -> Parsed:
    """One cell read exactly as :func:`parse_cells` reads it in a column."""
    return _guarded(_cell_parser(kind, lookup))(raw, date1904)


@dataclass(frozen=True)
class ParsedColumn:
    """A whole column parsed: each distinct raw value once, and which of them each cell holds."""

    distinct: list[Any]  # the parsed value of each distinct raw value
    codes: Any  # NumPy integer array: for each cell, its index into ``distinct``
    problems: list[tuple[int, Any, str]]  # (position, raw value, reason) of each bad cell, in order

    @property
    def values(self) -> list[Any]:
        return [self.distinct[code] for code in self.codes.tolist()]


def parse_cells(
    kind: str, raws: Sequence[Any], *, lookup: Mapping[str, str] | None = None, date1904: bool = False
) -> ParsedColumn:
    """Parse a whole column, each distinct raw value once: a log repeats its dates, times and answers.

    The cells are grouped by pandas' hash table (in C); ``True``, ``1`` and ``1.0`` are equal there
    as in Python, so a column mixing yes/no cells with numbers is grouped by type as well.
    """
    import numpy as np
    import pandas as pd

    parse = _guarded(_cell_parser(kind, lookup))
    cells = _object_array(raws)
    try:
        codes, uniques = pd.factorize(cells)  # cells pandas calls missing (None, NaN) get -1
        distinct = uniques.tolist()
    except TypeError:  # an unhashable cell
        codes, distinct = _group_by_type_and_value(cells)
    else:
        if _mixes_bools_and_numbers(cells, distinct):
            codes, distinct = _group_by_type_and_value(cells)
    results = _results(kind, distinct, parse, date1904)
    missing = codes < 0
    if missing.any():  # each kind of missing cell (nearly always just None) parsed once
        gaps = cells[missing].tolist()
        kinds = list(dict.fromkeys(map(type, gaps)))
        slots = {kind: len(results) + i for i, kind in enumerate(kinds)}
        results.extend(parse(next(raw for raw in gaps if type(raw) is kind), date1904) for kind in kinds)
        codes[missing] = [slots[type(raw)] for raw in gaps] if len(kinds) > 1 else slots[kinds[0]]
    codes = codes.astype(np.intp, copy=False)
    bad = np.fromiter((problem is not None for _, problem in results), dtype=bool, count=len(results))
    where = np.flatnonzero(bad[codes])
    problems = [
        (i, printable(raw) if raw.__class__ is str else raw, results[code][1])
        for i, raw, code in zip(where.tolist(), cells[where].tolist(), codes[where].tolist(), strict=True)
    ]
    return ParsedColumn(distinct=[value for value, _ in results], codes=codes, problems=problems)


_PLAIN_MOBILE = re.compile(r"(?:0|\+44 ?)(7[1-57-9]\d\d) ?(\d{6})")
_NOT_PLAIN_TEXT = re.compile(f"{_UNTIDY.pattern}|{_UNPRINTABLE.pattern}")


def _results(kind: str, distinct: list[Any], parse: Callable[..., Parsed], date1904: bool) -> list[Parsed]:
    """Each distinct cell parsed. The commonest cells of three kinds are written straight out, as
    ``parse`` (the guarded parser) gives them, without its two calls apiece: a log has tens of
    thousands of them, a Visit ID or a form's sent time of its own on each row.

    - text: a tidy string of more than 6 characters, not starting with ``#`` or ``'``, kept as it is;
    - datetime: a real date-time cell (no time zone, whole seconds, a year from 1900 to 2100);
    - phone: a plain mobile (``07700 900123``, ``07700900123``, ``+44 7700 900123``), as 07700 900123.
    """
    if kind == "text":
        untidy = _NOT_PLAIN_TEXT.search
        return [
            (raw, None)
            if raw.__class__ is str and len(raw) > 6 and raw[0] not in "#'" and not untidy(raw)
            else parse(raw, date1904)
            for raw in distinct
        ]
    if kind == "datetime":
        moment = dt.datetime
        return [
            (raw, None)
            if raw.__class__ is moment
            and raw.tzinfo is None
            and not raw.microsecond
            and 1900 <= raw.year <= 2100
            else parse(raw, date1904)
            for raw in distinct
        ]
    if kind == "phone":
        plain = _PLAIN_MOBILE.fullmatch
        results: list[Parsed] = []
        for raw in distinct:
            found = plain(raw) if raw.__class__ is str else None
            results.append((f"0{found[1]} {found[2]}", None) if found else parse(raw, date1904))
        return results
    return [parse(raw, date1904) for raw in distinct]


def _object_array(raws: Sequence[Any]) -> Any:
    import numpy as np

    if isinstance(raws, np.ndarray) and raws.dtype == object and raws.ndim == 1:
        return raws
    cells = np.empty(len(raws), dtype=object)
    try:
        cells[:] = list(raws)
    except ValueError:  # a cell NumPy would read as a sequence: place cells one by one
        for position, raw in enumerate(raws):
            cells[position] = raw
    return cells


def _mixes_bools_and_numbers(cells: Any, distinct: list[Any]) -> bool:
    """True when a column holds ``True``/``False`` beside numbers, which pandas would group together."""
    if not {bool, int, float} & set(map(type, distinct)):
        return False
    if not any(value.__class__ in (bool, int, float) and value in (0, 1) for value in distinct):
        return False  # no yes/no cell, and no 0 or 1 a yes/no cell could hide behind
    kinds = set(map(type, cells.tolist()))
    return bool in kinds and (int in kinds or float in kinds)


def _group_by_type_and_value(cells: Any) -> tuple[Any, list[Any]]:
    import numpy as np

    index: dict[Any, int] = {}
    distinct: list[Any] = []
    codes = np.empty(len(cells), dtype=np.intp)
    for position, raw in enumerate(cells.tolist()):
        try:
            key: Any = (raw.__class__, raw)
            code = index.get(key)
        except TypeError:  # unhashable: a group of its own
            key, code = None, None
        if code is None:
            code = len(distinct)
            distinct.append(raw)
            if key is not None:
                index[key] = code
        codes[position] = code
    return codes, distinct


def parse_column(
    kind: str,
    raws: Sequence[Any],
    *,
    lookup: Mapping[str, str] | None = None,
    date1904: bool = False,
) -> tuple[list[Any], list[tuple[int, Any, str]]]:
    """Parse a whole column; return the values and ``(position, raw, problem)`` for each bad cell."""
    column = parse_cells(kind, raws, lookup=lookup, date1904=date1904)
    return column.values, column.problems
