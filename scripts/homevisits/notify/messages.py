"""Compose each kind of message from structured data and the templates: a :class:`Planned` message.

The form (HTML body, PDFs, Word forms), the chases (reminder, final reminder, missed deadline), the
overdue-return alerts (line manager, then SMT) and the admin's reports. Recipients are checked here
(inside allowed_domains, never a Cc repeating a To); what is left out is kept, with why, to report.
``build`` turns a planned message into the email (PDFs rendered only when given a folder).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import mail
from ..timings import form_deadline
from ..visit_ids import visit_ref
from .history import alert_time, escalated, stage_entry

if TYPE_CHECKING:
    from email.message import EmailMessage

    from ..ledger import Entry
    from .context import Context
    from .options import Settings

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


REFUSED = "refused:"  # admin_report:refused:<key>: the report on recipients refused while <key> went


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
    from ..forms import file_stem, form_settings, pdf_title, policy_template_dirs, render_form
    from ..word_forms import check_form_names, word_documents

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
    from ..sms import alert_texts

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
    alert = stage_entry(visit, ctx, "overdue_alert")
    return alert.status == "sent" if alert is not None else escalated(visit, ctx)


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
        alert = stage_entry(visit, ctx, "overdue_alert")
        if alert is not None and alert.status == "failed":
            return compose_alert(kind, visit, ctx, key, unreachable=alert.error or "refused")
        return compose_alert(kind, visit, ctx, key, alert_time(visit, ctx))
    raise ValueError(f"no visit message of kind {kind!r}")


def build(
    planned: Planned, message_id: str, settings: Settings, now: dt.datetime, folder: Path | None
) -> EmailMessage:
    """The email for a planned message; PDFs are rendered into ``folder`` (None: no attachments)."""
    attachments = []
    if folder is not None:
        from ..forms import render_pdf

        for name, page in planned.pages:
            path = render_pdf(page, folder / name, visit_id=planned.label)
            attachments.append((name, path.read_bytes(), "application/pdf"))
        if planned.documents:
            from ..word_forms import word_attachments

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
