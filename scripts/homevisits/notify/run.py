"""A run of the scheduled jobs: lock, read the sheet once, plan, deliver, write back, heartbeat.

``--dry-run`` walks the same road up to the plan and prints it instead of delivering it: the plan the
real run would execute (``plan.plan``), never a second implementation of its steps. The real run then
has follow-ups that depend on what the mail server answered: a first alert stage refused during this
run brings SMT in at once, refusals are reported to the admin, and what still reached nobody is said.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import transports
from ..errors import HomevisitsError
from ..ledger import LedgerUnavailable
from .deliver import Run, placeholder, write_back
from .history import TEXTS, History, carry_over
from .options import Settings, settings_from
from .plan import JOBS, RunPlan, failure_reports, new_messages, plan, undelivered
from .texts import check_in, duress_alerts, retry_texts, safe_notices

if TYPE_CHECKING:
    from ..config import Config
    from ..ledger import Ledger
    from ..pipeline import Checked
    from ..visits import Visits


def run(
    config: Config,
    now: dt.datetime,
    jobs: Sequence[str] = JOBS,
    *,
    dry_run: bool = False,
    explain: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """send-forms, check-returns or both: 0 all went (or nothing to do), 1 something was not sent or an
    alert could not be fully worked out, 2 the ledger could not be used (alerts went all the same).
    ``explain`` (with ``dry_run``): each line of the plan with its reason, and the rows left alone."""
    from ..ledger import RunInProgress, run_lock

    out, err = out or sys.stdout, err or sys.stderr
    settings = settings_from(config)
    if not settings.allowed_domains:
        raise HomevisitsError(
            '[mail] needs allowed_domains = ["your-school.example"]: homevisits only mails addresses in them.'
        )
    if dry_run:
        return _dry_run(config, now, jobs, settings, out, explain)
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
        from ..heartbeat import watched

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


def _load(config: Config, now: dt.datetime, jobs: Sequence[str]) -> Checked:
    """The sheet, read once and checked; never watch returns blind (issue 11, item 4)."""
    from ..pipeline import load

    checked = load(config, now)
    if "returns" in jobs:
        checked.require_return_columns()
    return checked


def _plan(
    checked: Checked, history: History, settings: Settings, now: dt.datetime, jobs: Sequence[str]
) -> RunPlan:
    """The one plan both a run and a dry run take."""
    return plan(checked.visits, history, settings, now, checked.policy, checked.findings, jobs)


def _dry_run(
    config: Config, now: dt.datetime, jobs: Sequence[str], settings: Settings, out: TextIO, explain: bool
) -> int:
    """Print the plan the real run would execute; read-only (the ledger and the sheet stay as they are).
    Staff texts are not read: reading one records it, so a rehearsal leaves them for the real run."""
    from ..activity import read_ledger

    checked = _load(config, now, jobs)
    _nothing_to_do(checked, settings, jobs, out)
    entries = read_ledger(config.ledger_path) or []  # read-only: a rehearsal never writes the ledger
    history = History(tuple(entries)).carried_over(checked.visits)  # as the run's carry_over leaves it
    the_plan = _plan(checked, history, settings, now, jobs)
    for line in the_plan.describe(settings, explain=explain):
        print(line, file=out, flush=True)
    if the_plan.broken is not None:
        raise the_plan.broken
    return 0


def _open_ledger(
    config: Config, now: dt.datetime, settings: Settings, problem: LedgerUnavailable | None
) -> tuple[Ledger, str | None, str | None]:
    """(ledger, trouble, notice): the ledger file (recovered if it had to be moved aside), or one in
    memory when it cannot be used (alerts still go; forms and reminders wait)."""
    from ..ledger import Ledger, open_or_recover

    if problem is None:
        ledger, trouble = open_or_recover(config.ledger_path, now, sender=settings.sender)
        notice = None if ledger.in_memory_only else trouble  # moved aside: a new ledger, a full run
        return ledger, trouble, notice
    trouble = (
        f"{problem.sentence()} Alerts were still sent this run; forms and reminders wait until it is fixed."
    )
    return Ledger.in_memory(sender=settings.sender), trouble, None


def _execute(run_: Run, the_plan: RunPlan) -> None:
    """Carry the plan out: withdraw, report what cannot be rebuilt, deliver the rest most urgent first."""
    from ..forms import PROGRESS_MIN, Progress

    for withdrawal in the_plan.withdraw:
        run_.withdraw(withdrawal.entry, withdrawal.reason)
    for again in the_plan.resend:
        if again.planned is None:
            run_.refuse(again.entry, placeholder(again.entry), f"not sent: {again.reason}")
    work = the_plan.work()
    bar = Progress(len(work), "messages") if run_.err.isatty() and len(work) >= PROGRESS_MIN else None
    for planned, entry in work:
        if run_.tally.stopped:
            run_.text(planned)  # the mail server cannot be used: an alert's texts still go
            continue
        run_.deliver(planned, entry)
        if bar:
            bar.step()
    if bar:
        bar.done()


def _follow_up(run_: Run, the_plan: RunPlan, visits: Visits, jobs: Sequence[str]) -> None:
    """What depends on this run's answers: a first alert stage refused just now brings SMT in at once;
    refusals are reported to the admin."""
    ctx = the_plan.context
    if "returns" in jobs and not run_.tally.stopped:
        ctx = replace(ctx, history=History.of(run_.ledger))
        for planned in new_messages(ctx, visits, ["returns"]):
            if run_.tally.stopped:
                break
            run_.deliver(planned)
    if not run_.tally.stopped:
        ctx = replace(ctx, history=History.of(run_.ledger))
        for report in failure_reports(ctx):
            if run_.tally.stopped:
                break
            run_.deliver(report)


def _run_locked(
    config: Config,
    now: dt.datetime,
    jobs: Sequence[str],
    settings: Settings,
    out: TextIO,
    err: TextIO,
    problem: LedgerUnavailable | None = None,
) -> int:
    transport = transports.open_transport(config.mail, config.base_dir)  # settings checked before any read
    checked = _load(config, now, jobs)
    _nothing_to_do(checked, settings, jobs, err, returns=tuple(jobs) == ("returns",))
    ledger, trouble, notice = _open_ledger(config, now, settings, problem)
    with transport, ledger, tempfile.TemporaryDirectory(prefix="homevisits-") as folder:
        run_ = Run(ledger, transport, settings, now, Path(folder), out, err)
        if ledger.in_memory_only:
            run_.problem = trouble
        checkins, duress, safe = None, [], []
        if "returns" in jobs and run_.texter is not None and settings.sms.inbound:
            checkins, duress, safe, checked = check_in(run_, checked, config, settings, now)
        visits = checked.visits
        try:
            carry_over(ledger, visits)
            history = History.of(ledger)
        except LedgerUnavailable as exc:
            run_.degrade(exc)
            history = History()
        the_plan = _plan(checked, history, settings, now, jobs)
        _execute(run_, the_plan)
        ctx = the_plan.context
        if "returns" in jobs:
            texts_pending = [e for e in history.entries if e.status == "pending" and e.kind in TEXTS]
            retry_texts(run_, texts_pending, visits, ctx)
            duress_alerts(run_, duress, visits, ctx)
            safe_notices(run_, safe, visits, ctx)
        _follow_up(run_, the_plan, visits, jobs)
        ctx = replace(ctx, history=History.of(run_.ledger))
        unsure = list(the_plan.doubts)
        unsent = undelivered(ctx, visits) if "returns" in jobs else []
        write_back(checked, run_.ledger, now, err, run_.tally.sent)
    if the_plan.broken is not None:
        raise the_plan.broken
    return _report(run_, notice, unsure, unsent, checkins, err)


def _report(
    run_: Run, notice: str | None, unsure: list[str], unsent: list[str], checkins: Any, err: TextIO
) -> int:
    """The run's last words on stderr, and its exit status."""
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
