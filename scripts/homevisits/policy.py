"""Policy profiles (policies/*.toml): which rules a school enables, their parameters and the clause each enforces.

A rule is a Python function (the rules package) or a check the profile declares as data (``[[checks]]``,
checks.py); both become a :class:`RuleConfig` and run through the same :func:`check`."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .checks import Check, bundled, load_checks
from .errors import HomevisitsError
from .findings import SEVERITIES, Finding, Text, Wording, in_order
from .rules import RULES, Context, Hit, Hits
from .schema import Column
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
    "checks",
    "forms_to_label",
    "timings",
}


@dataclass(frozen=True)
class RuleConfig:
    id: str
    clause: str
    severity: str
    params: dict[str, Any]
    check: Check | None = None  # a check declared as data; None for a rule function

    @property
    def needs(self) -> tuple[str, ...]:
        """Columns the sheet must have; ``"a|b"`` means either will do."""
        return self.check.needs if self.check else RULES[self.id].needs

    def hits(self, context: Context) -> Iterator[Hit | Hits]:
        return self.check.hits(context) if self.check else RULES[self.id].func(context)

    @property
    def texts(self) -> dict[str, Text]:
        """The wording of each kind of finding: message and fix templates."""
        return self.check.texts if self.check else RULES[self.id].texts


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
        return replace(self, timing_values={**self.timing_values, **overrides})

    def param(self, rule_id: str, key: str, default: Any = None) -> Any:
        config = self.rules.get(rule_id)
        return config.params.get(key, default) if config else default

    def needed_columns(self) -> list[str]:
        """Every column the sheet must have: the profile's list plus what each enabled rule reads."""
        needed = [*self.required_columns, *self.param("HV001", "fields", [])]
        for config in self.rules.values():
            needed.extend(name for name in config.needs if "|" not in name)
        return list(dict.fromkeys(needed))

    def needed_alternatives(self) -> list[tuple[str, ...]]:
        """Groups of columns of which the sheet needs at least one (e.g. expected return or duration)."""
        return [tuple(n.split("|")) for r in self.rules.values() for n in r.needs if "|" in n]

    @property
    def columns(self) -> list[Column]:
        """Columns of the school's own that the profile's checks declare (read like the catalogue's)."""
        return [c for r in self.rules.values() if r.check for c in r.check.columns]


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
    "checks": Setting("mapping"),  # a list of [[checks]] tables, checked by checks.load_checks
    "forms_to_label": Setting("text"),
    "timings": Setting("mapping"),
}
RULE_KEYS = ("clause", "severity", "enabled")  # every rule's table takes these besides its parameters


def _from_mapping(data: dict[str, Any], path: Path) -> Policy:
    where = path.name
    check_keys(where, data, PROFILE_SETTINGS)
    for key, value in data.items():
        if key != "checks":
            check_value(f"{where}:", key, value, PROFILE_SETTINGS[key])
    rules: dict[str, RuleConfig] = {}
    for rule_id, table in (data.get("rules") or {}).items():
        if rule_id not in RULES and rule_id in bundled():
            config = _bundled_check(where, rule_id, table)
            if config is not None:
                rules[rule_id] = config
            continue
        if rule_id not in RULES:
            near = closest(rule_id, [*RULES, *bundled()])
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
    for declared in load_checks(where, data.get("checks", []), _catalogue()):
        if declared.id in rules or declared.id in RULES:
            raise HomevisitsError(
                f"{where} declares check {declared.id}, but {declared.id} is already a rule: give the check an id of its own."
            )
        rules[declared.id] = RuleConfig(declared.id, declared.clause, declared.severity, {}, declared)
    rules = dict(sorted(rules.items()))
    template_dir = data.get("template_dir")
    return Policy(
        key=path.stem,
        name=data.get("name", path.stem),
        path=path,
        rules=rules,
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
    return in_order(_run(visits, policy, now, list(policy.rules.values())))


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
        blocks = config.check is not None or RULES[rule_id].blocks_form
        wording = Wording(config.texts, headers, visits.tz)
        append = findings.append
        for hit in config.hits(context):
            if hit.__class__ is Hits:
                findings.extend(_many(hit, rule_id, severity, clause, blocks, headers, ids, wording))
                continue
            position, name = hit.position, hit.field
            row = hit.row if position is None else rows[position]
            column = headers[name] if name else None
            if hit.kind is None:
                message, fix = hit.message, hit.fix
            else:  # worded at the edge, from the rule's template and the hit's values
                message, fix = wording(hit.kind, hit.values or {}, column, row)
            append(
                Finding(
                    rule_id,
                    hit.severity or severity,
                    row,
                    None if position is None else (ids[position] or None),
                    column,
                    message,
                    fix,
                    clause,
                    name,
                    hit.values,
                    blocks,
                )
            )
    return findings


def _many(
    hits: Hits,
    rule_id: str,
    severity: str,
    clause: str,
    blocks: bool,
    headers: dict[str, str],
    ids: list[Any],
    wording: Wording,
) -> list[Finding]:
    """The findings of a batch of hits (rules.Hits), as the loop in _run would make them one by one."""
    column = headers[hits.field]
    worded = wording.many(hits.kind, hits.values, column, hits.rows)
    return [
        Finding(
            rule_id,
            severity,
            row,
            None if position is None else (ids[position] or None),
            column,
            message,
            fix,
            clause,
            hits.field,
            values,
            blocks,
        )
        for position, row, values, (message, fix) in zip(
            hits.positions, hits.rows, hits.values, worded, strict=True
        )
    ]


def _catalogue() -> dict[str, Column]:
    from .schema import load_schema

    return {c.field: c for c in load_schema().columns}


def _bundled_check(where: str, rule_id: str, table: Any) -> RuleConfig | None:
    """``[rules.HV008]`` in a profile written before HV008 became a check: the bundled declaration,
    with the table's clause and severity (and ``enabled = false`` honoured)."""
    if not isinstance(table, dict) or not str(table.get("clause", "")).strip():
        raise HomevisitsError(
            f"In {where}, rule {rule_id} needs a clause: the part of the policy it enforces."
        )
    check_keys(f"{where}: [rules.{rule_id}]", table, RULE_KEYS, "parameter")
    if table.get("enabled", True) is False:
        return None
    declared = bundled()[rule_id]
    severity = table.get("severity", declared.severity)
    if severity not in SEVERITIES:
        raise HomevisitsError(
            f"In {where}, rule {rule_id} has severity '{severity}': use one of {', '.join(SEVERITIES)}."
        )
    clause = str(table["clause"]).strip()
    return RuleConfig(rule_id, clause, severity, {}, replace(declared, clause=clause, severity=severity))
