"""``homevisits check-setup``: one line per part of a school's setup, ✓ or ✗ with the fix.

The settings and the profile load; the sheet reads, and could be written (asked without changing a
cell); every header is placed and the policy's columns are there; the spreadsheet's locale; the
mail server answers with verified TLS and accepts the login (or, with ``--send-test``, takes one
test message); the state folder can be written; the scheduled job ran in the last 15 minutes.
Each check is independent where it can be, so a broken setup names each of its faults.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .errors import HomevisitsError

PASS, FAIL = "✓", "✗"
EXPECTED_LOCALE = "en_GB"


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str  # the part of the setup: "settings", "sheet", "mail"...
    sentence: str

    def line(self) -> str:
        return f"{PASS if self.ok else FAIL} {self.what}: {self.sentence}"


def _attempt(what: str, call: Callable[[], str]) -> Check:
    try:
        return Check(True, what, call())
    except HomevisitsError as exc:
        return Check(False, what, str(exc))
    except OSError as exc:
        return Check(False, what, f"{exc.filename or ''} {exc.strerror or exc}".strip() + ".")


# ---------------------------------------------------------------- settings and profile


def check_settings(path: Path | None) -> tuple[list[Check], Any]:
    """The config file and the policy profile: every fault found, and the config when it loads."""
    from .config import TOP_LEVEL, from_mapping
    from .settings import problems

    if path is None:
        return [
            Check(
                False,
                "settings",
                "There is no homevisits.toml here: run homevisits init, or pass --config FILE "
                "(or set HOMEVISITS_CONFIG).",
            )
        ], None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        return [Check(False, "settings", f"{path.name} could not be read ({exc}): fix that line.")], None
    faults = problems(data, path.name, TOP_LEVEL)
    if faults:
        return [Check(False, "settings", fault) for fault in faults], None
    try:
        config = from_mapping(data, path)
    except HomevisitsError as exc:
        return [Check(False, "settings", str(exc))], None
    return [Check(True, "settings", f"{path} is valid.")], config


def check_profile(config: Any) -> tuple[Check, Any]:
    from .policy import load_policy

    name = str(config.resolve(config.policy)) if config.policy.endswith(".toml") else config.policy
    try:
        policy = load_policy(name)
    except HomevisitsError as exc:
        return Check(False, "policy", str(exc)), None
    return Check(True, "policy", f"{policy.name} ({len(policy.rules)} rules) is valid."), policy


# ---------------------------------------------------------------- the sheet


def check_sheet(config: Any, policy: Any) -> Iterator[Check]:
    from .pipeline import missing_columns, open_sheet, policy_schema
    from .sheet import find_layout

    try:
        source = open_sheet(config)
        raw = source.read()
    except HomevisitsError as exc:
        yield Check(False, "sheet", str(exc))
        return
    where = f"{raw.name} ({raw.worksheet})" if raw.worksheet else raw.name
    yield Check(True, "sheet", f"{where} reads: {max(len(raw.rows) - 1, 0)} rows under the header.")
    yield _attempt("sheet writable", lambda: writable(source))
    if not raw.rows:
        yield Check(
            False, "headers", f"{where} is empty: run homevisits init-sheet to set up its header row."
        )
        return
    schema = policy_schema(policy)  # as validate reads the sheet: with the columns the checks declare
    try:
        layout = find_layout(raw, schema, config.columns)
    except HomevisitsError as exc:
        yield Check(False, "headers", str(exc))
        return
    mapping = layout.mapping
    problems = missing_columns(layout, policy, where) + duplicated(mapping, schema, config.columns)
    unplaced = unplaced_headers(mapping, schema, config.columns)
    note = (" Not placed (kept, never read): " + "; ".join(unplaced) + ".") if unplaced else ""
    if any(" (is it " in header for header in unplaced):  # looks like a column homevisits reads: map it
        problems.append("A header that looks like one of homevisits' columns is not read.")
    if problems:
        yield Check(False, "headers", " ".join(problems) + note)
    else:
        yield Check(
            True, "headers", f"{len(mapping.positions)} columns placed, every one the policy needs.{note}"
        )
    yield check_locale(source, policy)


def writable(source: Any) -> str:
    """Can the tool write the sheet? Asked without changing a cell."""
    from .sources.excel import ExcelSource, lock_file
    from .sources.gsheet import GoogleSheet

    source = getattr(source, "drive", None) or getattr(source, "sheet", None) or source  # SheetOrDriveFile
    if isinstance(source, ExcelSource):
        path = Path(source.path)
        lock = lock_file(path)
        if lock is not None:
            raise HomevisitsError(
                f"{path.name} is open in Excel or LibreOffice ({lock.name} is there): the scheduled job cannot "
                "write Form sent at and Escalated at until it is closed."
            )
        try:
            with path.open("r+b"):  # opened for writing, nothing written
                pass
            _probe_folder(path.parent)  # the tool saves beside the workbook, then moves it into place
        except (OSError, HomevisitsError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise HomevisitsError(
                f"This user ({_user()}) cannot write {path.name} or its folder ({reason}): give it write access "
                "to both, as the tool saves the workbook beside itself and moves it into place."
            ) from exc
        return f"{path.name} and its folder can be written."
    if not isinstance(source, GoogleSheet):
        return "not checked for a workbook on Google Drive: the first run-scheduled says if it cannot write."
    source.check_writable()
    return "the service account may edit the spreadsheet (checked with an empty update)."


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return "this user"


def duplicated(mapping: Any, schema: Any, columns: dict[str, str]) -> list[str]:
    """A header that appears twice, or two headers for one field: the tool would read only one of them."""
    from .schema import fold_header
    from .sheet_setup import column_letter

    index = schema.header_index()
    overrides = {fold_header(k): v for k, v in (columns or {}).items()}
    seen: dict[str, int] = {}
    found = []
    for position, text in enumerate(mapping.all_headers):
        if not text:
            continue
        name = overrides.get(fold_header(text)) or index.get(fold_header(text))
        if name is None:
            continue
        if name in seen:
            found.append(
                f"Columns {column_letter(seen[name])} '{mapping.all_headers[seen[name]]}' and {column_letter(position)} "
                f"'{text}' both hold {schema[name].header}: keep one, or rename the other."
            )
        else:
            seen[name] = position
    return found


def unplaced_headers(mapping: Any, schema: Any, columns: dict[str, str]) -> list[str]:
    """Each header the tool could not place, with the closest field and the [columns] line that maps it."""
    import difflib

    from .schema import fold_header

    index = schema.header_index()
    mapped = {fold_header(k) for k in (columns or {})}
    out = []
    for text in mapping.unmapped:
        if fold_header(text) in index or fold_header(text) in mapped:
            continue  # a duplicate, reported above
        keys = list(index)
        near = difflib.get_close_matches(fold_header(text), keys, n=1, cutoff=0.5)
        if near:
            field = index[near[0]]
            out.append(f'\'{text}\' (is it {schema[field].header}? add "{text}" = "{field}" under [columns])')
        else:
            out.append(f"'{text}'")
    return out


def check_locale(source: Any, policy: Any) -> Check:
    from .sources.gsheet import GoogleSheet

    expected = str(policy.param("HV030", "locale", EXPECTED_LOCALE))
    source = getattr(source, "drive", None) or getattr(source, "sheet", None) or source  # SheetOrDriveFile
    if not isinstance(source, GoogleSheet):
        return Check(
            True, "locale", "an Excel workbook stores dates as dates: no spreadsheet locale to check."
        )
    try:
        locale = source.spreadsheet_locale() or "unknown"
    except HomevisitsError as exc:
        return Check(False, "locale", str(exc))
    if locale == expected:
        return Check(
            True, "locale", f"the spreadsheet's locale is {locale}: dates typed 03/04/2026 are 3 April."
        )
    return Check(
        False,
        "locale",
        f"the spreadsheet's locale is {locale}, not {expected}: a date typed 03/04/2026 may be stored as 4 March. "
        "Set File → Settings → Locale: United Kingdom, then check the dates typed so far.",
    )


# ---------------------------------------------------------------- mail, state, the scheduled job


def check_mail(config: Any, send_test: str | None, now: dt.datetime) -> Check:
    from . import transports

    def run() -> str:
        transport = transports.open_transport(config.mail, config.base_dir)
        with transport:
            if send_test:
                return _send_test(transport, config, send_test, now)
            if isinstance(transport, transports.OutboxTransport):
                folder = transport.folder
                _probe_folder(folder)
                return (
                    f"transport is the outbox: messages are written to {folder} and never leave this machine; "
                    'set transport = "smtp" in [mail] to email them.'
                )
            transport.connect()  # connect, STARTTLS or TLS with the certificate verified, log in
            checks = "TLS verified" if transport.security != "none" else "a relay on this machine, no TLS"
            login = ", login accepted" if transport.username else ""
            return f"the mail server {transport.where} answered ({checks}{login}); no message was sent."

    return _attempt("mail", run)


def _send_test(transport: Any, config: Any, address: str, now: dt.datetime) -> str:
    from . import mail
    from .ledger import msgid_domain

    sender = mail.addr_spec(str(config.mail.get("from") or ""))
    if not sender:
        raise HomevisitsError('[mail] needs from = "homevisits@your-school.example" to send a test message.')
    to, refused = mail.check_recipients([address], config.mail.get("allowed_domains") or [])
    if not to:
        raise HomevisitsError(
            f"{address} is not inside [mail] allowed_domains: homevisits mails nobody outside them."
        )
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    message = mail.build_message(
        sender=sender,
        to=to,
        subject="homevisits test message",
        text="This is a test message from homevisits check-setup: the mail settings work.\n",
        message_id=f"<check-setup.{stamp}.{os.getpid()}@{msgid_domain(sender)}>",
        kind="test",
        date=now,
    )
    refused = transport.send(message)
    if refused:
        raise HomevisitsError(f"The mail server refused {address} ({', '.join(refused.values())}).")
    return f"a test message went to {address} through {transport}."


def _probe_folder(folder: Path) -> str:
    """Write and remove a file in ``folder`` (or check its nearest existing parent when it does not exist yet)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".homevisits-check-", dir=existing))
        except OSError as exc:
            raise HomevisitsError(
                f"{folder} does not exist and cannot be made in {existing} ({exc.strerror or exc}): create it, "
                "or point [state] at a folder this user can write."
            ) from exc
        return f"{folder} will be created on the first run."
    handle, name = tempfile.mkstemp(prefix=".homevisits-check-", dir=folder)
    os.close(handle)
    os.unlink(name)
    return f"{folder} can be written."


def check_state(config: Any) -> Check:
    def run() -> str:
        folders = list(dict.fromkeys([config.state_dir, config.ledger_path.parent]))
        return " ".join(_probe_folder(folder) for folder in folders)

    try:
        return Check(True, "state folder", run())
    except HomevisitsError as exc:
        return Check(False, "state folder", str(exc))
    except OSError as exc:
        return Check(
            False,
            "state folder",
            f"cannot write to {exc.filename or config.state_dir}: {exc.strerror or exc}.",
        )


def check_texts(config: Any) -> Check:
    """[sms]: the Notify key works, the template is ``((message))``, inbound texts can be read."""

    def attempt() -> str:
        from . import sms

        settings = sms.sms_settings(config)
        if settings is None or settings.provider != "notify":
            return 'texts go to a folder (provider = "outbox"): nothing to check with Notify.'
        problems = sms.check_setup(settings)
        if problems:
            raise HomevisitsError(" ".join(problems))
        return "GOV.UK Notify accepted the key; the template is ((message))."

    return _attempt("texts", attempt)


def check_job(config: Any, now: dt.datetime) -> Check:
    from . import heartbeat

    fine, sentence = heartbeat.describe(heartbeat.read(config.state_dir), now, ZoneInfo(config.timezone))
    return Check(fine, "scheduled job", sentence)


def check_setup(config_path: Path | None, now: dt.datetime, *, send_test: str | None = None) -> list[Check]:
    """Every check, in the order an admin fixes them."""
    checks, config = check_settings(config_path)
    if config is None:
        return checks
    profile, policy = check_profile(config)
    checks.append(profile)
    if policy is not None:
        checks.extend(check_sheet(config, policy))
    checks.append(check_mail(config, send_test, now))
    if getattr(config, "sms", None):
        checks.append(check_texts(config))
    checks.append(check_state(config))
    checks.append(check_job(config, now))
    return checks
