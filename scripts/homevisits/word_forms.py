"""Word forms: the school's own .docx filled from one visit (docxtpl: Jinja2 inside Word).

A form listed in the profile is a Word form when its name ends in ``.docx`` (a bundled
``templates/forms/<name>.docx``, or a path in the profile's folder or its ``template_dir``), or when
there is a ``<name>.docx`` and no ``<name>.html.j2``. Placeholders are the ones the HTML forms use
(``{{ visit.learner_name }}``, ``{{ visit.risk_level|choices(...) }}``...): ``placeholders()`` lists
them and the README's table is generated from it. Every value is escaped, so text typed in the sheet
can never become Word markup or a Jinja tag; the safe word is never in the context; the file's core
properties carry the visit ID, the form's title and the school, never a name.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError
from markupsafe import Markup, escape

from .errors import HomevisitsError
from .forms import EVENING_FROM, TEMPLATE_DIR, is_missing, london, visit_facts, visit_ref
from .wording import clock_time, long_day

SUFFIX = ".docx"
BLANK = "________________"  # a line to write on by hand
TICKED, UNTICKED = "☒", "☐"
# Characters XML 1.0 cannot hold, and the ones docxtpl turns into paragraph and page breaks.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Fields never handed to a Word template, whatever the sheet holds: only *whether* a safe word was agreed.
SECRET = re.compile(r"safe_?word(?!_agreed)", re.IGNORECASE)


# ---------------------------------------------------------------- values as Word text (pure)


def _text(value: Any) -> Markup:
    """Escaped text fit for a Word run: no control characters; a newline becomes a line break."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return escape(_NOT_TEXT.sub("", text))


def word_value(value: Any) -> Markup:
    """How ``{{ ... }}`` prints anything: dates UK style, times 24-hour (London), yes/no, or a blank line."""
    if isinstance(value, Markup):
        return value
    if is_missing(value):
        return Markup(BLANK)
    if isinstance(value, bool):
        return Markup("YES" if value else "NO")
    if isinstance(value, dt.datetime):
        return uk_datetime(value)
    if isinstance(value, dt.date):
        return uk_date(value)
    if isinstance(value, dt.time):
        return hhmm(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _text(value)


def fill(value: Any) -> Markup:
    return word_value(value)


def uk_date(value: Any) -> Markup:
    """``Friday 3 April 2026``."""
    if is_missing(value):
        return Markup(BLANK)
    if isinstance(value, dt.datetime):
        value = london(value)
    return Markup(long_day(value)) if isinstance(value, dt.date) else _text(value)


def hhmm(value: Any) -> Markup:
    """``14:30`` from a time or a (London) datetime."""
    if is_missing(value):
        return Markup(BLANK)
    if isinstance(value, dt.datetime):
        value = london(value)
    return Markup(clock_time(value)) if isinstance(value, dt.time | dt.datetime) else _text(value)


def uk_datetime(value: Any) -> Markup:
    """``Friday 3 April 2026, 14:30``."""
    if isinstance(value, dt.datetime):
        return Markup(f"{uk_date(value)}, {hhmm(value)}")
    return uk_date(value)


def date_and_time(day: Any, time: Any) -> Markup:
    """``Friday 3 April 2026 at 14:30``; blank lines stand in for a missing part."""
    if is_missing(day) and is_missing(time):
        return Markup(BLANK)
    return Markup(f"{uk_date(day)} at {hhmm(time)}")


def _yes_no_choice(value: Any) -> str | None:
    if value is True or (isinstance(value, str) and value.strip().upper() == "YES"):
        return "YES"
    if value is False or (isinstance(value, str) and value.strip().upper() == "NO"):
        return "NO"
    return None


def yes_no(value: Any) -> Markup:
    """YES, NO or a blank line: nothing else a yes/no column holds is printed."""
    return Markup(_yes_no_choice(value) or BLANK)


def minutes(value: Any) -> Markup:
    """``45 minutes`` or ``1 h 30 min``."""
    if is_missing(value):
        return Markup(BLANK)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _text(value)
    hours, rest = divmod(round(value), 60)
    if not hours:
        return Markup(f"{rest} minutes")
    return Markup(f"{hours} h {rest:02d} min" if rest else f"{hours} h")


def joined(values: Iterable[Any], sep: str = ", ") -> Markup:
    """The present values joined; a blank line when none is."""
    present = [_text(v) for v in values if not is_missing(v)]
    return Markup(_text(sep).join(present)) if present else Markup(BLANK)


def tick(selected: Any, option: Any) -> Markup:
    """☒ when ``selected`` is ``option`` (ignoring case and spaces), else ☐."""
    chosen = not is_missing(selected) and str(selected).strip().upper() == str(option).strip().upper()
    return Markup(TICKED if chosen else UNTICKED)


def choices(options: Sequence[Any], selected: Any = None) -> Markup:
    """``☒ LOW   ☐ MEDIUM   ☐ HIGH``: every option printed, the chosen one ticked (none: all to tick by hand)."""
    return Markup("   ").join(Markup(f"{tick(selected, option)} {_text(option)}") for option in options)


def yes_no_boxes(value: Any) -> Markup:
    """``☒ YES   ☐ NO`` from True/False/"YES"/"NO"; both empty when the log does not say."""
    return choices(["YES", "NO"], _yes_no_choice(value))


FILTERS = {
    "fill": fill,
    "uk_date": uk_date,
    "hhmm": hhmm,
    "uk_datetime": uk_datetime,
    "yes_no": yes_no,
    "minutes": minutes,
    "joined": joined,
    "tick": tick,  # visit.risk_level|tick("LOW")
    "yes_no_boxes": yes_no_boxes,
}
GLOBALS = {
    "blank": Markup(BLANK),
    "date_and_time": date_and_time,
    "is_missing": is_missing,
    "tick": tick,
    "choices": choices,
    "yes_no_boxes": yes_no_boxes,
}


def _finalize(value: Any) -> Any:
    return word_value(value)


class _WordEnvironment(Environment):
    """docxtpl compiles a form's XML afresh for every visit: the same XML is compiled once here."""

    def from_string(self, source, globals=None, template_class=None):
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        return _compiled(self, source)


@lru_cache(maxsize=64)
def _compiled(env: Environment, source: str):
    return Environment.from_string(env, source)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja environment for every Word form: autoescaped, values printed the school's way."""
    env = _WordEnvironment(autoescape=True, finalize=_finalize, auto_reload=False, cache_size=0)
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    return env


# ---------------------------------------------------------------- what a template can use


# The names a template can use besides visit.<field>, with what each holds (the README table's rows).
CONTEXT = {
    "school": "the school's name (`school` in homevisits.toml, else the policy's name)",
    "ref": "the Visit ID, or `row<N>` while the row has none",
    "form": "the form's name, as listed in the profile",
    "now": "when the form was filled in",
    "pair": "true when a second member of staff is recorded",
    "evening": "true when the visit starts or ends after office hours",
    "evening_from": "the end of office hours (HV011 `office_end`, else 18:00)",
    "animals": "the dangerous-animals answer (true, false or none)",
    "return_due": "the expected return (time and date when known)",
    "sent_to": "the first name in the profile's `forms_to_label`",
}
# Keys a school may add under [forms] for its templates (any other key is passed on too, see form_settings).
EXTRA = ("copy", "signatures", "sent_at", "who_was_seen", "follow_up", "vulnerable_persons")
HELPERS = {
    "blank": "a line to write on by hand (what any missing value prints as)",
    "choices(options, selected)": "`☒ LOW   ☐ MEDIUM   ☐ HIGH`: every option, the chosen one ticked",
    "tick(selected, option)": '`☒` when `selected` is `option`, else `☐` (or `visit.risk_level|tick("LOW")`)',
    "yes_no_boxes(value)": "`☒ YES   ☐ NO` from a yes/no column, both empty when the log does not say "
    "(or `|yes_no_boxes`)",
    "date_and_time(day, time)": "`Friday 3 April 2026 at 14:30`",
    "|uk_date": "`Friday 3 April 2026` (any date prints this way without it)",
    "|hhmm": "`14:30`, 24-hour, UK time",
    "|uk_datetime": "`Friday 3 April 2026, 14:30`",
    "|yes_no": "`YES`, `NO` or a blank line",
    "|minutes": "`45 minutes`, `1 h 30 min`",
    "|joined(sep)": "the present values of a list joined (`[visit.address, visit.postcode]|joined`)",
}


def visit_fields() -> list[tuple[str, str, str]]:
    """(field, the log's header, help) for every column of the log a template can print."""
    from .schema import load_schema

    return [(c.field, c.header, c.help) for c in load_schema().columns if not SECRET.search(c.field)]


def placeholders() -> list[tuple[str, str]]:
    """Every placeholder and helper a Word (or HTML) form can use, with what it prints."""
    rows = [
        (f"{{{{ visit.{name} }}}}", f"{header}: {help_}".rstrip(": "))
        for name, header, help_ in visit_fields()
    ]
    rows += [(f"{{{{ {name} }}}}", what) for name, what in CONTEXT.items()]
    rows += [(name, what) for name, what in HELPERS.items()]
    return rows


def placeholder_table() -> str:
    """The README's table of placeholders, generated here so it cannot drift from the code."""

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| placeholder | what it prints |", "|---|---|"]
    lines += [f"| `{cell(name)}` | {cell(what)} |" for name, what in placeholders()]
    return "\n".join(lines)


def known_names() -> tuple[set[str], set[str]]:
    """(visit fields, top-level names) a template may use."""
    fields = {name for name, _, _ in visit_fields()} | {"row", "start_at", "return_due_at"}
    top = {
        "visit",
        *CONTEXT,
        *EXTRA,
        *GLOBALS,
        "extra",
        "loop",
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
    }
    return fields, top


# ---------------------------------------------------------------- which forms are Word forms


def template_dirs_of(template_dirs: Sequence[Path | str] | None) -> list[Path]:
    dirs = [Path(d) for d in (template_dirs or ())]
    if TEMPLATE_DIR not in dirs:
        dirs.append(TEMPLATE_DIR)
    return dirs


def word_template(form: str, template_dirs: Sequence[Path | str] | None = None) -> Path | None:
    """The .docx behind ``form`` when it is a Word form, else None (an HTML form)."""
    from .forms import SUFFIX as HTML_SUFFIX

    dirs = template_dirs_of(template_dirs)
    if form.lower().endswith(SUFFIX):
        path = Path(form).expanduser()
        candidates = [path] if path.is_absolute() else [d / path for d in dirs]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        where = ", ".join(str(d) for d in dirs) if not path.is_absolute() else str(path.parent)
        raise HomevisitsError(f"The Word form '{form}' is not there: looked in {where}.")
    if "/" in form or "\\" in form or any((d / f"{form}{HTML_SUFFIX}").is_file() for d in dirs):
        return None
    return next((d / f"{form}{SUFFIX}" for d in dirs if (d / f"{form}{SUFFIX}").is_file()), None)


def check_form_names(
    forms: Sequence[str], template_dirs: Sequence[Path | str] | None
) -> dict[str, Path | None]:
    """Each form's .docx (None for an HTML form, checked too); two forms may not share a file name."""
    from .forms import _template

    words: dict[str, Path | None] = {}
    keys: dict[str, str] = {}
    for form in forms:
        words[form] = word_template(form, template_dirs)
        if words[form] is None:
            _template(form, template_dirs)
        key = form_key(form)
        if key in keys and keys[key] != form:  # their files (and PDFs) would overwrite each other
            raise HomevisitsError(
                f"The forms '{keys[key]}' and '{form}' would be written to the same file name: rename one of them."
            )
        keys[key] = form
    return words


def form_key(form: str) -> str:
    """The form's part of a file name: ``risk_assessment`` for ``.../risk_assessment.docx``."""
    from .forms import file_stem

    name = Path(form).name
    return file_stem(name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) else name)


def word_forms() -> list[str]:
    """The bundled Word forms."""
    return sorted(p.name for p in TEMPLATE_DIR.glob(f"*{SUFFIX}") if not p.name.startswith(("~", "_")))


# ---------------------------------------------------------------- rendering


def word_context(
    visit: Mapping[str, Any], *, school: str, now: dt.datetime, form: str, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a Word form is filled from: the visit (no safe word), the school, and the facts the HTML forms use."""
    extra = {k: v for k, v in dict(extra or {}).items() if not SECRET.search(str(k))}
    evening_from = extra.get("evening_from") or EVENING_FROM
    if isinstance(evening_from, str):
        evening_from = dt.time.fromisoformat(evening_from.strip())
    safe_visit = {k: v for k, v in visit.items() if not SECRET.search(str(k))}
    context: dict[str, Any] = {**visit_facts(visit, evening_from), **extra}
    context.update(visit=safe_visit, school=school, now=now, form=form, ref=visit_ref(visit), extra=extra)
    return context


def form_title(template: Path, core_title: str | None) -> str:
    """The form's title: the template's own document title, else its file name in words."""
    title = (core_title or "").strip()
    if title and "{" not in title:
        return title
    return Path(template).stem.replace("_", " ").replace("-", " ").strip().capitalize() or "Home visit form"


def render_word(
    form: str,
    visit: Mapping[str, Any],
    *,
    school: str,
    now: dt.datetime,
    template_dirs: Sequence[Path | str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """One filled-in Word form as the bytes of a .docx."""
    from docxtpl import DocxTemplate

    path = word_template(form, template_dirs)
    if path is None:
        raise HomevisitsError(f"'{form}' is not a Word form: name a .docx file.")
    document = DocxTemplate(path)
    title = form_title(path, document.get_docx().core_properties.title)
    context = word_context(visit, school=school, now=now, form=form, extra=extra)
    try:
        document.render(context, jinja_env=environment(), autoescape=True)
    except TemplateSyntaxError as exc:
        raise HomevisitsError(
            f"The Word form {path.name} has a broken tag ({exc.message}): run "
            f"'homevisits forms --check-template {path}' to see where."
        ) from None
    _set_properties(document.docx.core_properties, ref=visit_ref(visit), title=title, school=school, now=now)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def template_title(form: str, template_dirs: Sequence[Path | str] | None = None) -> str:
    """The title a Word form carries (its template's document title, else its file name in words)."""
    from docx import Document

    path = word_template(form, template_dirs)
    if path is None:
        raise HomevisitsError(f"'{form}' is not a Word form: name a .docx file.")
    return form_title(path, Document(str(path)).core_properties.title)


def word_documents(
    forms: Sequence[str],
    visit: Mapping[str, Any],
    *,
    school: str,
    now: dt.datetime,
    template_dirs: Sequence[Path | str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[tuple[tuple[str, bytes], ...], list[str], list[str]]:
    """For a form email: ((.docx name, bytes)...), the forms' titles, and the PDF names that will go too."""
    from . import word_pdf
    from .forms import file_stem

    stem = file_stem(visit_ref(visit))
    documents = tuple(
        (
            f"{stem}-{form_key(form)}{SUFFIX}",
            render_word(form, visit, school=school, now=now, template_dirs=template_dirs, extra=extra),
        )
        for form in forms
    )
    titles = [template_title(form, template_dirs) for form in forms]
    pdfs = [name[: -len(SUFFIX)] + ".pdf" for name, _ in documents] if word_pdf.available() else []
    return documents, titles, pdfs


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def word_attachments(documents: Iterable[tuple[str, bytes]], folder: Path) -> list[tuple[str, bytes, str]]:
    """Each .docx, then its PDF when LibreOffice makes one. A PDF that fails leaves the .docx to go
    alone, and the reason is printed (one line, the file name carries the visit ID only)."""
    import sys

    from . import word_pdf

    attachments: list[tuple[str, bytes, str]] = []
    for name, data in documents:
        attachments.append((name, data, DOCX_TYPE))
        if not word_pdf.available():
            continue
        docx = Path(folder) / name
        docx.write_bytes(data)
        try:
            pdf = word_pdf.docx_to_pdf(docx, docx.with_suffix(".pdf"))
        except word_pdf.WordPdfError as exc:
            print(f"homevisits: {exc} The .docx goes without it.", file=sys.stderr, flush=True)
            continue
        attachments.append((pdf.name, pdf.read_bytes(), "application/pdf"))
    return attachments


def _set_properties(props: Any, *, ref: str, title: str, school: str, now: dt.datetime) -> None:
    """Title = visit ID and form, author = the school; every other free-text property emptied."""
    props.title = f"{ref} – {title}"
    props.author = school
    props.last_modified_by = school
    for name in ("subject", "keywords", "comments", "category", "content_status", "identifier", "version"):
        setattr(props, name, "")
    stamp = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0) if now.tzinfo else now
    props.created = stamp
    props.modified = stamp
    props.revision = 1


# ---------------------------------------------------------------- --check-template


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
