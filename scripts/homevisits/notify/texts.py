"""The run's text glue: staff check-in texts (checkin.py) read before the plan, and after the
delivery the duress alerts, the safe-return notices and the alert texts still pending from earlier runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import mail
from ..ledger import LedgerUnavailable
from .context import visit_record
from .history import ALERTS, TEXTS
from .messages import Planned, compose, compose_alert, split_recipients
from .steps import return_candidates

if TYPE_CHECKING:
    from ..checkin import Outcome
    from ..config import Config
    from ..ledger import Entry
    from ..pipeline import Checked
    from ..visits import Visits
    from .context import Context
    from .deliver import Run
    from .options import Settings


def check_in(run_: Run, checked: Checked, config: Config, settings: Settings, now: dt.datetime) -> Any:
    """Staff texts (checkin.py): recorded in the sheet first, then the sheet read again so the alerts
    see the safe returns just texted in. (tally, duress outcomes, the sheet as read)."""
    from ..checkin import process
    from ..pipeline import load

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
    """Each duress text's alert, delivered at once; the text counts as processed only after."""
    for outcome in outcomes:
        planned = duress_alert(outcome, visits, ctx)
        if planned is None:
            run_.warn(
                f"a duress text came from a phone with no visit in the sheet today ({outcome.visit_id})."
            )
            continue
        run_.warn(f"DURESS: {planned.visit_id}: the duress word was texted; line manager and SMT alerted.")
        run_.deliver(planned)
        from ..checkin import record

        record(run_.ledger, outcome, run_.now)  # processed only once its alert is in the ledger


def safe_notices(run_: Run, outcomes: Sequence[Any], visits: Visits, ctx: Context) -> None:
    """A safe return texted in after an alert went: the people the alert emailed are told, once."""
    from ..checkin import safe_notice
    from ..sms import safe_label

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


def duress_alert(outcome: Outcome, visits: Visits, ctx: Context) -> Planned | None:
    """The DURESS alert for a text holding the duress word: to the line manager and SMT by email and
    text, at once, regardless of grace or status, with the address (email only) and the phones.
    None when the text's visit is not in the sheet (the run says so)."""
    from zoneinfo import ZoneInfo

    from ..sms import _plain, alert_texts, safe_label

    position = ctx.position(outcome.visit_id)
    if position is None:
        return None
    visit = visit_record(visits, ctx, position)
    key = f"duress:{outcome.inbound.id}"
    base = compose_alert("smt_alert", visit, ctx, key)
    local = outcome.inbound.received_at.astimezone(ZoneInfo(ctx.settings.timezone))
    staff = _plain(visit.get("lead_staff")) or "The staff member"
    said = f"DURESS: {staff} texted the school's duress word at {local:%H:%M}. Act now, whatever the expected return."
    to, cc, _ = split_recipients(
        [visit.get("line_manager_email"), *ctx.settings.smt], (), ctx.settings.allowed_domains
    )
    phone = _plain(visit.get("phone_taken"))
    body = (
        f"DURESS home visit {safe_label(visit)}: {staff} texted the duress word at {local:%H:%M}. "
        f"Act now.{f' Phone taken: {phone}.' if phone else ''} Address in your email."
    )
    numbers = [
        n for n, _ in alert_texts("overdue_alert", visit, ctx.settings.sms, ctx.now, ctx.settings.timezone)
    ]
    numbers += [n for n in ctx.settings.sms.smt if n not in numbers]
    return replace(
        base,
        kind="duress_alert",
        to=to or base.to,
        cc=cc,
        subject=f"DURESS {base.subject}",
        text=f"{said}\n\n{base.text}",
        texts=tuple((n, body) for n in numbers),
    )
