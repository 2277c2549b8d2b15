"""ledger.py on real SQLite files: idempotent queueing, crashes, two processes at once, the run lock."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from homevisits.errors import HomevisitsError
from homevisits.ledger import (
    WRITE_BACK_FIELDS,
    Ledger,
    RunInProgress,
    lock_path_for,
    msgid_domain,
    open_ledger,
    run_lock,
)

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)
SENDER = "Home visits <homevisits@school.example>"
STAFF = "a.teacher@school.example"
MANAGER = "line.manager@school.example"


@pytest.fixture
def ledger(tmp_path):
    with open_ledger(tmp_path / "state" / "ledger.sqlite", sender=SENDER) as opened:
        yield opened


def run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Another process, as a second cron run would be."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# ---------------------------------------------------------------- one process


def test_queue_records_the_intent_with_a_stable_message_id(ledger, tmp_path):
    entry = ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF, MANAGER], NOW)
    assert (entry.key, entry.visit_id, entry.kind, entry.recipients) == (
        "form:HV-0042",
        "HV-0042",
        "form",
        (STAFF, MANAGER),
    )
    assert entry.message_id.startswith("<") and entry.message_id.endswith("@school.example>")
    assert (entry.queued_at, entry.sent_at, entry.failed_at, entry.attempts) == (NOW, None, None, 0)
    assert entry.status == "pending" and ledger.pending() == [entry]
    assert (tmp_path / "state" / "ledger.sqlite").is_file()


def test_queueing_the_same_key_again_returns_the_first_entry(ledger):
    first = ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF], NOW)
    again = ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF, MANAGER], LATER)
    assert again == first
    ledger.mark_sent("form:HV-0042", LATER)
    assert ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF], LATER + LATER.resolution).sent_at == LATER
    assert len(ledger.entries()) == 1


def test_a_key_cannot_change_visit_or_kind(ledger):
    ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF], NOW)
    with pytest.raises(ValueError):
        ledger.queue("form:HV-0042", "HV-0043", "form", [STAFF], NOW)
    with pytest.raises(ValueError):
        ledger.queue("form:HV-0042", "HV-0042", "reminder", [STAFF], NOW)


@pytest.mark.parametrize(
    "args",
    [
        ("k", "HV-1", "postcard", [STAFF], NOW),
        ("", "HV-1", "form", [STAFF], NOW),
        ("k", "HV-1", "form", [STAFF], dt.datetime(2026, 11, 23, 9, 0)),  # naive: whose 09:00?
    ],
)
def test_queue_refuses_bad_input(ledger, args):
    with pytest.raises(ValueError):
        ledger.queue(*args)
    assert ledger.entries() == []


def test_message_ids_are_unique_and_use_the_senders_domain(ledger):
    ids = {
        ledger.queue(f"reminder:HV-0042:{n}", "HV-0042", "reminder", [STAFF], NOW).message_id
        for n in range(50)
    }
    assert len(ids) == 50
    assert msgid_domain("homevisits@School.Example") == "school.example"
    assert msgid_domain(None) == msgid_domain("not an address") == "homevisits.invalid"


def test_sent_failed_and_pending(ledger):
    for n in (1, 2, 3):
        ledger.queue(f"form:HV-000{n}", f"HV-000{n}", "form", [STAFF], NOW)
    ledger.attempt("form:HV-0001", NOW)
    ledger.mark_sent("form:HV-0001", NOW)
    ledger.attempt("form:HV-0002", NOW)
    temporary = ledger.mark_failed("form:HV-0002", NOW, "refused for now (451 4.3.0)", permanent=False)
    ledger.attempt("form:HV-0003", NOW)
    permanent = ledger.mark_failed("form:HV-0003", NOW, "refused for good (550 5.1.1)", permanent=True)
    assert [e.key for e in ledger.pending()] == ["form:HV-0002"]
    assert (temporary.status, temporary.error, temporary.attempts) == (
        "pending",
        "refused for now (451 4.3.0)",
        1,
    )
    assert (permanent.status, permanent.failed_at) == ("failed", NOW)
    assert [e.key for e in ledger.failed()] == ["form:HV-0003"]
    ledger.attempt("form:HV-0002", LATER)
    retried = ledger.mark_sent("form:HV-0002", LATER)
    assert (retried.status, retried.attempts, retried.error, retried.last_attempt_at) == (
        "sent",
        2,
        None,
        LATER,
    )
    assert ledger.pending() == []


def test_an_accepted_message_stays_accepted(ledger):
    ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF], NOW)
    ledger.mark_sent("form:HV-0042", NOW)
    ledger.mark_sent("form:HV-0042", LATER)  # a late duplicate report keeps the first time
    ledger.mark_failed("form:HV-0042", LATER, "connection dropped", permanent=False)
    entry = ledger.mark_failed("form:HV-0042", LATER, "550", permanent=True)
    assert (entry.status, entry.sent_at, entry.failed_at, entry.error) == ("sent", NOW, None, None)


def test_unknown_key_is_an_error(ledger):
    with pytest.raises(KeyError):
        ledger.mark_sent("form:HV-9999", NOW)


def test_last_sent_is_the_latest_accepted_of_that_kind(ledger):
    for hour in (9, 10, 11):
        ledger.queue(f"reminder:HV-0042:{hour}", "HV-0042", "reminder", [STAFF], NOW)
    ledger.queue("reminder:HV-0043:9", "HV-0043", "reminder", [STAFF], NOW)
    assert ledger.last_sent("HV-0042", "reminder") is None
    ledger.mark_sent("reminder:HV-0042:9", NOW)
    ledger.mark_sent("reminder:HV-0042:10", NOW + dt.timedelta(hours=24))
    ledger.mark_sent("reminder:HV-0043:9", NOW + dt.timedelta(hours=48))
    assert ledger.last_sent("HV-0042", "reminder").key == "reminder:HV-0042:10"
    assert ledger.last_sent("HV-0042", "final_reminder") is None


def test_write_back_from_sent_forms_and_first_alerts_only(ledger):
    for kind in ("form", "reminder", "overdue_alert", "smt_alert"):
        ledger.queue(f"{kind}:HV-0042", "HV-0042", kind, [MANAGER], NOW)
        ledger.mark_sent(f"{kind}:HV-0042", NOW)
    ledger.queue("form:HV-0043", "HV-0043", "form", [MANAGER], NOW)  # not sent: nothing to write
    todo = ledger.needs_write_back()
    assert [(e.key, e.write_back_field) for e in todo] == [
        ("form:HV-0042", "form_sent_at"),
        ("overdue_alert:HV-0042", "escalated_at"),
    ]
    assert set(WRITE_BACK_FIELDS.values()) == {"form_sent_at", "escalated_at"}
    ledger.mark_written_back(["form:HV-0042"], LATER)
    assert [e.key for e in ledger.needs_write_back()] == ["overdue_alert:HV-0042"]  # redone next run
    ledger.mark_written_back(["form:HV-0042", "overdue_alert:HV-0042"], LATER + dt.timedelta(hours=1))
    assert ledger.needs_write_back() == []
    assert ledger.get("form:HV-0042").written_back_at == LATER


def test_the_ledger_survives_reopening_in_wal_mode(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, sender=SENDER) as first:
        queued = first.queue("form:HV-0042", "HV-0042", "form", [STAFF], NOW)
    with Ledger(path) as second:
        assert second.get("form:HV-0042") == queued
        assert second._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_ledger_says_so(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is a spreadsheet, honest" * 100)
    with pytest.raises(HomevisitsError, match=r"is damaged \(file is not a database\)"):
        Ledger(path)


def test_a_ledger_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(HomevisitsError, match="newer homevisits"):
        Ledger(path)


def test_a_withdrawn_message_is_never_pending_again_nor_queued_again(ledger):
    ledger.queue("overdue_alert:HV-0042", "HV-0042", "overdue_alert", [MANAGER], NOW)
    ledger.attempt("overdue_alert:HV-0042", NOW)
    ledger.mark_failed("overdue_alert:HV-0042", NOW, "refused for now (451 4.3.0)", permanent=False)
    withdrawn = ledger.mark_withdrawn("overdue_alert:HV-0042", LATER, "returned safely")
    assert (withdrawn.status, withdrawn.withdrawn_at, withdrawn.withdrawn_reason) == (
        "withdrawn",
        LATER,
        "returned safely",
    )
    assert withdrawn.sent_at is None and withdrawn.failed_at is None
    assert ledger.pending() == [] and ledger.failed() == [] and ledger.needs_write_back() == []
    again = ledger.queue("overdue_alert:HV-0042", "HV-0042", "overdue_alert", [MANAGER], LATER)
    assert again == withdrawn and len(ledger.entries()) == 1  # the same key stays withdrawn
    later = ledger.mark_withdrawn("overdue_alert:HV-0042", LATER + LATER.resolution, "visit cancelled")
    assert (later.withdrawn_at, later.withdrawn_reason) == (LATER, "returned safely")  # the first is kept


def test_only_a_pending_message_can_be_withdrawn(ledger):
    ledger.queue("form:HV-0001", "HV-0001", "form", [STAFF], NOW)
    ledger.mark_sent("form:HV-0001", NOW)
    ledger.queue("form:HV-0002", "HV-0002", "form", [STAFF], NOW)
    ledger.mark_failed("form:HV-0002", NOW, "refused for good (550 5.1.1)", permanent=True)
    sent = ledger.mark_withdrawn("form:HV-0001", LATER, "visit cancelled")
    failed = ledger.mark_withdrawn("form:HV-0002", LATER, "visit cancelled")
    assert (sent.status, sent.withdrawn_at, sent.withdrawn_reason) == ("sent", None, None)
    assert (failed.status, failed.withdrawn_at, failed.withdrawn_reason) == ("failed", None, None)
    with pytest.raises(KeyError):
        ledger.mark_withdrawn("form:HV-9999", NOW, "visit cancelled")


def test_recipients_refused_while_the_message_was_accepted_are_kept_with_it(ledger):
    ledger.queue("form:HV-0042", "HV-0042", "form", [STAFF, MANAGER], NOW)
    entry = ledger.mark_sent("form:HV-0042", NOW, refused={MANAGER: "550 5.1.1"})
    assert (entry.status, entry.refused) == ("sent", ((MANAGER, "550 5.1.1"),))
    again = ledger.mark_sent("form:HV-0042", LATER, refused={STAFF: "550 5.1.1"})  # a late duplicate report
    assert (again.sent_at, again.refused) == (NOW, ((MANAGER, "550 5.1.1"),))
    ledger.queue("form:HV-0043", "HV-0043", "form", [STAFF], NOW)
    assert ledger.mark_sent("form:HV-0043", NOW).refused == ()


# The messages table exactly as version 1 of homevisits created it (user_version 1).
VERSION_1 = """
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        key             TEXT NOT NULL UNIQUE,
        visit_id        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        recipients      TEXT NOT NULL,
        message_id      TEXT NOT NULL UNIQUE,
        queued_at       TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        sent_at         TEXT,
        failed_at       TEXT,
        error           TEXT,
        written_back_at TEXT
    );
    CREATE INDEX messages_visit_kind ON messages (visit_id, kind);
    INSERT INTO messages (key, visit_id, kind, recipients, message_id, queued_at, attempts, error)
        VALUES ('overdue_alert:HV-0042', 'HV-0042', 'overdue_alert', '["line.manager@school.example"]',
                '<1.2.3@school.example>', '2026-11-23T09:00:00+00:00', 1, 'refused for now (451 4.3.0)');
    INSERT INTO messages (key, visit_id, kind, recipients, message_id, queued_at, attempts, sent_at)
        VALUES ('form:HV-0041', 'HV-0041', 'form', '["a.teacher@school.example"]',
                '<4.5.6@school.example>', '2026-11-23T09:00:00+00:00', 1, '2026-11-23T09:00:00+00:00');
    PRAGMA user_version = 1;
"""


def test_a_version_1_ledger_gains_the_new_columns_and_keeps_its_messages(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_1)
    with Ledger(path, sender=SENDER) as ledger:
        (pending,) = ledger.pending()
        assert (pending.key, pending.message_id, pending.status) == (
            "overdue_alert:HV-0042",
            "<1.2.3@school.example>",
            "pending",
        )
        assert (pending.withdrawn_at, pending.withdrawn_reason, pending.refused) == (None, None, ())
        assert ledger.get("form:HV-0041").status == "sent"
        ledger.mark_withdrawn(pending.key, LATER, "returned safely")
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(messages)")]
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert columns[-4:] == ["withdrawn_at", "withdrawn_reason", "refused", "provider_id"]
    with Ledger(path) as reopened:  # opening again adds nothing and loses nothing
        assert reopened.pending() == [] and reopened.get(pending.key).withdrawn_reason == "returned safely"
        assert len(reopened.entries()) == 2


# ---------------------------------------------------------------- crashes


CRASH = """
    import datetime as dt, os, signal, sys
    from pathlib import Path
    from homevisits.ledger import Ledger
    now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
    ledger = Ledger(Path(sys.argv[1]), sender="homevisits@school.example")
    entry = ledger.queue("form:HV-0042", "HV-0042", "form", ["dsl@school.example"], now)
    if sys.argv[2] == "after_attempt":
        ledger.attempt(entry.key, now)
    print(entry.message_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies before the server could answer
"""


@pytest.mark.parametrize("moment", ["after_queue", "after_attempt"])
def test_a_run_killed_before_acceptance_leaves_the_message_pending(tmp_path, moment):
    path = tmp_path / "ledger.sqlite"
    child = run_python(CRASH, str(path), moment)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with Ledger(path) as ledger:
        (entry,) = ledger.pending()
        assert entry.message_id == out.strip()  # the retry carries the same Message-ID
        assert entry.attempts == (1 if moment == "after_attempt" else 0)
        again = ledger.queue("form:HV-0042", "HV-0042", "form", ["dsl@school.example"], LATER)
        assert again.message_id == entry.message_id and len(ledger.entries()) == 1


# ---------------------------------------------------------------- two processes


def _queue_worker(path: str, keys: list[str], barrier, results) -> None:
    with Ledger(Path(path), sender=SENDER) as ledger:
        barrier.wait()
        for key in keys:
            entry = ledger.queue(key, "HV-0042", "reminder", [STAFF], NOW)
            results.put((key, entry.message_id))


def test_processes_queueing_the_same_keys_at_once_get_one_row_each(tmp_path):
    path = tmp_path / "fresh" / "ledger.sqlite"  # not created yet: the processes race to create it too
    context = multiprocessing.get_context("spawn")
    keys = [f"reminder:HV-0042:{n}" for n in range(20)]
    workers = 4
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(
            target=_queue_worker, args=(str(path), keys[::1] if n % 2 else keys[::-1], barrier, results)
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=120) for _ in range(workers * len(keys))]
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    ids_by_key: dict[str, set[str]] = {}
    for key, message_id in answers:
        ids_by_key.setdefault(key, set()).add(message_id)
    assert all(len(ids) == 1 for ids in ids_by_key.values())  # every process got the same Message-ID
    with Ledger(path) as ledger:
        rows = ledger.entries()
    assert sorted(e.key for e in rows) == sorted(keys)
    assert {e.key: {e.message_id} for e in rows} == ids_by_key


# ---------------------------------------------------------------- run lock


HOLD_LOCK = """
    import sys, time
    from homevisits.ledger import RunInProgress, run_lock
    try:
        with run_lock(sys.argv[1]):
            print("locked", flush=True)
            sys.stdin.readline()  # hold the lock until told (or killed)
    except RunInProgress as exc:
        print("busy:", exc, flush=True)
        sys.exit(3)
"""


def test_run_lock_excludes_a_second_process(tmp_path):
    ledger_path = tmp_path / "state" / "ledger.sqlite"
    with run_lock(ledger_path) as lock_file:
        assert lock_file == lock_path_for(ledger_path) == tmp_path / "state" / "ledger.sqlite.lock"
        second = run_python(HOLD_LOCK, str(ledger_path), stdin=subprocess.PIPE)
        out, _ = second.communicate("\n", timeout=60)
        assert second.returncode == 3
        assert out.startswith("busy: Another homevisits run is in progress")
    third = run_python(HOLD_LOCK, str(ledger_path), stdin=subprocess.PIPE)
    out, _ = third.communicate("\n", timeout=60)
    assert (third.returncode, out) == (0, "locked\n")


def test_run_lock_is_exclusive_within_one_process_too(tmp_path):
    lock = tmp_path / "ledger.sqlite"
    with run_lock(lock), pytest.raises(RunInProgress) as caught, run_lock(lock):
        pass
    assert isinstance(caught.value, HomevisitsError)
    assert f"process {os.getpid()}" in str(caught.value)
    with run_lock(tmp_path / "ledger.sqlite"):
        pass  # released on the way out


def test_a_killed_holder_releases_the_lock(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite"
    holder = run_python(HOLD_LOCK, str(ledger_path), stdin=subprocess.PIPE)
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(RunInProgress), run_lock(ledger_path):
        pass
    holder.kill()
    holder.communicate(timeout=60)
    with run_lock(ledger_path):
        pass
