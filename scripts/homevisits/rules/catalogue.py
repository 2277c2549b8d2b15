"""What a rule is and what it yields, and the registry of rules by their stable ids (HV001...).

A rule function registers itself with :func:`rule`, declaring its id, title, severity, the columns it
needs, the parameters a profile may set and the templates that word its findings; it yields
:class:`Hit` (or :class:`Hits`) records as data. The topic modules beside this one hold the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..findings import Text
from ..settings import Setting
from .context import Context


@dataclass(slots=True)
class Hit:
    """What a rule found, as data: where, which field, the values that made it and which of the rule's
    texts words it (``kind``); the message and fix are rendered from that text at the edge
    (policy.check). A rule whose wording needs more than templates gives ``message`` and ``fix``."""

    position: int | None  # the visit's position in the table; None for a sheet-wide finding
    field: str | None
    message: str = ""
    fix: str = ""
    severity: str | None = None  # overrides the rule's severity (e.g. HV009: info until the deadline)
    row: int | None = None
    values: dict[str, Any] | None = None  # the cells that made the finding, as plain data
    kind: str | None = None  # the key of the rule's ``texts`` that words it


@dataclass(slots=True)
class Hits:
    """Many hits of one field and kind at once, as columns (HV002 over a log with ~150,000 bad
    cells): policy.check words each distinct set of values once and builds the findings in one
    pass, where a :class:`Hit` apiece would cost an object and a round of the loop each."""

    field: str
    kind: str
    positions: list[int | None]  # as Hit.position
    rows: list[int]  # the sheet row of each
    values: list[dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    needs: tuple[str, ...]  # columns the sheet must have; "a|b" means either will do
    func: Callable[[Context], Iterator[Hit]]
    params: dict[str, Setting] = field(default_factory=dict)  # what a profile may set under [rules.<id>]
    blocks_form: bool = True  # its findings (errors, alerts) stop the risk assessment form going
    texts: dict[str, Text] = field(default_factory=dict)  # kind -> message and fix templates


# Parameters more than one rule declares (timings are not parameters: policy [timings], ctx.timings).
EXEMPT_REASONS = Setting("texts", ())


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str,
    title: str,
    severity: str,
    needs: tuple[str, ...] = (),
    params: dict[str, Setting] | None = None,
    blocks_form: bool = True,
    texts: dict[str, Text] | None = None,
) -> Callable:
    """Register a rule function under its id, with the parameters a profile may set for it."""

    def register(func: Callable[[Context], Iterator[Hit]]) -> Callable[[Context], Iterator[Hit]]:
        if rule_id in RULES:  # two rules under one id: the first would vanish without a word
            raise ValueError(f"rule {rule_id} is registered twice")
        RULES[rule_id] = Rule(
            rule_id, title, severity, needs, func, dict(params or {}), blocks_form, dict(texts or {})
        )
        return func

    return register


def rule_titles(policy: Any = None) -> dict[str, str]:
    """Every rule id a profile can name: the functions here and the checks the bundled profiles
    declare, plus the checks ``policy`` (a policy.Policy) declares of its own."""
    from ..checks import bundled

    titles = {rule_id: r.title for rule_id, r in RULES.items()}
    titles.update({check_id: check.title for check_id, check in bundled().items()})
    for config in getattr(policy, "rules", {}).values():
        if config.check is not None:
            titles[config.id] = config.check.title
    return dict(sorted(titles.items()))
