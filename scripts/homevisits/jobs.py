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

import contextlib
import datetime as dt
import functools
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import mail
from .config import DEFAULT_TIMEZONE
from .errors import HomevisitsError
from .ledger import LedgerUnavailable
from .state import CANCELLED
from .visit_ids import visit_ref

if TYPE_CHECKING:
    from email.message import EmailMessage

    from .config import Config
    from .findings import Finding
    from .ledger import Entry, Ledger
    from .pipeline import Checked
    from .policy import Policy
    from .visits import Visits

JOBS = ("forms", "returns")
UNNAMED = "unnamed-"  # the ledger's reference for a row with no Visit ID yet: unnamed-<fingerprint>
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
    schedule, mail_cfg = dict(config.schedule or {}), dict(config.mail or {})
    window = schedule.get("window_days", (config.forms or {}).get("window_days", 14))
    return Settings(
        window_days=_number({"window_days": window}, "window_days", 14, "schedule"),
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


def _sms_settings(config: Config) -> Any:
    from .sms import sms_settings

    return sms_settings(config)


def _resolved_template_dir(config: Config) -> dict[str, str]:
    """``[forms] template_dir`` as a path from the config's folder (the forms are looked for there first)."""
    folder = (config.forms or {}).get("template_dir")
    return {"template_dir": str(config.resolve(folder))} if folder else {}


def deadline_hours(policy: Policy) -> float:
    """Hours before the start the form is due: the policy's ``[timings] form_deadline_hours``."""
    return policy.timings.form_deadline_hours


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
    documents: tuple[tuple[str, bytes], ...] = ()  # (.docx file name, filled Word form): PDF made when sent
    not_mailed: tuple[tuple[str, str], ...] = ()  # (address as typed, why): reported, never mailed
    due: dt.datetime | None = None  # an alert's due-back time: with the key, it gives the Message-ID
    row: int | None = None  # the visit's sheet row, named instead of an ID that is not header-safe
    texts: tuple[tuple[str, str], ...] = ()  # an alert's texts: (mobile in E.164, body), see sms.py

    @property
    def label(self) -> str:
        """The visit as headers, file names and logs name it: its ID if header-safe, else ``row-14``."""
        return visit_ref(self.visit_id, self.row)

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
        if finding.row is not None and finding.severity in BLOCKING and finding.rule != "HV009":
            problems.setdefault(finding.row, []).append(
                {"column": finding.column, "message": finding.message, "fix": finding.fix}
            )
    from . import safe_return

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


FINGERPRINT = ("visit_date", "start_time", "lead_staff", "learner_key")


def fingerprints(visits: Visits, positions: Iterable[int]) -> dict[int, str]:
    """A stable reference for each row at ``positions``, whatever its Visit ID: its date, start, lead
    staff and learner, hashed (so the ledger holds no names)."""
    import hashlib

    frame = visits.frame
    columns = [frame[name].to_numpy() for name in FINGERPRINT]
    found = {}
    for i in positions:
        parts = [columns[j][i] for j in range(len(FINGERPRINT))]
        text = "|".join("" if _missing(p) else " ".join(str(p).lower().split()) for p in parts)
        found[i] = UNNAMED + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    return found


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def visit_refs(visits: Visits) -> tuple[str, ...]:
    """Each row's reference in the ledger: its Visit ID, else its fingerprint. A Visit ID on two rows
    (a row copied for a new visit, HV019) is no single visit: each such row gets ``<ID>~<fingerprint>``,
    so yesterday's alert never stands for today's visit."""
    from collections import Counter

    ids = visits.frame["visit_id"].tolist()
    counts = Counter(visit_id for visit_id in ids if visit_id)
    apart = [i for i, visit_id in enumerate(ids) if not visit_id or counts[visit_id] > 1]
    found = fingerprints(visits, apart)
    return tuple(
        (found[i] if not visit_id else f"{visit_id}~{found[i].removeprefix(UNNAMED)}")
        if i in found
        else visit_id
        for i, visit_id in enumerate(ids)
    )


def visit_record(visits: Visits, ctx: Context, position: int) -> dict[str, Any]:
    """One row as the messages see it: its reference as ``visit_id``, its label, the safe-return state."""
    record = visits.record(position)
    typed = record.get("visit_id")
    record["visit_id"] = ctx.refs[position] if ctx.refs else typed
    record["label"] = mail.visit_text(typed, record.get("row")) if typed else f"row {record.get('row')}"
    record["position"] = position
    if ctx.overdue is not None:
        from .safe_return import Cells

        cells = Cells(visits)
        record["due_back_at"] = ctx.overdue.due.when(position)
        record["due_why"] = ctx.overdue.due.why(position, cells)
        record["return_doubt"] = ctx.overdue.back.doubt(position, cells)
    return record


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
        "visit_id": mail.visit_text(visit["visit_id"], visit.get("row")),
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
        subject=mail.subject(
            kind,
            visit.get("label") or visit.get("visit_id"),
            visit.get("start_at"),
            row=visit.get("row"),
            timezone=ctx.settings.timezone,
        ),
        text=text,
        not_mailed=not_mailed,
        row=visit.get("row"),
        **extra,
    )


def compose_form(visit: Mapping[str, Any], ctx: Context, key: str) -> Planned:
    """The form email: the HTML form as the body, each of the policy's forms attached as a PDF; a Word
    form attached as the .docx (to complete by hand) and its PDF when LibreOffice can make one."""
    from .forms import file_stem, form_settings, pdf_title, policy_template_dirs, render_form
    from .word_forms import check_form_names, word_documents

    template_dirs = policy_template_dirs(ctx.policy, ctx.settings.forms.get("template_dir"))
    extra = form_settings(
        ctx.policy, ctx.settings.forms, ctx.settings.school_table or {"name": ctx.settings.school}
    )
    school = ctx.settings.school or ctx.policy.name
    chosen = ctx.policy.forms or ["generic"]
    words = check_form_names(chosen, template_dirs)
    pages = tuple(
        (
            f"{file_stem(visit_ref(visit.get('visit_id'), visit.get('row')))}-{form}.pdf",
            render_form(
                form,
                visit,
                school=school,
                now=ctx.now,
                template_dirs=template_dirs,
                extra=extra,
                timezone=ctx.settings.timezone,
            ),
        )
        for form in chosen
        if words[form] is None
    )
    documents, word_titles, word_pdfs = word_documents(
        [f for f in chosen if words[f]],
        visit,
        school=school,
        now=ctx.now,
        template_dirs=template_dirs,
        extra=extra,
        timezone=ctx.settings.timezone,
    )
    titles = [pdf_title(page, "").removeprefix(" – ") for _, page in pages] + word_titles
    text_context = {
        **_base_context(visit, ctx),
        "deadline": form_deadline(visit.get("start_at"), ctx.deadline_hours),
        "clause": ctx.clause("HV009"),
        "form_title": "; ".join(titles),
        "attachment_name": ", ".join([name for name, _ in pages] + word_pdfs),
        "word_name": ", ".join(name for name, _ in documents),
        "html_body": bool(pages),
    }
    return _message(
        "form",
        key,
        visit,
        ctx,
        text_context,
        to=ctx.settings.forms_to,
        cc=(visit.get("staff_email"), visit.get("line_manager_email")),
        html=pages[0][1] if pages else None,
        pages=pages,
        documents=documents,
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
    kind: str,
    visit: Mapping[str, Any],
    ctx: Context,
    key: str,
    escalated_at: dt.datetime | None = None,
    unreachable: str | None = None,
) -> Planned:
    """The overdue-return alert (to the line manager) or its second stage (to SMT, else the admin):
    everything needed to act from a phone, the policy's escalation steps in order, what the sheet could
    not tell (a fallback due time, a Returned safely at that is not a return) and, for SMT, whether the
    line manager could be reached. ``unreachable``: why the first stage reached nobody."""
    location = _clean(visit.get("location_details"))
    address = ", ".join(v for v in (_clean(visit.get("address")), _clean(visit.get("postcode"))) if v)
    due = visit.get("due_back_at") or visit.get("return_due_at")
    overdue_minutes = None
    if due is not None:
        overdue_minutes = max(0, int((ctx.now - due.astimezone(dt.UTC)).total_seconds() // 60))
    text_context = {
        **_base_context(visit, ctx),
        "visit_id": visit.get("label") or visit["visit_id"],
        "expected_return": due,
        "minutes_overdue": overdue_minutes,
        "grace_minutes": f"{ctx.grace_minutes:g}",
        "escalation_steps": ctx.escalation,
        "clause": ctx.clause("HV022"),
        "staff_phone": _clean(visit.get("phone_taken")),
        "other_phone": _clean(visit.get("phone_taken_also")),
        "second_staff": _clean(visit.get("second_staff")),
        "line_manager": _clean(visit.get("line_manager")),
        "address": address or None,
        "location_type": _clean(visit.get("location_type")),
        "location": location or None,
        "learner_phone": _clean(visit.get("learner_phone")),
        "parent_phone": _clean(visit.get("parent_phone")),
        "escalated_at": escalated_at,
        "due_why": visit.get("due_why"),
        "return_doubt": visit.get("return_doubt"),
        "returned_header": ctx.header("returned_at"),
        "unreachable": unreachable,
    }
    manager = visit.get("line_manager_email")
    from .sms import alert_texts

    texts = alert_texts(kind, visit, ctx.settings.sms, ctx.now, ctx.settings.timezone)
    if kind == "smt_alert":
        return _message(
            kind,
            key,
            visit,
            ctx,
            text_context,
            to=ctx.settings.smt,
            cc=[manager] if _manager_reached(visit, ctx) else [],  # else their mailbox holds SMT's back
            fallback=ctx.settings.admin,
            due=due,
            texts=texts,
        )
    return _message(kind, key, visit, ctx, text_context, to=[manager], due=due, texts=texts)


def _manager_reached(visit: Mapping[str, Any], ctx: Context) -> bool:
    """The line manager's alert was accepted (or the sheet shows the first stage done)."""
    alert = _stage(visit, ctx, "overdue_alert")
    return alert.status == "sent" if alert is not None else _escalated(visit, ctx)


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
                "visit_id": mail.visit_text(e.visit_id),
                "kind": e.kind,
                "failed_at": e.failed_at,
                "error": e.error or "refused",
                "recipients": list(e.recipients) or ["(nobody)"],
            }
            for e in failures
        ],
        "not_mailed": [
            {"visit_id": mail.visit_text(visit_id), "address": a, "reason": r} for a, r in not_mailed
        ],
        "partly_refused": [
            {
                "visit_id": mail.visit_text(e.visit_id),
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
        if kind == "overdue_alert":
            return compose_alert(kind, visit, ctx, key)
        alert = _stage(visit, ctx, "overdue_alert")
        if alert is not None and alert.status == "failed":
            return compose_alert(kind, visit, ctx, key, unreachable=alert.error or "refused")
        return compose_alert(kind, visit, ctx, key, _alert_time(visit, ctx))
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


def return_conditions(visits: Visits, ctx: Context) -> list[Condition]:
    """Not called off, no readable safe return (an unreadable, future or too-early one is none), due back
    plus grace passed (a fallback due time when none can be read), started, not too old. Rows without a
    Visit ID count too (by fingerprint). Empty without the safe-return rule (HV022)."""
    import pandas as pd

    if ctx.overdue is None:
        return []
    overdue = ctx.overdue
    grace = overdue.due.timings.grace_minutes
    limit = overdue.due.series + pd.Timedelta(minutes=grace)
    instant = pd.Timestamp(ctx.now)
    series = functools.partial(pd.Series, index=visits.frame.index)
    return [
        Condition("returned safely", series(~overdue.back.confirmed)),
        *_not_called_off(visits.frame["status"]),
        Condition("no visit date", limit.notna()),
        Condition("not overdue", (limit < instant).fillna(False)),  # only a later due time fails it
        Condition("not started", series(overdue.started), True),
        Condition("overdue for too long", limit > instant - pd.Timedelta(hours=ctx.alert_hours), True),
    ]


def return_candidates(visits: Visits, ctx: Context) -> list[int]:
    """The rows check-returns looks at (``return_conditions``)."""
    conditions = return_conditions(visits, ctx)
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
    if deadline - ctx.now < dt.timedelta(hours=ctx.policy.timings.final_reminder_hours):
        if ctx.history.current(visit_id, "final_reminder") is not None:
            return None
        key = ctx.history.new_key(f"final_reminder:{visit_id}")
        return compose_chase("final_reminder", visit, ctx, key)
    last = ctx.history.last_time(visit_id, ("reminder", "final_reminder"))
    if last is not None and ctx.now - last < dt.timedelta(hours=ctx.policy.timings.reminder_hours):
        return None
    key = ctx.history.new_key(f"reminder:{visit_id}:{ctx.now:%Y-%m-%dT%H:%M}")
    return compose_chase("reminder", visit, ctx, key)


def _escalated(visit: Mapping[str, Any], ctx: Context) -> bool:
    """The sheet shows the first stage done (written back by a run, or typed in by staff): an Escalated
    at from the visit's start up to now. A time still to come, or one before the visit began, is a
    doubt, and a doubt never stands for an alert that went."""
    when = _utc(visit.get("escalated_at"))
    if when is None or when > ctx.now:
        return False
    start = _utc(visit.get("start_at"))
    return start is None or when >= start


def _stage(visit: Mapping[str, Any], ctx: Context, kind: str) -> Entry | None:
    """This visit's latest message of an alert stage. One queued before the visit started was about an
    earlier visit under the same Visit ID (a row reused for the next visit): it does not count."""
    entry = ctx.history.current(str(visit["visit_id"]), kind)
    start = _utc(visit.get("start_at"))
    if entry is not None and start is not None and entry.queued_at < start:
        return None
    return entry


def _stage_key(visit: Mapping[str, Any], ctx: Context, kind: str) -> str:
    """``overdue_alert:V1``; when an earlier visit under the same ID holds that key, one of this visit's
    own (``overdue_alert:V1@2026-11-30T09:00``), so the ledger never takes it for the old one."""
    key = ctx.history.new_key(f"{kind}:{visit['visit_id']}")
    held = ctx.history.get(key)
    start = _utc(visit.get("start_at"))
    if held is not None and start is not None and held.queued_at < start:
        key = ctx.history.new_key(f"{kind}:{visit['visit_id']}@{start:%Y-%m-%dT%H:%M}")
    return key


def _alert_time(visit: Mapping[str, Any], ctx: Context) -> dt.datetime | None:
    """When the line manager's alert went (or was first queued, if it is still being retried: the SMT
    stage never waits on a mail server), else the sheet's Escalated at."""
    alert = _stage(visit, ctx, "overdue_alert")
    if alert is not None:
        return alert.sent_at or alert.queued_at
    return _utc(visit.get("escalated_at")) if _escalated(visit, ctx) else None


def return_step(visit: Mapping[str, Any], ctx: Context) -> Planned | None:
    """The overdue-return stage one visit is due: the alert to the line manager, then SMT, each once.

    The chain never dead-ends: when the line manager's alert reached nobody (refused for good, or no
    usable address), SMT is alerted at once and told why."""
    visit_id = str(visit["visit_id"])
    alert = _stage(visit, ctx, "overdue_alert")
    if alert is None and not _escalated(visit, ctx):
        return compose_alert("overdue_alert", visit, ctx, _stage_key(visit, ctx, "overdue_alert"))
    if _stage(visit, ctx, "smt_alert") is not None:
        return None
    key = _stage_key(visit, ctx, "smt_alert")
    if alert is not None and alert.status == "failed" and not texted(ctx, visit_id, "overdue_alert"):
        return compose_alert("smt_alert", visit, ctx, key, unreachable=alert.error or "refused")
    alerted = _alert_time(visit, ctx)
    if alerted is None or ctx.now - alerted <= dt.timedelta(minutes=ctx.policy.timings.smt_after_minutes):
        return None
    return compose_alert("smt_alert", visit, ctx, key, alerted)


VISIT_KINDS = ("form", "reminder", "final_reminder", "deadline_missed", "overdue_alert", "smt_alert")
ALERTS = ("overdue_alert", "smt_alert")
TEXTS = {"overdue_text": "overdue_alert", "smt_text": "smt_alert"}  # an alert stage's texts (sms.py)
# Entries sms.py / checkin.py keep: never rebuilt by ``rebuild`` (a pending duress alert comes back with
# its text, which is processed again; a pending safe notice is not sent again).
TEXT_ENTRIES = (*TEXTS, "duress_text", "inbound_text", "reply_text", "duress_alert", "safe_notice")


def texted(ctx: Context, visit_id: str, stage: str) -> bool:
    """A text of this alert stage was accepted: the stage reached someone even if its email did not."""
    kinds = [kind for kind, of in TEXTS.items() if of == stage]
    return any(e.status == "sent" for e in ctx.history.of_visit(visit_id, kinds))


def withdrawals(entries: Iterable[Entry], visits: Visits, ctx: Context) -> dict[str, str]:
    """The pending messages that no longer apply to their visit as the sheet shows it now: key -> why.

    Judged by the planner's own tests (``form_conditions``, ``return_conditions``, ``_form_sent``,
    ``_ready``, ``_escalated``, the deadline); only a change in the sheet withdraws a message, never
    the clock alone. A visit no longer in the sheet is left to ``rebuild`` (reported, not sent)."""
    forms = functools.cache(lambda: form_conditions(visits, ctx.settings, ctx.now))
    returns = functools.cache(lambda: return_conditions(visits, ctx))
    found = {}
    for entry in entries:
        position = ctx.position(entry.visit_id)
        if entry.kind not in VISIT_KINDS or position is None:
            continue
        conditions = returns() if entry.kind in ALERTS else forms()
        if not conditions:
            continue
        reason = _failed(conditions, position) or _no_longer_due(
            entry.kind, visit_record(visits, ctx, position), ctx
        )
        if reason is not None:
            found[entry.key] = reason
    return found


def _no_longer_due(kind: str, visit: Mapping[str, Any], ctx: Context) -> str | None:
    """Why form_step or return_step would not plan this kind for a candidate row, by the sheet alone."""
    if kind in ALERTS:
        return "Escalated at filled in" if kind == "overdue_alert" and _escalated(visit, ctx) else None
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
    steps = (
        form_step(visit_record(visits, ctx, i), ctx) for i in form_candidates(visits, ctx.settings, ctx.now)
    )
    return [step for step in steps if step is not None]


def returns_due(visits: Visits, ctx: Context) -> list[Planned]:
    steps = (return_step(visit_record(visits, ctx, i), ctx) for i in return_candidates(visits, ctx))
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
            path = render_pdf(page, folder / name, visit_id=planned.label)
            attachments.append((name, path.read_bytes(), "application/pdf"))
        if planned.documents:
            from .word_forms import word_attachments

            attachments += word_attachments(planned.documents, folder)
    return mail.build_message(
        sender=("Home visits", settings.sender),
        to=list(planned.to),
        cc=list(planned.cc),
        subject=planned.subject,
        text=planned.text,
        html=planned.html,
        attachments=attachments,
        message_id=message_id,
        visit_id=planned.label,
        kind=planned.kind,
        date=now,
    )


def describe(planned: Planned) -> str:
    """``HV-0042 form to 3 recipients``: visit ID, kind and count only."""
    count = len(planned.recipients)
    return f"{planned.label} {planned.kind} to {count} recipient{'' if count == 1 else 's'}"


def nobody(planned: Planned) -> str:
    """Why a message has nobody to go to, naming what the sheet or the settings hold."""
    if planned.not_mailed:
        reasons = sorted({why for _, why in planned.not_mailed})
        return f"nobody to send it to: the address in the sheet is {' or '.join(reasons)}"
    if planned.kind == "overdue_alert":
        return "nobody to send it to: the sheet has no line manager email for this visit"
    return "nobody to send it to: no address in the sheet or the [mail] settings is inside allowed_domains"


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
    waiting: int = 0  # forms and reminders held back while the ledger cannot be used
    stopped: str | None = None  # why sending stopped early (the mail server cannot be used)

    @property
    def status(self) -> int:
        failed = self.queued or self.refused or self.not_mailed or self.partly_refused
        return 1 if (failed or self.stopped) else 0

    @property
    def anything(self) -> bool:
        return bool(
            self.sent or self.queued or self.refused or self.not_mailed or self.withdrawn or self.waiting
        )

    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.partly_refused:
            parts.append(f"{self.partly_refused} with recipient(s) refused for good")
        if self.withdrawn:
            parts.append(f"{self.withdrawn} withdrawn (no longer applied)")
        if self.waiting:
            parts.append(f"{self.waiting} form(s) and reminder(s) waiting for the ledger")
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
        self.problem: str | None = None  # the ledger failed during the run: why (exit 2)
        self.accepted: str | None = None  # the key of the message the server accepted last
        from .sms import TextTally, open_channel

        self.texter = open_channel(settings.sms)  # None without [sms]
        self.texts = TextTally()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"homevisits: {text}", file=self.err, flush=True)

    def deliver(self, planned: Planned, entry: Entry | None = None) -> None:
        """Queue (unless retrying), send, record. A ConnectionFailure stops the run's sending.

        When the ledger fails, the run goes on with a ledger in memory: alerts still go (an alert the
        server already accepted is not sent again), everything else waits for a working ledger."""
        if self.problem is not None and planned.kind not in (*ALERTS, "duress_alert"):
            self.tally.waiting += 1
            return
        try:
            self._deliver(planned, entry)
            self.text(planned)
        except LedgerUnavailable as exc:
            self.degrade(exc)
            if planned.kind not in (*ALERTS, "duress_alert"):
                self.tally.waiting += 1
                return
            if self.accepted == planned.key:  # the server has it: record it, do not send it again
                held = self.ledger.queue(
                    planned.key,
                    planned.visit_id,
                    planned.kind,
                    planned.recipients,
                    self.now,
                    self.msgid(planned),
                )
                self.ledger.mark_sent(held.key, self.now)
                self.text(planned)  # the in-memory ledger does not know its texts: a repeat, never a loss
                return
            self._deliver(planned, None)
            self.text(planned)

    def text(self, planned: Planned) -> None:
        """An alert's texts, beside its email (each once, by the ledger); never holds up the email."""
        from .sms import TEXT_KINDS, send_texts

        if self.texter is None or not planned.texts or planned.kind not in TEXT_KINDS:
            return

        send_texts(
            self.ledger,
            self.texter,
            planned.key,
            planned.kind,
            planned.visit_id,
            planned.texts,
            self.now,
            self.texts,
            self.say,
        )

    def degrade(self, exc: LedgerUnavailable) -> None:
        """Carry on without the ledger file (see ``deliver``)."""
        from .ledger import Ledger

        if self.problem is None:
            self.problem = (
                f"{exc.sentence()} Alerts were still sent; forms and reminders wait until it is fixed."
            )
            self.ledger = Ledger.in_memory(sender=self.settings.sender)
            self.warn(f"the ledger failed during the run ({exc.cause}): sending alerts only.")

    def msgid(self, planned: Planned) -> str | None:
        """Alerts carry a Message-ID derived from their key and due time; other kinds get a new one."""
        from .ledger import alert_message_id, msgid_domain

        if planned.kind not in ALERTS:
            return None
        return alert_message_id(planned.key, planned.due, msgid_domain(self.settings.sender))

    def _deliver(self, planned: Planned, entry: Entry | None = None) -> None:
        if entry is None:
            if planned.not_mailed:
                self.tally.not_mailed += len(planned.not_mailed)
                told = (
                    "the admin is told" if self.settings.admin else "set admin in [mail] to be told by email"
                )
                self.warn(
                    f"{planned.label} {planned.kind}: {len(planned.not_mailed)} address(es) from the sheet "
                    f"are outside allowed_domains or not email addresses and were not mailed ({told})."
                )
            entry = self.ledger.queue(
                planned.key, planned.visit_id, planned.kind, planned.recipients, self.now, self.msgid(planned)
            )
            if entry.status != "pending":
                return
        if not planned.recipients:
            self.refuse(entry, planned, nobody(planned))
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
            self.accepted = planned.key
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
            f"{planned.label} {planned.kind}: the mail server refused {len(refused)} of "
            f"{len(planned.recipients)} recipients for good ({replies}); the others received it ({told})."
        )

    def withdraw(self, entry: Entry, reason: str) -> None:
        """A pending message that no longer applies: recorded as withdrawn, never sent."""
        self.ledger.mark_withdrawn(entry.key, self.now, reason)
        self.tally.withdrawn += 1
        self.say(f"withdrawn: {visit_ref(entry.visit_id)} {entry.kind} ({reason})")

    def refuse(self, entry: Entry, planned: Planned, error: str, reply: str = "") -> None:
        self.ledger.mark_failed(entry.key, self.now, error, permanent=True)
        self.tally.refused += 1
        self.say(f"refused for good: {describe(planned)}{f' ({reply})' if reply else ''}")
        if not self.settings.admin and planned.kind != "admin_report":
            self.warn(
                f"{planned.label} {planned.kind} will not be retried: {error} (set admin in [mail] "
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
            position = ctx.position(entry.visit_id)
            if base is None or position is None:
                return "the visit is no longer in the sheet"
            again = compose(base.kind, visit_record(visits, ctx, position), ctx, base.key)
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
        position = ctx.position(entry.visit_id)
        if position is None:
            return "the visit is no longer in the sheet"
        planned = compose(entry.kind, visit_record(visits, ctx, position), ctx, entry.key)
    held = {a.lower() for a in entry.recipients}
    to = tuple(a for a in planned.to if a.lower() in held)
    cc = tuple(a for a in planned.cc if a.lower() in held)
    placed = {a.lower() for a in (*to, *cc)}
    to += tuple(a for a in entry.recipients if a.lower() not in placed)
    return replace(planned, to=to, cc=cc, not_mailed=())


# ---------------------------------------------------------------- write-back


def write_back(checked: Checked, ledger: Ledger, now: dt.datetime, err: TextIO, sent: int = 0) -> None:
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
        went = f"{sent} message(s) went, but " if sent else ""
        print(f"homevisits: {went}the sheet was not updated: {exc}", file=err, flush=True)
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
    """send-forms, check-returns or both: 0 all went (or nothing to do), 1 something was not sent or an
    alert could not be fully worked out, 2 the ledger could not be used (alerts went all the same)."""
    from .ledger import RunInProgress, run_lock

    out, err = out or sys.stdout, err or sys.stderr
    settings = settings_from(config)
    if not settings.allowed_domains:
        raise HomevisitsError(
            '[mail] needs allowed_domains = ["your-school.example"]: homevisits only mails addresses in them.'
        )
    if dry_run:
        return _dry_run(config, now, jobs, settings, out, err)
    with contextlib.ExitStack() as stack:
        problem: LedgerUnavailable | None = None
        try:
            stack.enter_context(run_lock(config.ledger_path))
        except RunInProgress as exc:
            print(f"homevisits: {exc}", file=err, flush=True)
            return 0
        except LedgerUnavailable as exc:  # no lock can be taken there: the ledger cannot be used either
            problem = exc
        if tuple(jobs) != JOBS:  # send-forms or check-returns by hand; run-scheduled is watched
            return _run_locked(config, now, jobs, settings, out, err, problem)
        from .heartbeat import watched

        return watched(config, now, lambda: _run_locked(config, now, jobs, settings, out, err, problem), err)
    raise AssertionError("unreachable")


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
    from .activity import read_ledger
    from .pipeline import load

    checked = load(config, now)
    if "returns" in jobs:
        checked.require_return_columns()  # never watch returns blind (issue 11, item 4)
    _nothing_to_do(checked, settings, jobs, out)
    entries = read_ledger(config.ledger_path) or []  # read-only: a rehearsal never writes the ledger
    history = History(tuple(entries))
    pending = [e for e in entries if e.status == "pending" and e.kind not in TEXT_ENTRIES]
    ctx = context_for(checked.visits, checked.findings, checked.policy, settings, history, now)
    lines = []
    withdrawn = withdrawals(pending, checked.visits, ctx)
    for entry in pending:
        if entry.key in withdrawn:
            lines.append(f"would withdraw: {visit_ref(entry.visit_id)} {entry.kind} ({withdrawn[entry.key]})")
            continue
        again = rebuild(entry, checked.visits, ctx)
        lines.append(
            f"would send again: {describe(again)}"
            if isinstance(again, Planned)
            else f"would report: {visit_ref(entry.visit_id)} {entry.kind} ({again})"
        )
    if withdrawn:  # planned as the run would, after withdrawing
        entries = tuple(
            replace(e, withdrawn_at=ctx.now, withdrawn_reason=withdrawn[e.key]) if e.key in withdrawn else e
            for e in history.entries
        )
        ctx = replace(ctx, history=History(entries))
    for planned in plan_context(ctx, checked.visits, jobs):
        if not planned.recipients:
            lines.append(f"would not send: {planned.label} {planned.kind} ({nobody(planned)})")
            continue
        message = build(planned, DRY_RUN_ID, settings, now, None)
        lines.append(f"would send: {mail.describe(message)}")
        if planned.texts and settings.sms is not None:
            lines.append(f"would text: {planned.visit_id} {planned.kind} to {len(planned.texts)} mobile(s)")
        if planned.not_mailed:
            lines.append(
                f"would not mail: {len(planned.not_mailed)} address(es) of {planned.label} {planned.kind} "
                "(outside allowed_domains or not an email address)"
            )
    if "returns" in jobs:
        lines += [f"cannot tell: {line}" for line in doubts(checked.visits, ctx)]
    unnamed = int(checked.visits.frame["visit_id"].isna().sum())
    if unnamed:
        lines.append(
            f"{unnamed} row(s) have no Visit ID: a run gives them one (their alerts go meanwhile, "
            "by sheet row), and the run after handles their forms"
        )
    for line in lines or ["Nothing would be sent."]:
        print(line, file=out, flush=True)
    return 0


def doubts(visits: Visits, ctx: Context) -> list[str]:
    """What the safe-return loop could not read for visits it watches now or soon: a fallback due time
    (each said, and the run exits 1 so cron's MAILTO sees it), or no visit date to place it in time."""
    import numpy as np

    from .safe_return import FALLBACKS, MINUTE, NAT, Cells

    if ctx.overdue is None:
        return []
    overdue, moment = ctx.overdue, ctx.overdue.back.now
    window = int(ctx.settings.window_days * 1440 * MINUTE)
    since = moment - int(ctx.alert_hours * 60 * MINUTE)
    at = overdue.due.at
    soon = (at != NAT) & (at > since) & (at < moment + window)
    fallback = overdue.live & ~overdue.back.confirmed & np.isin(overdue.due.basis, FALLBACKS) & soon
    cells, lines = Cells(visits), []
    for i in np.flatnonzero(fallback).tolist():
        lines.append(f"{_where(visits, ctx, i)}: {overdue.due.why(i, cells)}")
    for i in np.flatnonzero(overdue.unplaced).tolist():
        date = visits.header("visit_date")
        how = "is not a date" if visits.unreadable("visit_date")[i] else "is blank"
        lines.append(f"{_where(visits, ctx, i)}: {date} {how}, so its safe return cannot be watched.")
    return lines


def _where(visits: Visits, ctx: Context, position: int) -> str:
    row = int(visits.frame["row"].iat[position])
    ref = ctx.refs[position]
    return f"row {row}" if ref.startswith(UNNAMED) else f"{ref} (row {row})"


STAGES = {"overdue_alert": "the line manager's alert", "smt_alert": "the SMT alert"}


def undelivered(ctx: Context, visits: Visits) -> list[str]:
    """Overdue visits with an alert stage that has reached nobody: refused for good, or still queued."""
    lines = []
    for i in return_candidates(visits, ctx):
        start = _utc(visits.record(i).get("start_at"))
        for entry in ctx.history.of_visit(ctx.refs[i], ALERTS):
            if start is not None and entry.queued_at < start:
                continue  # about an earlier visit under the same Visit ID
            if texted(ctx, ctx.refs[i], entry.kind):
                continue  # its text went: the stage reached someone
            if entry.status == "failed":
                why = f"reached nobody ({entry.error or 'refused'})"
            elif entry.status == "pending":
                why = "has not been accepted by the mail server yet"
            else:
                continue
            lines.append(f"{_where(visits, ctx, i)}: {STAGES[entry.kind]} {why}.")
    return lines


def carry_over(ledger: Ledger, visits: Visits) -> None:
    """Alerts sent for a row before it had a Visit ID now belong to that ID."""
    kept = ledger.visit_ids(UNNAMED)
    if not kept:
        return
    ids = visits.frame["visit_id"].tolist()
    named = fingerprints(visits, [i for i, visit_id in enumerate(ids) if visit_id])
    renames = {fp: ids[i] for i, fp in named.items() if fp in kept}
    ledger.carry_over(renames)


def _run_locked(
    config: Config,
    now: dt.datetime,
    jobs: Sequence[str],
    settings: Settings,
    out: TextIO,
    err: TextIO,
    problem: LedgerUnavailable | None = None,
) -> int:
    from .forms import PROGRESS_MIN, Progress
    from .ledger import Ledger, open_or_recover
    from .pipeline import load

    transport = mail.open_transport(config.mail, config.base_dir)  # settings checked before any read
    checked = load(config, now)
    if "returns" in jobs:
        checked.require_return_columns()  # never watch returns blind (issue 11, item 4)
    _nothing_to_do(checked, settings, jobs, err, returns=tuple(jobs) == ("returns",))
    if problem is None:
        ledger, trouble = open_or_recover(config.ledger_path, now, sender=settings.sender)
        notice = None if ledger.in_memory_only else trouble  # moved aside: a new ledger, a full run
    else:
        notice = None
        ledger = Ledger.in_memory(sender=settings.sender)
        trouble = f"{problem.sentence()} Alerts were still sent this run; forms and reminders wait until it is fixed."
    with transport, ledger, tempfile.TemporaryDirectory(prefix="homevisits-") as folder:
        run_ = Run(ledger, transport, settings, now, Path(folder), out, err)
        if ledger.in_memory_only:
            run_.problem = trouble
        visits = checked.visits
        broken: Exception | None = None  # a broken form template must not hold up the alerts
        checkins, duress, safe = None, [], []
        if "returns" in jobs and run_.texter is not None and settings.sms.inbound:
            checkins, duress, safe, checked = check_in(run_, checked, config, settings, now)
            visits = checked.visits
        try:
            carry_over(ledger, visits)
            history = History.of(ledger)
            pending = [e for e in ledger.pending() if e.kind not in TEXT_ENTRIES]
            texts_pending = [e for e in ledger.pending() if e.kind in TEXTS]
        except LedgerUnavailable as exc:
            run_.degrade(exc)
            history, pending, texts_pending = History(), [], []
        ctx = context_for(visits, checked.findings, checked.policy, settings, history, now)
        work: list[tuple[Planned, Entry | None]] = []
        withdrawn = withdrawals(pending, visits, ctx)
        for entry in pending:
            if entry.key in withdrawn:
                run_.withdraw(entry, withdrawn[entry.key])
                continue
            try:
                again = rebuild(entry, visits, ctx)
            except Exception as exc:  # stays pending; raised once the rest has gone
                broken = broken or exc
                continue
            if isinstance(again, str):
                run_.refuse(entry, _placeholder(entry), f"not sent: {again}")
            else:
                work.append((again, entry))
        if run_.tally.withdrawn:  # what was withdrawn may be planned anew (under a new key)
            ctx = replace(ctx, history=History.of(run_.ledger))
        work += [(p, None) for p in plan_context(ctx, visits, [j for j in jobs if j == "returns"])]
        try:
            work += [(p, None) for p in plan_context(ctx, visits, [j for j in jobs if j != "returns"])]
        except Exception as exc:
            broken = broken or exc
        work.sort(key=lambda item: item[0].priority)
        bar = Progress(len(work), "messages") if err.isatty() and len(work) >= PROGRESS_MIN else None
        for planned, entry in work:
            if run_.tally.stopped:
                run_.text(planned)  # the mail server cannot be used: an alert's texts still go
                continue
            run_.deliver(planned, entry)
            if bar:
                bar.step()
        if bar:
            bar.done()
        if "returns" in jobs:
            retry_texts(run_, texts_pending, visits, ctx)
            duress_alerts(run_, duress, visits, ctx)
            safe_notices(run_, safe, visits, ctx)
        if "returns" in jobs and not run_.tally.stopped:
            # A first stage that reached nobody this run: SMT is alerted now, not at the next run.
            ctx = replace(ctx, history=History.of(run_.ledger))
            for planned in plan_context(ctx, visits, ["returns"]):
                if run_.tally.stopped:
                    break
                run_.deliver(planned)
        if not run_.tally.stopped:
            ctx = replace(ctx, history=History.of(run_.ledger))
            for report in failure_reports(ctx):
                if run_.tally.stopped:
                    break
                run_.deliver(report)
        ctx = replace(ctx, history=History.of(run_.ledger))
        unsure = doubts(visits, ctx) if "returns" in jobs else []
        unsent = undelivered(ctx, visits) if "returns" in jobs else []
        write_back(checked, run_.ledger, now, err, run_.tally.sent)
    if broken is not None:
        raise broken
    tally = run_.tally
    if tally.stopped:
        print(f"homevisits: {tally.stopped}", file=err, flush=True)
    for line in (*unsure, *unsent):
        print(f"homevisits: {line}", file=err, flush=True)
    if tally.anything:
        print(tally.summary(), file=err, flush=True)
    elif err.isatty():
        print("Nothing to send.", file=err, flush=True)
    if run_.problem is not None or notice is not None:
        print(f"homevisits: {run_.problem or notice}", file=err, flush=True)
        return 2
    texts = run_.texts
    if texts.sent or texts.queued or texts.refused:
        print(
            f"Texts: {texts.sent} sent, {texts.queued} queued for the next run, {texts.refused} refused for good.",
            file=err,
            flush=True,
        )
    unread = checkins is not None and checkins.unread
    return 1 if (unsure or unsent or texts.queued or texts.refused or unread) else tally.status


def check_in(run_: Run, checked: Checked, config: Config, settings: Settings, now: dt.datetime) -> Any:
    """Staff texts (checkin.py): recorded in the sheet first, then the sheet read again so the alerts
    see the safe returns just texted in. (tally, duress outcomes, the sheet as read)."""
    from .checkin import process
    from .pipeline import load

    try:
        tally, duress, safe = process(
            run_.ledger,
            run_.texter,
            checked,
            settings.sms.duress_word,
            settings.timezone,
            now,
            run_.say,
            run_.warn,
        )
    except LedgerUnavailable as exc:
        run_.degrade(exc)
        return None, [], [], checked
    if tally.recorded:
        checked = load(config, now)
    if tally.read:
        print(
            f"Staff texts: {tally.read} read, {tally.recorded} recorded in the sheet, "
            f"{tally.unknown} from unknown numbers.",
            file=run_.err,
            flush=True,
        )
    return tally, duress, safe, checked


def duress_alerts(run_: Run, outcomes: Sequence[Any], visits: Visits, ctx: Context) -> None:
    from .checkin import duress_alert

    for outcome in outcomes:
        planned = duress_alert(outcome, visits, ctx)
        if planned is None:
            run_.warn(
                f"a duress text came from a phone with no visit in the sheet today ({outcome.visit_id})."
            )
            continue
        run_.warn(f"DURESS: {planned.visit_id}: the duress word was texted; line manager and SMT alerted.")
        run_.deliver(planned)
        from .checkin import record

        record(run_.ledger, outcome, run_.now)  # processed only once its alert is in the ledger


def safe_notices(run_: Run, outcomes: Sequence[Any], visits: Visits, ctx: Context) -> None:
    """A safe return texted in after an alert went: the people the alert emailed are told, once."""
    from .checkin import safe_notice
    from .sms import safe_label

    for outcome in outcomes:
        alerted = [
            e for e in run_.ledger.entries(outcome.visit_id) if e.kind in ALERTS and e.status == "sent"
        ]
        to = tuple(dict.fromkeys(a for e in alerted for a in e.recipients))
        position = ctx.position(outcome.visit_id)
        if not to or position is None:
            continue
        label = safe_label(visit_record(visits, ctx, position))
        text = f"{safe_notice(visits, outcome, ctx.settings.timezone)}\n\nThe overdue-return alert for {label} is closed: the staff member texted SAFE.\n"
        subject = mail.clean_text(f"Safe return confirmed: home visit {label}")
        run_.deliver(
            Planned(
                f"safe_notice:{outcome.inbound.id}", outcome.visit_id, "safe_notice", to, (), subject, text
            )
        )


def retry_texts(run_: Run, entries: Sequence[Entry], visits: Visits, ctx: Context) -> None:
    """Texts still pending from an earlier run: sent again while their visit is still overdue, else
    withdrawn (a safe return, a cancelled visit)."""
    candidates = set(return_candidates(visits, ctx)) if entries else set()
    for entry in entries:
        stage = TEXTS[entry.kind]
        alert_key = stage + entry.key[len(entry.kind) : entry.key.rindex(":")]
        position = ctx.position(entry.visit_id)
        if position is None or position not in candidates:
            run_.ledger.mark_withdrawn(entry.key, run_.now, "no longer overdue")
            continue
        planned = compose(stage, visit_record(visits, ctx, position), ctx, alert_key)
        held = set(entry.recipients)
        run_.text(replace(planned, texts=tuple(t for t in planned.texts if t[0] in held)))


def _placeholder(entry: Entry) -> Planned:
    """A pending entry that cannot be rebuilt, for the run's report."""
    return Planned(entry.key, entry.visit_id, entry.kind, tuple(entry.recipients), (), "", "")
