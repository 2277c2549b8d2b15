"""Helpers for the scheduled-job tests: a school's folder (workbook + homevisits.toml), the command
as an admin runs it, what reached the mail server, and runs in child processes (killed, or two at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homevisits import cli
from workbooks import HEADERS, LONDON, visit, write_workbook

SENDER = "homevisits@school.example"
DOMAINS = ["school.example"]
DSL = "dsl@school.example"
SMT = "head@school.example"
ADMIN = "office@school.example"
STAFF = "sam.teacher@school.example"
MANAGER = "pat.manager@school.example"
KILLED = 17  # exit status of a child killed between the server's acceptance and the ledger

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=LONDON)  # Monday, GMT
TODAY = NOW.date()


def london(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=LONDON)


def planned(row: int, day: dt.date, start=(10, 0), end=(11, 30), **changes: Any) -> dict[str, Any]:
    """A Planned visit with no form sent yet, staff and line manager emails inside the school."""
    fields = {"form_sent_at": None, "staff_email": STAFF, "line_manager_email": MANAGER}
    fields.update(changes)
    return visit(row, "planned", date=day, start=start, end=end, **fields)


def out_today(row: int, start=(10, 0), end=(11, 30), day: dt.date = TODAY, **changes: Any) -> dict[str, Any]:
    """A visit under way today (form sent days ago), nobody back yet."""
    fields = {
        "staff_email": STAFF,
        "line_manager_email": MANAGER,
        "learner_phone": "07700 900456",
        "form_sent_at": "20/11/2026 09:00",
    }
    fields.update(changes)
    return visit(row, "planned", date=day, start=start, end=end, **fields)


def not_ready(row: int, day: dt.date, **changes: Any) -> dict[str, Any]:
    """A planned visit whose row breaks OMG Education's rules: no parent/carer consent, no approval."""
    return planned(row, day, parent_consent=None, approved_by=None, **changes)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings are valid TOML this way


def smtp_mail(server: Any, **overrides: Any) -> dict[str, Any]:
    settings = {
        "transport": "smtp",
        "host": server.host,
        "port": server.port,
        "security": "none",
        "from": SENDER,
        "forms_to": [DSL],
        "smt": [SMT],
        "admin": [ADMIN],
        "allowed_domains": DOMAINS,
        "timeout": 10,
    }
    settings.update(overrides)
    return settings


@contextlib.contextmanager
def send_at_now():
    """Let --now really send for the length of the block (tests only: cli.SEND_AT_NOW_ENV)."""
    before = os.environ.get(cli.SEND_AT_NOW_ENV)
    os.environ[cli.SEND_AT_NOW_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[cli.SEND_AT_NOW_ENV]
        else:
            os.environ[cli.SEND_AT_NOW_ENV] = before


@dataclass
class School:
    """A school's folder: the log, homevisits.toml, state/ (ledger), run the commands against it."""

    folder: Path
    policy: str = "omg_education"

    @property
    def workbook(self) -> Path:
        return self.folder / "home_visits.xlsx"

    @property
    def config(self) -> Path:
        return self.folder / "homevisits.toml"

    @property
    def ledger(self) -> Path:
        return self.folder / "state" / "ledger.sqlite"

    def write(self, rows: Sequence[Mapping[str, Any] | None]) -> School:
        """The log, its tool columns formatted as dates as ``init-sheet`` sets them up (the write-back
        then writes real dates; into an unformatted column it writes UK text, see test_excel_surgery)."""
        dated = dict.fromkeys(("form_sent_at", "escalated_at"), "dd/mm/yyyy hh:mm")
        write_workbook(self.workbook, rows, columns=list(HEADERS.values()), column_formats=dated)
        return self

    def configure(
        self,
        mail: Mapping[str, Any],
        schedule: Mapping[str, Any] | None = None,
        timings: Mapping[str, Any] | None = None,
    ) -> School:
        lines = [f"policy = {toml_value(self.policy)}", 'school = "Test School"', "", "[source]"]
        lines += ['path = "home_visits.xlsx"', 'worksheet = "Home Visits"', "", "[mail]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in mail.items()]
        lines += ["", "[state]", 'ledger = "state/ledger.sqlite"']
        if schedule:
            lines += ["", "[schedule]", *(f"{k} = {toml_value(v)}" for k, v in schedule.items())]
        if timings:
            lines += ["", "[timings]", *(f"{k} = {toml_value(v)}" for k, v in timings.items())]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self

    def argv(self, command: str, now: dt.datetime, *extra: str) -> list[str]:
        return [command, "--config", str(self.config), "--now", now.isoformat(), *extra]

    def run(self, command: str, now: dt.datetime, *extra: str) -> Result:
        """The command as cron or an admin runs it, on a fake clock that really sends
        (HOMEVISITS_SEND_AT_NOW=1; without it --now only rehearses): exit status, stdout, stderr."""
        out, err = io.StringIO(), io.StringIO()
        with send_at_now(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(self.argv(command, now, *extra))
        return Result(status, out.getvalue(), err.getvalue())

    def cell(self, visit_id: str, field: str) -> Any:
        """One cell of the workbook as it is on disk now."""
        import openpyxl

        sheet = openpyxl.load_workbook(self.workbook)["Home Visits"]
        headers = [c.value for c in sheet[1]]
        id_col, col = headers.index(HEADERS["visit_id"]), headers.index(HEADERS[field])
        for cells in sheet.iter_rows(min_row=2, values_only=True):
            if cells[id_col] == visit_id:
                return cells[col]
        raise KeyError(visit_id)


@dataclass
class Result:
    status: int
    out: str
    err: str


# ---------------------------------------------------------------- what the server saw


def delivered(server: Any) -> Counter[tuple[str, str]]:
    """(visit, kind) -> how many times the server accepted such a message."""
    return Counter(
        (str(m.message["X-Homevisits-Visit"]), str(m.message["X-Homevisits-Kind"])) for m in server.messages
    )


def message_ids(server: Any) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for m in server.messages)


def only(server: Any, kind: str, visit_id: str | None = None):
    """The one accepted message of this kind (and visit)."""
    found = [
        m
        for m in server.messages
        if m.message["X-Homevisits-Kind"] == kind
        and (visit_id is None or m.message["X-Homevisits-Visit"] == visit_id)
    ]
    assert len(found) == 1, f"{len(found)} {kind} messages"
    return found[0]


def body(received: Any) -> str:
    return received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------- child processes


def _child(argv: list[str], kill_at: int | None, barrier: Any, log: str) -> None:
    status = 99
    try:
        if kill_at:
            from homevisits import ledger

            original = ledger.Ledger.mark_sent
            calls = [0]

            def mark_sent(self, key, now):  # the process dies after the server accepted message N
                calls[0] += 1
                if calls[0] == kill_at:
                    os._exit(KILLED)
                return original(self, key, now)

            ledger.Ledger.mark_sent = mark_sent
        if barrier is not None:
            barrier.wait()
        out, err = io.StringIO(), io.StringIO()
        os.environ[cli.SEND_AT_NOW_ENV] = "1"  # a fake clock that really sends, as in School.run
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(argv)
        Path(log).write_text(out.getvalue() + err.getvalue(), encoding="utf-8")
    finally:
        os._exit(status)


def start_child(
    argv: list[str], log: Path, *, kill_at: int | None = None, barrier: Any = None
) -> multiprocessing.Process:
    """Run the command in a forked process (as cron would start it); ``kill_at``: die on the Nth mark_sent."""
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(argv, kill_at, barrier, str(log))
    )
    process.start()
    return process


def barrier(parties: int):
    return multiprocessing.get_context("fork").Barrier(parties)
