"""Policy profiles (policies/*.toml): which rules a school enables, their parameters and the clause each enforces."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import HomevisitsError
from .findings import SEVERITIES, Finding, sort_key
from .rules import RULES, Context
from .settings import Setting, check_keys, check_params, check_value, closest, unknown_key
from .timings import Timings, check_rule_params, check_timings
from .visits import Visits

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
PROFILE_KEYS = {
    "name",
    "source",
    "summary",
    "forms",
    "template_dir",
    "required_columns",
    "rules",
    "forms_to_label",
    "timings",
}


@dataclass(frozen=True)
class RuleConfig:
    id: str
    clause: str
    severity: str
    params: dict[str, Any]


@dataclass
class Policy:
    key: str
    name: str
    path: Path
    rules: dict[str, RuleConfig]
    forms: list[str] = field(default_factory=list)
    required_columns: list[str] = field(default_factory=list)
    template_dir: Path | None = None
    summary: str = ""
    forms_to_label: str = ""  # who the forms go to, as printed on them (e.g. the safeguarding contact)
    extra: dict[str, Any] = field(default_factory=dict)
    timing_values: dict[str, Any] = field(default_factory=dict)  # the profile's [timings], checked

    def rule(self, rule_id: str) -> RuleConfig | None:
        return self.rules.get(rule_id)

    @property
    def timings(self) -> Timings:
        """The profile's [timings] (with a school's overrides): the one place every timing is read."""
        return Timings.of(self.timing_values)

    def with_timings(self, overrides: dict[str, Any] | None) -> Policy:
        """This profile with a school's own ``[timings]`` (homevisits.toml, already checked) on top."""
        if not overrides:
            return self
        return dataclasses.replace(self, timing_values={**self.timing_values, **overrides})

    def param(self, rule_id: str, key: str, default: Any = None) -> Any:
        config = self.rules.get(rule_id)
        return config.params.get(key, default) if config else default

    def needed_columns(self) -> list[str]:
        """Every column the sheet must have: the profile's list plus what each enabled rule reads."""
        needed = [*self.required_columns, *self.param("HV001", "fields", [])]
        for rule_id in self.rules:
            needed.extend(name for name in RULES[rule_id].needs if "|" not in name)
        return list(dict.fromkeys(needed))

    def needed_alternatives(self) -> list[tuple[str, ...]]:
        """Groups of columns of which the sheet needs at least one (e.g. expected return or duration)."""
        return [tuple(n.split("|")) for r in self.rules for n in RULES[r].needs if "|" in n]


def policy_names() -> list[str]:
    return sorted(p.stem for p in POLICY_DIR.glob("*.toml"))


def load_policy(name_or_path: str) -> Policy:
    """A profile by name (``omg_education``) from policies/, or by the path of a school's own copy."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        path = candidate
    else:
        path = POLICY_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise HomevisitsError(
            f"There is no policy '{name_or_path}': use one of {', '.join(policy_names())} or the path of a profile file."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise HomevisitsError(f"The policy profile {path.name} could not be read ({exc}).") from exc
    return _from_mapping(data, path)


PROFILE_SETTINGS = {
    "name": Setting("text"),
    "source": Setting("text"),
    "summary": Setting("text"),
    "forms": Setting("texts"),
    "template_dir": Setting("text"),
    "required_columns": Setting("texts"),
    "rules": Setting("mapping"),
    "forms_to_label": Setting("text"),
    "timings": Setting("mapping"),
}
RULE_KEYS = ("clause", "severity", "enabled")  # every rule's table takes these besides its parameters


def _from_mapping(data: dict[str, Any], path: Path) -> Policy:
    where = path.name
    check_keys(where, data, PROFILE_SETTINGS)
    for key, value in data.items():
        check_value(f"{where}:", key, value, PROFILE_SETTINGS[key])
    rules: dict[str, RuleConfig] = {}
    for rule_id, table in (data.get("rules") or {}).items():
        if rule_id not in RULES:
            near = closest(rule_id, RULES)
            raise HomevisitsError(
                f"{where} enables rule {rule_id}, which does not exist"
                + (f": did you mean {near}?" if near else f" (rules: {min(RULES)} to {max(RULES)}).")
            )
        if not isinstance(table, dict) or not str(table.get("clause", "")).strip():
            raise HomevisitsError(
                f"In {where}, rule {rule_id} needs a clause: the part of the policy it enforces."
            )
        declared = RULES[rule_id].params
        table_where = f"{where}: [rules.{rule_id}]"
        if "enabled" in table and not isinstance(table["enabled"], bool):
            raise HomevisitsError(
                f"{table_where} enabled must be true or false (it is {table['enabled']!r})."
            )
        params = {k: v for k, v in table.items() if k not in RULE_KEYS}
        check_rule_params(table_where, rule_id, params)
        for key in params:
            if key not in declared:
                raise unknown_key(table_where, key, [*declared, *RULE_KEYS], "parameter")
        params = check_params(table_where, params, declared)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        if table.get("enabled", True) is False:
            continue
        severity = table.get("severity", RULES[rule_id].severity)
        if severity not in SEVERITIES:
            raise HomevisitsError(
                f"In {where}, rule {rule_id} has severity '{severity}': use one of {', '.join(SEVERITIES)}."
            )
        rules[rule_id] = RuleConfig(rule_id, str(table["clause"]).strip(), severity, params)
    template_dir = data.get("template_dir")
    return Policy(
        key=path.stem,
        name=data.get("name", path.stem),
        path=path,
        rules=dict(sorted(rules.items())),
        forms=list(data.get("forms", [])),
        required_columns=list(data.get("required_columns", [])),
        template_dir=(path.parent / template_dir) if template_dir else None,
        summary=data.get("summary", ""),
        forms_to_label=data.get("forms_to_label", ""),
        extra={k: v for k, v in data.items() if k not in PROFILE_KEYS},
        timing_values=check_timings(f"{where}: [timings]", data.get("timings") or {}),
    )


def check(visits: Visits, policy: Policy, now: dt.datetime) -> list[Finding]:
    """Run every enabled rule over the visits table; all findings, never stopping at the first."""
    findings = _run(visits, policy, now, list(policy.rules.values()))
    findings.sort(key=sort_key)
    return findings


def _run(visits: Visits, policy: Policy, now: dt.datetime, rules: list[RuleConfig]) -> list[Finding]:
    instant = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    findings: list[Finding] = []
    rows = visits.frame["row"].tolist()
    ids = visits.frame["visit_id"].tolist()
    headers = {name: visits.header(name) for name in visits.schema.fields}
    columns: dict = {}  # shared by the rules: each column becomes an array once
    timings = policy.timings
    for config in rules:
        context = Context(
            visits=visits,
            params=config.params,
            now=instant,
            policy_name=policy.name,
            cache=columns,
            timings=timings,
        )
        rule_id, severity, clause = config.id, config.severity, f"{policy.name} {config.clause}"
        findings.extend(
            Finding(
                rule_id,
                hit.severity or severity,
                hit.row if hit.position is None else rows[hit.position],
                None if hit.position is None else (ids[hit.position] or None),
                headers[hit.field] if hit.field else None,
                hit.message,
                hit.fix,
                clause,
            )
            for hit in RULES[rule_id].func(context)
        )
    return findings
