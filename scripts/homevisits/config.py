"""The school's settings: homevisits.toml (or --config, or HOMEVISITS_CONFIG), secrets only from the environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HomevisitsError
from .settings import check_config, unknown_key

CONFIG_NAME = "homevisits.toml"
CONFIG_ENV = "HOMEVISITS_CONFIG"
SECTIONS = ("source", "columns", "mail", "state", "schedule", "timings", "forms", "report", "sms")
TOP_LEVEL = ("policy", "timezone", "school", *SECTIONS)
SECRET_KEYS = ("password", "secret", "private_key")
DEFAULT_TIMEZONE = "Europe/London"  # the school's clock when homevisits.toml names none (defined here only)
# [source]: one of path / spreadsheet / drive_file, and how to reach it (every key: settings.TABLES)


@dataclass
class Config:
    """Settings with defaults filled in. Relative paths resolve against ``base_dir`` (the config's folder)."""

    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    policy: str = "omg_education"
    timezone: str = DEFAULT_TIMEZONE
    school: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    mail: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)  # overrides of the profile's [timings]
    forms: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    sms: dict[str, Any] = field(default_factory=dict)  # read by sms.sms_settings
    demo: bool = False  # the bundled demo: builds its workbook when missing, writes under demo/
    school_table: dict[str, Any] = field(default_factory=dict)  # [school], when given as a table

    @property
    def typed(self) -> Any:
        """The tables as typed, read-only settings (``config.typed.schedule.heartbeat_url``)."""
        from .settings import typed

        return typed(self)

    def resolve(self, value: str | os.PathLike[str]) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.state.get("dir", "state"))

    @property
    def ledger_path(self) -> Path:
        return self.resolve(self.state.get("ledger", "state/ledger.sqlite"))


def find_config(explicit: str | None = None) -> Path | None:
    """The config file to use: --config, then $HOMEVISITS_CONFIG, then ./homevisits.toml; None for the demo."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise HomevisitsError(f"The config file {path} does not exist: check the --config path.")
        return path
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise HomevisitsError(f"{CONFIG_ENV} points to {path}, which does not exist.")
        return path
    local = Path.cwd() / CONFIG_NAME
    return local if local.is_file() else None


def load_config(explicit: str | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return demo_config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise HomevisitsError(f"{path.name} is not valid TOML ({exc}): fix that line and try again.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise HomevisitsError(f"Could not read the config file {path}: {exc}.") from exc
    return from_mapping(data, path)


def from_mapping(data: dict[str, Any], path: Path | None = None) -> Config:
    where = path.name if path else "the config"
    for key in data:
        if key not in TOP_LEVEL:
            raise unknown_key(where, key, TOP_LEVEL)
    for name in SECTIONS:
        if name in data and not isinstance(data[name], dict):
            raise HomevisitsError(f"In {where}, [{name}] must be a table of settings, not a single value.")
    for section in ("source", "mail"):
        for key in data.get(section, {}):
            if key.lower() in SECRET_KEYS:
                raise HomevisitsError(
                    f"{where} holds a {key} under [{section}]: secrets belong in an environment variable "
                    "(see password_env in homevisits.example.toml), never in the config file."
                )
    columns = data.get("columns", {})
    bad = [k for k, v in columns.items() if not isinstance(v, str)]
    if bad:
        raise HomevisitsError(
            f'In {where}, [columns] maps your header to a field name, e.g. "Date of visit" = "visit_date".'
        )
    for key in ("policy", "timezone"):
        if key in data and not isinstance(data[key], str):
            raise HomevisitsError(f'In {where}, {key} must be text in quotes, e.g. {key} = "...".')
    checked = check_config(data, where)
    base = path.resolve().parent if path else Path.cwd()
    values = {k: data[k] for k in TOP_LEVEL if k in data and k not in ("school", "timings")}
    values["timings"] = checked["timings"]
    school = checked["school"]
    table = school if isinstance(data.get("school"), dict) else {}
    config = Config(path=path, base_dir=base, school=school.get("name", ""), school_table=table, **values)
    check_timezone(config.timezone)
    return config


def timezone_of(path: Path | None) -> str:
    """The config file's ``timezone`` for reading ``--now`` before the file is checked (check-setup
    lists the file's faults itself); the default zone when the file names none or cannot be read."""
    if path is None:
        return DEFAULT_TIMEZONE
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("timezone", DEFAULT_TIMEZONE)
        check_timezone(name)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, HomevisitsError, TypeError):
        return DEFAULT_TIMEZONE
    return name


def check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HomevisitsError(f"'{name}' is not a time zone: use timezone = \"{DEFAULT_TIMEZONE}\".") from exc


EXAMPLE = Path(__file__).resolve().parents[2] / "homevisits.example.toml"


def starter_config(policy: str | None = None, source: str | None = None) -> str:
    """homevisits.example.toml as a school's first homevisits.toml, with their policy and sheet if given."""
    import json
    import re

    text = EXAMPLE.read_text(encoding="utf-8")
    if policy:
        text = re.sub(r'(?m)^policy = "[^"]*"', lambda _: f"policy = {json.dumps(policy)}", text, count=1)
    if source:
        from .pipeline import is_spreadsheet

        if is_spreadsheet(source):
            text = re.sub(r'(?m)^path = "[^"]*"', lambda _: '# path = "..."', text, count=1)
            text = re.sub(
                r'(?m)^# spreadsheet = "[^"]*"',
                lambda _: f"spreadsheet = {json.dumps(source)}",
                text,
                count=1,
            )
        else:
            text = re.sub(r'(?m)^path = "[^"]*"', lambda _: f"path = {json.dumps(source)}", text, count=1)
    return text


DEMO_WORKBOOK = "demo/home_visits.xlsx"


def demo_config() -> Config:
    """No config file: the bundled demo, a workbook built on first use under ./demo, checked under OMG Education."""
    return Config(
        path=None,
        base_dir=Path.cwd(),
        demo=True,
        policy="omg_education",
        school="DEMO DATA: Demo College (invented visits)",
        source={"path": DEMO_WORKBOOK, "worksheet": "Home Visits"},
        mail={
            "transport": "outbox",
            "outbox": "demo/outbox",
            "from": "homevisits@school.example",
            "forms_to": ["safeguarding@school.example"],
            "smt": ["head@school.example"],
            "allowed_domains": ["school.example"],
        },
        state={"dir": "demo/state", "ledger": "demo/state/ledger.sqlite"},
        forms={"out": "demo/forms"},
        report={"out": "demo/reports"},
        # texts as files in demo/texts; staff texts read from demo/inbox (sms.OutboxChannel)
        sms={"provider": "outbox", "outbox": "demo/texts", "inbound": True, "smt": ["+447700900001"]},
    )
