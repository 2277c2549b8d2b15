"""Typed settings: every table of homevisits.toml and every rule parameter, declared once.

Each table of the config declares its keys as data (:data:`TABLES`: key -> :class:`Setting`); a
rule declares its parameters the same way (``params=`` in ``rules.rule``). An unknown key, a wrong
type or a value out of range is one sentence naming the file, the table, the key and the closest
valid key: ``homevisits.toml: [timings] has no setting smt_after_minuts: did you mean
smt_after_minutes?``. ``config.typed`` gives the checked tables as frozen dataclasses, built on
first use, so ``validate`` (which needs none of them) starts fast. Standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HomevisitsError

KINDS = ("text", "number", "integer", "bool", "texts", "time", "url", "choice", "table", "mapping")


@dataclass(frozen=True)
class Setting:
    """What one key takes: its kind, range or choices, and an example for the error message."""

    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    example: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")


# ---------------------------------------------------------------- checking one value


def _example(key: str, spec: Setting) -> str:
    if spec.example:
        return spec.example
    samples = {
        "text": f'{key} = "..."',
        "number": f"{key} = {spec.default if isinstance(spec.default, int | float) else 30:g}",
        "integer": f"{key} = {spec.default if isinstance(spec.default, int) else 2}",
        "bool": f"{key} = true",
        "texts": f'{key} = ["..."]',
        "time": f'{key} = "{spec.default or "17:00"}"',
        "url": f'{key} = "https://..."',
        "choice": f'{key} = "{spec.choices[0]}"' if spec.choices else f'{key} = "..."',
        "table": f"[...{key}]",
        "mapping": f"[{key}]",
    }
    return samples[spec.kind]


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(where: str, key: str, value: Any, spec: Setting) -> Any:
    """``value`` as the setting takes it (a list of text as a tuple), or one sentence saying what to write.
    (Nested tables, kind ``table``, are checked by :func:`check_table`.)"""

    def wrong(what: str) -> HomevisitsError:
        return HomevisitsError(
            f"{where} {key} must be {what}, e.g. {_example(key, spec)} (it is {_shown(value)})."
        )

    kind = spec.kind
    if kind == "text":
        if not isinstance(value, str):
            raise wrong("text in quotes")
        return value
    if kind in ("number", "integer"):
        ok = (
            isinstance(value, int) if kind == "integer" else isinstance(value, int | float)
        ) and not isinstance(value, bool)
        if not ok:
            raise wrong("a whole number" if kind == "integer" else "a number")
        if value != value:  # nan
            raise wrong("a number")
        if spec.low is not None and value < spec.low:
            raise HomevisitsError(f"{where} {key} must be at least {spec.low:g} (it is {value:g}).")
        if spec.high is not None and value > spec.high:
            raise HomevisitsError(f"{where} {key} must be at most {spec.high:g} (it is {value:g}).")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind == "texts":
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of text")
        return tuple(value)
    if kind == "time":
        if not isinstance(value, str):
            raise wrong('a time of day in quotes as "HH:MM"')
        try:
            dt.time.fromisoformat(value.strip())
        except ValueError as exc:
            raise wrong('a time of day as "HH:MM"') from exc
        return value.strip()
    if kind == "url":
        if not isinstance(value, str) or not value.strip().lower().startswith(("https://", "http://")):
            raise wrong("a web address starting with https://")
        return value.strip()
    if kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise wrong("one of " + ", ".join(f'"{c}"' for c in spec.choices))
        return value
    if kind == "mapping":
        if not isinstance(value, dict):
            raise wrong("a table of settings")
        return dict(value)
    raise AssertionError(kind)


# ---------------------------------------------------------------- unknown keys


def closest(word: str, options: Iterable[str]) -> str | None:
    """The valid key a typo most likely meant, if any is close."""
    import difflib

    options = list(options)
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not found:
        lowered = {o.lower(): o for o in options}
        found = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return found[0] if found else None


def unknown_key(where: str, key: str, valid: Iterable[str], noun: str = "setting") -> HomevisitsError:
    valid = sorted(valid)
    near = closest(key, valid)
    if near:
        return HomevisitsError(f"{where} has no {noun} {key}: did you mean {near}?")
    if not valid:
        return HomevisitsError(f"{where} takes no {noun}s, so {key} cannot be set there: remove it.")
    return HomevisitsError(f"{where} has no {noun} {key}: the {noun}s there are {', '.join(valid)}.")


def check_keys(where: str, table: Mapping[str, Any], valid: Iterable[str], noun: str = "setting") -> None:
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise unknown_key(where, key, valid, noun)


def check_moved(where: str, table: Mapping[str, Any], moved: Mapping[str, str]) -> None:
    """A key that has moved elsewhere is one sentence saying where (``moved``: key -> its new place)."""
    for key in table:
        if key in moved:
            raise HomevisitsError(f"{where} {key} has moved to {moved[key]}.")


def check_params(where: str, table: Mapping[str, Any], declared: Mapping[str, Setting]) -> dict[str, Any]:
    """A rule's parameters from a profile, each checked against what the rule declares."""
    check_keys(where, table, declared, "parameter")
    return {key: check_value(where, key, value, declared[key]) for key, value in table.items()}


# ---------------------------------------------------------------- the config's tables
#
# Each table is declared once, as data: key -> Setting. Loading a config checks every key against
# it (plain dictionaries, so ``validate`` starts fast); ``typed(config)`` gives the same tables as
# frozen dataclasses (built on first use) for the code that wants attributes and types.

TABLES: dict[str, dict[str, Setting]] = {
    "source": {
        "path": Setting("text"),
        "spreadsheet": Setting("text"),
        "drive_file": Setting("text"),  # issue 15: an Excel file on a Shared Drive
        "credentials": Setting("text"),
        "worksheet": Setting("text"),
        "name": Setting("text"),
    },
    "mail": {
        "transport": Setting("choice", choices=("smtp", "outbox")),
        "outbox": Setting("text"),
        "host": Setting("text"),
        "port": Setting("integer", low=1, high=65535, example="port = 587"),
        "security": Setting("choice", choices=("starttls", "ssl", "none")),
        "ca_file": Setting("text"),
        "timeout": Setting("number", low=1, high=600, example="timeout = 60"),
        "helo": Setting("text"),
        "username": Setting("text"),
        "password_env": Setting("text"),
        "from": Setting("text", example='from = "homevisits@your-school.example"'),
        "forms_to": Setting("texts", ()),
        "smt": Setting("texts", ()),
        "admin": Setting("texts", ()),
        "allowed_domains": Setting("texts", (), example='allowed_domains = ["your-school.example"]'),
    },
    "state": {"dir": Setting("text"), "ledger": Setting("text")},
    "schedule": {
        "window_days": Setting("number", 14, low=0, high=366),
        "heartbeat_url": Setting("url"),  # issue 10 item 9: a dead-man's-switch service
    },
    # issue 13: every timing of the policy, declared once with its default. Each profile's [timings]
    # table sets them from its policy; a school's homevisits.toml may override any of them in its own
    # [timings]. Read as ``policy.timings`` (timings.Timings), never from a rule's parameters.
    "timings": {
        "form_deadline_hours": Setting(
            "number", 0, low=0, high=24 * 28
        ),  # form due this long before the start
        "grace_minutes": Setting("number", 30, low=0, high=24 * 60),  # after due back, before the alert
        "alert_hours": Setting("number", 24, low=1, high=24 * 28),  # then a record to fix, not an alert
        "smt_after_minutes": Setting("number", 30, low=0, high=24 * 60),  # after the alert, SMT is told
        "max_visit_minutes": Setting("number", 120, low=5, high=24 * 60),  # due back by start + this
        "day_end": Setting("time", "17:00"),  # due back by then when not even the start can be read
        "office_start": Setting("time", "08:00"),  # office hours (HV010, HV011, the forms' evening wording)
        "office_end": Setting("time", "18:00"),
        "weekends_out_of_hours": Setting("bool", True),  # a visit at the weekend is outside office hours
        "reminder_hours": Setting("number", 24, low=0),  # at most one form reminder per this many hours
        "final_reminder_hours": Setting("number", 6, low=0),  # a last reminder this close to the deadline
    },
    "forms": {
        "out": Setting("text"),
        "window_days": Setting("number", low=0, high=366),
        "template_dir": Setting("text"),
        # passed to the form templates as they are (see templates/forms/*.html.j2)
        "sent_to": Setting("text"),
        "copy": Setting("choice", choices=("school", "parent")),
        "signatures": Setting("bool"),
    },
    "report": {"out": Setting("text")},
    "sms": {  # issue 14: texts through GOV.UK Notify (sms.sms_settings checks the values further)
        "provider": Setting("choice", choices=("notify", "outbox")),
        "api_key_env": Setting("text"),
        "template_id": Setting("text"),
        "base_url": Setting("url"),
        "outbox": Setting("text"),
        "inbound": Setting("bool"),
        "duress_word": Setting("text"),
        "smt": Setting("texts", ()),
    },
}
CONTACT = {"name": Setting("text"), "email": Setting("text")}
SCHOOL = {  # who the school is, as forms and emails say it (issue 11 item 10)
    "name": Setting("text", ""),
    "safeguarding_contact": Setting(
        "table", example='safeguarding_contact = { name = "...", email = "..." }'
    ),
    "phone_wording": Setting("text"),
}
NESTED = {("school", "safeguarding_contact"): CONTACT}
# Settings that have moved: (table, key) -> where they live now. Named in one sentence, never ignored.
MOVED = {
    ("schedule", "reminder_hours"): "[timings] reminder_hours",
    ("schedule", "final_reminder_hours"): "[timings] final_reminder_hours",
    ("schedule", "smt_after_minutes"): "[timings] smt_after_minutes",
}
ATTRIBUTE = {"from": "sender"}  # a TOML key that is not a Python name


def check_table(
    spec: Mapping[str, Setting], table: Mapping[str, Any], where: str, name: str = ""
) -> dict[str, Any]:
    """``table`` from TOML with every key checked against ``spec`` (``where``: ``homevisits.toml: [mail]``)."""
    check_moved(
        where, table, {key: moved for (table_name, key), moved in MOVED.items() if table_name == name}
    )
    check_keys(where, table, spec)
    checked = {}
    for key, value in table.items():
        nested = NESTED.get((name, key))
        if nested is not None:
            if not isinstance(value, dict):
                raise HomevisitsError(
                    f"{where} {key} must be a table, e.g. {_example(key, spec[key])} (it is {_shown(value)})."
                )
            checked[key] = check_table(nested, value, where.rstrip("]") + f".{key}]")
        else:
            checked[key] = check_value(where, key, value, spec[key])
    return checked


def check_config(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Every table of the config checked (the first fault raised); the ``[school]`` table included."""
    checked = {
        name: check_table(spec, data.get(name) or {}, f"{where}: [{name}]", name)
        for name, spec in TABLES.items()
    }
    school = data.get("school", "")
    if isinstance(school, str):
        checked["school"] = {"name": school}
    elif isinstance(school, dict):
        checked["school"] = check_table(SCHOOL, school, f"{where}: [school]", "school")
    else:
        raise HomevisitsError(
            f'{where}: school must be the school\'s name in quotes, e.g. school = "...", or a [school] table.'
        )
    return checked


# ---------------------------------------------------------------- typed views


_VIEWS: dict[str, type] = {}


def _view(name: str, spec: Mapping[str, Setting]) -> type:
    """A frozen dataclass with one attribute per key (defaults from the spec), made once."""
    if name not in _VIEWS:
        fields = [
            (ATTRIBUTE.get(key, key), object, dataclasses.field(default=setting.default))
            for key, setting in spec.items()
        ]
        _VIEWS[name] = dataclasses.make_dataclass(name, fields, frozen=True)
    return _VIEWS[name]


def view(name: str, spec: Mapping[str, Setting], values: Mapping[str, Any]) -> Any:
    cls = _view(name, spec)
    converted = {}
    for key, value in values.items():
        setting = spec.get(key)
        if setting is None:
            continue  # a key the code itself added (never from a file: those are checked)
        if setting.kind == "texts" and isinstance(value, str):
            value = (value,)
        elif setting.kind == "texts" and isinstance(value, list):
            value = tuple(value)
        nested = NESTED.get((name.removesuffix("Settings").lower(), key))
        if nested is not None and isinstance(value, Mapping):
            value = view("Contact", nested, value)
        converted[ATTRIBUTE.get(key, key)] = value
    return cls(**converted)


@dataclass(frozen=True)
class Typed:
    """The config's tables as typed, read-only settings: ``config.typed.schedule.heartbeat_url``."""

    source: Any
    mail: Any
    state: Any
    schedule: Any
    forms: Any
    report: Any
    sms: Any
    timings: Any
    school: Any


def typed(config: Any) -> Typed:
    """The config's tables (as loaded, with command-line overrides) as typed views."""
    tables = {
        name: view(f"{name.title()}Settings", spec, getattr(config, name) or {})
        for name, spec in TABLES.items()
    }
    school = dict(getattr(config, "school_table", None) or {})
    school.setdefault("name", config.school)
    return Typed(**tables, school=view("SchoolSettings", SCHOOL, school))


def problems(data: Mapping[str, Any], where: str, top_level: Iterable[str]) -> list[str]:
    """Every fault of the config at once, one sentence each (``check-setup`` lists them all)."""
    top_level = list(top_level)
    found = [str(unknown_key(where, key, top_level)) for key in data if key not in top_level]
    tables: dict[str, dict[str, Setting]] = dict(TABLES)
    if isinstance(data.get("school"), dict):
        tables["school"] = SCHOOL
    for name, spec in tables.items():
        table = data.get(name)
        if table is None:
            continue
        if not isinstance(table, dict):
            found.append(f"{where}: [{name}] must be a table of settings, not a single value.")
            continue
        for key, value in table.items():
            try:
                check_table(spec, {key: value}, f"{where}: [{name}]", name)
            except HomevisitsError as exc:
                found.append(str(exc))
    return found
