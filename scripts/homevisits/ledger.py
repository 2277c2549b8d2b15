"""The ledger: a SQLite record of every message, so nothing is lost and nothing is sent twice.

Each message has an idempotency key (``form:HV-0042``, ``reminder:HV-0042:2026-11-23T09``): queueing
the same key again returns the first entry, with the same Message-ID, whichever process asks.
The intent is recorded before sending (``queue``, ``attempt``), the server's acceptance after
(``mark_sent``). A run killed in between leaves the entry pending; the next run sends it again with
the same Message-ID, unless the sheet changed so that it no longer applies (``mark_withdrawn``: never
sent afterwards). The sheet's tool columns are written from here (``needs_write_back``).

Times are stored as UTC ISO 8601 text and come back as aware UTC datetimes. The ledger holds
visit IDs, kinds and staff recipient addresses, never a learner's details.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path

from .errors import HomevisitsError

log = logging.getLogger(__name__)

KINDS = (
    "form",
    "reminder",
    "final_reminder",
    "deadline_missed",
    "overdue_alert",
    "smt_alert",
    "admin_report",
)
# Which sheet column the tool writes from a sent message of each kind.
WRITE_BACK_FIELDS = {"form": "form_sent_at", "overdue_alert": "escalated_at"}
DEFAULT_LEDGER = "state/ledger.sqlite"
SCHEMA_VERSION = 2  # 2: withdrawn_at, withdrawn_reason, refused (added to a version 1 file on opening)
BUSY_TIMEOUT_S = 30.0
FALLBACK_DOMAIN = "homevisits.invalid"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
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
    written_back_at TEXT,
    withdrawn_at    TEXT,
    withdrawn_reason TEXT,
    refused         TEXT
);
CREATE INDEX IF NOT EXISTS messages_visit_kind ON messages (visit_id, kind);
"""
# Columns added since version 1, with their type: ALTER TABLE adds them to an older ledger when opened.
ADDED_COLUMNS = {"withdrawn_at": "TEXT", "withdrawn_reason": "TEXT", "refused": "TEXT"}
COLUMNS = (
    "id, key, visit_id, kind, recipients, message_id, queued_at, attempts, last_attempt_at, "
    "sent_at, failed_at, error, written_back_at, withdrawn_at, withdrawn_reason, refused"
)


class RunInProgress(HomevisitsError):
    """Another homevisits run holds the lock: this one did nothing (run-scheduled exits 0 quietly)."""


@dataclass(frozen=True)
class Entry:
    """One message as the ledger knows it."""

    id: int
    key: str
    visit_id: str
    kind: str
    recipients: tuple[str, ...]
    message_id: str
    queued_at: dt.datetime
    attempts: int
    last_attempt_at: dt.datetime | None
    sent_at: dt.datetime | None
    failed_at: dt.datetime | None
    error: str | None
    written_back_at: dt.datetime | None
    withdrawn_at: dt.datetime | None = None
    withdrawn_reason: str | None = None
    # (address, "550 5.1.1"): recipients refused for good while the server accepted the message
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def status(self) -> str:
        """``sent``, ``failed`` (permanently), ``withdrawn`` (no longer applies) or ``pending``."""
        if self.sent_at is not None:
            return "sent"
        if self.failed_at is not None:
            return "failed"
        if self.withdrawn_at is not None:
            return "withdrawn"
        return "pending"

    @property
    def write_back_field(self) -> str | None:
        return WRITE_BACK_FIELDS.get(self.kind)


def _stamp(now: dt.datetime) -> str:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("ledger times must be timezone-aware (pass an explicit, aware now)")
    return now.astimezone(dt.UTC).isoformat(timespec="seconds")


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        id=row["id"],
        key=row["key"],
        visit_id=row["visit_id"],
        kind=row["kind"],
        recipients=tuple(json.loads(row["recipients"])),
        message_id=row["message_id"],
        queued_at=_time(row["queued_at"]),  # type: ignore[arg-type]
        attempts=row["attempts"],
        last_attempt_at=_time(row["last_attempt_at"]),
        sent_at=_time(row["sent_at"]),
        failed_at=_time(row["failed_at"]),
        error=row["error"],
        written_back_at=_time(row["written_back_at"]),
        withdrawn_at=_time(row["withdrawn_at"]),
        withdrawn_reason=row["withdrawn_reason"],
        refused=tuple(tuple(pair) for pair in json.loads(row["refused"] or "[]")),
    )


def msgid_domain(sender: str | None) -> str:
    """The domain of the sender's address, for Message-IDs; a reserved name when there is none."""
    text = (sender or "").strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    local, at, domain = text.rpartition("@")
    domain = domain.strip().lower()
    ok = local and at and domain and all(c.isascii() and (c.isalnum() or c in ".-") for c in domain)
    return domain if ok else FALLBACK_DOMAIN


class Ledger:
    """The message ledger in one SQLite file (WAL, busy timeout): safe for two processes at once."""

    def __init__(self, path: Path, *, sender: str | None = None) -> None:
        self.path = Path(path)
        self.domain = msgid_domain(sender)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HomevisitsError(
                f"Could not open the ledger {self.path} ({exc}): check [state] ledger in the config "
                "and that the folder can be written."
            ) from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise HomevisitsError(
                f"{self.path} is not a homevisits ledger ({exc}): move it aside and run again."
            ) from exc

    def _setup(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        with self._write():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HomevisitsError(
                    f"The ledger {self.path} was written by a newer homevisits: upgrade homevisits first."
                )
            for statement in filter(None, (s.strip() for s in SCHEMA.split(";"))):
                db.execute(statement)
            present = {row["name"] for row in db.execute("PRAGMA table_info(messages)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so concurrent writers queue up."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM messages WHERE key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def _select(self, where: str = "1", params: Sequence[object] = (), order: str = "id") -> list[Entry]:
        rows = self._db.execute(f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY {order}", params)
        return [_entry(row) for row in rows]

    def entries(self, visit_id: str | None = None, kind: str | None = None) -> list[Entry]:
        """Every entry, oldest first, optionally for one visit and/or one kind."""
        clauses, params = [], []
        if visit_id is not None:
            clauses.append("visit_id = ?")
            params.append(visit_id)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        return self._select(" AND ".join(clauses) or "1", params)

    def pending(self) -> list[Entry]:
        """Queued and not yet accepted, refused for good nor withdrawn, oldest first: what a run must (re)send."""
        return self._select("sent_at IS NULL AND failed_at IS NULL AND withdrawn_at IS NULL")

    def failed(self) -> list[Entry]:
        """Refused for good: for the admin's report."""
        return self._select("failed_at IS NOT NULL AND sent_at IS NULL", order="failed_at, id")

    def last_sent(self, visit_id: str, kind: str) -> Entry | None:
        """The most recently accepted message of this kind for this visit."""
        found = self._select(
            "visit_id = ? AND kind = ? AND sent_at IS NOT NULL",
            (visit_id, kind),
            order="sent_at DESC, id DESC",
        )
        return found[0] if found else None

    def needs_write_back(self) -> list[Entry]:
        """Sent messages whose time is not yet in the sheet (``Form sent at``, ``Escalated at``)."""
        kinds = tuple(WRITE_BACK_FIELDS)
        marks = ", ".join("?" * len(kinds))
        return self._select(f"sent_at IS NOT NULL AND written_back_at IS NULL AND kind IN ({marks})", kinds)

    # ------------------------------------------------------------ writing

    def queue(self, key: str, visit_id: str, kind: str, recipients: Iterable[str], now: dt.datetime) -> Entry:
        """Record the intent to send; the existing entry (same Message-ID) if the key is already there."""
        if not key or not visit_id:
            raise ValueError("a ledger entry needs a key and a visit ID")
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        stamp = _stamp(now)
        with self._write() as db:
            db.execute(
                "INSERT INTO messages (key, visit_id, kind, recipients, message_id, queued_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, visit_id, kind, json.dumps(list(recipients)), make_msgid(domain=self.domain), stamp),
            )
            row = db.execute(f"SELECT {COLUMNS} FROM messages WHERE key = ?", (key,)).fetchone()
        entry = _entry(row)
        if (entry.visit_id, entry.kind) != (visit_id, kind):
            raise ValueError(
                f"ledger key {key!r} already belongs to a {entry.kind} for another visit or kind"
            )
        return entry

    def _update(self, key: str, sql: str, params: Sequence[object]) -> Entry:
        with self._write() as db:
            if db.execute("SELECT 1 FROM messages WHERE key = ?", (key,)).fetchone() is None:
                raise KeyError(f"no ledger entry {key!r}")
            db.execute(f"UPDATE messages SET {sql} WHERE key = ?", (*params, key))
        entry = self.get(key)
        assert entry is not None
        return entry

    def attempt(self, key: str, now: dt.datetime) -> Entry:
        """Count one attempt: call it just before handing the message to the transport."""
        return self._update(key, "attempts = attempts + 1, last_attempt_at = ?", (_stamp(now),))

    def mark_sent(self, key: str, now: dt.datetime, refused: Mapping[str, str] | None = None) -> Entry:
        """The server accepted the message. The first acceptance time is kept, with the recipients it
        refused for good at that time (``{address: "550 5.1.1"}``), if any."""
        pairs = json.dumps(list(refused.items())) if refused else None
        return self._update(
            key,
            "refused = CASE WHEN sent_at IS NULL THEN ? ELSE refused END, "
            "sent_at = COALESCE(sent_at, ?), failed_at = NULL, error = NULL",
            (pairs, _stamp(now)),
        )

    def mark_withdrawn(self, key: str, now: dt.datetime, reason: str) -> Entry:
        """A pending message no longer applies (the sheet changed): never sent, never queued again under
        its key. A message already accepted or refused for good keeps its status."""
        return self._update(
            key,
            "withdrawn_reason = CASE WHEN sent_at IS NULL AND failed_at IS NULL AND withdrawn_at IS NULL "
            "THEN ? ELSE withdrawn_reason END, "
            "withdrawn_at = CASE WHEN sent_at IS NULL AND failed_at IS NULL "
            "THEN COALESCE(withdrawn_at, ?) ELSE withdrawn_at END",
            (reason, _stamp(now)),
        )

    def mark_failed(self, key: str, now: dt.datetime, error: str, permanent: bool) -> Entry:
        """Not accepted. Temporary: stays pending with the error noted. Permanent: never retried.
        A message already accepted stays sent."""
        if permanent:
            sql = (
                "failed_at = CASE WHEN sent_at IS NULL THEN ? ELSE failed_at END, "
                "error = CASE WHEN sent_at IS NULL THEN ? ELSE error END"
            )
            params: tuple[object, ...] = (_stamp(now), error)
        else:
            sql = "error = CASE WHEN sent_at IS NULL THEN ? ELSE error END"
            params = (error,)
        return self._update(key, sql, params)

    def mark_written_back(self, keys: Iterable[str], now: dt.datetime) -> None:
        """The sheet now shows these messages' times."""
        stamp = _stamp(now)
        with self._write() as db:
            db.executemany(
                "UPDATE messages SET written_back_at = ? WHERE key = ? AND written_back_at IS NULL",
                [(stamp, key) for key in keys],
            )


def open_ledger(path: Path, *, sender: str | None = None) -> Ledger:
    """The ledger at ``path`` (config.ledger_path), created with its folder on first use.
    ``sender`` (the [mail] from address) gives Message-IDs their domain."""
    return Ledger(path, sender=sender)


# ---------------------------------------------------------------- one run at a time


def lock_path_for(ledger_path: Path) -> Path:
    """``state/ledger.sqlite.lock``: the lock file next to the ledger."""
    ledger_path = Path(ledger_path)
    return ledger_path.with_name(ledger_path.name + ".lock")


@contextlib.contextmanager
def run_lock(ledger_path: Path) -> Iterator[Path]:
    """Hold the run lock next to the ledger for the duration of the block.

    Non-blocking: if another process holds it, raise RunInProgress at once. The operating system
    releases the lock when its holder exits, however it exits, so a killed run never blocks the next.
    """
    import fcntl

    path = lock_path_for(ledger_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise HomevisitsError(
            f"Could not create the lock file {path} ({exc.strerror}): check [state] ledger."
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            raise RunInProgress(
                f"Another homevisits run is in progress{f' (process {holder})' if holder.isdigit() else ''}: "
                "this run did nothing; the next one will catch up."
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
