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
import functools
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError
from markupsafe import Markup, escape

from . import forms as html_forms
from .errors import HomevisitsError
from .forms import BLANK as HTML_BLANK
from .forms import EVENING_FROM, TEMPLATE_DIR, is_missing, visit_facts, visit_ref

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


def word_value(value: Any, tz: Any = None) -> Markup:
    """How ``{{ ... }}`` prints anything: dates UK style, times 24-hour on the school's clock (``tz``),
    yes/no, or a blank line."""
    if isinstance(value, Markup):
        return value
    if is_missing(value):
        return Markup(BLANK)
    if isinstance(value, bool):
        return Markup("YES" if value else "NO")
    if isinstance(value, dt.datetime):
        return uk_datetime(value, tz=tz)
    if isinstance(value, dt.date):
        return uk_date(value, tz=tz)
    if isinstance(value, dt.time):
        return hhmm(value, tz=tz)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _text(value)


def fill(value: Any) -> Markup:
    return word_value(value)


def _word(html_filter: Any) -> Any:
    """The HTML forms' filter, printing a Word blank line for a missing value and no control characters."""

    def word_filter(value: Any, *args: Any, **kwargs: Any) -> Markup:
        printed = Markup(BLANK) if is_missing(value) else html_filter(value, *args, **kwargs)
        return Markup(BLANK) if printed == HTML_BLANK else Markup(_NOT_TEXT.sub("", printed))

    word_filter.__name__ = html_filter.__name__
    word_filter.__doc__ = html_filter.__doc__
    return word_filter


uk_date = _word(html_forms.uk_date)
hhmm = _word(html_forms.hhmm)
uk_datetime = _word(html_forms.uk_datetime)
yes_no = _word(html_forms.yes_no)
minutes = _word(html_forms.minutes)


def date_and_time(day: Any, time: Any, tz: Any = None) -> Markup:
    """``Friday 3 April 2026 at 14:30``; blank lines stand in for a missing part."""
    if is_missing(day) and is_missing(time):
        return Markup(BLANK)
    return Markup(f"{uk_date(day, tz=tz)} at {hhmm(time, tz=tz)}")


def _yes_no_choice(value: Any) -> str | None:
    printed = html_forms.yes_no(value)
    return None if printed == HTML_BLANK else str(printed)


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


class _WordEnvironment(Environment):
    """docxtpl compiles a form's XML afresh for every visit: the same XML is compiled once here."""

    def from_string(self, source, globals=None, template_class=None):
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        return _compiled(self, source)


@lru_cache(maxsize=64)
def _compiled(env: Environment, source: str):
    return Environment.from_string(env, source)


@lru_cache(maxsize=4)
def environment(timezone: str | None = None) -> Environment:
    """The Jinja environment for every Word form: autoescaped, values printed the school's way, dates
    and times on the school's clock (the config's ``timezone``)."""
    tz = html_forms.zone(timezone)
    printed = functools.partial(word_value, tz=tz)
    env = _WordEnvironment(autoescape=True, finalize=printed, auto_reload=False, cache_size=0)
    env.filters.update(FILTERS)
    env.filters.update(
        fill=printed,
        uk_date=functools.partial(uk_date, tz=tz),
        hhmm=functools.partial(hhmm, tz=tz),
        uk_datetime=functools.partial(uk_datetime, tz=tz),
    )
    env.globals.update(GLOBALS)
    env.globals["date_and_time"] = functools.partial(date_and_time, tz=tz)
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
    "evening_from": "the end of office hours (`[timings] office_end`, default 18:00)",
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
    visit: Mapping[str, Any],
    *,
    school: str,
    now: dt.datetime,
    form: str,
    extra: Mapping[str, Any] | None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """What a Word form is filled from: the visit (no safe word), the school, and the facts the HTML forms use."""
    extra = {k: v for k, v in dict(extra or {}).items() if not SECRET.search(str(k))}
    evening_from = extra.get("evening_from") or EVENING_FROM
    if isinstance(evening_from, str):
        evening_from = dt.time.fromisoformat(evening_from.strip())
    safe_visit = {k: v for k, v in visit.items() if not SECRET.search(str(k))}
    context: dict[str, Any] = {**visit_facts(visit, evening_from, html_forms.zone(timezone)), **extra}
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
    timezone: str | None = None,
) -> bytes:
    """One filled-in Word form as the bytes of a .docx."""
    from docxtpl import DocxTemplate

    path = word_template(form, template_dirs)
    if path is None:
        raise HomevisitsError(f"'{form}' is not a Word form: name a .docx file.")
    document = DocxTemplate(path)
    original = document.get_docx().core_properties
    title = form_title(path, original.title)
    language = original.language if _LANGUAGE.match(original.language or "") else ""
    context = word_context(visit, school=school, now=now, form=form, extra=extra, timezone=timezone)
    try:
        document.render(context, jinja_env=environment(timezone), autoescape=True)
    except TemplateSyntaxError as exc:
        raise HomevisitsError(
            f"The Word form {path.name} has a broken tag ({exc.message}): run "
            f"'homevisits forms --check-template {path}' to see where."
        ) from None
    props = document.docx.core_properties
    _set_properties(props, ref=visit_ref(visit), title=title, school=school, now=now)
    props.language = language  # as the template had it, never a placeholder docxtpl filled in
    _clear_manager(document.docx)
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
    timezone: str | None = None,
) -> tuple[tuple[tuple[str, bytes], ...], list[str], list[str]]:
    """For a form email: ((.docx name, bytes)...), the forms' titles, and the PDF names that will go too."""
    from . import word_pdf
    from .forms import file_stem

    stem = file_stem(visit_ref(visit))
    documents = tuple(
        (
            f"{stem}-{form_key(form)}{SUFFIX}",
            render_word(
                form,
                visit,
                school=school,
                now=now,
                template_dirs=template_dirs,
                extra=extra,
                timezone=timezone,
            ),
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


_LANGUAGE = re.compile(r"^(?:[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)?$")  # en-GB, cy; never "{{ ... }}"
_MANAGER = re.compile(rb"<Manager>.*?</Manager>", re.DOTALL)


def _clear_manager(document: Any) -> None:
    """The extended properties' Manager (a person's name in a school's template) is emptied."""
    for part in document.part.package.parts:
        if str(part.partname) == "/docProps/app.xml" and b"<Manager>" in part.blob:
            part._blob = _MANAGER.sub(b"<Manager></Manager>", part.blob)
