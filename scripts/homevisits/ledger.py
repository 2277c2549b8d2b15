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
import errno
import hashlib
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
    "overdue_text",  # the alerts by text (sms.py): one entry per stage and mobile
    "smt_text",
    "inbound_text",  # a staff text read from Notify, processed (checkin.py): no content stored
    "reply_text",  # the tool's answer to it, or a safe-return notice
    "duress_alert",  # the duress word was texted: line manager and SMT, by email
    "duress_text",  # ... and by text
    "safe_notice",  # a safe return texted in after an alert: to the people the alert emailed
)
# Which sheet column the tool writes from a sent message of each kind.
WRITE_BACK_FIELDS = {"form": "form_sent_at", "overdue_alert": "escalated_at"}
DEFAULT_LEDGER = "state/ledger.sqlite"
SCHEMA_VERSION = 2  # 2: withdrawn_at, withdrawn_reason, refused (added to a version 1 file on opening)
BUSY_TIMEOUT_S = 5.0  # a short wait: runs never overlap (run lock), so a lock this long is another program
FALLBACK_DOMAIN = "homevisits.invalid"
MEMORY = ":memory:"

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
    refused         TEXT,
    provider_id     TEXT
);
CREATE INDEX IF NOT EXISTS messages_visit_kind ON messages (visit_id, kind);
"""
# Columns added since version 1, with their type: ALTER TABLE adds them to an older ledger when opened.
ADDED_COLUMNS = {
    "withdrawn_at": "TEXT",
    "withdrawn_reason": "TEXT",
    "refused": "TEXT",
    "provider_id": "TEXT",  # a text's id at GOV.UK Notify
}
COLUMNS = (
    "id, key, visit_id, kind, recipients, message_id, queued_at, attempts, last_attempt_at, "
    "sent_at, failed_at, error, written_back_at, withdrawn_at, withdrawn_reason, refused"
)


class RunInProgress(HomevisitsError):
    """Another homevisits run holds the lock: this one did nothing (run-scheduled exits 0 quietly)."""


class LedgerUnavailable(HomevisitsError):
    """The ledger cannot be opened or written: ``cause`` is locked, read-only, full, corrupt or other.

    The scheduled job still sends alerts without it (forms and reminders wait) and exits 2 with this
    sentence."""

    def __init__(self, path: Path, cause: str, detail: str) -> None:
        self.path, self.cause, self.detail = Path(path), cause, detail
        super().__init__(self.sentence())

    def sentence(self) -> str:
        where, folder = self.path, self.path.parent
        return {
            "locked": f"The ledger {where} is locked by another program ({self.detail}): close whatever "
            "has it open (a database browser, a backup tool) so the next run can record what it sends.",
            "read-only": f"The ledger {where} cannot be written ({self.detail}): let the account that runs "
            f"homevisits write to {folder} (and the ledger files in it).",
            "full": f"The disk holding the ledger {where} is full ({self.detail}): free some space on it.",
            "corrupt": f"The ledger {where} is damaged ({self.detail}).",
        }.get(self.cause, f"The ledger {where} could not be used ({self.detail}): check [state] ledger.")


def ledger_problem(path: Path, exc: BaseException) -> LedgerUnavailable:
    """What went wrong with the ledger, in one of the words the admin can act on."""
    text = str(exc).lower()
    number = getattr(exc, "errno", None)
    detail = str(exc) or type(exc).__name__
    if number == errno.ENOSPC or "full" in text:
        return LedgerUnavailable(path, "full", detail)
    if "locked" in text or "busy" in text:
        return LedgerUnavailable(path, "locked", detail)
    if number in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or "read-only" in text:
        return LedgerUnavailable(path, "read-only", detail)
    if "unable to open" in text:
        writable = os.access(Path(path).parent, os.W_OK) and _fs_writable(Path(path).parent)
        return LedgerUnavailable(path, "other" if writable else "read-only", detail)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return LedgerUnavailable(path, "corrupt", detail)
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return LedgerUnavailable(path, "corrupt", detail)
    return LedgerUnavailable(path, "other", detail)


def _fs_writable(folder: Path) -> bool:
    try:
        return not (os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def alert_message_id(key: str, due: dt.datetime | None, domain: str) -> str:
    """A Message-ID derived from the alert's key and due time: the same whether or not a ledger holds it,
    so a repeat sent while the ledger was broken is recognisable as the same alert."""
    stamp = due.astimezone(dt.UTC).strftime("%Y%m%dT%H%M") if due is not None else "unknown"
    digest = hashlib.sha256(f"{key}|{stamp}".encode()).hexdigest()[:24]
    return f"<alert.{digest}@{domain}>"


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
        memory = str(path) == MEMORY
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                MEMORY if memory else self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise ledger_problem(self.path, exc) from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._setup()
        except (sqlite3.Error, OSError) as exc:
            self._db.close()
            raise ledger_problem(self.path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_memory(cls, *, sender: str | None = None) -> Ledger:
        """A ledger for this run only, when the file cannot be used: alerts still go, and are written back."""
        return cls(Path(MEMORY), sender=sender)

    @property
    def in_memory_only(self) -> bool:
        return str(self.path) == MEMORY

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
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ledger_problem(self.path, exc) from exc
        try:
            yield self._db
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise ledger_problem(self.path, exc) from exc
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise ledger_problem(self.path, exc) from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def get(self, key: str) -> Entry | None:
        found = self._select("key = ?", (key,))
        return found[0] if found else None

    def _select(self, where: str = "1", params: Sequence[object] = (), order: str = "id") -> list[Entry]:
        try:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY {order}", params
            ).fetchall()
        except sqlite3.Error as exc:
            raise ledger_problem(self.path, exc) from exc
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

    def queue(
        self,
        key: str,
        visit_id: str,
        kind: str,
        recipients: Iterable[str],
        now: dt.datetime,
        message_id: str | None = None,
    ) -> Entry:
        """Record the intent to send; the existing entry (same Message-ID) if the key is already there.
        ``message_id``: a given one (alerts derive theirs from key and due time), else a new one."""
        if not key or not visit_id:
            raise ValueError("a ledger entry needs a key and a visit ID")
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        stamp = _stamp(now)
        with self._write() as db:
            db.execute(
                "INSERT INTO messages (key, visit_id, kind, recipients, message_id, queued_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (
                    key,
                    visit_id,
                    kind,
                    json.dumps(list(recipients)),
                    message_id or make_msgid(domain=self.domain),
                    stamp,
                ),
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

    def note_provider_id(self, key: str, provider_id: str) -> None:
        """The id the text provider (GOV.UK Notify) gave the message it accepted."""
        self._update(key, "provider_id = COALESCE(provider_id, ?)", (provider_id,))

    def provider_id(self, key: str) -> str | None:
        try:
            row = self._db.execute("SELECT provider_id FROM messages WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise ledger_problem(self.path, exc) from exc
        return row[0] if row else None

    def carry_over(self, renames: Mapping[str, str]) -> int:
        """Entries kept under a row's fingerprint (no Visit ID yet) move to the ID the row now has."""
        if not renames:
            return 0
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE messages SET visit_id = ? WHERE visit_id = ?",
                [(new, old) for old, new in renames.items()],
            )
            return db.total_changes - before

    def visit_ids(self, prefix: str) -> set[str]:
        """The visit references in the ledger that start with ``prefix``."""
        try:
            rows = self._db.execute(
                "SELECT DISTINCT visit_id FROM messages WHERE visit_id LIKE ? ESCAPE '!'",
                (prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%",),
            ).fetchall()
        except sqlite3.Error as exc:
            raise ledger_problem(self.path, exc) from exc
        return {row[0] for row in rows}

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


def move_aside(path: Path, now: dt.datetime) -> Path:
    """Rename a damaged ledger (and its -wal and -shm files) out of the way, with a timestamped name."""
    path = Path(path)
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, target.with_name(target.name + suffix))
    return target


def open_or_recover(path: Path, now: dt.datetime, *, sender: str | None = None) -> tuple[Ledger, str | None]:
    """The ledger, and what went wrong with it (None: nothing). A damaged ledger is moved aside and a new
    one started (the sheet's Form sent at and Escalated at keep what was sent from being sent again);
    a ledger that cannot be used at all gives a ledger in memory for this run, so alerts still go."""
    try:
        return Ledger(path, sender=sender), None
    except LedgerUnavailable as exc:
        problem = exc
    if problem.cause == "corrupt":
        try:
            moved = move_aside(path, now)
            fresh = Ledger(path, sender=sender)
        except (OSError, LedgerUnavailable) as exc:
            problem = exc if isinstance(exc, LedgerUnavailable) else ledger_problem(path, exc)
        else:
            return fresh, (
                f"{problem.sentence()} homevisits moved it aside to {moved.name} and started a new one; "
                "what the sheet shows as sent (Form sent at, Escalated at) is not sent again."
            )
    log.warning("ledger unavailable: %s", problem.cause)
    return Ledger.in_memory(sender=sender), (
        f"{problem.sentence()} Alerts were still sent this run; forms and reminders wait until it is fixed."
    )


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
        raise ledger_problem(Path(ledger_path), exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            raise RunInProgress(
                f"Another homevisits run is in progress{f' (process {holder})' if holder.isdigit() else ''}: "
                "this run did nothing; the next one will catch up."
            ) from exc
        with contextlib.suppress(
            OSError
        ):  # the process number only helps a person: a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
