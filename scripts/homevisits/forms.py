"""Forms: the schools' paperwork filled from one visit, as HTML (Jinja2) and PDF (WeasyPrint).

A school's own Word forms (.docx) are filled by ``word_forms`` and printed by ``word_pdf``;
``write_forms`` writes both kinds.

Templates live in ``templates/forms/<form>.html.j2``; a school's profile may put its own folder
first in the search path. Every template is autoescaped, missing values print as a ruled line to
fill in, dates are UK style with the weekday, times 24-hour, on the school's clock (the config's
``timezone``, passed as ``timezone=``; ``config.DEFAULT_TIMEZONE`` when none is given). Nothing is fetched
from the network: the stylesheet is embedded and the PDF renderer only reads local files.
"""

from __future__ import annotations

import datetime as dt
import functools
import html as htmllib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, TemplateNotFound, Undefined, select_autoescape
from markupsafe import Markup, escape

from . import visit_ids
from .config import DEFAULT_TIMEZONE
from .errors import HomevisitsError
from .wording import clock_time, long_day, on_clock

if TYPE_CHECKING:
    from .visits import Visits

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "templates" / "forms"
SUFFIX = ".html.j2"
STYLESHEET = "print.css"
BLANK = Markup('<span class="blank"></span>')
EVENING_FROM = dt.time(18, 0)
PROGRESS_MIN = 6  # show a progress bar from this many forms up
_FORM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_FORM_TITLE = re.compile(r'<meta\s+name="form-title"\s+content="([^"]*)"', re.IGNORECASE)


# ---------------------------------------------------------------- filters (pure)


def is_missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or (isinstance(value, str) and not value.strip())


def fill(value: Any) -> Markup:
    """The value as escaped text, or a ruled blank line to fill in by hand."""
    if is_missing(value):
        return BLANK
    return escape(value)


def zone(timezone: str | None = None) -> ZoneInfo:
    """The school's time zone by name (the config's ``timezone``), the default one when not given."""
    return ZoneInfo(timezone or DEFAULT_TIMEZONE)


def school_clock(moment: dt.datetime, tz: ZoneInfo | None = None) -> dt.datetime:
    """An aware datetime as the school's wall-clock time; a naive one is taken to be on it already."""
    return on_clock(moment, tz or zone())


def uk_date(value: Any, tz: ZoneInfo | None = None) -> Markup:
    """``Friday 3 April 2026``; a datetime is first put on the school's clock."""
    if is_missing(value):
        return BLANK
    if isinstance(value, dt.datetime):
        value = school_clock(value, tz)
    if not isinstance(value, dt.date):
        return escape(value)
    return Markup(long_day(value))


def hhmm(value: Any, tz: ZoneInfo | None = None) -> Markup:
    """``14:30`` from a time or a datetime (on the school's clock)."""
    if is_missing(value):
        return BLANK
    if isinstance(value, dt.datetime):
        value = school_clock(value, tz)
    if not isinstance(value, dt.time | dt.datetime):
        return escape(value)
    return Markup(clock_time(value))


def uk_datetime(value: Any, tz: ZoneInfo | None = None) -> Markup:
    """``Friday 3 April 2026, 14:30`` on the school's clock."""
    if is_missing(value):
        return BLANK
    if not isinstance(value, dt.datetime):
        return uk_date(value, tz)
    return Markup(f"{uk_date(value, tz)}, {hhmm(value, tz)}")


def date_and_time(day: Any, time: Any) -> Markup:
    """A date and a time of day that may each be missing: blanks stand in for the missing part."""
    if is_missing(day) and is_missing(time):
        return BLANK
    return Markup(f"{uk_date(day)} at {hhmm(time)}")


def yes_no(value: Any) -> Markup:
    """YES, NO, or a blank. Nothing else is ever printed (a yes/no column may hold a word staff typed)."""
    if value is True or (isinstance(value, str) and value.strip().upper() == "YES"):
        return Markup("YES")
    if value is False or (isinstance(value, str) and value.strip().upper() == "NO"):
        return Markup("NO")
    return BLANK


def minutes(value: Any) -> Markup:
    """``45 minutes`` or ``1 h 30 min``."""
    if is_missing(value):
        return BLANK
    if not isinstance(value, int | float):
        return escape(value)
    total = round(value)
    if total < 60:
        return Markup(f"{total} minutes")
    hours, rest = divmod(total, 60)
    return Markup(f"{hours} h {rest:02d} min" if rest else f"{hours} h")


def joined(values: Iterable[Any], sep: str = ", ") -> Markup:
    """The present values joined; a blank when none is present."""
    present = [escape(v) for v in values if not is_missing(v)]
    return Markup(escape(sep).join(present)) if present else BLANK


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` output: None and empty strings become a visible blank, never 'None'."""
    return BLANK if is_missing(value) else value


# ---------------------------------------------------------------- environment


def search_path(template_dirs: Sequence[Path | str] | None = None) -> tuple[str, ...]:
    """The folders searched for templates: the given ones first, the bundled forms last."""
    dirs = [str(Path(d).resolve()) for d in (template_dirs or ())]
    bundled = str(TEMPLATE_DIR.resolve())
    if bundled not in dirs:
        dirs.append(bundled)
    return tuple(dirs)


@lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...], timezone: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(list(dirs)),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "j2", "html.j2"), default_for_string=True, default=True
        ),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=200,
    )
    tz = zone(timezone)
    env.filters.update(
        fill=fill,
        uk_date=functools.partial(uk_date, tz=tz),
        hhmm=functools.partial(hhmm, tz=tz),
        uk_datetime=functools.partial(uk_datetime, tz=tz),
        yes_no=yes_no,
        minutes=minutes,
        joined=joined,
    )
    env.globals.update(blank=BLANK, date_and_time=date_and_time, is_missing=is_missing)
    env.globals["stylesheet"] = _stylesheet(env)
    return env


def environment(
    template_dirs: Sequence[Path | str] | None = None, timezone: str | None = None
) -> Environment:
    """The shared Jinja environment for a search path and the school's clock (built once, templates
    compiled once)."""
    return _environment(search_path(template_dirs), timezone or DEFAULT_TIMEZONE)


def _stylesheet(env: Environment) -> Markup:
    """The print stylesheet, read once and embedded in every form (no link to fetch)."""
    assert env.loader is not None
    try:
        css, _, _ = env.loader.get_source(env, STYLESHEET)
    except TemplateNotFound:
        return Markup("")
    return Markup(css.replace("</", "<\\/"))


def form_templates(template_dirs: Sequence[Path | str] | None = None) -> list[str]:
    """Every form template on the search path (partials starting with ``_`` are not forms)."""
    env = environment(template_dirs)
    return sorted(
        name
        for name in env.list_templates()
        if name.endswith(SUFFIX) and not Path(name).name.startswith("_") and "/" not in name
    )


def available_forms(template_dirs: Sequence[Path | str] | None = None) -> list[str]:
    return [name.removesuffix(SUFFIX) for name in form_templates(template_dirs)]


# ---------------------------------------------------------------- rendering


def visit_ref(visit: Mapping[str, Any]) -> str:
    """The visit's ID when it is header-safe (``visit_ids``), else ``row-<N>`` (its sheet row): what
    file names, page titles and footers carry. Never a name, never other cell text."""
    visit_id = visit.get("visit_id")
    return visit_ids.visit_ref(None if is_missing(visit_id) else str(visit_id).strip(), visit.get("row"))


def visit_facts(
    visit: Mapping[str, Any], evening_from: dt.time = EVENING_FROM, tz: ZoneInfo | None = None
) -> dict[str, Any]:
    """What the templates tailor their wording to: a pair or alone, an evening visit, animals."""
    start = visit.get("start_at")
    due = visit.get("return_due_at")
    start_time = school_clock(start, tz).time() if isinstance(start, dt.datetime) else visit.get("start_time")
    due_time = school_clock(due, tz).time() if isinstance(due, dt.datetime) else visit.get("expected_return")
    evening = bool(
        (isinstance(start_time, dt.time) and start_time >= evening_from)
        or (isinstance(due_time, dt.time) and due_time > evening_from)
    )
    return {
        "pair": not is_missing(visit.get("second_staff")),
        "evening": evening,
        "evening_from": evening_from,
        "animals": visit.get("dangerous_animals"),
        "return_due": due if due is not None else visit.get("expected_return"),
    }


def render_form(
    form: str,
    visit: Mapping[str, Any],
    *,
    school: str,
    now: dt.datetime,
    template_dirs: Sequence[Path] | None = None,
    extra: Mapping[str, Any] | None = None,
    timezone: str | None = None,
) -> str:
    """One filled-in form as a standalone HTML page (stylesheet embedded), times on the school's clock."""
    template = _template(form, template_dirs, timezone)
    extra = dict(extra or {})
    evening_from = extra.get("evening_from") or EVENING_FROM
    if isinstance(evening_from, str):  # "18:00" from a config file
        evening_from = dt.time.fromisoformat(evening_from.strip())
    facts = visit_facts(visit, evening_from, zone(timezone))
    context: dict[str, Any] = {**facts, **extra}
    context.update(visit=visit, school=school, now=now, form=form, ref=visit_ref(visit), extra=extra)
    return template.render(context)


def _template(form: str, template_dirs: Sequence[Path] | None, timezone: str | None = None):
    if not _FORM_NAME.match(form or ""):
        raise HomevisitsError(
            f"'{form}' is not a form name: use one of {', '.join(available_forms(template_dirs))}."
        )
    env = environment(template_dirs, timezone)
    try:
        return env.get_template(form + SUFFIX)
    except TemplateNotFound:
        raise HomevisitsError(
            f"There is no form template '{form}{SUFFIX}': use one of "
            f"{', '.join(available_forms(template_dirs))}, or add the file to the profile's template folder."
        ) from None


# ---------------------------------------------------------------- PDF


@lru_cache(maxsize=1)
def _local_fetcher_class() -> type:
    from weasyprint.urls import URLFetcher

    class LocalOnlyFetcher(URLFetcher):
        """Reads local files and data: URLs; refuses every other URL before any connection is made."""

        def __init__(self) -> None:
            super().__init__(allowed_protocols=("file", "data"), allow_redirects=False)

        def fetch(self, url, headers=None):
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            if scheme not in ("file", "data"):
                raise ValueError(f"homevisits forms never fetch remote resources: refused {url[:80]}")
            return super().fetch(url, headers)

    return LocalOnlyFetcher


def _local_fetcher():
    """A WeasyPrint URL fetcher that never touches the network."""
    return _local_fetcher_class()()


def pdf_title(page: str, visit_id: str) -> str:
    """The PDF's title: the visit ID and the form's own title (never a learner's name)."""
    match = _FORM_TITLE.search(page)
    name = htmllib.unescape(match.group(1)) if match else "Home visit form"
    return f"{visit_id} – {name}"


_EMBEDDED_CSS = re.compile(r'<style id="homevisits-print">(.*?)</style>', re.DOTALL)


@lru_cache(maxsize=1)
def _font_config():
    """One font configuration for every PDF of the run, released before the interpreter shuts down."""
    import atexit

    from weasyprint.text.fonts import FontConfiguration

    atexit.register(_release_fonts)
    return FontConfiguration()


def _release_fonts() -> None:
    _parsed_css.cache_clear()
    _font_config.cache_clear()


@lru_cache(maxsize=8)
def _parsed_css(css: str, base_url: str):
    """The embedded print stylesheet parsed once per process, not once per PDF."""
    from weasyprint import CSS

    return CSS(string=css, base_url=base_url, url_fetcher=_local_fetcher(), font_config=_font_config())


def render_pdf(html: str, out_path: Path, *, visit_id: str, base_dir: Path | None = None) -> Path:
    """Write ``html`` as an A4 PDF at ``out_path``; only local files are read while rendering."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    out_path = Path(out_path)
    base_url = (base_dir or TEMPLATE_DIR).resolve().as_uri() + "/"
    stylesheets = []
    embedded = _EMBEDDED_CSS.search(html)
    if embedded:  # the bundled stylesheet: parse it once and reuse it
        stylesheets.append(_parsed_css(embedded.group(1).replace("<\\/", "</"), base_url))
        html = html[: embedded.start()] + html[embedded.end() :]
    document = HTML(string=html, base_url=base_url, url_fetcher=_local_fetcher()).render(
        font_config=_font_config(), stylesheets=stylesheets
    )
    meta = document.metadata
    meta.title = pdf_title(html, visit_id)
    meta.authors = []
    meta.description = None
    meta.keywords = []
    meta.generator = "homevisits"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    document.write_pdf(out_path)
    return out_path


# ---------------------------------------------------------------- many forms


def file_stem(ref: str) -> str:
    """A visit reference (``visit_ref``) as a file name: ``/`` and anything else unsafe becomes ``_``."""
    return _UNSAFE_FILE_CHARS.sub("_", ref).strip("._") or "visit"


def policy_template_dirs(policy: Any, config_dir: Path | str | None = None) -> list[Path] | None:
    """Where a profile's forms are looked for: the config's ``[forms] template_dir`` (resolved by the
    caller), the profile's ``template_dir``, then the profile's own folder (for a .docx path written
    relative to the profile); the bundled forms always come last."""
    dirs = [Path(d) for d in (config_dir, getattr(policy, "template_dir", None)) if d]
    path = getattr(policy, "path", None)
    if path is not None and Path(path).parent.resolve() != (ROOT / "policies").resolve():
        dirs.append(Path(path).parent)
    return dirs or None


def write_forms(
    visits: Visits,
    positions: Sequence[int],
    forms: Sequence[str],
    out_dir: Path,
    *,
    school: str,
    now: dt.datetime,
    pdf: bool,
    template_dirs: Sequence[Path] | None = None,
    extra: Mapping[str, Any] | None = None,
    progress: bool = False,
    timezone: str | None = None,
) -> list[Path]:
    """Write ``DIR/<visit id>-<form>.html`` (and ``.pdf``) for each chosen visit and form; a Word form
    is written as ``.docx``, with its PDF from LibreOffice when ``pdf`` and LibreOffice is installed."""
    from . import word_pdf
    from .word_forms import check_form_names, form_key, render_word

    out_dir = Path(out_dir)
    words = check_form_names(forms, template_dirs)  # fail before writing anything
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(positions) * len(forms)
    bar = Progress(total) if progress and total >= PROGRESS_MIN and sys.stderr.isatty() else None
    written: list[Path] = []
    used: set[str] = set()
    for position in positions:
        visit = visits.record(position)
        ref = visit_ref(visit)
        stem = file_stem(ref)
        if stem in used:  # a repeated Visit ID must not overwrite the other visit's form
            stem = f"{stem}-row{visit.get('row')}"
        used.add(stem)
        for form in forms:
            if words[form] is not None:  # a Word form: the .docx, and its PDF when LibreOffice is here
                docx = out_dir / f"{stem}-{form_key(form)}.docx"
                docx.write_bytes(
                    render_word(
                        form,
                        visit,
                        school=school,
                        now=now,
                        template_dirs=template_dirs,
                        extra=extra,
                        timezone=timezone,
                    )
                )
                written.append(docx)
                if pdf and word_pdf.available():
                    written.append(word_pdf.docx_to_pdf(docx, docx.with_suffix(".pdf")))
                if bar:
                    bar.step()
                continue
            html = render_form(
                form,
                visit,
                school=school,
                now=now,
                template_dirs=template_dirs,
                extra=extra,
                timezone=timezone,
            )
            html_path = out_dir / f"{stem}-{form}.html"
            html_path.write_text(html, encoding="utf-8")
            written.append(html_path)
            if pdf:
                written.append(render_pdf(html, html_path.with_suffix(".pdf"), visit_id=ref))
            if bar:
                bar.step()
    if bar:
        bar.done()
    return written


class Progress:
    """A plain-text progress bar on stderr: ``forms [#######.......]  70/200``."""

    def __init__(self, total: int, label: str = "forms", width: int = 30, stream=None) -> None:
        self.total, self.label, self.width, self.count = total, label, width, 0
        self.stream = stream or sys.stderr

    def step(self) -> None:
        self.count += 1
        filled = self.width * self.count // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.count:>{len(str(self.total))}}/{self.total}")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


# ---------------------------------------------------------------- which visits are due


def visits_due_for_form(visits: Visits, now: dt.datetime, window_days: float = 14) -> list[int]:
    """Positions of the visits owed a form by the scheduled job's own test (``state.form_conditions``:
    Planned or blank, not HIGH risk, with a Visit ID, starting within ``window_days`` or started less
    than a day ago, late) whose form the sheet does not show sent."""
    from .state import form_conditions, form_unsent, passing

    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return passing([*form_conditions(visits, now, window_days), form_unsent(visits)])


# ---------------------------------------------------------------- settings from the profile and config


def form_settings(
    policy: Any, config_forms: Mapping[str, Any] | None = None, school: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the templates take from the school's profile, the config's ``[school]`` and ``[forms]`` tables.

    ``sent_to`` is ``[school] safeguarding_contact``'s name, else (only when the config has no ``[school]``
    table: the profile is the school's own) the name before the comma in the profile's ``forms_to_label``
    ("Jamal Miah, safeguarding contact"); ``phone_wording`` is ``[school] phone_wording`` (a school with a
    ``[school]`` table and none gets the neutral wording, never another school's); ``evening_from`` is the
    end of office hours (the policy's ``[timings] office_end``); any other ``[forms]`` key but ``out``, ``window_days`` and
    ``template_dir`` is passed to the templates as is (``sent_to``, ``copy``, ``signatures``...).
    """
    settings: dict[str, Any] = {}
    school = {k: v for k, v in (school or {}).items() if v}
    if set(school) == {"name"} and str(school["name"]).strip() == getattr(policy, "name", None):
        school = {}  # the profile's own school
    contact = school.get("safeguarding_contact") or {}
    label = getattr(policy, "forms_to_label", None) or _profile_value(policy, "forms_to_label")
    if contact.get("name"):
        settings["sent_to"] = str(contact["name"]).strip()
    elif label and not school:
        settings["sent_to"] = str(label).split(",")[0].strip()
    if school.get("phone_wording"):
        settings["phone_wording"] = str(school["phone_wording"])
    elif school:
        settings["phone_wording"] = "A charged work mobile phone on every visit."
    timings = getattr(policy, "timings", None)
    if timings is not None:
        settings["evening_from"] = timings.office_end
    for key, value in (config_forms or {}).items():
        if key not in ("out", "window_days", "template_dir"):
            settings[key] = value
    return settings


def _profile_value(policy: Any, key: str) -> Any:
    """A top-level value of the profile's TOML file (for keys the Policy object does not keep)."""
    import tomllib

    path = getattr(policy, "path", None)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8")).get(key) if path else None
    except (OSError, tomllib.TOMLDecodeError):
        return None
