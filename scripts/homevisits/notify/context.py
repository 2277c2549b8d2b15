"""The planning context: everything a message or a step needs besides its visit, fixed for one plan.

The policy, the job's settings, the ledger's history, ``now`` (UTC), the findings that stop a form,
the safe-return state at ``now`` and each row's ledger reference; and one row as the messages see it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import mail
from ..rules import DEFAULT_STEPS
from .history import visit_refs
from .options import deadline_hours

if TYPE_CHECKING:
    from ..findings import Finding
    from ..policy import Policy
    from ..visits import Visits
    from .history import History
    from .options import Settings

BLOCKING = ("error", "alert")  # a finding of these severities (other than HV009) stops the form


@dataclass(frozen=True)
class Context:
    """Everything a message needs besides its visit."""

    policy: Policy
    settings: Settings
    history: History
    now: dt.datetime  # UTC
    problems: Mapping[int, tuple[dict[str, Any], ...]]  # sheet row -> blocking findings
    sheet: str = ""
    overdue: Any = None  # safe_return.Overdue at now (None without the safe-return rule)
    refs: tuple[str, ...] = ()  # each row's reference: its Visit ID, else unnamed-<fingerprint>
    headers: Mapping[str, str] = field(default_factory=dict)  # field -> the sheet's own header

    @property
    def deadline_hours(self) -> float:
        return deadline_hours(self.policy)

    @property
    def grace_minutes(self) -> float:
        return self.policy.timings.grace_minutes

    @property
    def alert_hours(self) -> float:
        return self.policy.timings.alert_hours

    def position(self, ref: str) -> int | None:
        """The first row whose reference (Visit ID, else fingerprint) is ``ref``."""
        found = self._positions.get(ref)  # type: ignore[attr-defined]
        return found

    def __post_init__(self) -> None:
        positions: dict[str, int] = {}
        for i, ref in enumerate(self.refs):
            positions.setdefault(ref, i)
        object.__setattr__(self, "_positions", positions)

    def header(self, name: str) -> str:
        return self.headers.get(name, name)

    @property
    def escalation(self) -> list[str]:
        return [str(step) for step in self.policy.param("HV022", "escalation", DEFAULT_STEPS)]

    def clause(self, rule_id: str) -> str | None:
        rule = self.policy.rule(rule_id)
        return rule.clause if rule else None


def context_for(
    visits: Visits,
    findings: Sequence[Finding],
    policy: Policy,
    settings: Settings,
    history: History,
    now: dt.datetime,
) -> Context:
    problems: dict[int, list[dict[str, Any]]] = {}
    for finding in findings:
        if finding.row is not None and finding.severity in BLOCKING and finding.blocks_form:
            problems.setdefault(finding.row, []).append(
                {"column": finding.column, "message": finding.message, "fix": finding.fix}
            )
    from .. import safe_return

    watched = policy.rule("HV022") is not None
    return Context(
        policy=policy,
        settings=settings,
        history=history,
        now=now.astimezone(dt.UTC),
        problems={row: tuple(items) for row, items in problems.items()},
        sheet=visits.worksheet or visits.source,
        overdue=safe_return.overdue(visits, policy.timings, now) if watched else None,
        refs=visit_refs(visits),
        headers={name: visits.header(name) for name in visits.schema.fields},
    )


def visit_record(visits: Visits, ctx: Context, position: int) -> dict[str, Any]:
    """One row as the messages see it: its reference as ``visit_id``, its label, the safe-return state."""
    record = visits.record(position)
    typed = record.get("visit_id")
    record["visit_id"] = ctx.refs[position] if ctx.refs else typed
    record["label"] = mail.visit_text(typed, record.get("row")) if typed else f"row {record.get('row')}"
    record["position"] = position
    if ctx.overdue is not None:
        from ..safe_return import Cells

        cells = Cells(visits)
        record["due_back_at"] = ctx.overdue.due.when(position)
        record["due_why"] = ctx.overdue.due.why(position, cells)
        record["return_doubt"] = ctx.overdue.back.doubt(position, cells)
    return record


def ready(visit: Mapping[str, Any], ctx: Context) -> bool:
    """No finding stops the form (HV009, the deadline itself, aside)."""
    return not ctx.problems.get(visit.get("row") or 0)
