"""Required-field checks declared as data: ``[[checks]]`` in a policy profile.

A check names a field (a schema field, or a column the school added to its sheet, declared by its
header and type), what the cell must not be (``fails_if = "empty"`` or ``"not yes"``), when the check
applies (``when``, a small safe vocabulary parsed here, never ``eval``), its severity, message, fix
and clause. A school adds its own check by editing its profile; no Python is needed.

``when`` reads: ``live``, ``started``, and the Status tags of the schema (``planned``, ``happened``,
``done``, ``no_answer``, ``cancelled``), ``<field> is yes``,
``<field> is empty`` (either with ``is not``), ``<field> == 'X'``, ``<field> != 'X'``,
``<field> in ('X', 'Y')``, combined with ``not``, ``and``, ``or`` and parentheses.

Messages and fixes are templates: ``{header[outcome]}`` is the sheet's own header of a field,
``{column}`` the header of the field checked, ``{status}`` (any field the check reads) its value.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import state
from .errors import HomevisitsError
from .findings import SEVERITIES, Text, known_format
from .rules import Context, Hit, plain, positions
from .schema import TYPES, Column
from .settings import check_keys, closest

CONDITIONS = ("empty", "not yes")
UNREADABLE = ("skip", "flag")  # skip: HV002 reports the cell; flag: the check reports it too
KEYS = (
    "id",
    "title",
    "field",
    "fields",
    "header",
    "type",
    "fails_if",
    "when",
    "severity",
    "severity_before_start",
    "message",
    "message_before_start",
    "message_unreadable",
    "fix",
    "fix_before_start",
    "unreadable",
    "clause",
    "enabled",
)
TEXT_KEYS = ("id", "title", "field", "header", "type", "fails_if", "when", "severity", "unreadable", "clause")
TEMPLATE_KEYS = ("message", "message_before_start", "message_unreadable", "fix", "fix_before_start")
STATES = (
    "live",
    "started",
    "planned",
    "happened",
    "done",
    "no_answer",
    "cancelled",
)  # the Status tags (state.py)


# ---------------------------------------------------------------- ``when``: tokens, parser, evaluation

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'[^']*'|\"[^\"]*\")|(?P<op>==|!=|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>\S))"
)
WORDS = ("and", "or", "not", "is", "in", "yes", "empty")


class WhenError(Exception):
    """A problem in a ``when`` text at a character position (0-based)."""

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(problem)
        self.problem, self.position = problem, position


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token, ending with ("end", "", len(text))."""
    out = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "bad"
        value = match.group(kind)
        start = match.start(kind)
        if kind == "bad":
            if value in "'\"":
                raise WhenError("a quote is not closed", start)
            raise WhenError(f"'{value}' is not part of the vocabulary", start)
        out.append((kind, value, start))
    out.append(("end", "", len(text)))
    return out


class _Parser:
    """Recursive descent over the tokens; the tree is nested tuples ``(op, ...)``."""

    def __init__(self, text: str, fields: Mapping[str, Any]) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.fields = fields
        self.used: list[str] = []
        self.states: list[str] = []

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, value: str, what: str) -> None:
        kind, text, position = self.take()
        if text != value or kind == "string":
            raise WhenError(f"expected {what} but found {_said(kind, text)}", position)

    def parse(self) -> tuple:
        tree = self.either()
        kind, text, position = self.peek()
        if kind != "end":
            raise WhenError(f"expected and, or or the end but found {_said(kind, text)}", position)
        return tree

    def either(self) -> tuple:
        tree = self.both()
        while self.peek()[1] == "or" and self.peek()[0] == "word":
            self.take()
            tree = ("or", tree, self.both())
        return tree

    def both(self) -> tuple:
        tree = self.negation()
        while self.peek()[1] == "and" and self.peek()[0] == "word":
            self.take()
            tree = ("and", tree, self.negation())
        return tree

    def negation(self) -> tuple:
        if self.peek()[1] == "not" and self.peek()[0] == "word":
            self.take()
            return ("not", self.negation())
        return self.atom()

    def atom(self) -> tuple:
        kind, text, position = self.take()
        if kind == "op" and text == "(":
            tree = self.either()
            self.expect(")", "')'")
            return tree
        if kind != "word" or text in WORDS:
            raise WhenError(f"expected a state or a field but found {_said(kind, text)}", position)
        if text in STATES:
            self.states.append(text)
            return ("state", text)
        name, named_at = self.field(text, position), position
        kind, text, position = self.take()
        if text == "is" and kind == "word":
            negated = self.peek()[1] == "not" and self.peek()[0] == "word"
            if negated:
                self.take()
            kind, text, position = self.take()
            if kind != "word" or text not in ("yes", "empty"):
                raise WhenError(f"expected yes or empty but found {_said(kind, text)}", position)
            if text == "yes" and getattr(self.fields[name], "type", None) != "yesno":
                raise WhenError(f"{name} is not a yes/no column, so it is never yes", named_at)
            tree: tuple = (text, name)
            return ("not", tree) if negated else tree
        if text in ("==", "!=") and kind == "op":
            value = self.text(name)
            return ("equals", name, (value,)) if text == "==" else ("not", ("equals", name, (value,)))
        if text == "in" and kind == "word":
            self.expect("(", "'(' after in")
            values = [self.text(name)]
            while self.peek()[1] == ",":
                self.take()
                values.append(self.text(name))
            self.expect(")", "')' or ','")
            return ("equals", name, tuple(values))
        raise WhenError(f"expected is, ==, != or in after {name} but found {_said(kind, text)}", position)

    def field(self, name: str, position: int) -> str:
        if name not in self.fields:
            near = closest(name, [*self.fields, *STATES])
            raise WhenError(
                f"{name} is neither a field nor a state" + (f" (did you mean {near}?)" if near else ""),
                position,
            )
        self.used.append(name)
        return name

    def text(self, name: str) -> str:
        """A value in quotes, one of the field's choices when it has a list (a typo would never match)."""
        kind, text, position = self.take()
        if kind != "string":
            raise WhenError(f"expected a value in quotes but found {_said(kind, text)}", position)
        value = text[1:-1]
        choices = getattr(self.fields[name], "choices", ())
        if choices and value not in choices:
            near = closest(value, choices)
            raise WhenError(
                f"'{value}' is not a {name} of the list ({', '.join(choices)})"
                + (f": did you mean '{near}'?" if near else ""),
                position,
            )
        return value


def _said(kind: str, text: str) -> str:
    return "the end" if kind == "end" else text if kind == "string" else f"'{text}'"


def parse_when(text: str, fields: Mapping[str, Any]) -> tuple[tuple, tuple[str, ...], tuple[str, ...]]:
    """The tree of a ``when`` text, the fields it names and the states it uses (each a reading of the
    Status); :class:`WhenError` says what is wrong where."""
    parser = _Parser(text, fields)
    tree = parser.parse()
    return tree, tuple(dict.fromkeys(parser.used)), tuple(dict.fromkeys(parser.states))


def evaluate(tree: tuple, ctx: Context) -> np.ndarray:
    """The rows where the condition holds (a fresh array: the caller may change it)."""
    op = tree[0]
    if op == "and":
        return evaluate(tree[1], ctx) & evaluate(tree[2], ctx)
    if op == "or":
        return evaluate(tree[1], ctx) | evaluate(tree[2], ctx)
    if op == "not":
        return ~evaluate(tree[1], ctx)
    if op == "state":
        if tree[1] in ("live", "started"):  # the rules' shared masks (started also reads the start time)
            return np.array(getattr(ctx, tree[1])(), dtype=bool)
        return np.array(getattr(state, tree[1])(ctx.f["status"]), dtype=bool)  # a Status tag
    if op == "yes":
        return np.array(ctx.yes(tree[1]), dtype=bool)
    if op == "empty":
        return np.array(ctx.empty(tree[1]), dtype=bool)
    return ctx.f[tree[1]].isin(tree[2]).to_numpy(dtype=bool)


# ---------------------------------------------------------------- one declared check


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    fields: tuple[str, ...]
    fails_if: str
    when: str
    tree: tuple
    names: tuple[str, ...]  # the fields ``when`` names (the sheet must have them)
    states: tuple[str, ...]  # the states ``when`` uses (live, cancelled...: readings of the Status)
    severity: str
    message: str
    fix: str
    clause: str
    severity_before_start: str | None = None
    message_before_start: str | None = None
    fix_before_start: str | None = None
    unreadable: str = "skip"
    message_unreadable: str | None = None
    columns: tuple[Column, ...] = field(default=())  # columns of the school's own the check declares

    @property
    def needs(self) -> tuple[str, ...]:
        """Columns the sheet must have (a state reads the Status, blank when the sheet has none)."""
        return tuple(dict.fromkeys([*self.fields, *self.names]))

    @property
    def reads(self) -> tuple[str, ...]:
        """The cells whose values go into each finding (besides the one checked)."""
        return tuple(dict.fromkeys([*(("status",) if self.states else ()), *self.names]))

    @property
    def texts(self) -> dict[str, Text]:
        """The wording of each kind of finding (rendered at the edge, like every rule's)."""
        return {
            "found": Text(self.message, self.fix),
            "before start": Text(
                self.message_before_start or self.message, self.fix_before_start or self.fix
            ),
            "unreadable": Text(self.message_unreadable or self.message, self.fix),
        }

    def hits(self, ctx: Context) -> Iterator[Hit]:
        """One hit per row (and field checked) where ``when`` holds and the cell fails."""
        applies = evaluate(self.tree, ctx)
        staged = self.severity_before_start or self.message_before_start or self.fix_before_start
        started = ctx.started() if staged else None
        reads = self.reads
        for name in self.fields:
            fails = (
                ctx.empty(name).copy() if self.fails_if == "empty" else ~np.asarray(ctx.yes(name), dtype=bool)
            )
            unreadable = ctx.unreadable(name)
            if self.unreadable == "skip":
                fails &= ~unreadable
            flag_unreadable = self.unreadable == "flag" and self.message_unreadable is not None
            for i in positions(applies & fails):
                values = {key: plain(ctx, i, key) for key in reads}
                values[name] = plain(ctx, i, name)
                before = started is not None and not started[i]
                kind = (
                    "unreadable"
                    if flag_unreadable and unreadable[i]
                    else "before start"
                    if before
                    else "found"
                )
                yield Hit(
                    i,
                    name,
                    severity=self.severity_before_start if before else None,
                    values=values,
                    kind=kind,
                )


# ---------------------------------------------------------------- reading [[checks]] from a profile


def load_checks(where: str, tables: Any, schema_columns: Mapping[str, Column]) -> list[Check]:
    """Every ``[[checks]]`` table of a profile, checked like every other key (one sentence when wrong)."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise HomevisitsError(f"{where}: checks must be a list of [[checks]] tables.")
    own: dict[str, Column] = {}
    for table in tables:  # the school's own columns first, so any check's ``when`` may read them
        column = _own_column(where, table, schema_columns)
        if column is not None:
            own[column.field] = column
    known = {**schema_columns, **own}
    seen: set[str] = set()
    out = []
    for number, table in enumerate(tables, 1):
        check = _one(where, number, table, known, own)
        if check is None:
            continue
        if check.id in seen:
            raise HomevisitsError(f"{where} declares check {check.id} twice: give each check its own id.")
        seen.add(check.id)
        out.append(check)
    return out


def _label(where: str, number: int, table: Mapping[str, Any]) -> str:
    name = table.get("id")
    return (
        f"{where}: check {name}" if isinstance(name, str) and name else f"{where}: [[checks]] number {number}"
    )


def _own_column(where: str, table: Mapping[str, Any], schema_columns: Mapping[str, Column]) -> Column | None:
    name = table.get("field")
    if not isinstance(name, str) or name in schema_columns or "header" not in table:
        return None
    header, kind = table.get("header"), table.get("type", "yesno")
    if not isinstance(header, str) or not header.strip():
        raise HomevisitsError(
            f"{where}: check {table.get('id')} header must be the column's header in quotes."
        )
    if kind not in TYPES:
        raise HomevisitsError(
            f"{where}: check {table.get('id')} type must be one of {', '.join(TYPES)} (it is {kind!r})."
        )
    return Column(field=name, header=header.strip(), type=kind, help=f"Declared by check {table.get('id')}.")


def _one(
    where: str, number: int, table: Mapping[str, Any], known: Mapping[str, Column], own: Mapping[str, Column]
) -> Check | None:
    label = _label(where, number, table)
    check_keys(label, table, KEYS, "key")
    for key in (*TEXT_KEYS, *TEMPLATE_KEYS):
        if key in table and not isinstance(table[key], str):
            raise HomevisitsError(f"{label} {key} must be text in quotes (it is {table[key]!r}).")
    if "enabled" in table and not isinstance(table["enabled"], bool):
        raise HomevisitsError(f"{label} enabled must be true or false (it is {table['enabled']!r}).")
    for key in ("id", "message", "fix", "clause"):
        if not str(table.get(key, "")).strip():
            raise HomevisitsError(f"{label} needs {key} (" + _NEEDS[key] + ").")
    if ("field" in table) == ("fields" in table):
        raise HomevisitsError(f"{label} needs field (the column it checks), or fields for several.")
    names = [table["field"]] if "field" in table else table["fields"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise HomevisitsError(f'{label} fields must be a list of field names, e.g. fields = ["outcome"].')
    for name in names:
        if name not in known:
            near = closest(name, known)
            raise HomevisitsError(
                f"{label} checks {name}, which is not a column"
                + (f": did you mean {near}?" if near else "")
                + ' (a column of the school\'s own needs header = "..." and type = "yesno").'
            )
    if table.get("fails_if") == "not yes":
        for name in names:
            if known[name].type != "yesno":
                raise HomevisitsError(
                    f'{label} fails_if = "not yes" needs a yes/no column, and {name} is {known[name].type}.'
                )
    if ("header" in table or "type" in table) and not any(n in own for n in names):
        raise HomevisitsError(
            f"{label} sets header or type, which only a column of the school's own takes "
            f"({names[0]} is already a column: remove them)."
        )
    choices = {
        "fails_if": (table.get("fails_if", "empty"), CONDITIONS),
        "severity": (table.get("severity", "error"), SEVERITIES),
        "severity_before_start": (table.get("severity_before_start", "error"), SEVERITIES),
        "unreadable": (table.get("unreadable", "skip"), UNREADABLE),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise HomevisitsError(
                f"{label} {key} must be one of {', '.join(repr(a) for a in allowed)} (it is {value!r})."
            )
    when = table.get("when", "live")
    try:
        tree, named, states = parse_when(when, known)
    except WhenError as problem:
        raise HomevisitsError(
            f'{label} when = "{when}" cannot be read: {problem.problem} at character {problem.position + 1}.'
        ) from None
    check = Check(
        id=table["id"].strip(),
        title=str(table.get("title") or table["id"]).strip(),
        fields=tuple(names),
        fails_if=table.get("fails_if", "empty"),
        when=when,
        tree=tree,
        names=named,
        states=states,
        severity=table.get("severity", "error"),
        message=table["message"],
        fix=table["fix"],
        clause=table["clause"].strip(),
        severity_before_start=table.get("severity_before_start"),
        message_before_start=table.get("message_before_start"),
        fix_before_start=table.get("fix_before_start"),
        unreadable=table.get("unreadable", "skip"),
        message_unreadable=table.get("message_unreadable"),
        columns=tuple(own[n] for n in names if n in own),
    )
    for key in TEMPLATE_KEYS:
        if table.get(key):
            _check_template(label, key, table[key], {*check.fields, *check.reads}, known)
    return None if table.get("enabled", True) is False else check


_NEEDS = {
    "id": 'a rule id of its own, e.g. id = "AA001"',
    "message": "what is wrong, in a sentence",
    "fix": "what to do, in a sentence",
    "clause": "the part of the policy it enforces",
}


def _check_template(label: str, key: str, text: str, values: set[str], known: Mapping[str, Any]) -> None:
    """Every ``{...}`` in a message or fix names something the check can fill in."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise HomevisitsError(f"{label} {key} cannot be read: {exc} (write {{{{ for a brace).") from None
    for _literal, name, spec, conversion in parts:
        if name is not None and (conversion or not known_format(spec or "")):
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise HomevisitsError(
                f"{label} {key} shows {{{shown}}}, a format homevisits does not have: use {{{name}}}, "
                f"{{{name}:or <words when blank>}}, or :when, :date, :rows, :and for times, dates and lists."
            )
        if name is None or name in ("column", "row") or name in values:
            continue
        inner = re.fullmatch(r"header\[([A-Za-z_][A-Za-z0-9_]*)\]", name)
        if inner and inner.group(1) in known:
            continue
        allowed = ", ".join(["{column}", "{header[<field>]}", "{row}", *(f"{{{v}}}" for v in sorted(values))])
        raise HomevisitsError(f"{label} {key} names {{{name}}}, which it cannot fill in: use {allowed}.")


# ---------------------------------------------------------------- the checks the bundled profiles declare


@lru_cache(maxsize=1)
def bundled() -> dict[str, Check]:
    """Each check id the bundled profiles declare (the first profile by name declaring it), so a
    profile that still names one under ``[rules.<id>]`` finds it."""
    import tomllib

    from .schema import load_schema

    folder = Path(__file__).resolve().parents[2] / "policies"
    columns = {c.field: c for c in load_schema().columns}
    out: dict[str, Check] = {}
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for check in load_checks(path.name, data.get("checks", []), columns):
            out.setdefault(check.id, check)
    return dict(sorted(out.items()))
