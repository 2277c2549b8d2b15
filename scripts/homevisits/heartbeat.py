"""The scheduled job is watched: run-scheduled records each run it finishes, and tells a heartbeat URL.

``state/last_run.json`` holds when run-scheduled last finished a run (it read the sheet and did what
was due: exit 0 or 1) and when it last finished cleanly (exit 0). ``validate``, ``status`` and
``check-setup`` read it and warn when the last run is more than :data:`STALE_AFTER` ago, because a
cron line that stopped (a wrong ``cd``, a reboot, a full disk) would otherwise alert nobody.

``[schedule] heartbeat_url`` (optional) is requested with a plain GET after every clean run and
``<url>/fail`` after a failed one, the convention of Healthchecks-style dead-man's-switch services,
so someone outside the school's server hears when it stops. A heartbeat that cannot be delivered is
a warning on stderr: it never stops a run and never changes its exit status.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .config import Config

FILE_NAME = "last_run.json"
STALE_AFTER = dt.timedelta(minutes=15)
PING_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LastRun:
    finished_at: dt.datetime  # the last run that read the sheet and did what was due (exit 0 or 1)
    status: int
    clean_at: dt.datetime | None  # the last run that exited 0


def path_for(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read(state_dir: Path) -> LastRun | None:
    """The last run recorded in the state folder, or None (never ran, or the record is unreadable)."""
    try:
        data = json.loads(path_for(state_dir).read_text(encoding="utf-8"))
        clean = data.get("clean_at")
        return LastRun(
            dt.datetime.fromisoformat(data["finished_at"]),
            int(data["status"]),
            dt.datetime.fromisoformat(clean) if clean else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record(state_dir: Path, now: dt.datetime, status: int) -> None:
    """Write the record atomically (a half-written file is never read as a run)."""
    before = read(state_dir)
    clean = now if status == 0 else (before.clean_at if before else None)
    data = {
        "finished_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "status": status,
        "clean_at": clean.astimezone(dt.UTC).isoformat(timespec="seconds") if clean else None,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".last_run-", dir=state_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temporary, path_for(state_dir))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def describe(last: LastRun | None, now: dt.datetime, tz: dt.tzinfo) -> tuple[bool, str]:
    """(fine, one sentence) on the scheduled job, as validate, status and check-setup say it."""
    if last is None:
        return False, (
            "The scheduled job (homevisits run-scheduled) has never run with this state folder: until cron or "
            "a systemd timer runs it every 5 minutes, nobody is alerted when a safe return is overdue."
        )
    age = now - last.finished_at
    when = last.finished_at.astimezone(tz).strftime("%a %d %b %Y %H:%M")
    minutes = max(0, int(age.total_seconds() // 60))
    ago = (
        f"{minutes} minute{'' if minutes == 1 else 's'} ago"
        if minutes < 120
        else f"{minutes // 60} hours ago"
    )
    outcome = {
        0: "",
        1: " (something was left for the next run: see its log)",
    }.get(last.status, " (it could not do everything, though alerts went: see its log)")
    if age > STALE_AFTER:
        return False, (
            f"The scheduled job last ran {when}, {ago}{outcome}: it should run every 5 minutes, so check the "
            "cron line or systemd timer and its log; until it runs, nobody is alerted when a safe return is overdue."
        )
    return True, f"The scheduled job last ran {when}, {ago}{outcome}."


# ---------------------------------------------------------------- the heartbeat URL


def ping(url: str, ok: bool, err: TextIO) -> bool:
    """GET ``url`` (or ``url/fail``) with a short timeout; a failure is a warning, never an exception."""
    import urllib.error
    import urllib.request

    target = url if ok else url.rstrip("/") + "/fail"
    request = urllib.request.Request(target, method="GET", headers={"User-Agent": "homevisits"})
    try:
        with urllib.request.urlopen(request, timeout=PING_TIMEOUT_S) as response:
            response.read(1024)
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or type(exc).__name__
        print(
            f"homevisits: warning: the heartbeat URL in [schedule] could not be reached ({reason}); "
            "the run itself is unaffected.",
            file=err,
            flush=True,
        )
        return False


def watched(config: Config, now: dt.datetime, call: Callable[[], int], err: TextIO) -> int:
    """Run the scheduled job, then record it and tell the heartbeat URL (``/fail`` when it failed)."""
    url = config.typed.schedule.heartbeat_url or (config.schedule or {}).get("heartbeat_url")
    try:
        status = call()
    except BaseException:
        if url:
            ping(url, False, err)
        raise
    try:
        record(config.state_dir, now, status)
    except OSError as exc:
        print(
            f"homevisits: warning: could not record the run in {config.state_dir} ({exc.strerror or exc}): "
            "status and validate will say the job is not running.",
            file=err,
            flush=True,
        )
    if url:
        ping(url, status == 0, err)
    return status
