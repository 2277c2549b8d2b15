"""``homevisits forms --check-template FILE.docx``: every placeholder of a Word form and what is wrong
with it, each with the paragraph or table cell where it is.

It reads the .docx the way Word wrote it (python-docx): a tag Word has split across runs, a ``{{`` or
``{%`` with no partner, a block never closed or closed twice, a name that is not a field (with the
closest one), a filter that does not exist, the safe word asked for; then Jinja reads the whole
template as docxtpl will.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from .errors import HomevisitsError
from .word_forms import SECRET, environment, known_names

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_DELIMITER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_DOCXTPL_PREFIX = re.compile(r"^(\{[{%])(?:p|tr|tc|r)(?=\s)")
_OPENERS = {"if", "for", "macro", "call", "filter", "with", "block", "raw", "autoescape", "trans"}
_MIDDLE = {"elif": "if", "else": ("if", "for")}
_KEYWORDS = {
    "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor", "set", "endset",
    "true", "false", "none", "True", "False", "None", "with", "endwith", "macro", "endmacro", "call",
    "endcall", "filter", "endfilter", "block", "endblock", "recursive", "import", "from", "as",
    "include", "extends", "raw", "endraw", "do", "continue", "break", "hm", "vm", "cellbg", "colspan",
}  # fmt: skip


@dataclass(frozen=True)
class Tag:
    text: str
    where: str
    runs: int  # how many of Word's runs the tag's text is spread over


@dataclass(frozen=True)
class Problem:
    where: str
    message: str


@dataclass
class TemplateCheck:
    path: Path
    tags: list[Tag]
    placeholders: dict[str, list[str]]  # name -> where it appears
    problems: list[Problem]


def _paragraphs(document: Any) -> Iterable[tuple[str, Any]]:
    """(where, w:p element) for every paragraph of the body, its tables, headers and footers, in order."""
    from docx.oxml.ns import qn

    def walk(element: Any, prefix: str) -> Iterable[tuple[str, Any]]:
        paragraph = table = 0
        for child in element.iterchildren():
            if child.tag == qn("w:p"):
                paragraph += 1
                yield f"{prefix}paragraph {paragraph}", child
            elif child.tag == qn("w:tbl"):
                table += 1
                for r, row in enumerate(child.iterchildren(qn("w:tr")), 1):
                    for c, cell in enumerate(row.iterchildren(qn("w:tc")), 1):
                        yield from walk(cell, f"{prefix}table {table}, row {r}, cell {c}, ")
            elif child.tag == qn("w:sdt"):
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from walk(content, prefix)

    def tidy(where: str) -> str:
        return re.sub(r", paragraph 1$", "", where) if ", row " in where else where

    for where, p in walk(document.element.body, ""):
        yield tidy(where), p
    for s, section in enumerate(document.sections, 1):
        for kind, part in (("header", section.header), ("footer", section.footer)):
            if part.is_linked_to_previous:
                continue
            for where, p in walk(part._element, f"{kind} of section {s}, "):
                yield tidy(where), p


def _runs(paragraph: Any) -> list[str]:
    from docx.oxml.ns import qn

    return ["".join(t.text or "" for t in run.iter(qn("w:t"))) for run in paragraph.iter(qn("w:r"))]


def _tags_in(where: str, runs: list[str]) -> tuple[list[Tag], list[Problem]]:
    text = "".join(runs)
    ends, total = [], 0
    for run in runs:
        total += len(run)
        ends.append(total)

    def run_of(offset: int) -> int:
        return next(i for i, end in enumerate(ends) if offset < end)

    tags, problems = [], []
    for match in _TAG.finditer(text):
        first, last = run_of(match.start()), run_of(match.end() - 1)
        spread = len({i for i in range(first, last + 1) if runs[i]})
        tag = Tag(match.group(0), where, spread)
        tags.append(tag)
        if spread > 1:
            problems.append(
                Problem(
                    where,
                    f"the tag {tag.text} is split across {spread} runs of Word text (formatting or spell-check "
                    "changed part of it): delete it and type it again in one go, or paste it as plain text",
                )
            )
    rest = _TAG.sub(lambda m: " " * len(m.group(0)), text)
    for stray in _DELIMITER.finditer(rest):
        near = rest[max(0, stray.start() - 20) : stray.end() + 20].strip()
        problems.append(
            Problem(where, f"'{stray.group(0)}' has no partner in the same paragraph, near '{near}'")
        )
    return tags, problems


def _expression(tag: str) -> tuple[str, str]:
    """(kind, inner text) of a tag: ``{{p visit.x }}`` -> ("{{", "visit.x")."""
    tag = _DOCXTPL_PREFIX.sub(r"\1", tag)
    kind, inner = tag[:2], tag[2:-2]
    return kind, inner.strip().strip("-+").strip()


def _names(inner: str) -> list[tuple[str, str]]:
    """(kind, name) in an expression: ("field", "learner_name"), ("name", "school"), ("filter", "hhmm")."""
    from jinja2 import lexer as jl

    stream = environment().lexer.tokenize("{{ " + inner + " }}")
    skip = (jl.TOKEN_VARIABLE_BEGIN, jl.TOKEN_VARIABLE_END, jl.TOKEN_EOF)
    tokens = [(token.type, token.value) for token in stream if token.type not in skip]
    found = []
    for i, (tok, value) in enumerate(tokens):
        if tok != jl.TOKEN_NAME:
            continue
        before = tokens[i - 1] if i else (None, None)
        after = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if before[0] == jl.TOKEN_DOT or before == (jl.TOKEN_NAME, "is") or value in _KEYWORDS:
            continue
        if before[0] == jl.TOKEN_PIPE:
            found.append(("filter", value))
        elif (
            after[0] == jl.TOKEN_ASSIGN
            and i + 2 < len(tokens)
            and tokens[i - 1][0] in (jl.TOKEN_LPAREN, jl.TOKEN_COMMA)
        ):
            continue  # a keyword argument
        elif value == "visit" and after[0] == jl.TOKEN_DOT and i + 2 < len(tokens):
            found.append(("field", tokens[i + 2][1]))
        else:
            found.append(("name", value))
    return found


def _closest(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f": did you mean '{match[0]}'?" if match else ""


def check_template(path: Path | str) -> TemplateCheck:
    """Every placeholder in a Word template, and each problem with where it is (paragraph or table cell)."""
    from docx import Document

    path = Path(path)
    if not path.is_file():
        raise HomevisitsError(f"There is no file {path}: give the path of the Word form (.docx) to check.")
    try:
        document = Document(str(path))
    except Exception as exc:  # not a Word file, or a damaged one: one sentence, never a traceback
        raise HomevisitsError(
            f"{path} is not a Word .docx file python-docx can open ({type(exc).__name__})."
        ) from None
    fields, top = known_names()
    tags: list[Tag] = []
    problems: list[Problem] = []
    order: dict[str, int] = {}
    for where, paragraph in _paragraphs(document):
        order.setdefault(where, len(order))
        found, trouble = _tags_in(where, _runs(paragraph))
        tags += found
        problems += trouble
    seen: dict[str, list[str]] = {}
    local: set[str] = set()
    stack: list[tuple[str, Tag]] = []
    for tag in tags:
        kind, inner = _expression(tag.text)
        if kind == "{#":
            continue
        if kind == "{%":
            keyword, _, rest = inner.partition(" ")
            if keyword in _OPENERS or (keyword == "set" and "=" not in rest):
                stack.append((keyword, tag))
            elif keyword in _MIDDLE:
                allowed = _MIDDLE[keyword]
                if not stack or stack[-1][0] not in (allowed if isinstance(allowed, tuple) else (allowed,)):
                    problems.append(Problem(tag.where, f"{tag.text} has no {{% if %}} open before it"))
            elif keyword.startswith("end"):
                opener = keyword[3:]
                if stack and stack[-1][0] == opener:
                    stack.pop()
                else:
                    open_ = (
                        f"{{% {stack[-1][0]} %}} from {stack[-1][1].where} is still open"
                        if stack
                        else "nothing is open"
                    )
                    problems.append(Problem(tag.where, f"{tag.text} closes {{% {opener} %}} but {open_}"))
                    if stack and any(k == opener for k, _ in stack):
                        while stack and stack[-1][0] != opener:
                            stack.pop()
                        stack.pop()
            if keyword == "for":
                local |= {n.strip() for n in rest.split(" in ", 1)[0].split(",")}
                local.add("loop")
            if keyword == "set":
                local.add(rest.split("=", 1)[0].strip())
            if keyword == "macro":
                name, _, args = rest.partition("(")
                local.add(name.strip())
                local |= {a.split("=")[0].strip() for a in args.rstrip(")").split(",") if a.strip()}
            inner = rest if keyword in ("if", "elif", "for", "set") else ""
            if keyword == "for":
                inner = rest.split(" in ", 1)[1] if " in " in rest else ""
            if keyword == "set":
                inner = rest.split("=", 1)[1] if "=" in rest else ""
        if not inner:
            continue
        try:
            names = _names(inner)
        except TemplateSyntaxError as exc:
            problems.append(Problem(tag.where, f"{tag.text} is not a valid tag ({exc.message})"))
            continue
        for what, name in names:
            if what == "field":
                label = f"visit.{name}"
                seen.setdefault(label, []).append(tag.where)
                if SECRET.search(name):
                    problems.append(
                        Problem(tag.where, f"'{label}': the safe word is never printed on a form")
                    )
                elif name not in fields:
                    problems.append(
                        Problem(
                            tag.where,
                            f"'{label}' is not a field{_closest(label, {f'visit.{f}' for f in fields})}",
                        )
                    )
            elif what == "filter":
                if name not in environment().filters:
                    problems.append(
                        Problem(
                            tag.where, f"'|{name}' is not a filter{_closest(name, environment().filters)}"
                        )
                    )
            elif name not in local:
                seen.setdefault(name, []).append(tag.where)
                if name not in top:
                    problems.append(
                        Problem(
                            tag.where,
                            f"'{name}' is not a field{_closest(name, top | {f'visit.{f}' for f in fields})}",
                        )
                    )
    for keyword, tag in stack:
        problems.append(Problem(tag.where, f"{tag.text} is never closed: add {{% end{keyword} %}} after it"))
    problems.sort(key=lambda problem: order.get(problem.where, len(order)))  # in the document's order
    if not problems:
        problems += _compile_problems(path)
    return TemplateCheck(path, tags, seen, problems)


def _compile_problems(path: Path) -> list[Problem]:
    """What Jinja itself says about the whole template, as docxtpl will see it."""
    from docxtpl import DocxTemplate

    document = DocxTemplate(path)
    document.get_docx()
    try:
        environment().parse(document.patch_xml(document.get_xml()))
    except TemplateSyntaxError as exc:
        return [Problem("the document", f"Jinja cannot read it: {exc.message}")]
    return []


def check_report(result: TemplateCheck) -> str:
    """The text ``--check-template`` prints."""
    lines = [f"{result.path}: {len(result.placeholders)} placeholder(s), {len(result.tags)} tag(s)"]
    width = max((len(name) for name in result.placeholders), default=0)
    for name, places in result.placeholders.items():
        shown = "; ".join(dict.fromkeys(places))
        lines.append(f"  {name:<{width}}  {shown}")
    if result.problems:
        lines.append(f"PROBLEMS ({len(result.problems)}):")
        lines += [f"  {p.where}: {p.message}" for p in result.problems]
    else:
        lines.append("No problems found.")
    return "\n".join(lines)
