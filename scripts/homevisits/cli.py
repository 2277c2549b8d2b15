"""The ``homevisits`` command: argparse subcommands; every failure becomes one sentence and an exit code.

Exit status: 0 nothing worse than a warning, 1 an error or alert was found, 2 could not check.

Each command is one block: ``add_<name>(sub, common)`` declares it, ``run_<name>(args)`` does it,
and one line in ``COMMANDS`` registers it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import HomevisitsError

if TYPE_CHECKING:
    import datetime

    from .visits import Visits

DEBUG_ENV = "HOMEVISITS_DEBUG"


def common_options() -> argparse.ArgumentParser:
    """The options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("where and when")
    group.add_argument(
        "--config", metavar="FILE", help="settings file (default: ./homevisits.toml or $HOMEVISITS_CONFIG)"
    )
    group.add_argument(
        "--source",
        metavar="PATH|URL",
        help="the log: an .xlsx workbook, a Google Sheet URL or key, or the URL of an .xlsx on Google Drive",
    )
    group.add_argument(
        "--worksheet", metavar="NAME", help="worksheet (tab) name (default: from the config, else the first)"
    )
    group.add_argument(
        "--policy", metavar="NAME|PATH", help="policy profile: a name in policies/ or a .toml file"
    )
    group.add_argument(
        "--now",
        metavar="ISO",
        help="check as if it were this time, e.g. 2026-11-23T09:00 (sending commands only rehearse: nothing is sent)",
    )
    group.add_argument(
        "--demo",
        action="store_true",
        help="the bundled demo: invented visits in demo/, whatever homevisits.toml or $HOMEVISITS_CONFIG say",
    )
    return common


DEMO_FALLBACK = (
    "DEMO DATA: there is no homevisits.toml here and no --source, so this is the invented demo workbook "
    "{workbook}; run homevisits init to set up your school."
)


def settings(args: argparse.Namespace):
    """The config with command-line overrides applied, and the moment of the check."""
    from zoneinfo import ZoneInfo

    from .config import demo_config, load_config
    from .pipeline import apply_overrides, parse_now

    if getattr(args, "demo", False):
        if args.config or args.source:
            raise HomevisitsError(
                "--demo uses the bundled demo workbook and settings: leave out --config and --source, "
                "or leave out --demo to check your own sheet."
            )
        config = demo_config()
    else:
        config = load_config(args.config)
    config = apply_overrides(config, source=args.source, worksheet=args.worksheet, policy=args.policy)
    if config.demo and not getattr(args, "demo", False):
        print(f"homevisits: {DEMO_FALLBACK.format(workbook=config.source.get('path'))}", file=sys.stderr)
    return config, parse_now(args.now, ZoneInfo(config.timezone))


def write_output(text: str | Iterable[str], output: str | None) -> None:
    """Print, or write to a file atomically (a half-written report never replaces a good one)."""
    chunks = [text] if isinstance(text, str) else text
    if not output or output == "-":
        sys.stdout.writelines(chunks)
        return
    path = Path(output).expanduser()
    if path.exists() and not path.is_file():  # a device such as /dev/null or a pipe: write straight to it
        with path.open("w", encoding="utf-8") as stream:
            stream.writelines(chunks)
        return
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".homevisits-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.writelines(chunks)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # as an ordinary new file would be, not mkstemp's owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"Wrote {path}", file=sys.stderr)


# ---------------------------------------------------------------- validate


def add_validate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "validate",
        parents=[common],
        help="check every visit against the school's policy",
        description="Check every row of the home-visits log against the school's policy and list what to fix.",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "html"),
        help="text (the default, also in cron logs and pipes), json or html; with --output FILE.json or "
        "FILE.html, the file's suffix",
    )
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE instead of the screen")
    parser.add_argument(
        "--write-findings",
        action="store_true",
        help="also put the findings in a 'Policy check' tab of the sheet",
    )
    parser.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from .pipeline import bulk_work, load

    config, now = settings(args)
    checked = load(config, now)  # first: the sheet is read while the rest of the tool loads
    keep_until_exit(checked)
    from .findings import exit_status, json_chunks, to_text

    report = checked.report()
    suffix = Path(args.output).suffix.lower() if args.output else ""
    fmt = args.format or {".json": "json", ".html": "html", ".htm": "html"}.get(suffix, "text")
    job = scheduled_job(config, now)
    if fmt == "text":
        text = to_text(report)
        if job:  # under the heading: the summary stays the last line
            heading, _, rest = text.partition("\n")
            text = f"{heading}\n{'' if job[0] else 'WARNING: '}{job[1]}\n{rest}"
    elif fmt == "json":
        text = json_chunks(report)
    else:
        from .reports import validation_page
        from .rules import rule_titles

        notes = [(job[0], job[1] if job[0] else f"Warning: {job[1]}")] if job else []
        text = validation_page(
            report, visits=checked.visits, rule_titles=rule_titles(checked.policy), notes=notes
        )
    with bulk_work():
        write_output(text, args.output)
    if args.write_findings:
        write_findings_tab(checked.source, report)
    return exit_status(report.findings)


def scheduled_job(config, now, *, demo: bool = False) -> tuple[bool, str] | None:
    """(fine, sentence) on when run-scheduled last ran: for a school's own config (and the demo's if asked)."""
    if config.path is None and not (demo and config.demo):
        return None
    from zoneinfo import ZoneInfo

    from . import heartbeat

    return heartbeat.describe(heartbeat.read(config.state_dir), now, ZoneInfo(config.timezone))


# ---------------------------------------------------------------- status


def add_status(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "status",
        parents=[common],
        help="when the scheduled job last ran, and what the ledger still holds",
        description="Say when run-scheduled last ran (a warning when more than 15 minutes ago) and how many "
        "messages the ledger holds as queued or refused. Exit status 1 when the job is not running.",
    )
    parser.set_defaults(run=run_status, command="status")


def run_status(args: argparse.Namespace) -> int:
    need_config(args)
    config, now = settings(args)
    fine, sentence = scheduled_job(config, now, demo=True)
    print(sentence if fine else f"WARNING: {sentence}")
    held = _ledger_counts(config.ledger_path)
    if held is None:
        print(f"No ledger yet at {config.ledger_path}: run-scheduled creates it on its first run.")
    else:
        print(
            f"Ledger {config.ledger_path}: {held['sent']} sent, {held['pending']} queued for the next run, "
            f"{held['failed']} refused for good, {held['withdrawn']} withdrawn (homevisits log lists them)."
        )
    return 0 if fine else 1


def _ledger_counts(path: Path) -> dict[str, int] | None:
    from collections import Counter

    from .activity import read_ledger

    entries = read_ledger(path)
    if entries is None:
        return None
    counts = Counter(e.status for e in entries)
    return {k: counts.get(k, 0) for k in ("sent", "pending", "failed", "withdrawn")}


# ---------------------------------------------------------------- check-setup


def add_check_setup(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "check-setup",
        parents=[common],
        help="check the settings, the sheet, the mail server, the state folder and the scheduled job",
        description="One line per check, ✓ or ✗ with the fix: the config and the policy profile; the sheet reads "
        "and can be written (asked without changing a cell); every header placed; the spreadsheet's locale; the "
        "mail server reached with verified TLS and the login accepted (no message unless --send-test); the state "
        "folder writable; the scheduled job's last run. Exit status 0 only when every check passes.",
    )
    parser.add_argument("--send-test", metavar="ADDRESS", help="also send one test message to ADDRESS")
    parser.set_defaults(run=run_check_setup, command="check-setup")


def run_check_setup(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from .config import find_config, timezone_of
    from .pipeline import parse_now
    from .setup_check import check_setup

    if args.demo or args.source:
        raise HomevisitsError(
            "check-setup checks a school's own settings: give --config FILE (or none), not --demo or --source."
        )
    path = find_config(args.config)
    checks = check_setup(path, parse_now(args.now, ZoneInfo(timezone_of(path))), send_test=args.send_test)
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(not c.ok for c in checks)
    print(
        f"\n{'Every check passed.' if not failed else f'{failed} check(s) failed: fix them and run check-setup again.'}"
    )
    return 0 if not failed else 1


# ---------------------------------------------------------------- log


def add_log(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "log",
        parents=[common],
        help="the ledger as a table: every message queued, sent, refused or withdrawn",
        description="List the ledger's messages, oldest first: when queued and sent, the visit ID, kind, alert "
        "stage, how many recipients, status, and why a message was withdrawn or refused. Visit IDs only: no names "
        "and no addresses. Reads the ledger without changing it.",
    )
    parser.add_argument("--since", metavar="DATE", help="only messages queued on or after this day")
    parser.add_argument("--visit", metavar="ID", help="only this visit's messages")
    parser.add_argument("--format", choices=("text", "csv"), default="text", help="text (default) or csv")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of the screen")
    parser.set_defaults(run=run_log, command="log")


def run_log(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from . import activity
    from .summary import parse_day

    since = parse_day(args.since, "--since")
    need_config(args)
    config, _ = settings(args)
    entries = activity.read_ledger(config.ledger_path)
    if entries is None:
        print(
            f"homevisits: there is no ledger at {config.ledger_path} yet: run-scheduled creates it on its first run.",
            file=sys.stderr,
        )
        return 0
    tz = ZoneInfo(config.timezone)
    table = activity.rows(activity.select(entries, since=since, visit=args.visit, tz=tz), tz)
    write_output(activity.as_csv(table) if args.format == "csv" else activity.as_text(table), args.output)
    return 0


# ---------------------------------------------------------------- report


def add_report(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "report",
        parents=[common],
        help="the summary for leaders and governors: a page with charts and a spreadsheet",
        description="Summarise a period's home visits for leaders and governors: counts and shares only, "
        "never a learner's name, address or phone number.",
    )
    parser.add_argument(
        "--from", dest="start", metavar="DATE", help="first day (default: 1 September of this academic year)"
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        help="last day (default: the next 31 August, or 12 months after --from if sooner)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="folder for the two files (default: [report] out, else state/reports by the config)",
    )
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from .pipeline import load
    from .rules import rule_titles
    from .summary import build_summary, parse_day, period_end
    from .summary_files import write_report

    start, end = parse_day(args.start, "--from"), parse_day(args.end, "--to")
    if start is not None and end is None:
        end = period_end(start)  # 12 months on, or the next 31 August if sooner
    config, now = settings(args)
    checked = load(config, now)
    keep_until_exit(checked)
    policy = checked.policy
    summary = build_summary(
        checked.visits,
        checked.findings,
        start=start,
        end=end,
        now=now,
        timings=policy.timings,
        rule_titles=rule_titles(policy),
        policy=f"DEMO DATA (invented visits): {policy.name}" if config.demo else policy.name,
    )
    out_dir = (
        Path(args.out).expanduser() if args.out else config.resolve(config.report.get("out", "state/reports"))
    )
    for path in write_report(summary, out_dir):
        print(f"Wrote {path}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- forms


def add_forms(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "forms",
        parents=[common],
        help="fill in the school's forms from the log, as HTML (and PDF)",
        description="Fill in the policy's forms for chosen visits, or for every planned visit whose form is due, "
        "as DIR/<visit id>-<form>.html (a Word form as .docx) and, with --pdf, a PDF beside it.",
    )
    parser.add_argument(
        "--visit",
        metavar="ID",
        nargs="+",
        action="extend",
        default=[],
        help="the Visit ID(s) to fill forms for",
    )
    parser.add_argument(
        "--due",
        action="store_true",
        help="every Planned visit, not HIGH risk, starting in the next 14 days whose form is not sent yet "
        "(the default without --visit)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="folder for the forms (default: [forms] out, else state/forms by the config)",
    )
    parser.add_argument(
        "--pdf",
        action="store_true",
        help="also write a print-ready A4 PDF of each form (of a Word form through LibreOffice)",
    )
    parser.add_argument(
        "--check-template",
        metavar="FILE.docx",
        action="append",
        default=[],
        help="list the placeholders of a Word form and what is wrong with it, where; no sheet is read "
        "(exit 1 when anything is wrong)",
    )
    parser.set_defaults(run=run_forms)


def run_check_templates(paths: list[str]) -> int:
    from .word_check import check_report, check_template

    results = [check_template(Path(path).expanduser()) for path in paths]
    print("\n\n".join(check_report(result) for result in results))
    return 1 if any(result.problems for result in results) else 0


def _say_unnamed(visits: Visits, now: datetime.datetime, window: float) -> None:
    """Fail loud: a row owed a form but for its Visit ID is named (it gets one from run-scheduled)."""
    from .state import form_conditions, form_unsent, passing

    conditions = [*form_conditions(visits, now, window), form_unsent(visits)]
    named = set(passing(conditions))
    unnamed = [i for i in passing([c for c in conditions if c.reason != "no Visit ID"]) if i not in named]
    if unnamed:
        rows = ", ".join(str(int(visits.frame["row"].iat[i])) for i in unnamed)
        print(
            f"Row(s) {rows} would need a form but have no Visit ID yet: run-scheduled gives them one, "
            "then their forms can be written.",
            file=sys.stderr,
        )


def run_forms(args: argparse.Namespace) -> int:
    from .forms import form_settings, policy_template_dirs, visits_due_for_form, write_forms
    from .notify.options import window_days
    from .pipeline import load

    if args.check_template:
        return run_check_templates(args.check_template)
    config, now = settings(args)
    checked = load(config, now)
    keep_until_exit(checked)
    visits, policy = checked.visits, checked.policy
    positions: list[int] = []
    for visit_id in args.visit:
        position = visits.position_of(visit_id.strip())
        if position is None:
            raise HomevisitsError(
                f"No row has the Visit ID '{visit_id}': check the '{visits.header('visit_id')}' column of the log."
            )
        positions.append(position)
    window = window_days(config)  # the same window, and the same test of a form owed, as run-scheduled
    if args.due or not args.visit:
        positions.extend(visits_due_for_form(visits, now, window_days=window))
        _say_unnamed(visits, now, window)
    positions = list(dict.fromkeys(positions))
    if args.out:
        out_dir = Path(args.out).expanduser()
    else:
        out_dir = config.resolve(config.forms.get("out", "state/forms"))
    if not positions:
        print(
            f"No visit needs a form: nothing Planned in the next {window} days is waiting for one.",
            file=sys.stderr,
        )
        return 0
    written = write_forms(
        visits,
        positions,
        policy.forms or ["generic"],
        out_dir,
        school=config.school or policy.name,
        now=now,
        pdf=args.pdf,
        template_dirs=policy_template_dirs(
            policy, config.forms.get("template_dir") and config.resolve(config.forms["template_dir"])
        ),
        extra=form_settings(policy, config.forms, config.school_table or {"name": config.school}),
        progress=True,
        timezone=config.timezone,
    )
    for path in written:
        print(path)
    print(f"Wrote {len(written)} file(s) for {len(positions)} visit(s) to {out_dir}", file=sys.stderr)
    return 1 if args.pdf and _word_pdf_missing(written) else 0


def _word_pdf_missing(written: list[Path]) -> bool:
    """Word forms were written but LibreOffice is not here to print them: say so in one sentence."""
    from . import word_pdf

    if word_pdf.available() or not any(path.suffix == ".docx" for path in written):
        return False
    print(f"homevisits: {word_pdf.NO_LIBREOFFICE}", file=sys.stderr)
    return True


# ---------------------------------------------------------------- init


def add_init(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "init",
        help="write a starter homevisits.toml from the documented example",
        description="Write homevisits.toml (or --config FILE) from homevisits.example.toml, every key documented; "
        "--policy and --source fill in those two. An existing file is never overwritten.",
    )
    parser.add_argument("--config", metavar="FILE", help="where to write it (default: ./homevisits.toml)")
    parser.add_argument("--policy", metavar="NAME|PATH", help="the policy profile to start from")
    parser.add_argument(
        "--source", metavar="PATH|URL", help="the log: an .xlsx workbook, or a Google Sheet URL"
    )
    parser.set_defaults(run=run_init)


def run_init(args: argparse.Namespace) -> int:
    from .config import CONFIG_NAME, starter_config

    target = Path(args.config or CONFIG_NAME).expanduser()
    if target.exists():
        raise HomevisitsError(
            f"{target} already exists and is left as it is: edit it, or pass --config NEW_FILE to write another."
        )
    text = starter_config(policy=args.policy, source=args.source)
    try:
        with target.open("x", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise HomevisitsError(f"Could not write {target} ({exc.strerror or exc}).") from exc
    print(f"Wrote {target}. Set policy, [source] and [mail] in it, then run: homevisits check-setup")
    return 0


# ---------------------------------------------------------------- init-sheet (and the "Policy check" tab)


def add_init_sheet(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "init-sheet",
        parents=[common],
        help="set up the log's columns, dropdowns and formats from the column catalogue",
        description="Write the header row, freeze it, and add dropdowns, date and time formats and a note on each "
        "header. On a log already in use only the missing columns are added, after the last one: nothing is "
        "moved, renamed or deleted. An .xlsx path that does not exist yet becomes a new workbook.",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every column of the catalogue, not only those the policy uses",
    )
    parser.set_defaults(run=run_init_sheet)


def run_init_sheet(args: argparse.Namespace) -> int:
    from .sources import open_source

    config, _ = settings(args)
    if config.demo:
        raise HomevisitsError(
            "init-sheet needs the sheet to set up: pass --source (an .xlsx path or a Google Sheet URL) or --config."
        )
    source = open_source(config.source, config.base_dir, columns=config.columns, timezone=config.timezone)
    from .pipeline import policy_schema
    from .policy import load_policy
    from .sheet_setup import policy_fields

    policy = load_policy(
        str(config.resolve(config.policy)) if config.policy.endswith(".toml") else config.policy
    )
    schema = policy_schema(policy)  # with the columns the school's own checks declare
    fields = None if args.all else policy_fields(policy, schema)
    setup = source.init_sheet(schema, fields)
    for header, name in setup.ask:
        print(
            f"Not added: {schema[name].header}. The sheet has '{header}', which looks like it; if it is, add "
            f'under [columns] in the config: "{header}" = "{name}" (rename it otherwise, and run init-sheet again).'
        )
    if setup.new_sheet:
        print(f"Set up {len(setup.add)} columns with dropdowns, formats and header notes.")
    elif setup.add:
        added = ", ".join(setup.added_headers)
        print(f"Added {len(setup.add)} missing column(s) after the last one: {added}.")
    elif not setup.ask:
        which = "every column" if args.all else "every column the policy uses"
        print(f"The log already has {which}: nothing changed.")
    return 1 if setup.ask else 0


def write_findings_tab(source, report) -> None:
    """Replace the sheet's 'Policy check' tab with the report's findings (validate --write-findings)."""
    from .findings_tab import FINDINGS_TAB, findings_table

    header, rows = findings_table(report.findings, report.checked_at)
    source.write_findings(header, rows)
    print(f"Wrote {len(rows)} finding(s) to the '{FINDINGS_TAB}' tab.", file=sys.stderr)


# ---------------------------------------------------------------- send-forms, check-returns, run-scheduled


def _job_parser(
    sub: argparse._SubParsersAction, common: argparse.ArgumentParser, name: str, help: str, description: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, parents=[common], help=help, description=description)
    parser.set_defaults(command=name)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent (visit IDs, kinds, recipient counts) and change nothing",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="with --dry-run (implied): each message with why it is due, then every row left alone and why",
    )
    return parser


SEND_AT_NOW_ENV = "HOMEVISITS_SEND_AT_NOW"  # tests only: =1 lets --now really send, on a fake clock


def need_config(args: argparse.Namespace, why: str = "") -> None:
    """Refuse, before anything is read or created, to run this command without a school's config."""
    from .config import find_config

    if getattr(args, "demo", False) or find_config(args.config) is not None:
        return
    raise HomevisitsError(
        f"{args.command} needs your school's settings and there is no homevisits.toml here: run homevisits init "
        f"to write one, or pass --config FILE{'; ' + why if why else ''}."
    )


def run_jobs(args: argparse.Namespace, jobs: tuple[str, ...]) -> int:
    from .notify.run import run

    need_config(args, "it never sends from the demo workbook (make demo shows that on invented data)")
    config, now = settings(args)
    rehearsal = args.now is not None and os.environ.get(SEND_AT_NOW_ENV) != "1"
    if rehearsal and not (args.dry_run or args.explain):
        print(
            f"homevisits: --now {args.now} is a rehearsal: nothing is sent and nothing is written to the sheet "
            "or the ledger; this is what a run at that moment would send.",
            file=sys.stderr,
        )
    return run(config, now, jobs, dry_run=args.dry_run or rehearsal or args.explain, explain=args.explain)


def add_send_forms(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = _job_parser(
        sub,
        common,
        "send-forms",
        "email each planned visit's form once its row is ready; chase rows that are not",
        "For every Planned visit (not HIGH risk) starting within [schedule] window_days: email the policy's "
        "form as soon as the row is ready (never after the deadline) and record Form sent at; remind the staff "
        "member what is missing, at most once per reminder_hours, plus a final reminder; tell the line manager "
        "once if the deadline passes without a form.",
    )
    parser.set_defaults(run=run_send_forms)


def run_send_forms(args: argparse.Namespace) -> int:
    return run_jobs(args, ("forms",))


def add_check_returns(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = _job_parser(
        sub,
        common,
        "check-returns",
        "alert the line manager, then SMT, when a safe return is overdue",
        "For every visit whose expected return plus the policy's grace period has passed with no safe return "
        "recorded: alert the line manager at once with what they need to act and record Escalated at; alert "
        "[mail] smt if still unconfirmed [timings] smt_after_minutes later. Each stage once.",
    )
    parser.set_defaults(run=run_check_returns)


def run_check_returns(args: argparse.Namespace) -> int:
    return run_jobs(args, ("returns",))


def add_run_scheduled(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = _job_parser(
        sub,
        common,
        "run-scheduled",
        "send-forms and check-returns in one pass: run it from cron every 5 minutes",
        "send-forms and check-returns in one pass: one read of the sheet, one mail connection, one write. "
        "A run that starts while another is in progress does nothing and exits 0. Exit status: 0 all sent "
        "(or nothing to do), 1 something could not be sent this run (it is retried next run), 2 could not check.",
    )
    parser.set_defaults(run=run_run_scheduled)


def run_run_scheduled(args: argparse.Namespace) -> int:
    return run_jobs(args, ("forms", "returns"))


COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    add_init,
    add_validate,
    add_check_setup,
    add_status,
    add_log,
    add_report,
    add_forms,
    add_init_sheet,
    add_send_forms,
    add_check_returns,
    add_run_scheduled,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homevisits",
        description="Keeps home visits to pupils safe and within the school's policy.",
        epilog="Exit status: 0 all clear (warnings at most), 1 errors or alerts found, 2 could not check.",
    )
    parser.add_argument("--version", action="version", version=f"homevisits {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    common = common_options()
    for add in COMMANDS:
        add(sub, common)
    return parser


_kept_until_exit: list[object] | None = None  # a list while running as the console command


def keep_until_exit(big: object) -> None:
    """Leave a large result (every cell of a big log) for the system to reclaim when the command ends."""
    if _kept_until_exit is not None:
        _kept_until_exit.append(big)


def command() -> None:
    """The ``homevisits`` console command: ``main``, then exit without freeing objects one by one.

    A check of a 50,000-row log holds millions of cell values; Python would spend a few tenths of
    a second freeing them at exit, one at a time, for memory the system takes back at once. Exit
    handlers still run and output is flushed before leaving.
    """
    global _kept_until_exit
    _kept_until_exit = []
    status = main()
    atexit._run_exitfuncs()  # what a normal exit runs: logging's flush, temporary files' clean-up
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(status)


def os_problem(exc: OSError, args: argparse.Namespace) -> str:
    """An unexpected file-system error as one sentence: ``cannot write to /proc/nope: No such file...``."""
    where = str(exc.filename) if exc.filename else ""
    outputs = [
        str(Path(v).expanduser()) for v in (getattr(args, "out", None), getattr(args, "output", None)) if v
    ]
    reason = exc.strerror or str(exc)
    if where and any(where.startswith(o) or o.startswith(where) for o in outputs):
        return f"cannot write to {where}: {reason}."
    if where:
        return f"cannot use {where}: {reason}; check the path and that this user may read and write there."
    return f"a file or folder could not be used: {reason}."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except HomevisitsError as exc:
        print(f"homevisits: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("homevisits: stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(exc, OSError) and exc.errno is not None:  # a file or folder: one sentence
            print(f"homevisits: {os_problem(exc, args)}", file=sys.stderr)
            return 2
        print(
            f"homevisits: stopped on an unexpected problem ({type(exc).__name__}: {str(exc)[:200]}); "
            f"run again with {DEBUG_ENV}=1 to see the details, and report it.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    command()
