"""The column catalogue (sheets_schema/home_visits.yaml): load it, find a sheet's header row, map its headers."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .a1 import column_letters as column_name
from .cells import choice_lookup, printable
from .errors import HomevisitsError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "sheets_schema" / "home_visits.yaml"
TYPES = ("text", "date", "time", "datetime", "duration", "phone", "email", "yesno", "choice")
HEADER_SCAN_ROWS = 10


def fold_header(text: Any) -> str:
    """A header reduced to letters and digits, so ``Parent/Carer  Name`` matches ``parent carer name``."""
    return re.sub(r"[^0-9a-z]+", "", str(text).lower())


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    type: str
    help: str
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    lookup: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    owner: str = "staff"
    meanings: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)

    def meaning(self, tag: str) -> tuple[str, ...]:
        """The canonical values tagged ``tag`` under ``meanings`` (the status column's visit states)."""
        return tuple(value for value, tags in self.meanings.items() if tag in tags)

    def header_keys(self) -> set[str]:
        return {fold_header(self.header), fold_header(self.field), *(fold_header(a) for a in self.aliases)}


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_field", {c.field: c for c in self.columns})

    def __getitem__(self, name: str) -> Column:
        return self._by_field[name]  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._by_field  # type: ignore[attr-defined]

    @property
    def fields(self) -> list[str]:
        return [c.field for c in self.columns]

    def with_columns(self, extra: Iterable[Column]) -> Schema:
        """The catalogue plus columns of the school's own (declared by a profile's checks)."""
        added = {c.field: c for c in extra if c.field not in self}
        return Schema(name=self.name, columns=(*self.columns, *added.values())) if added else self

    def header_index(self) -> dict[str, str]:
        """Folded header or alias -> field. Canonical headers win over aliases that collide."""
        index: dict[str, str] = {}
        for column in self.columns:
            for key in column.header_keys() - {fold_header(column.header)}:
                index.setdefault(key, column.field)
        for column in self.columns:
            index[fold_header(column.header)] = column.field
        return index


@lru_cache(maxsize=4)
def load_schema(path: Path | str = SCHEMA_PATH) -> Schema:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HomevisitsError(f"Could not read the column catalogue {path}: {exc}") from exc
    columns = []
    for item in data["columns"]:
        kind = item["type"]
        if kind not in TYPES:
            raise HomevisitsError(f"Column {item['field']} in {path.name} has an unknown type '{kind}'.")
        choices = item.get("choices") or {}
        meanings = {str(k): tuple(v or ()) for k, v in (item.get("meanings") or {}).items()}
        stray = sorted(set(meanings) - set(choices))
        if stray:
            raise HomevisitsError(
                f"Column {item['field']} in {path.name} gives a meaning to {stray[0]}, which is not one of its choices."
            )
        columns.append(
            Column(
                field=item["field"],
                header=item["header"],
                type=kind,
                help=item.get("help", ""),
                aliases=tuple(item.get("aliases") or ()),
                choices=tuple(choices),
                lookup=choice_lookup(choices),
                owner=item.get("owner", "staff"),
                meanings=meanings,
            )
        )
    return Schema(name=data.get("name", path.stem), columns=tuple(columns))


# ---------------------------------------------------------------- the header row


def find_header_row(
    rows: Sequence[Sequence[Any]], schema: Schema, extra: Mapping[str, str] | None = None
) -> int:
    """The position (0-based) of the header row among the first ten rows: the one naming most known columns."""
    index = schema.header_index()
    extra_keys = {fold_header(k) for k in (extra or {})}
    best, best_score = -1, 0
    for position, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        keys = {fold_header(cell) for cell in row if isinstance(cell, str) and cell.strip()}
        score = len({index[k] for k in keys if k in index}) + len(keys & extra_keys)
        if score > best_score:
            best, best_score = position, score
    if best_score < 2:
        raise HomevisitsError(
            "Could not find the header row in the first 10 rows: the sheet should have a row of column "
            "headers such as 'Visit date' and 'Learner name'."
        )
    return best


@dataclass
class HeaderMap:
    """Which sheet column (0-based position) holds which field, and what its header says."""

    positions: dict[str, int]
    headers: dict[str, str]
    unmapped: list[str]  # headers the tool does not know (kept, reported by HV029)
    all_headers: list[str]
    unplaced: list[tuple[int, str]] = field(default_factory=list)  # (0-based column, header) of each

    def suggestions(self, schema: Schema) -> list[tuple[int, str, str | None]]:
        """Each header not placed, with the field it most resembles among those the sheet lacks."""
        free = [c for c in schema.columns if c.field not in self.positions]
        keys = {key: c.field for c in free for key in sorted(c.header_keys())}
        out = []
        for position, header in self.unplaced:
            best = difflib.get_close_matches(fold_header(header), list(keys), n=1, cutoff=0.6)
            out.append((position, header, keys[best[0]] if best else None))
        return out


def map_headers(
    header_row: Sequence[Any], schema: Schema, overrides: Mapping[str, str] | None = None
) -> HeaderMap:
    """Map a sheet's own headers to fields: the config's ``[columns]`` first, then headers and aliases."""
    index = schema.header_index()
    override_index: dict[str, str] = {}
    for header, name in (overrides or {}).items():
        if name not in schema:
            suggestion = _closest(name, schema.fields)
            raise HomevisitsError(
                f"[columns] maps '{header}' to '{name}', which is not a field"
                + (f" (did you mean '{suggestion}'?)." if suggestion else ".")
            )
        override_index[fold_header(header)] = name
    positions: dict[str, int] = {}
    headers: dict[str, str] = {}
    unmapped: list[str] = []
    unplaced: list[tuple[int, str]] = []
    all_headers: list[str] = []
    for position, cell in enumerate(header_row):
        text = "" if cell is None else " ".join(printable(str(cell)).split())
        all_headers.append(text)
        if not text:
            continue
        key = fold_header(text)
        name = override_index.get(key) or index.get(key)
        if name is None:
            unmapped.append(text)
            unplaced.append((position, text))
            continue
        if name in positions:
            first = positions[name]
            raise HomevisitsError(
                f"Two columns hold {schema[name].header}: '{headers[name]}' in column {column_name(first)} and "
                f"'{text}' in column {column_name(position)}; homevisits cannot tell which to read. Rename or "
                "remove one of them (or map one to another field under [columns])."
            )
        positions[name] = position
        headers[name] = text
    return HeaderMap(
        positions=positions, headers=headers, unmapped=unmapped, all_headers=all_headers, unplaced=unplaced
    )


# The columns the safe-return loop cannot watch a visit without (issue 10's alert; rule HV022).
RETURN_COLUMNS: tuple[tuple[str, ...], ...] = (
    ("visit_date",),
    ("start_time",),
    ("expected_return", "expected_duration"),
    ("returned_at",),
    ("status",),
)


def require_return_columns(mapping: HeaderMap, schema: Schema, sheet: str) -> None:
    """Stop (one sentence, exit 2) when a column the safe-return check depends on cannot be found:
    ``check-returns`` and ``run-scheduled`` never watch visits blind."""
    for group in RETURN_COLUMNS:
        if any(name in mapping.positions for name in group):
            continue
        wanted = " or ".join(f"'{schema[name].header}'" for name in group)
        near = [(h, f) for _, h, f in mapping.suggestions(schema) if f in group]
        hint = (
            f' Is it \'{near[0][0]}\'? Then add under [columns] in the config: "{near[0][0]}" = "{near[0][1]}".'
            if near
            else f" Add the column (homevisits init-sheet adds it) or map your own header under [columns], "
            f'e.g. "Back by" = "{group[0]}".'
        )
        raise HomevisitsError(
            f"{sheet} has no column {wanted}, which the safe-return check needs: homevisits will not watch "
            f"returns without it.{hint}"
        )


def require_columns(mapping: HeaderMap, needed: Iterable[str], schema: Schema, sheet: str) -> None:
    """One clear error naming every column the policy needs that the sheet lacks, with the closest header."""
    missing = [name for name in dict.fromkeys(needed) if name not in mapping.positions]
    if not missing:
        return
    spare = [h for h in mapping.unmapped if h]
    parts = []
    for name in missing:
        wanted = schema[name].header
        near = _closest(wanted, spare)
        parts.append(f"'{wanted}'" + (f" (is it '{near}'?)" if near else ""))
    raise HomevisitsError(
        f"{sheet} is missing {len(missing)} column{'s' if len(missing) > 1 else ''} the policy needs: "
        + ", ".join(parts)
        + ". Add them (homevisits init-sheet adds the missing columns after your last one), or map your own "
        "headers under [columns] in the config."
    )


def _closest(word: str, options: Sequence[str]) -> str | None:
    folded = {fold_header(o): o for o in options}
    best = difflib.get_close_matches(fold_header(word), list(folded), n=1, cutoff=0.5)
    return folded[best[0]] if best else None
