"""The rules about how the sheet was read: headers not placed and rows skipped (HV029), and a
spreadsheet whose locale reads dates differently from the school's (HV030)."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Text
from ..settings import Setting
from .catalogue import Hit, rule
from .context import Context

_NOT_READ = "The header '{sheet_header}' (column {letter}) is not a column homevisits knows, so its cells are not read"


@rule(
    "HV029",
    "Part of the sheet not read",
    "warning",
    texts={
        "looks like": Text(
            _NOT_READ + "; it looks like '{looks_like_header}'.",
            'If it holds {looks_like_header}, add under [columns] in the config: "{sheet_header}" = "{looks_like}".',
        ),
        "unknown": Text(
            _NOT_READ + ".",
            'If the policy needs it, map it under [columns] in the config ("{sheet_header}" = "<field>", fields '
            "as in sheets_schema/home_visits.yaml); a column of the school's own can stay as it is.",
        ),
        "rows skipped": Text("{note}", "Nothing to do unless one of those rows is a visit."),
    },
)
def sheet_not_fully_read(ctx: Context) -> Iterator[Hit]:
    """Every header is accounted for, and every row skipped is said: a column the tool cannot place
    is not read (so its cells count for nothing), and rows holding only tick-box defaults are not visits."""
    visits = ctx.visits
    header_row = visits.header_row
    for position, header, near in visits.extra.get("unplaced", ()):
        values = {"sheet_header": header, "letter": _column_name(position), "looks_like": near}
        if near is not None:
            values["looks_like_header"] = visits.schema[near].header
            yield Hit(None, None, row=header_row, kind="looks like", values=values)
        else:
            yield Hit(None, None, severity="info", row=header_row, kind="unknown", values=values)
    for note in visits.extra.get("skipped", ()):
        yield Hit(None, None, severity="info", row=None, kind="rows skipped", values={"note": note})


def _column_name(position: int) -> str:
    from ..schema import column_name

    return column_name(position)


LOCALE_NAMES = {"en_GB": "United Kingdom", "en_US": "United States", "en_IE": "Ireland", "en_AU": "Australia"}
MONTH_FIRST_LOCALES = ("en_US", "en_PH", "en_CA", "es_US", "fil_PH")


_LOCALE_FIX = (
    "In the Google Sheet choose File → Settings → Locale: {expected_name}, then check every date typed so "
    "far whose day is 12 or less, and retype any that changed."
)
_SWAPPED = " {ambiguous_dates} {visit_dates} in the sheet could have day and month swapped."


@rule(
    "HV030",
    "Spreadsheet locale not the school's",
    "error",
    params={"locale": Setting("text", "en_GB")},
    texts={
        "month first": Text(
            "The Google Sheet's locale is {locale} ({locale_name}), not {expected_locale}: dates typed day "
            "first are stored month first: 03/04/2026 became 4 March 2026, and a date with a day over 12 "
            "(13/04/2026) stayed as text." + _SWAPPED,
            _LOCALE_FIX,
        ),
        "other conventions": Text(
            "The Google Sheet's locale is {locale} ({locale_name}), not {expected_locale}: dates and times "
            "typed so far were read by that locale's conventions, not the school's." + _SWAPPED,
            _LOCALE_FIX,
        ),
    },
)
def spreadsheet_locale(ctx: Context) -> Iterator[Hit]:
    """A Google Sheet reads what staff type by its locale: in a US-English sheet 03/04/2026 is stored as
    4 March, a real date the tool cannot tell from one typed correctly."""
    locale = ctx.visits.extra.get("locale")
    expected = str(ctx.p("locale", "en_GB"))
    if not locale or locale.replace("-", "_").lower() == expected.replace("-", "_").lower():
        return
    dates = ctx.f["visit_date"]
    ambiguous = int(((dates.dt.day <= 12) & (dates.dt.day != dates.dt.month)).fillna(False).sum())
    expected_name = LOCALE_NAMES.get(expected, expected)
    values = {
        "locale": locale,
        "expected_locale": expected,
        "ambiguous_dates": ambiguous,
        "locale_name": LOCALE_NAMES.get(locale, "not " + expected_name),
        "expected_name": expected_name,
        "visit_dates": "visit date" if ambiguous == 1 else "visit dates",
    }
    kind = "month first" if locale in MONTH_FIRST_LOCALES else "other conventions"
    yield Hit(None, None, kind=kind, values=values)
