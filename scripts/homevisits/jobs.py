"""The scheduled jobs: email forms before the deadline, chase missing ones, escalate overdue returns.

Planning is pure: ``plan_forms`` and ``plan_returns`` turn (visits, findings, policy, settings,
ledger history, now) into :class:`Planned` messages. ``run`` is the edge: under the run lock it
reads the sheet once, re-sends what the ledger still holds as pending (withdrawing what the sheet
no longer calls for: a safe return, a cancelled visit...), sends the new messages
(the intent is queued in the ledger before each one, the server's acceptance recorded after),
tells the admin about refusals, and writes ``Form sent at`` / ``Escalated at`` (and new Visit
IDs) back through the source in one batch. Deadlines are instants: elapsed hours, in UTC.

A row without a Visit ID gets one in this run's write and is handled from the next run on
(cron runs every 5 minutes). stdout and logs name visit IDs only.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import mail
from .errors import HomevisitsError

if TYPE_CHECKING:
    from email.message import EmailMessage

    from .config import Config
    from .findings import Finding
    from .ledger import Entry, Ledger
    from .pipeline import Checked
    from .policy import Policy
    from .visits import Visits

JOBS = ("forms", "returns")
CANCELLED = ("Cancelled", "Not carried out")
BLOCKING = ("error", "alert")  # a finding of these severities (other than HV009) stops the form
DEFAULT_STEPS = ("Call the staff member", "Call the school office", "Call the police")
# A missed deadline is still worth telling the line manager until this long after the visit's start.
LATE_LIMIT = dt.timedelta(hours=24)
# Most urgent first, so a connection that breaks mid-run has already carried the alerts.
PRIORITY = {
    "overdue_alert": 0,
    "smt_alert": 0,
    "deadline_missed": 1,
    "final_reminder": 2,
    "form": 3,
    "reminder": 4,
    "admin_report": 5,
}
FALLBACK_SENDER = "homevisits@homevisits.invalid"
REFUSED = "refused:"  # admin_report:refused:<key>: the report on recipients refused while <key> went
DRY_RUN_ID = "<dry-run@homevisits.invalid>"


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What the jobs take from the config: [schedule] timings and [mail] recipient lists."""

    window_days: float = 14
    reminder_hours: float = 24
    final_reminder_hours: float = 6
    smt_after_minutes: float = 30
    forms_to: tuple[str, ...] = ()
    smt: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    sender: str = FALLBACK_SENDER
    school: str = ""
    timezone: str = "Europe/London"
    forms: Mapping[str, Any] = field(default_factory=dict)


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
    schedule, mail_cfg = dict(config.schedule or {}), dict(config.mail or {})
    window = schedule.get("window_days", (config.forms or {}).get("window_days", 14))
    return Settings(
        window_days=_number({"window_days": window}, "window_days", 14, "schedule"),
        reminder_hours=_number(schedule, "reminder_hours", 24, "schedule"),
        final_reminder_hours=_number(schedule, "final_reminder_hours", 6, "schedule"),
        smt_after_minutes=_number(schedule, "smt_after_minutes", 30, "schedule"),
        forms_to=_addresses(mail_cfg.get("forms_to")),
        smt=_addresses(mail_cfg.get("smt")),
        admin=_addresses(mail_cfg.get("admin")),
        allowed_domains=_addresses(mail_cfg.get("allowed_domains")),
        sender=mail.addr_spec(str(mail_cfg.get("from") or "")) or FALLBACK_SENDER,
        school=config.school,
        timezone=config.timezone,
        forms=dict(config.forms or {}),
    )


def deadline_hours(policy: Policy) -> float:
    """Hours before the start the form is due (HV009 ``deadline_hours``); 0 without HV009."""
    return float(policy.param("HV009", "deadline_hours", 24)) if policy.rule("HV009") else 0.0


def form_deadline(start_at: dt.datetime | None, hours: float) -> dt.datetime | None:
    """The instant ``hours`` elapsed hours before the start (UTC arithmetic: right across clock changes)."""
    if start_at is None:
        return None
    return start_at.astimezone(dt.UTC) - dt.timedelta(hours=hours)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.astimezone(dt.UTC) if moment is not None else None


# ---------------------------------------------------------------- what the ledger remembers


@dataclass(frozen=True)
class History:
    """The ledger's entries as the planner sees them (a snapshot; planning never writes).

    A withdrawn message counts as never planned (``of_visit``, ``current``, ``last_time``), but its key
    stays taken: a message planned again gets a new key (``new_key``) and a new Message-ID."""

    entries: tuple[Entry, ...] = ()

    def __post_init__(self) -> None:
        by_visit: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if entry.status != "withdrawn":
                by_visit.setdefault(entry.visit_id, []).append(entry)
        object.__setattr__(self, "_by_key", {e.key: e for e in self.entries})
        object.__setattr__(self, "_by_visit", by_visit)

    @classmethod
    def of(cls, ledger: Ledger | None) -> History:
        return cls(tuple(ledger.entries())) if ledger is not None else cls()

    def get(self, key: str) -> Entry | None:
        return self._by_key.get(key)  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key  # type: ignore[attr-defined]

    def of_visit(self, visit_id: str, kinds: Iterable[str]) -> list[Entry]:
        """This visit's messages of these kinds, oldest first, leaving out withdrawn ones."""
        wanted = set(kinds)
        return [e for e in self._by_visit.get(visit_id, ()) if e.kind in wanted]  # type: ignore[attr-defined]

    def current(self, visit_id: str, kind: str) -> Entry | None:
        """The latest message of this kind for this visit that was not withdrawn."""
        found = self.of_visit(visit_id, (kind,))
        return found[-1] if found else None

    def new_key(self, key: str) -> str:
        """``key``, or ``key#2``, ``key#3``... when a withdrawn message holds it (never queued again)."""
        candidate, number = key, 1
        while (held := self.get(candidate)) is not None and held.status == "withdrawn":
            number += 1
            candidate = f"{key}#{number}"
        return candidate

    def last_time(self, visit_id: str, kinds: Iterable[str]) -> dt.datetime | None:
        """The latest moment a message of these kinds was queued or accepted for this visit: a message
        queued by a run that then crashed counts, so the crash never causes a second one."""
        times = [max(e.queued_at, e.sent_at or e.queued_at) for e in self.of_visit(visit_id, kinds)]
        return max(times) if times else None


# ---------------------------------------------------------------- planned messages


@dataclass(frozen=True)
class Planned:
    """One message to send: who to, what it says, the forms to attach as PDFs, what was left out."""

    key: str
    visit_id: str
    kind: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    pages: tuple[tuple[str, str], ...] = ()  # (PDF file name, HTML page) rendered when sent
    not_mailed: tuple[tuple[str, str], ...] = ()  # (address as typed, why): reported, never mailed

    @property
    def recipients(self) -> tuple[str, ...]:
        return (*self.to, *self.cc)

    @property
    def priority(self) -> int:
        return PRIORITY.get(self.kind, 9)


@dataclass(frozen=True)
class Context:
    """Everything a message needs besides its visit."""

    policy: Policy
    settings: Settings
    history: History
    now: dt.datetime  # UTC
    problems: Mapping[int, tuple[dict[str, Any], ...]]  # sheet row -> blocking findings
    sheet: str = ""

    @property
    def deadline_hours(self) -> float:
        return deadline_hours(self.policy)

    @property
    def grace_minutes(self) -> float:
        return float(self.policy.param("HV022", "grace_minutes", 30))

    @property
    def alert_hours(self) -> float:
        return float(self.policy.param("HV022", "alert_hours", 24))

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
        if finding.row is not None and finding.severity in BLOCKING and finding.rule != "HV009":
            problems.setdefault(finding.row, []).append(
                {"column": finding.column, "message": finding.message, "fix": finding.fix}
            )
    return Context(
        policy=policy,
        settings=settings,
        history=history,
        now=now.astimezone(dt.UTC),
        problems={row: tuple(items) for row, items in problems.items()},
        sheet=visits.worksheet or visits.source,
    )


def split_recipients(
    to: Iterable[str | None], cc: Iterable[str | None], allowed_domains: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(to, cc, not mailed): bare addresses inside the allowed domains, a Cc never repeating a To,
    and every other address with the reason it is left out."""
    to_ok, to_refused = mail.check_recipients(to, allowed_domains)
    cc_ok, cc_refused = mail.check_recipients(cc, allowed_domains)
    seen = {a.lower() for a in to_ok}
    cc_ok = [a for a in cc_ok if a.lower() not in seen]
    not_mailed = tuple(
        (
            mail.clean_text(raw),
            "not an email address" if mail.addr_spec(raw) is None else "outside allowed_domains",
        )
        for raw in (*to_refused, *cc_refused)
    )
    return tuple(to_ok), tuple(cc_ok), not_mailed


def _clean(value: Any) -> str | None:
    return mail.clean_text(value) if value not in (None, "") else None


def _base_context(visit: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    return {
        "visit_id": visit["visit_id"],
        "visit_start": visit.get("start_at"),
        "policy_name": ctx.policy.name,
        "school": ctx.settings.school or ctx.policy.name,
        "staff_name": _clean(visit.get("lead_staff")),
        "row": visit.get("row"),
        "sheet": ctx.sheet,
    }


def _message(
    kind: str,
    key: str,
    visit: Mapping[str, Any],
    ctx: Context,
    text_context: Mapping[str, Any],
    to: Iterable[str | None],
    cc: Iterable[str | None] = (),
    fallback: Iterable[str | None] = (),
    **extra: Any,
) -> Planned:
    """A planned message; when nobody in ``to`` can be mailed, ``fallback`` takes their place."""
    to_ok, cc_ok, not_mailed = split_recipients(to, cc, ctx.settings.allowed_domains)
    if not to_ok:
        to_ok, cc_ok, _ = split_recipients(fallback, cc_ok, ctx.settings.allowed_domains)
    text = mail.render_text(
        kind, text_context, template_dir=ctx.policy.template_dir, timezone=ctx.settings.timezone
    )
    return Planned(
        key=key,
        visit_id=str(visit["visit_id"]),
        kind=kind,
        to=to_ok,
        cc=cc_ok,
        subject=mail.subject(kind, str(visit["visit_id"]), visit.get("start_at")),
        text=text,
        not_mailed=not_mailed,
        **extra,
    )


def compose_form(visit: Mapping[str, Any], ctx: Context, key: str) -> Planned:
    """The form email: the HTML form as the body, each of the policy's forms attached as a PDF."""
    from .forms import file_stem, form_settings, pdf_title, render_form

    visit_id = str(visit["visit_id"])
    template_dirs = [ctx.policy.template_dir] if ctx.policy.template_dir else None
    extra = form_settings(ctx.policy, ctx.settings.forms)
    pages = tuple(
        (
            f"{file_stem(visit_id)}-{form}.pdf",
            render_form(
                form,
                visit,
                school=ctx.settings.school or ctx.policy.name,
                now=ctx.now,
                template_dirs=template_dirs,
                extra=extra,
            ),
        )
        for form in ctx.policy.forms or ["generic"]
    )
    titles = [pdf_title(page, "").removeprefix(" – ") for _, page in pages]
    text_context = {
        **_base_context(visit, ctx),
        "deadline": form_deadline(visit.get("start_at"), ctx.deadline_hours),
        "clause": ctx.clause("HV009"),
        "form_title": "; ".join(titles),
        "attachment_name": ", ".join(name for name, _ in pages),
    }
    return _message(
        "form",
        key,
        visit,
        ctx,
        text_context,
        to=ctx.settings.forms_to,
        cc=(visit.get("staff_email"), visit.get("line_manager_email")),
        html=pages[0][1],
        pages=pages,
    )


def compose_chase(kind: str, visit: Mapping[str, Any], ctx: Context, key: str) -> Planned:
    """A reminder or final reminder (to the staff member, line manager in copy), or the missed
    deadline (to the line manager, staff member in copy): what is missing and the deadline."""
    text_context = {
        **_base_context(visit, ctx),
        "deadline": form_deadline(visit.get("start_at"), ctx.deadline_hours),
        "clause": ctx.clause("HV009"),
        "problems": list(ctx.problems.get(visit.get("row") or 0, ())),
    }
    staff, manager = visit.get("staff_email"), visit.get("line_manager_email")
    if kind == "deadline_missed":
        return _message(kind, key, visit, ctx, text_context, to=[manager], cc=[staff], fallback=[staff])
    return _message(kind, key, visit, ctx, text_context, to=[staff], cc=[manager], fallback=[manager])


def compose_alert(
    kind: str, visit: Mapping[str, Any], ctx: Context, key: str, escalated_at: dt.datetime | None = None
) -> Planned:
    """The overdue-return alert (to the line manager, else SMT) or its second stage (to SMT, else
    the admin): everything needed to act from a phone, and the policy's escalation steps in order."""
    location = " - ".join(
        v for v in (_clean(visit.get("location_type")), _clean(visit.get("location_details"))) if v
    )
    address = ", ".join(v for v in (_clean(visit.get("address")), _clean(visit.get("postcode"))) if v)
    text_context = {
        **_base_context(visit, ctx),
        "expected_return": visit.get("return_due_at"),
        "grace_minutes": f"{ctx.grace_minutes:g}",
        "escalation_steps": ctx.escalation,
        "clause": ctx.clause("HV022"),
        "staff_phone": _clean(visit.get("phone_taken")),
        "address": address or None,
        "location": location or None,
        "learner_phone": _clean(visit.get("learner_phone")),
        "parent_phone": _clean(visit.get("parent_phone")),
        "escalated_at": escalated_at,
    }
    manager = visit.get("line_manager_email")
    if kind == "smt_alert":
        return _message(
            kind,
            key,
            visit,
            ctx,
            text_context,
            to=ctx.settings.smt,
            cc=[manager],
            fallback=ctx.settings.admin,
        )
    return _message(kind, key, visit, ctx, text_context, to=[manager], fallback=ctx.settings.smt)


def compose_admin_report(
    key: str,
    visit_id: str,
    ctx: Context,
    failures: Sequence[Entry] = (),
    not_mailed: Sequence[tuple[str, str]] = (),
    partly_refused: Sequence[Entry] = (),
) -> Planned:
    """To the admin: messages refused for good, messages some recipients of which were refused for
    good, or addresses in the sheet that were not mailed. Visit IDs and staff addresses only."""
    text_context = {
        "school": ctx.settings.school or ctx.policy.name,
        "failures": [
            {
                "visit_id": e.visit_id,
                "kind": e.kind,
                "failed_at": e.failed_at,
                "error": e.error or "refused",
                "recipients": list(e.recipients) or ["(nobody)"],
            }
            for e in failures
        ],
        "not_mailed": [{"visit_id": visit_id, "address": a, "reason": r} for a, r in not_mailed],
        "partly_refused": [
            {
                "visit_id": e.visit_id,
                "kind": e.kind,
                "sent_at": e.sent_at,
                "refused": [f"{address} ({reply or 'refused'})" for address, reply in e.refused],
            }
            for e in partly_refused
        ],
    }
    to, cc, _ = split_recipients(ctx.settings.admin, (), ctx.settings.allowed_domains)
    text = mail.render_text(
        "admin_report", text_context, template_dir=ctx.policy.template_dir, timezone=ctx.settings.timezone
    )
    count = len(failures) + len(not_mailed) + len(partly_refused)
    return Planned(key, visit_id, "admin_report", to, cc, mail.subject("admin_report", count=count), text)


def compose(kind: str, visit: Mapping[str, Any], ctx: Context, key: str) -> Planned:
    """Any kind of visit message, from the visit as the sheet shows it now (plans and retries)."""
    if kind == "form":
        return compose_form(visit, ctx, key)
    if kind in ("reminder", "final_reminder", "deadline_missed"):
        return compose_chase(kind, visit, ctx, key)
    if kind in ("overdue_alert", "smt_alert"):
        escalated = _alert_time(visit, ctx) if kind == "smt_alert" else None
        return compose_alert(kind, visit, ctx, key, escalated)
    raise ValueError(f"no visit message of kind {kind!r}")


# ---------------------------------------------------------------- planning (pure)


def _positions(mask: Any) -> list[int]:
    return [int(i) for i in mask.to_numpy(dtype=bool).nonzero()[0]]


@dataclass(frozen=True)
class Condition:
    """One test a row must pass for a job to act on it: ``rows`` is True where it passes; ``reason``
    says why a row fails it. ``clock``: failed only as time goes by (a sheet edit cannot make a row
    fail it), so it never withdraws a message already queued."""

    reason: str
    rows: Any  # boolean pandas Series over visits.frame
    clock: bool = False


def _passing(conditions: Sequence[Condition]) -> list[int]:
    mask = conditions[0].rows
    for condition in conditions[1:]:
        mask = mask & condition.rows
    return _positions(mask.fillna(False))


def _failed(conditions: Sequence[Condition], position: int) -> str | None:
    """The first condition the row at ``position`` now fails because of the sheet (not the clock)."""
    import pandas as pd

    for condition in conditions:
        passes = condition.rows.iloc[position]
        if not condition.clock and (pd.isna(passes) or not passes):
            return condition.reason
    return None


def _not_called_off(status: Any) -> list[Condition]:
    return [Condition(f"visit {called_off.lower()}", status != called_off) for called_off in CANCELLED]


def form_conditions(visits: Visits, settings: Settings, now: dt.datetime) -> list[Condition]:
    """Planned, not HIGH risk, with a Visit ID, starting within the window (or started less than a day ago)."""
    import pandas as pd

    frame = visits.frame
    instant = pd.Timestamp(now.astimezone(dt.UTC))
    start, status = frame["start_at"], frame["status"]
    return [
        *_not_called_off(status),
        Condition(
            "visit no longer Planned", (status == "Planned") | status.isna()
        ),  # blank: as the rules read it
        Condition("HIGH risk", frame["risk_level"] != "HIGH"),
        Condition("no Visit ID", frame["visit_id"].notna()),
        Condition("outside the window", start <= instant + pd.Timedelta(days=settings.window_days), True),
        Condition("started over a day ago", start > instant - pd.Timedelta(LATE_LIMIT), True),
    ]


def form_candidates(visits: Visits, settings: Settings, now: dt.datetime) -> list[int]:
    """The rows send-forms looks at (``form_conditions``)."""
    return _passing(form_conditions(visits, settings, now))


def return_conditions(visits: Visits, policy: Policy, now: dt.datetime) -> list[Condition]:
    """Past the expected return plus grace, no safe return (an unreadable one counts), not called off,
    not too old. Empty without the safe-return rule (HV022)."""
    import pandas as pd

    if policy.rule("HV022") is None:
        return []
    frame = visits.frame
    instant = pd.Timestamp(now.astimezone(dt.UTC))
    grace = float(policy.param("HV022", "grace_minutes", 30))
    limit = frame["return_due_at"] + pd.Timedelta(minutes=grace)
    alert_hours = float(policy.param("HV022", "alert_hours", 24))
    return [
        Condition("no Visit ID", frame["visit_id"].notna()),
        Condition("returned safely", frame["returned_at"].isna() & ~visits.unreadable("returned_at")),
        *_not_called_off(frame["status"]),
        Condition("no expected return", limit.notna()),
        Condition("not overdue", limit < instant),  # only a later expected return makes a row fail it
        Condition("overdue for too long", limit > instant - pd.Timedelta(hours=alert_hours), True),
    ]


def return_candidates(visits: Visits, policy: Policy, now: dt.datetime) -> list[int]:
    """The rows check-returns looks at (``return_conditions``)."""
    conditions = return_conditions(visits, policy, now)
    return _passing(conditions) if conditions else []


def _form_sent(visit: Mapping[str, Any]) -> bool:
    """The sheet shows a form sent (written back by a run, or typed in by hand)."""
    return visit.get("form_sent_at") is not None


def _ready(visit: Mapping[str, Any], ctx: Context) -> bool:
    """No finding stops the form (HV009, the deadline itself, aside)."""
    return not ctx.problems.get(visit.get("row") or 0)


def form_step(visit: Mapping[str, Any], ctx: Context) -> Planned | None:
    """What one visit needs from send-forms now: its form, a reminder, a final reminder, the missed deadline, or nothing."""
    visit_id = str(visit["visit_id"])
    deadline = form_deadline(visit.get("start_at"), ctx.deadline_hours)
    if deadline is None:
        return None
    form = ctx.history.current(visit_id, "form")
    if _form_sent(visit) or (form is not None and form.status != "failed"):
        return None  # sent (or still being sent: pending messages are retried first)
    if ctx.now > deadline:
        if ctx.history.current(visit_id, "deadline_missed") is not None:
            return None
        key = ctx.history.new_key(f"deadline_missed:{visit_id}")
        return compose_chase("deadline_missed", visit, ctx, key)
    if form is not None:
        return None  # refused for good: the admin was told; the line manager hears at the deadline
    if _ready(visit, ctx):
        # Ready: the form goes now (without forms_to in [mail] there is nobody to send it to).
        key = ctx.history.new_key(f"form:{visit_id}")
        return compose_form(visit, ctx, key) if ctx.settings.forms_to else None
    chases = ctx.history.of_visit(visit_id, ("reminder", "final_reminder"))
    if any(e.status == "pending" for e in chases):
        return None  # the one still queued goes first
    if deadline - ctx.now < dt.timedelta(hours=ctx.settings.final_reminder_hours):
        if ctx.history.current(visit_id, "final_reminder") is not None:
            return None
        key = ctx.history.new_key(f"final_reminder:{visit_id}")
        return compose_chase("final_reminder", visit, ctx, key)
    last = ctx.history.last_time(visit_id, ("reminder", "final_reminder"))
    if last is not None and ctx.now - last < dt.timedelta(hours=ctx.settings.reminder_hours):
        return None
    key = ctx.history.new_key(f"reminder:{visit_id}:{ctx.now:%Y-%m-%dT%H:%M}")
    return compose_chase("reminder", visit, ctx, key)


def _escalated(visit: Mapping[str, Any]) -> bool:
    """The sheet shows the first stage done (written back by a run, or typed in by staff)."""
    return visit.get("escalated_at") is not None


def _alert_time(visit: Mapping[str, Any], ctx: Context) -> dt.datetime | None:
    """When the line manager was alerted: the ledger's acceptance time, else the sheet's Escalated at."""
    alert = ctx.history.current(str(visit["visit_id"]), "overdue_alert")
    if alert is not None:
        return alert.sent_at
    return _utc(visit.get("escalated_at"))


def return_step(visit: Mapping[str, Any], ctx: Context) -> Planned | None:
    """The overdue-return stage one visit is due: the alert to the line manager, then SMT, each once."""
    visit_id = str(visit["visit_id"])
    alert = ctx.history.current(visit_id, "overdue_alert")
    if alert is None and not _escalated(visit):
        return compose_alert("overdue_alert", visit, ctx, ctx.history.new_key(f"overdue_alert:{visit_id}"))
    if ctx.history.current(visit_id, "smt_alert") is not None:
        return None
    alerted = _alert_time(visit, ctx)
    if alerted is None or ctx.now - alerted <= dt.timedelta(minutes=ctx.settings.smt_after_minutes):
        return None
    return compose_alert("smt_alert", visit, ctx, ctx.history.new_key(f"smt_alert:{visit_id}"), alerted)


VISIT_KINDS = ("form", "reminder", "final_reminder", "deadline_missed", "overdue_alert", "smt_alert")
ALERTS = ("overdue_alert", "smt_alert")


def withdrawals(entries: Iterable[Entry], visits: Visits, ctx: Context) -> dict[str, str]:
    """The pending messages that no longer apply to their visit as the sheet shows it now: key -> why.

    Judged by the planner's own tests (``form_conditions``, ``return_conditions``, ``_form_sent``,
    ``_ready``, ``_escalated``, the deadline); only a change in the sheet withdraws a message, never
    the clock alone. A visit no longer in the sheet is left to ``rebuild`` (reported, not sent)."""
    forms = functools.cache(lambda: form_conditions(visits, ctx.settings, ctx.now))
    returns = functools.cache(lambda: return_conditions(visits, ctx.policy, ctx.now))
    found = {}
    for entry in entries:
        position = visits.position_of(entry.visit_id)
        if entry.kind not in VISIT_KINDS or position is None:
            continue
        conditions = returns() if entry.kind in ALERTS else forms()
        reason = _failed(conditions, position) or _no_longer_due(entry.kind, visits.record(position), ctx)
        if reason is not None:
            found[entry.key] = reason
    return found


def _no_longer_due(kind: str, visit: Mapping[str, Any], ctx: Context) -> str | None:
    """Why form_step or return_step would not plan this kind for a candidate row, by the sheet alone."""
    if kind in ALERTS:
        return "Escalated at filled in" if kind == "overdue_alert" and _escalated(visit) else None
    if _form_sent(visit):
        return "Form sent at filled in"
    # A form stays due when the row stops being ready: findings also appear as the clock runs
    # (the visit has begun, the return is overdue), and the clock alone never withdraws a message.
    if kind in ("reminder", "final_reminder") and _ready(visit, ctx):
        return "row ready"
    deadline = form_deadline(visit.get("start_at"), ctx.deadline_hours)
    if kind == "deadline_missed" and deadline is not None and ctx.now <= deadline:
        return "deadline not passed"  # the visit moved later
    return None


def forms_due(visits: Visits, ctx: Context) -> list[Planned]:
    if not ctx.policy.forms:
        return []
    steps = (form_step(visits.record(i), ctx) for i in form_candidates(visits, ctx.settings, ctx.now))
    return [step for step in steps if step is not None]


def returns_due(visits: Visits, ctx: Context) -> list[Planned]:
    steps = (return_step(visits.record(i), ctx) for i in return_candidates(visits, ctx.policy, ctx.now))
    return [step for step in steps if step is not None]


def plan_forms(
    visits: Visits,
    findings: Sequence[Finding],
    policy: Policy,
    settings: Settings,
    history: History,
    now: dt.datetime,
) -> list[Planned]:
    """send-forms: the form, reminder, final reminder or missed-deadline message each visit is due."""
    return forms_due(visits, context_for(visits, findings, policy, settings, history, now))


def plan_returns(
    visits: Visits,
    findings: Sequence[Finding],
    policy: Policy,
    settings: Settings,
    history: History,
    now: dt.datetime,
) -> list[Planned]:
    """check-returns: the overdue alert or SMT alert each unconfirmed return is due."""
    return returns_due(visits, context_for(visits, findings, policy, settings, history, now))


def not_mailed_reports(planned: Iterable[Planned], ctx: Context) -> list[Planned]:
    """One admin report per new message that left out an address typed into the sheet."""
    if not ctx.settings.admin:
        return []
    reports = []
    for message in planned:
        key = f"admin_report:not_mailed:{message.key}"
        if message.not_mailed and key not in ctx.history:
            reports.append(compose_admin_report(key, message.visit_id, ctx, not_mailed=message.not_mailed))
    return reports


def failure_reports(ctx: Context) -> list[Planned]:
    """One admin report per message refused for good, and per message accepted with some recipients
    refused for good, that the admin has not been told about."""
    if not ctx.settings.admin:
        return []
    reports = []
    for e in ctx.history.entries:
        if e.kind == "admin_report":
            continue
        if e.status == "failed" and f"admin_report:{e.key}" not in ctx.history:
            reports.append(compose_admin_report(f"admin_report:{e.key}", e.visit_id, ctx, failures=[e]))
        key = f"admin_report:{REFUSED}{e.key}"
        if e.status == "sent" and e.refused and key not in ctx.history:
            reports.append(compose_admin_report(key, e.visit_id, ctx, partly_refused=[e]))
    return reports


def plan_context(ctx: Context, visits: Visits, jobs: Sequence[str] = JOBS) -> list[Planned]:
    """Every new message of the chosen jobs, most urgent first, one per key (a repeated Visit ID:
    the first row)."""
    planned: list[Planned] = []
    if "returns" in jobs:
        planned += returns_due(visits, ctx)
    if "forms" in jobs:
        planned += forms_due(visits, ctx)
    planned += not_mailed_reports(planned, ctx)
    unique: dict[str, tuple[int, Planned]] = {}
    for order, message in enumerate(planned):
        unique.setdefault(message.key, (order, message))
    return [m for _, m in sorted(unique.values(), key=lambda item: (item[1].priority, item[0]))]


def plan(
    visits: Visits,
    findings: Sequence[Finding],
    policy: Policy,
    settings: Settings,
    history: History,
    now: dt.datetime,
    jobs: Sequence[str] = JOBS,
) -> list[Planned]:
    """Every new message of the chosen jobs (``forms``, ``returns``), most urgent first."""
    return plan_context(context_for(visits, findings, policy, settings, history, now), visits, jobs)


# ---------------------------------------------------------------- messages (the edge)


def build(
    planned: Planned, message_id: str, settings: Settings, now: dt.datetime, folder: Path | None
) -> EmailMessage:
    """The email for a planned message; PDFs are rendered into ``folder`` (None: no attachments)."""
    attachments = []
    if folder is not None:
        from .forms import render_pdf

        for name, page in planned.pages:
            path = render_pdf(page, folder / name, visit_id=planned.visit_id)
            attachments.append((name, path.read_bytes(), "application/pdf"))
    return mail.build_message(
        sender=("Home visits", settings.sender),
        to=list(planned.to),
        cc=list(planned.cc),
        subject=planned.subject,
        text=planned.text,
        html=planned.html,
        attachments=attachments,
        message_id=message_id,
        visit_id=planned.visit_id,
        kind=planned.kind,
        date=now,
    )


def describe(planned: Planned) -> str:
    """``HV-0042 form to 3 recipients``: visit ID, kind and count only."""
    count = len(planned.recipients)
    return f"{planned.visit_id} {planned.kind} to {count} recipient{'' if count == 1 else 's'}"


def _reply(exc: mail.MailError) -> str:
    return " ".join(part for part in (str(exc.code) if exc.code else "", exc.status) if part) or "no reply"


@dataclass
class Tally:
    """What a run did, for its summary line and exit status."""

    sent: int = 0
    queued: int = 0  # not accepted this time: the next run tries again
    refused: int = 0  # refused for good this run
    not_mailed: int = 0
    partly_refused: int = 0  # accepted, but some recipients refused for good
    withdrawn: int = 0  # queued earlier, no longer applies: not sent (not a failure)
    stopped: str | None = None  # why sending stopped early (the mail server cannot be used)

    @property
    def status(self) -> int:
        failed = self.queued or self.refused or self.not_mailed or self.partly_refused
        return 1 if (failed or self.stopped) else 0

    @property
    def anything(self) -> bool:
        return bool(self.sent or self.queued or self.refused or self.not_mailed or self.withdrawn)

    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.partly_refused:
            parts.append(f"{self.partly_refused} with recipient(s) refused for good")
        if self.withdrawn:
            parts.append(f"{self.withdrawn} withdrawn (no longer applied)")
        if self.queued:
            parts.append(f"{self.queued} queued for the next run")
        if self.refused:
            parts.append(f"{self.refused} refused for good")
        if self.not_mailed:
            parts.append(f"{self.not_mailed} address(es) from the sheet not mailed")
        return ", ".join(parts) + "."


class Run:
    """One run's sending: a ledger, a transport, and where to say what happened."""

    def __init__(
        self,
        ledger: Ledger,
        transport: mail.Transport,
        settings: Settings,
        now: dt.datetime,
        folder: Path,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.ledger, self.transport, self.settings, self.now = ledger, transport, settings, now
        self.folder, self.out, self.err = folder, out, err
        self.tally = Tally()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"homevisits: {text}", file=self.err, flush=True)

    def deliver(self, planned: Planned, entry: Entry | None = None) -> None:
        """Queue (unless retrying), send, record. A ConnectionFailure stops the run's sending."""
        if entry is None:
            if planned.not_mailed:
                self.tally.not_mailed += len(planned.not_mailed)
                told = (
                    "the admin is told" if self.settings.admin else "set admin in [mail] to be told by email"
                )
                self.warn(
                    f"{planned.visit_id} {planned.kind}: {len(planned.not_mailed)} address(es) from the sheet "
                    f"are outside allowed_domains or not email addresses and were not mailed ({told})."
                )
            entry = self.ledger.queue(
                planned.key, planned.visit_id, planned.kind, planned.recipients, self.now
            )
            if entry.status != "pending":
                return
        if not planned.recipients:
            self.refuse(
                entry,
                planned,
                "nobody to send it to: no address in the sheet or the [mail] settings "
                "is inside allowed_domains",
            )
            return
        try:
            message = build(planned, entry.message_id, self.settings, self.now, self.folder)
        except Exception as exc:  # a broken template must not hold up the rest (alerts go first anyway)
            self.ledger.mark_failed(
                entry.key, self.now, f"could not build the message ({type(exc).__name__})", False
            )
            self.tally.queued += 1
            self.say(
                f"queued for the next run: {describe(planned)} (could not build it: {type(exc).__name__})"
            )
            return
        self.ledger.attempt(entry.key, self.now)
        try:
            refused = self.transport.send(message)
        except mail.PermanentFailure as exc:
            self.refuse(entry, planned, str(exc), _reply(exc))
        except mail.TemporaryFailure as exc:
            self.ledger.mark_failed(entry.key, self.now, str(exc), permanent=False)
            self.tally.queued += 1
            self.say(f"queued for the next run: {describe(planned)} ({_reply(exc)})")
            if isinstance(exc, mail.ConnectionFailure):
                self.tally.stopped = str(exc)
        else:
            if refused:  # recorded with the acceptance, in one write, so the admin hears even after a crash
                self.ledger.mark_sent(entry.key, self.now, refused=refused)
            else:
                self.ledger.mark_sent(entry.key, self.now)
            self.tally.sent += 1
            self.say(f"sent: {describe(planned)}")
            if refused:
                self.partial_refusal(planned, refused)

    def partial_refusal(self, planned: Planned, refused: mail.Refused) -> None:
        """Accepted, but some recipients refused for good: counted here, reported to the admin once
        from the ledger (``failure_reports``), or on stderr without an admin. No addresses printed."""
        self.tally.partly_refused += 1
        replies = ", ".join(sorted(set(refused.values())))
        told = "the admin is told" if self.settings.admin else "set admin in [mail] to be told by email"
        self.warn(
            f"{planned.visit_id} {planned.kind}: the mail server refused {len(refused)} of "
            f"{len(planned.recipients)} recipients for good ({replies}); the others received it ({told})."
        )

    def withdraw(self, entry: Entry, reason: str) -> None:
        """A pending message that no longer applies: recorded as withdrawn, never sent."""
        self.ledger.mark_withdrawn(entry.key, self.now, reason)
        self.tally.withdrawn += 1
        self.say(f"withdrawn: {entry.visit_id} {entry.kind} ({reason})")

    def refuse(self, entry: Entry, planned: Planned, error: str, reply: str = "") -> None:
        self.ledger.mark_failed(entry.key, self.now, error, permanent=True)
        self.tally.refused += 1
        self.say(f"refused for good: {describe(planned)}{f' ({reply})' if reply else ''}")
        if not self.settings.admin and planned.kind != "admin_report":
            self.warn(
                f"{planned.visit_id} {planned.kind} will not be retried: {error} (set admin in [mail] "
                "to be told by email)."
            )


# ---------------------------------------------------------------- retrying what the ledger holds


def rebuild(entry: Entry, visits: Visits, ctx: Context) -> Planned | str:
    """The pending message again, from the sheet as it is now, to the recipients the ledger holds;
    or why it cannot be rebuilt (the visit is no longer in the sheet)."""
    if entry.kind == "admin_report":
        base_key = entry.key.removeprefix("admin_report:")
        if base_key.startswith("not_mailed:"):
            base = ctx.history.get(base_key.removeprefix("not_mailed:"))
            position = visits.position_of(entry.visit_id)
            if base is None or position is None:
                return "the visit is no longer in the sheet"
            again = compose(base.kind, visits.record(position), ctx, base.key)
            planned = compose_admin_report(entry.key, entry.visit_id, ctx, not_mailed=again.not_mailed)
        elif base_key.startswith(REFUSED):
            sent = ctx.history.get(base_key.removeprefix(REFUSED))
            planned = compose_admin_report(
                entry.key, entry.visit_id, ctx, partly_refused=[sent] if sent else []
            )
        else:
            failed = ctx.history.get(base_key)
            planned = compose_admin_report(
                entry.key, entry.visit_id, ctx, failures=[failed] if failed else []
            )
    else:
        position = visits.position_of(entry.visit_id)
        if position is None:
            return "the visit is no longer in the sheet"
        planned = compose(entry.kind, visits.record(position), ctx, entry.key)
    held = {a.lower() for a in entry.recipients}
    to = tuple(a for a in planned.to if a.lower() in held)
    cc = tuple(a for a in planned.cc if a.lower() in held)
    placed = {a.lower() for a in (*to, *cc)}
    to += tuple(a for a in entry.recipients if a.lower() not in placed)
    return replace(planned, to=to, cc=cc, not_mailed=())


# ---------------------------------------------------------------- write-back


def write_back(checked: Checked, ledger: Ledger, now: dt.datetime, err: TextIO) -> None:
    """Form sent at / Escalated at from the ledger, and Visit IDs for rows without one: one write.

    Entries whose visit is not in the sheet are left for a later run; a failed write is redone
    next run (the ledger still lists them)."""
    from .sources.writeback import CellUpdate, assign_ids, id_key

    frame = checked.visits.frame
    ids = [v for v in frame["visit_id"].tolist() if v]
    present = {id_key(v) for v in ids}
    entries = [e for e in ledger.needs_write_back() if id_key(e.visit_id) in present]
    updates = [CellUpdate(e.visit_id, e.write_back_field or "", e.sent_at) for e in entries]
    missing = [
        int(row)
        for row, vid in zip(frame["row"].tolist(), frame["visit_id"].tolist(), strict=True)
        if not vid
    ]
    updates += assign_ids(missing, ids)
    if not updates:
        return
    try:
        result = checked.source.write(updates)
    except HomevisitsError as exc:
        print(f"homevisits: the messages went, but the sheet was not updated: {exc}", file=err, flush=True)
        return
    done = {(id_key(p.update.visit_id), p.update.field) for p in result.written}
    ledger.mark_written_back(
        [e.key for e in entries if (id_key(e.visit_id), e.write_back_field) in done], now
    )
    given = sum(1 for p in result.written if p.update.field == "visit_id")
    if given:
        print(f"Gave {given} row(s) a Visit ID: they are handled from the next run.", file=err, flush=True)
    for skipped in result.skipped:
        print(f"homevisits: not written to the sheet: {skipped.reason}.", file=err, flush=True)


# ---------------------------------------------------------------- a run


def run(
    config: Config,
    now: dt.datetime,
    jobs: Sequence[str] = JOBS,
    *,
    dry_run: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """send-forms, check-returns or both: 0 all went (or nothing to do), 1 something was not sent."""
    from .ledger import RunInProgress, run_lock

    out, err = out or sys.stdout, err or sys.stderr
    settings = settings_from(config)
    if not settings.allowed_domains:
        raise HomevisitsError(
            '[mail] needs allowed_domains = ["your-school.example"]: homevisits only mails addresses in them.'
        )
    if dry_run:
        return _dry_run(config, now, jobs, settings, out, err)
    try:
        with run_lock(config.ledger_path):
            if tuple(jobs) != JOBS:  # send-forms or check-returns by hand; run-scheduled is watched
                return _run_locked(config, now, jobs, settings, out, err)
            from .heartbeat import watched

            return watched(config, now, lambda: _run_locked(config, now, jobs, settings, out, err), err)
    except RunInProgress as exc:
        print(f"homevisits: {exc}", file=err, flush=True)
        return 0


def _nothing_to_do(
    checked: Checked, settings: Settings, jobs: Sequence[str], stream: TextIO, *, returns: bool = True
) -> None:
    """Say why a job has nothing it can do (``returns`` False: not for check-returns, as in a cron run)."""
    policy = checked.policy
    if returns and "returns" in jobs and policy.rule("HV022") is None:
        print(
            f"The {policy.name} policy has no safe-return rule (HV022): check-returns has nothing to do.",
            file=stream,
            flush=True,
        )
    if "forms" in jobs and policy.forms and not settings.forms_to:
        print(
            "No form will be emailed: set forms_to in [mail] to the address(es) that receive the forms.",
            file=stream,
            flush=True,
        )


def _dry_run(
    config: Config, now: dt.datetime, jobs: Sequence[str], settings: Settings, out: TextIO, err: TextIO
) -> int:
    from .ledger import open_ledger
    from .pipeline import load

    checked = load(config, now)
    _nothing_to_do(checked, settings, jobs, out)
    if config.ledger_path.exists():
        with open_ledger(config.ledger_path, sender=settings.sender) as ledger:
            history, pending = History.of(ledger), ledger.pending()
    else:
        history, pending = History(), []
    ctx = context_for(checked.visits, checked.findings, checked.policy, settings, history, now)
    lines = []
    withdrawn = withdrawals(pending, checked.visits, ctx)
    for entry in pending:
        if entry.key in withdrawn:
            lines.append(f"would withdraw: {entry.visit_id} {entry.kind} ({withdrawn[entry.key]})")
            continue
        again = rebuild(entry, checked.visits, ctx)
        lines.append(
            f"would send again: {describe(again)}"
            if isinstance(again, Planned)
            else f"would report: {entry.visit_id} {entry.kind} ({again})"
        )
    if withdrawn:  # planned as the run would, after withdrawing
        entries = tuple(
            replace(e, withdrawn_at=ctx.now, withdrawn_reason=withdrawn[e.key]) if e.key in withdrawn else e
            for e in history.entries
        )
        ctx = replace(ctx, history=History(entries))
    for planned in plan_context(ctx, checked.visits, jobs):
        if not planned.recipients:
            lines.append(f"would not send: {planned.visit_id} {planned.kind} (nobody to send it to)")
            continue
        message = build(planned, DRY_RUN_ID, settings, now, None)
        lines.append(f"would send: {mail.describe(message)}")
        if planned.not_mailed:
            lines.append(
                f"would not mail: {len(planned.not_mailed)} address(es) of {planned.visit_id} {planned.kind} "
                "(outside allowed_domains or not an email address)"
            )
    unnamed = int(checked.visits.frame["visit_id"].isna().sum())
    if unnamed:
        lines.append(
            f"{unnamed} row(s) have no Visit ID: a run gives them one, and the run after handles them"
        )
    for line in lines or ["Nothing would be sent."]:
        print(line, file=out, flush=True)
    return 0


def _run_locked(
    config: Config, now: dt.datetime, jobs: Sequence[str], settings: Settings, out: TextIO, err: TextIO
) -> int:
    from .forms import PROGRESS_MIN, Progress
    from .ledger import open_ledger
    from .pipeline import load

    transport = mail.open_transport(config.mail, config.base_dir)  # settings checked before any read
    checked = load(config, now)
    _nothing_to_do(checked, settings, jobs, err, returns=tuple(jobs) == ("returns",))
    with (
        transport,
        open_ledger(config.ledger_path, sender=settings.sender) as ledger,
        tempfile.TemporaryDirectory(prefix="homevisits-") as folder,
    ):
        run_ = Run(ledger, transport, settings, now, Path(folder), out, err)
        history = History.of(ledger)
        ctx = context_for(checked.visits, checked.findings, checked.policy, settings, history, now)
        work: list[tuple[Planned, Entry | None]] = []
        broken: Exception | None = None  # a broken form template must not hold up the alerts
        pending = ledger.pending()
        withdrawn = withdrawals(pending, checked.visits, ctx)
        for entry in pending:
            if entry.key in withdrawn:
                run_.withdraw(entry, withdrawn[entry.key])
                continue
            try:
                again = rebuild(entry, checked.visits, ctx)
            except Exception as exc:  # stays pending; raised once the rest has gone
                broken = broken or exc
                continue
            if isinstance(again, str):
                run_.refuse(entry, _placeholder(entry), f"not sent: {again}")
            else:
                work.append((again, entry))
        if run_.tally.withdrawn:  # what was withdrawn may be planned anew (under a new key)
            ctx = replace(ctx, history=History.of(ledger))
        work += [(p, None) for p in plan_context(ctx, checked.visits, [j for j in jobs if j == "returns"])]
        try:
            work += [
                (p, None) for p in plan_context(ctx, checked.visits, [j for j in jobs if j != "returns"])
            ]
        except Exception as exc:
            broken = broken or exc
        work.sort(key=lambda item: item[0].priority)
        bar = Progress(len(work), "messages") if err.isatty() and len(work) >= PROGRESS_MIN else None
        for planned, entry in work:
            if run_.tally.stopped:
                break
            run_.deliver(planned, entry)
            if bar:
                bar.step()
        if bar:
            bar.done()
        if not run_.tally.stopped:
            ctx = replace(ctx, history=History.of(ledger))
            for report in failure_reports(ctx):
                if run_.tally.stopped:
                    break
                run_.deliver(report)
        write_back(checked, ledger, now, err)
    if broken is not None:
        raise broken
    tally = run_.tally
    if tally.stopped:
        print(f"homevisits: {tally.stopped}", file=err, flush=True)
    if tally.anything:
        print(tally.summary(), file=err, flush=True)
    elif err.isatty():
        print("Nothing to send.", file=err, flush=True)
    return tally.status


def _placeholder(entry: Entry) -> Planned:
    """A pending entry that cannot be rebuilt, for the run's report."""
    return Planned(entry.key, entry.visit_id, entry.kind, tuple(entry.recipients), (), "", "")
