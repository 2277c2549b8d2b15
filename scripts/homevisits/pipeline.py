"""The road every command walks: read the sheet, map its headers, parse the visits, check them."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .background import InBackground
from .config import Config
from .errors import HomevisitsError
from .sheet import RawSheet
from .sources import Source

if TYPE_CHECKING:
    from .findings import Finding, Report
    from .policy import Policy
    from .schema import HeaderMap, Schema
    from .sheet import CellUpdate, SheetLayout
    from .sources.writeback import WriteResult
    from .visits import Visits


@dataclass
class Checked:
    """A sheet read, parsed and checked at ``now``."""

    config: Config
    source: Source
    raw: RawSheet
    visits: Visits
    policy: Policy
    now: dt.datetime
    findings: list[Finding]
    layout: SheetLayout | None = None  # where the read found the header row and columns

    @property
    def mapping(self) -> HeaderMap | None:
        """Which column holds which field, as the read found it (the layout's)."""
        return self.layout.mapping if self.layout is not None else None

    def write_back(self, updates: list[CellUpdate]) -> WriteResult:
        """Write the tool's cells into the columns this read found (never a layout found again later:
        a column moved since the read stops the write with one sentence, ``sheet.LayoutChanged``)."""
        return self.source.write(updates, self.layout)

    def require_return_columns(self) -> None:
        """Stop with one sentence when the policy watches safe returns and the sheet lacks a column the
        check depends on (visit date, start time, expected return or duration, returned at, status)."""
        from .schema import require_return_columns

        if "HV022" in self.policy.rules and self.layout is not None:
            raw = self.raw
            require_return_columns(
                self.layout.mapping,
                self.layout.schema,
                f"{raw.name} ({raw.worksheet})" if raw.worksheet else raw.name,
            )

    def report(self) -> Report:
        from .cells import printable
        from .findings import Report

        # the spreadsheet's and tab's titles are the school's text too
        source = printable(
            self.raw.name if not self.raw.worksheet else f"{self.raw.name} ({self.raw.worksheet})"
        )
        return Report(
            source=f"DEMO DATA, invented visits: {source}" if self.config.demo else source,
            policy=self.policy.name,
            checked_at=self.now.isoformat(timespec="seconds"),
            rows=len(self.visits),
            findings=self.findings,
        )


def parse_now(text: str | None, tz: ZoneInfo) -> dt.datetime:
    """``--now`` as an aware datetime: ISO 8601, read in the school's time zone when it has no offset."""
    if not text:
        return dt.datetime.now(tz)
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise HomevisitsError(
            f"--now '{text}' is not an ISO 8601 date and time, e.g. 2026-11-23T09:00."
        ) from exc
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)


def is_spreadsheet(source: str) -> bool:
    """A Google Sheet is named by its URL or its key; anything else is a file path."""
    text = source.strip()
    if text.startswith(("https://", "http://")):
        return True
    return len(text) >= 30 and "/" not in text and "." not in text and " " not in text


def apply_overrides(
    config: Config, *, source: str | None, worksheet: str | None, policy: str | None
) -> Config:
    """Command-line options win over the config file."""
    if source:
        if config.demo:  # a sheet of the admin's own: plain defaults, outputs under ./state
            config = Config(
                path=None, base_dir=config.base_dir, policy=config.policy, timezone=config.timezone
            )
        from .sources.drive import is_drive_url

        key = "drive_file" if is_drive_url(source) else "spreadsheet" if is_spreadsheet(source) else "path"
        config.source = {
            k: v for k, v in config.source.items() if k not in ("path", "spreadsheet", "drive_file")
        }
        config.source[key] = source if key != "path" else str(Path(source).expanduser().resolve())
    if worksheet:
        config.source["worksheet"] = worksheet
    if policy:
        config.policy = policy
    return config


def open_sheet(config: Config, now: dt.datetime | None = None) -> Source:
    """The source the config names (building the demo workbook first, dated around ``now``, the
    command's ``--now`` or else the clock, when the demo has none yet)."""
    from .sources import open_source

    if config.demo and "path" in config.source:
        workbook = config.resolve(config.source["path"])
        if not workbook.exists():
            from .demo_data import build_demo_workbook

            build_demo_workbook(workbook, now or dt.datetime.now(ZoneInfo(config.timezone)))
    return open_source(config.source, config.base_dir, columns=config.columns, timezone=config.timezone)


@contextmanager
def bulk_work() -> Iterator[None]:
    """Pause Python's cycle collector while millions of cells are read and parsed: it would rescan them
    again and again to find no cycles (reference counting still frees everything as usual).

    On leaving, what was made is filed straight with the oldest objects (``gc.freeze`` then
    ``gc.unfreeze``): left young, the first collection after this would scan every cell once more
    (about 0.2 s on a 50,000-row log) only to find them all still in use.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _phone_patterns() -> None:
    from .uk_numbers import prepare

    prepare()


def _output_helpers() -> None:
    import numpy.char  # noqa: F401 - rules write instants with it

    from . import cleaning  # noqa: F401 - findings show cleaned values with it


WARM_UPS: tuple[Callable[[], None], ...] = (_phone_patterns, _output_helpers)


def meanwhile(reading: InBackground, patience: float = 0.3) -> None:
    """Load what the check needs later (GB phone patterns, output helpers) while a long read is still
    busy outside Python's lock: time the read leaves free. None of it when the read ends within
    ``patience`` seconds (a small sheet: it may need none of it, and starts faster without). From its
    first wait the main thread counts as idle, so the read's helper (the error-cell scan) starts then
    (background.when_idle)."""
    reading.wait(patience)
    for warm_up in WARM_UPS:
        if not reading.running():
            return
        warm_up()


def policy_schema(policy: Policy) -> Schema:
    """The sheet's columns as this policy reads them: the schema's, and any its checks declare."""
    from .schema import load_schema

    return load_schema().with_columns(policy.columns)


def missing_columns(layout: SheetLayout, policy: Policy, where: str) -> list[str]:
    """What the policy's checks need and the sheet's header row lacks, a sentence each (none: empty)."""
    from .schema import require_columns

    problems = []
    try:
        require_columns(layout.mapping, policy.needed_columns(), layout.schema, where)
    except HomevisitsError as exc:
        problems.append(str(exc))
    for group in policy.needed_alternatives():
        if not any(name in layout.mapping.positions for name in group):
            headers = " or ".join(f"'{layout.schema[name].header}'" for name in group)
            problems.append(
                f"{where} needs a column {headers} for the policy's checks: add one of them "
                "(homevisits init-sheet adds it), or map yours under [columns]."
            )
    return problems


def load(config: Config, now: dt.datetime) -> Checked:
    """Read, parse and check: the findings every command starts from."""
    with bulk_work():
        return _load(config, now)


def _load(config: Config, now: dt.datetime) -> Checked:
    tz = ZoneInfo(config.timezone)
    source = open_sheet(config, now)
    # The one read of the run (write-back checks rows against this snapshot). The reader works
    # outside Python's lock, so pandas, the policy and the schema load meanwhile.
    reading = InBackground(source.read)
    reading.settle()  # the read's first steps go before the imports take Python's lock
    try:
        from .policy import check, load_policy
        from .sheet import find_layout
        from .visits import build_visits

        policy = load_policy(
            str(config.resolve(config.policy)) if config.policy.endswith(".toml") else config.policy
        ).with_timings(config.timings)
        schema = policy_schema(policy)
        meanwhile(reading)
    except BaseException:
        reading.wait()  # never leave the reader running behind an error
        raise
    raw = reading.result()
    where = f"{raw.name} ({raw.worksheet})" if raw.worksheet else raw.name
    if not raw.rows:
        raise HomevisitsError(f"{where} is empty: it needs a header row and one row per visit.")
    layout = find_layout(raw, schema, config.columns)  # found once: write-back goes by it too
    missing = missing_columns(layout, policy, where)
    if missing:
        raise HomevisitsError(missing[0])
    visits = build_visits(raw, schema, layout.mapping, layout.header_pos, tz)
    findings = check(visits, policy, now)
    return Checked(
        config=config,
        source=source,
        raw=raw,
        visits=visits,
        policy=policy,
        now=now,
        findings=findings,
        layout=layout,
    )
