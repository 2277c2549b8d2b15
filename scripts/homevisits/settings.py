"""Typed settings: every table of homevisits.toml and every rule parameter, declared once.

A table of the config loads into a frozen dataclass whose fields declare what they take
(:func:`setting`); a rule declares its parameters the same way (``params=`` in ``rules.rule``).
An unknown key, a wrong type or a value out of range is one sentence naming the file, the table,
the key and the closest valid key: ``homevisits.toml: [schedule] has no setting smt_after_minuts:
did you mean smt_after_minutes?``. Standard library only, so ``validate`` starts fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    table: type | None = None  # kind "table": the dataclass of the nested table
    example: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")


def setting(kind: str, default: Any = None, *, key: str | None = None, **options: Any) -> Any:
    """A dataclass field declaring one key of a table (``key`` when the TOML name is not a Python name)."""
    spec = Setting(kind, default, **options)
    metadata = {"setting": spec, "key": key}
    if isinstance(default, list | dict):
        raise ValueError("use a tuple or None as a default")
    return field(default=default, metadata=metadata)


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
    """``value`` as the setting takes it (a list of text as a tuple), or one sentence saying what to write."""

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
    if kind == "table":
        if not isinstance(value, dict):
            raise wrong("a table of settings")
        assert spec.table is not None
        return load_table(spec.table, value, where.rstrip("]") + f".{key}]" if where.endswith("]") else where)
    if kind == "mapping":
        if not isinstance(value, dict):
            raise wrong("a table of settings")
        return dict(value)
    raise AssertionError(kind)


# ---------------------------------------------------------------- unknown keys


def closest(word: str, options: Iterable[str]) -> str | None:
    """The valid key a typo most likely meant, if any is close."""
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


def check_params(where: str, table: Mapping[str, Any], declared: Mapping[str, Setting]) -> dict[str, Any]:
    """A rule's parameters from a profile, each checked against what the rule declares."""
    check_keys(where, table, declared, "parameter")
    return {key: check_value(where, key, value, declared[key]) for key, value in table.items()}


# ---------------------------------------------------------------- a table as a dataclass


def keys_of(cls: type) -> dict[str, dataclasses.Field]:
    """The TOML key of each field of a settings dataclass."""
    return {f.metadata.get("key") or f.name: f for f in dataclasses.fields(cls) if "setting" in f.metadata}


def load_table(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """``table`` (from TOML) as an instance of the settings dataclass ``cls``; ``where`` is e.g.
    ``homevisits.toml: [schedule]``."""
    fields = keys_of(cls)
    check_keys(where, table, fields)
    values = {
        fields[key].name: check_value(where, key, value, fields[key].metadata["setting"])
        for key, value in table.items()
    }
    return cls(**values)


# ---------------------------------------------------------------- the config's tables


@dataclass(frozen=True)
class SourceSettings:
    path: str | None = setting("text")
    spreadsheet: str | None = setting("text")
    drive_file: str | None = setting("text")  # issue 15: an Excel file on a Shared Drive
    credentials: str | None = setting("text")
    worksheet: str | None = setting("text")
    name: str | None = setting("text")


@dataclass(frozen=True)
class MailSettings:
    transport: str | None = setting("choice", choices=("smtp", "outbox"))
    outbox: str | None = setting("text")
    host: str | None = setting("text")
    port: int | None = setting("integer", low=1, high=65535, example="port = 587")
    security: str | None = setting("choice", choices=("starttls", "ssl", "none"))
    ca_file: str | None = setting("text")
    timeout: float | None = setting("number", low=1, high=600, example="timeout = 60")
    helo: str | None = setting("text")
    username: str | None = setting("text")
    password_env: str | None = setting("text")
    sender: str | None = setting("text", key="from", example='from = "homevisits@your-school.example"')
    forms_to: tuple[str, ...] = setting("texts", ())
    smt: tuple[str, ...] = setting("texts", ())
    admin: tuple[str, ...] = setting("texts", ())
    allowed_domains: tuple[str, ...] = setting(
        "texts", (), example='allowed_domains = ["your-school.example"]'
    )


@dataclass(frozen=True)
class StateSettings:
    dir: str | None = setting("text")
    ledger: str | None = setting("text")


@dataclass(frozen=True)
class ScheduleSettings:
    window_days: float = setting("number", 14, low=0, high=366)
    reminder_hours: float = setting("number", 24, low=0)
    final_reminder_hours: float = setting("number", 6, low=0)
    smt_after_minutes: float = setting("number", 30, low=0)
    heartbeat_url: str | None = setting("url")  # issue 10 item 9: a dead-man's-switch service


@dataclass(frozen=True)
class FormsSettings:
    out: str | None = setting("text")
    window_days: float | None = setting("number", low=0, high=366)
    template_dir: str | None = setting("text")
    # passed to the form templates as they are (see templates/forms/*.html.j2)
    sent_to: str | None = setting("text")
    copy: str | None = setting("choice", choices=("school", "parent"))
    signatures: bool | None = setting("bool")


@dataclass(frozen=True)
class ReportSettings:
    out: str | None = setting("text")


@dataclass(frozen=True)
class Contact:
    name: str | None = setting("text")
    email: str | None = setting("text")


@dataclass(frozen=True)
class SchoolSettings:
    """Who the school is, as forms and emails say it (issue 11 item 10)."""

    name: str = setting("text", "")
    safeguarding_contact: Contact | None = setting(  # noqa: RUF009 (setting() returns a dataclass field)
        "table", table=Contact, example='safeguarding_contact = { name = "...", email = "..." }'
    )
    phone_wording: str | None = setting("text")


TABLES: dict[str, type] = {
    "source": SourceSettings,
    "mail": MailSettings,
    "state": StateSettings,
    "schedule": ScheduleSettings,
    "forms": FormsSettings,
    "report": ReportSettings,
}


@dataclass(frozen=True)
class Typed:
    """The config file as typed settings (``Config`` keeps plain tables for the code that reads them)."""

    source: SourceSettings = field(default_factory=SourceSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    state: StateSettings = field(default_factory=StateSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    forms: FormsSettings = field(default_factory=FormsSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    school: SchoolSettings = field(default_factory=SchoolSettings)


def load_typed(data: Mapping[str, Any], where: str) -> Typed:
    """Every table of the config checked and typed (``where`` is the file's name)."""
    tables = {
        name: load_table(cls, data.get(name) or {}, f"{where}: [{name}]") for name, cls in TABLES.items()
    }
    school = data.get("school", "")
    if isinstance(school, str):
        tables["school"] = SchoolSettings(name=school)
    elif isinstance(school, dict):
        tables["school"] = load_table(SchoolSettings, school, f"{where}: [school]")
    else:
        raise HomevisitsError(
            f'{where}: school must be the school\'s name in quotes, e.g. school = "...", or a [school] table.'
        )
    return Typed(**tables)


def problems(data: Mapping[str, Any], where: str, top_level: Iterable[str]) -> list[str]:
    """Every fault of the config at once, one sentence each (``check-setup`` lists them all)."""
    top_level = list(top_level)
    found = [str(unknown_key(where, key, top_level)) for key in data if key not in top_level]
    tables: dict[str, type] = dict(TABLES)
    if isinstance(data.get("school"), dict):
        tables["school"] = SchoolSettings
    for name, cls in tables.items():
        table = data.get(name)
        if table is None:
            continue
        if not isinstance(table, dict):
            found.append(f"{where}: [{name}] must be a table of settings, not a single value.")
            continue
        for key, value in table.items():
            try:
                load_table(cls, {key: value}, f"{where}: [{name}]")
            except HomevisitsError as exc:
                found.append(str(exc))
    return found
