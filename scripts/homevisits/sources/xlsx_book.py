"""The workbook-level parts of an .xlsx package: which part holds a tab, which styles show dates,
how a value the tool writes looks as a cell, and the entries a new tab needs.

Pure functions over the parts' bytes. Parts are read with the standard library's ElementTree
but changed only by inserting bytes at the right place, so everything else in them stays as it was.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from ..formula_guard import clean, neutralise, text_cell

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
WORKSHEET_TYPE = RELATIONSHIPS + "/worksheet"
WORKSHEET_CONTENT = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
DATETIME_TEXT, DATE_TEXT, TIME_TEXT = "%d/%m/%Y %H:%M", "%d/%m/%Y", "%H:%M"

# Excel's built-in number formats that show a date or a time (ECMA-376 18.8.30, and the East Asian ones).
_BUILTIN_DATES = frozenset([*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)])
_ESCAPED = re.compile(r"_(x[0-9A-Fa-f]{4}_)")


class BookError(ValueError):
    """The package's workbook parts are not as a workbook must have them."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(data: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise BookError(str(exc)) from exc


@dataclass(frozen=True)
class Tab:
    name: str
    sheet_id: int
    relation: str  # r:id
    part: str  # zip member name, e.g. xl/worksheets/sheet1.xml
    kind: str  # relationship type's last word: worksheet, chartsheet...


@dataclass(frozen=True)
class Book:
    """Where the workbook's parts are and what tabs it has, in tab order."""

    workbook_part: str
    rels_part: str
    tabs: list[Tab]
    date1904: bool

    def tab(self, name: str | None) -> Tab:
        """A tab by name (exact, then ignoring case as Excel does), the first when no name is given."""
        if not self.tabs:
            raise BookError("no tabs")
        if name is None:
            return self.tabs[0]
        for tab in self.tabs:
            if tab.name == name:
                return tab
        folded = name.strip().casefold()
        for tab in self.tabs:
            if tab.name.strip().casefold() == folded:
                return tab
        raise KeyError(name)


def rels_part_for(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


def _target(base_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_part), target))


def read_book(read: Callable[[str], bytes], names: Sequence[str]) -> Book:
    """The workbook's tabs from ``[workbook part]`` and its rels (``read(name)`` gives a member's bytes)."""
    workbook_part = "xl/workbook.xml"
    if "_rels/.rels" in names:
        for rel in _parse(read("_rels/.rels")):
            if rel.get("Type", "").endswith("/officeDocument"):
                workbook_part = _target("", rel.get("Target", workbook_part))
    if workbook_part not in names:
        raise BookError("no workbook part")
    rels_part = rels_part_for(workbook_part)
    targets: dict[str, tuple[str, str]] = {}
    if rels_part in names:
        for rel in _parse(read(rels_part)):
            kind = rel.get("Type", "").rsplit("/", 1)[-1]
            targets[rel.get("Id", "")] = (_target(workbook_part, rel.get("Target", "")), kind)
    root = _parse(read(workbook_part))
    tabs = []
    date1904 = False
    for element in root.iter():
        if _local(element.tag) == "workbookPr":
            date1904 = element.get("date1904", "0").lower() in ("1", "true")
        if _local(element.tag) == "sheet":
            relation = element.get(f"{{{RELATIONSHIPS}}}id", "")
            part, kind = targets.get(relation, ("", ""))
            tabs.append(Tab(element.get("name", ""), int(element.get("sheetId", "0")), relation, part, kind))
    return Book(workbook_part, rels_part, tabs, date1904)


# ---------------------------------------------------------------- styles: which show dates


def date_styles(styles: bytes | None) -> dict[int, str]:
    """Cell style index -> "datetime", "date" or "time", for the styles whose number format shows one."""
    if not styles:
        return {}
    root = _parse(styles)
    custom: dict[int, str] = {}
    found: dict[int, str] = {}
    for element in root.iter():
        if _local(element.tag) == "numFmt":
            custom[int(element.get("numFmtId", "-1"))] = element.get("formatCode", "")
    for element in root:
        if _local(element.tag) != "cellXfs":
            continue
        for index, xf in enumerate(x for x in element if _local(x.tag) == "xf"):
            number_format = int(xf.get("numFmtId", "0"))
            kind = format_kind(custom[number_format]) if number_format in custom else None
            if kind is None and number_format not in custom and number_format in _BUILTIN_DATES:
                kind = "time" if number_format in (18, 19, 20, 21, 45, 46, 47) else "date"
                kind = "datetime" if number_format == 22 else kind
            if kind:
                found[index] = kind
    return found


def format_kind(code: str) -> str | None:
    """What a number format code shows: "datetime", "date", "time", or None (a number or text)."""
    section = code.split(";", 1)[0]
    section = re.sub(r'"[^"]*"|\\.|_.|\*.', "", section)
    section = re.sub(r"\[(?![hms]+\])[^\]]*\]", "", section, flags=re.I)
    lowered = section.lower()
    has_date = bool(re.search(r"[dy]", lowered)) or ("m" in lowered and not re.search(r"[hs]", lowered))
    has_time = bool(re.search(r"[hs]", lowered))
    if has_date and has_time:
        return "datetime"
    return "date" if has_date else "time" if has_time else None


# ---------------------------------------------------------------- values as cells


def serial(value: dt.datetime | dt.date | dt.time, date1904: bool) -> float:
    """Excel's serial number for a naive moment (1900 or 1904 date system)."""
    if isinstance(value, dt.time):
        return (value.hour * 3600 + value.minute * 60 + value.second) / 86400
    epoch = dt.datetime(1904, 1, 1) if date1904 else dt.datetime(1899, 12, 30)
    moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
    delta = moment - epoch
    return delta.days + delta.seconds / 86400


def _number(value: float | int) -> bytes:
    if isinstance(value, int):
        return str(value).encode()
    return (str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)).encode()


def xml_text(text: str) -> bytes:
    """Text as a ``<t>`` element's content: escaped for XML, a literal ``_x0041_`` kept literal, CR kept."""
    text = _ESCAPED.sub(r"_x005F_\1", text).replace("\r", "_x000D_")
    return escape(text).encode("utf-8")


def _element(
    prefix: bytes, reference: bytes, style: int | None, attributes: bytes, inner: bytes | None
) -> bytes:
    """One ``<c>`` element: its reference, its style, ``attributes`` (`` t="..."``), and its content."""
    style_attr = b' s="%d"' % style if style is not None else b""
    start = b'<%sc r="%s"%s%s' % (prefix, reference, style_attr, attributes)
    return start + b"/>" if inner is None else start + b">" + inner + b"</%sc>" % prefix


def text_element(reference: bytes, style: int | None, prefix: bytes, text: str) -> bytes:
    space = b' xml:space="preserve"' if text != text.strip() or "\n" in text else b""
    inner = b"<%sis><%st%s>%s</%st></%sis>" % (prefix, prefix, space, xml_text(text), prefix, prefix)
    return _element(prefix, reference, style, b' t="inlineStr"', inner)


def number_element(
    reference: bytes, style: int | None, prefix: bytes, number: float | int, kind: bytes = b""
) -> bytes:
    inner = b"<%sv>%s</%sv>" % (prefix, _number(number), prefix)
    return _element(prefix, reference, style, b' t="%s"' % kind if kind else b"", inner)


def cell_renderer(
    dates: Mapping[int, str], date1904: bool, tz: Any, *, marker: bool = True
) -> Callable[[bytes, int | None, bytes, object], bytes]:
    """How the tool's values become cells: numbers and booleans typed; a date or time as a serial when
    the cell's style shows dates (else as UK text, as in a Google Sheet); text as an inline string,
    through the neutraliser (with the apostrophe marker in the log, ``marker=False`` for the tool's
    own tabs, where the text cell type alone keeps it from running); None empties the cell."""
    from .writeback import wall_clock

    def render(reference: bytes, style: int | None, prefix: bytes, value: object) -> bytes:
        if value is None:
            return b"" if style is None else _element(prefix, reference, style, b"", None)
        if isinstance(value, bool):
            return number_element(reference, style, prefix, int(value), b"b")
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            return number_element(reference, style, prefix, value)
        if isinstance(value, dt.datetime | dt.date | dt.time):
            if isinstance(value, dt.datetime):
                value = wall_clock(value, tz)
            elif isinstance(value, dt.time):
                value = value.replace(microsecond=0, tzinfo=None)
            if style is not None and style in dates:
                return number_element(reference, style, prefix, serial(value, date1904))
            shown = DATETIME_TEXT if isinstance(value, dt.datetime) else DATE_TEXT
            return text_element(
                reference, style, prefix, value.strftime(TIME_TEXT if isinstance(value, dt.time) else shown)
            )
        text = neutralise(clean(str(value))) if marker else text_cell(str(value))[0]
        return text_element(reference, style, prefix, text)

    return render


# ---------------------------------------------------------------- a new tab


def tab_sheet(
    rows: Sequence[Sequence[Any]],
    render: Callable[[bytes, int | None, bytes, object], bytes],
    widths: Sequence[float],
) -> bytes:
    """A whole worksheet part for the tool's own tab: the header row frozen, one row per list."""
    from .xlsx_sheet import column_letters

    body = []
    last_column = 0
    for number, values in enumerate(rows, start=1):
        cells = b"".join(
            render((column_letters(c) + str(number)).encode(), None, b"", v) for c, v in enumerate(values)
        )
        last_column = max(last_column, len(values))
        body.append(b'<row r="%d">' % number + cells + b"</row>")
    dimension = f"A1:{column_letters(max(last_column, 1) - 1)}{max(len(rows), 1)}".encode()
    cols = b"".join(
        b'<col min="%d" max="%d" width="%s" customWidth="1"/>' % (i + 1, i + 1, repr(float(w)).encode())
        for i, w in enumerate(widths)
    )
    return (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<worksheet xmlns="' + MAIN.encode() + b'" xmlns:r="' + RELATIONSHIPS.encode() + b'">'
        b'<dimension ref="' + dimension + b'"/>'
        b'<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
        b'state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
        b'<sheetFormatPr defaultRowHeight="15"/>'
        + (b"<cols>" + cols + b"</cols>" if cols else b"")
        + b"<sheetData>"
        + b"".join(body)
        + b"</sheetData>"
        b'<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
        b"</worksheet>"
    )


def _insert_before_close(data: bytes, element: str, insert: bytes) -> bytes:
    """``insert`` just before the last ``</element>`` (any prefix); a self-closed ``<element/>`` is opened."""
    closing = list(re.finditer(rb"</((?:[\w.-]+:)?)" + element.encode() + rb"\s*>", data))
    if closing:
        at = closing[-1].start()
        return data[:at] + insert + data[at:]
    empty = re.search(rb"<((?:[\w.-]+:)?)" + element.encode() + rb"\b([^>]*?)/>", data)
    if not empty:
        raise BookError(f"no {element} element")
    opened = (
        b"<"
        + empty[1]
        + element.encode()
        + empty[2]
        + b">"
        + insert
        + b"</"
        + empty[1]
        + element.encode()
        + b">"
    )
    return data[: empty.start()] + opened + data[empty.end() :]


def _prefix_of(data: bytes, element: str) -> bytes:
    found = re.search(rb"<((?:[\w.-]+:)?)" + element.encode() + rb"\b", data)
    return found[1] if found else b""


def add_tab_entries(parts: Mapping[str, bytes | None], book: Book, title: str, part: str) -> dict[str, bytes]:
    """The workbook, its rels, [Content_Types].xml and docProps/app.xml with one worksheet tab added.

    ``parts`` holds each of those parts' current bytes (None when the package has no app.xml);
    returns the new bytes of each part that changes.
    """
    relation_ids = set(re.findall(rb'\bId\s*=\s*"([^"]*)"', parts[book.rels_part] or b""))
    number = 1
    while b"rId%d" % number in relation_ids:
        number += 1
    relation = f"rId{number}"
    sheet_id = max((t.sheet_id for t in book.tabs), default=0) + 1
    name = escape(title, {'"': "&quot;"}).encode()
    workbook = parts[book.workbook_part] or b""
    wp = _prefix_of(workbook, "sheets")
    relations_prefix = re.search(
        rb'xmlns:([\w.-]+)\s*=\s*"' + re.escape(RELATIONSHIPS.encode()) + b'"', workbook
    )
    extra_ns = b""
    if relations_prefix:
        r = relations_prefix[1]
    else:
        r, extra_ns = b"hvr", b' xmlns:hvr="' + RELATIONSHIPS.encode() + b'"'
    entry = (
        b"<"
        + wp
        + b'sheet name="'
        + name
        + b'" sheetId="%d" ' % sheet_id
        + r
        + b':id="'
        + relation.encode()
        + b'"'
        + extra_ns
        + b"/>"
    )
    changed = {book.workbook_part: _insert_before_close(workbook, "sheets", entry)}
    target = posixpath.relpath(part, posixpath.dirname(book.workbook_part))
    rels = parts[book.rels_part] or b""
    rp = _prefix_of(rels, "Relationships")
    changed[book.rels_part] = _insert_before_close(
        rels,
        "Relationships",
        b"<"
        + rp
        + b'Relationship Id="'
        + relation.encode()
        + b'" Type="'
        + WORKSHEET_TYPE.encode()
        + b'" Target="'
        + target.encode()
        + b'"/>',
    )
    types = parts["[Content_Types].xml"] or b""
    tp = _prefix_of(types, "Types")
    changed["[Content_Types].xml"] = _insert_before_close(
        types,
        "Types",
        b"<"
        + tp
        + b'Override PartName="/'
        + part.encode()
        + b'" ContentType="'
        + WORKSHEET_CONTENT.encode()
        + b'"/>',
    )
    app = parts.get("docProps/app.xml")
    if app:
        changed["docProps/app.xml"] = _app_with_tab(
            app, title, sum(1 for t in book.tabs if t.kind == "worksheet")
        )
    return changed


def _app_with_tab(app: bytes, title: str, worksheets: int) -> bytes:
    """docProps/app.xml with one more worksheet counted in HeadingPairs and named in TitlesOfParts."""
    pairs = re.search(rb"<((?:[\w.-]+:)?)HeadingPairs\b.*?</\1HeadingPairs>", app, re.S)
    titles = re.search(rb"<((?:[\w.-]+:)?)TitlesOfParts\b.*?</\1TitlesOfParts>", app, re.S)
    if not pairs or not titles:
        return app
    heading = pairs[0]
    counted = re.search(
        rb"(<(?:[\w.-]+:)?lpstr>\s*Worksheets\s*</(?:[\w.-]+:)?lpstr>\s*</(?:[\w.-]+:)?variant>\s*<(?:[\w.-]+:)?variant>\s*<((?:[\w.-]+:)?)i4>)(\d+)(</\2i4>)",
        heading,
    )
    vector = re.search(rb"<((?:[\w.-]+:)?)vector\b[^>]*>", titles[0])
    if not counted or not vector:
        return app
    before = int(counted[3])
    heading = heading[: counted.start(3)] + str(before + 1).encode() + heading[counted.end(3) :]
    block = titles[0]
    size = re.search(rb'size\s*=\s*"(\d+)"', vector[0])
    if not size:
        return app
    new_vector = vector[0][: size.start(1)] + str(int(size[1]) + 1).encode() + vector[0][size.end(1) :]
    vp = vector[1]
    entries = list(
        re.finditer(rb"<" + re.escape(vp) + rb"lpstr>.*?</" + re.escape(vp) + rb"lpstr>", block, re.S)
    )
    at = entries[before - 1].end() if 0 < before <= len(entries) else vector.end()
    item = b"<" + vp + b"lpstr>" + escape(title).encode() + b"</" + vp + b"lpstr>"
    block = block[: vector.start()] + new_vector + block[vector.end() : at] + item + block[at:]
    start, end = sorted([(pairs.start(), pairs.end(), heading), (titles.start(), titles.end(), block)])
    return app[: start[0]] + start[2] + app[start[1] : end[0]] + end[2] + app[end[1] :]


def new_part_name(names: Sequence[str]) -> str:
    """An unused xl/worksheets/sheetN.xml (compared ignoring case, as zip readers on Windows do)."""
    taken = {n.casefold() for n in names}
    number = 1
    while f"xl/worksheets/sheet{number}.xml" in taken:
        number += 1
    return f"xl/worksheets/sheet{number}.xml"
