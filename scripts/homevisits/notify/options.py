"""The scheduled job's own settings: ``[schedule]`` timings and ``[mail]`` recipients, read once.

Not to be confused with ``homevisits/settings.py``, which declares every config key; this module turns
the checked config into the one frozen :class:`Settings` the plan and the delivery take.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import mail
from ..config import DEFAULT_TIMEZONE
from ..errors import HomevisitsError

if TYPE_CHECKING:
    from ..config import Config
    from ..policy import Policy

FALLBACK_SENDER = "homevisits@homevisits.invalid"


@dataclass(frozen=True)
class Settings:
    """What the jobs take from the config: [schedule] window_days and [mail] recipient lists (timings:
    ``policy.timings``)."""

    window_days: float = 14
    forms_to: tuple[str, ...] = ()
    smt: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    sender: str = FALLBACK_SENDER
    school: str = ""
    school_table: Mapping[str, Any] = field(default_factory=dict)  # [school], when given as a table
    timezone: str = DEFAULT_TIMEZONE
    forms: Mapping[str, Any] = field(default_factory=dict)
    sms: Any = None  # sms.SmsSettings: [sms], alerts by text (None: email only)


def _number(table: Mapping[str, Any], key: str, default: float, section: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HomevisitsError(
            f"{key} in [{section}] must be a number of at least 0, e.g. {key} = {default:g}."
        )
    return float(value)


def _addresses(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def settings_from(config: Config) -> Settings:
    """The jobs' settings from the config; a bad number names the setting to fix."""
    mail_cfg = dict(config.mail or {})
    return Settings(
        window_days=window_days(config),
        forms_to=_addresses(mail_cfg.get("forms_to")),
        smt=_addresses(mail_cfg.get("smt")),
        admin=_addresses(mail_cfg.get("admin")),
        allowed_domains=_addresses(mail_cfg.get("allowed_domains")),
        sender=mail.addr_spec(str(mail_cfg.get("from") or "")) or FALLBACK_SENDER,
        school=config.school,
        school_table=dict(config.school_table or {}),
        timezone=config.timezone,
        forms={**(config.forms or {}), **_resolved_template_dir(config)},
        sms=_sms_settings(config),
    )


def window_days(config: Config) -> float:
    """How many days ahead forms are sent: ``[schedule] window_days`` (else ``[forms] window_days``, 14),
    one reading for the job and ``forms --due``."""
    window = (config.schedule or {}).get("window_days", (config.forms or {}).get("window_days", 14))
    return _number({"window_days": window}, "window_days", 14, "schedule")


def _sms_settings(config: Config) -> Any:
    from ..sms import sms_settings

    return sms_settings(config)


def _resolved_template_dir(config: Config) -> dict[str, str]:
    """``[forms] template_dir`` as a path from the config's folder (the forms are looked for there first)."""
    folder = (config.forms or {}).get("template_dir")
    return {"template_dir": str(config.resolve(folder))} if folder else {}


def deadline_hours(policy: Policy) -> float:
    """Hours before the start the form is due: the policy's ``[timings] form_deadline_hours``."""
    return policy.timings.form_deadline_hours


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    """The instant in UTC (None stays None): every comparison the job makes is between instants."""
    return moment.astimezone(dt.UTC) if moment is not None else None
