"""Dates and times as an English school writes them: ``Friday 3 April 2026``, ``14:30``, on its own clock."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo


def on_clock(value: Any, tz: ZoneInfo) -> Any:
    """An aware datetime as the school's wall-clock time; anything else as it is."""
    return value.astimezone(tz) if isinstance(value, dt.datetime) and value.tzinfo else value


def long_day(day: dt.date) -> str:
    """``Friday 3 April 2026``."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def clock_time(moment: dt.time | dt.datetime) -> str:
    """``14:30`` (24-hour clock)."""
    return f"{moment:%H:%M}"


def long_moment(moment: dt.datetime) -> str:
    """``Friday 3 April 2026 at 14:30``."""
    return f"{long_day(moment)} at {clock_time(moment)}"
