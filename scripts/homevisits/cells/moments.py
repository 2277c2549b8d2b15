"""Dates, times, date-times and durations, the way an English school writes them.

Dates are day first and strict (``01/13/2026`` has no month 13 and is unreadable, never swapped to
13 January); times may be 12- or 24-hour; a duration is a whole number of minutes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from .basics import Parsed, _fold, _time_from_fraction, _whole, from_serial, is_blank

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

# A real date cell outside these years is a typing slip (and past 2262 it would not fit pandas).
CELL_YEARS = (1900, 2100)


def _implausible(moment: dt.date) -> str | None:
    low, high = CELL_YEARS
    if low <= moment.year <= high:
        return None
    return f"the year {moment.year} is not plausible (a date between {low} and {high} is expected)"


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
        quick = written_moment(text)
        if quick is not None:
            return quick, None
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


def written_moment(text: str) -> dt.datetime | None:
    """A date and time typed the common way, ``03/04/2026 14:30`` (day first), when it is a real and
    plausible moment; None for any other text (parse_datetime reads it the long way, or says why not)."""
    found = _QUICK_DATETIME.fullmatch(text)
    if found is None:
        return None
    day, month, year, hour, minute = map(int, found.groups())
    date, problem = _make_date(year, month, day)
    if problem is None and hour < 24 and minute < 60:
        return dt.datetime(date.year, date.month, date.day, hour, minute)
    return None


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
