"""The governors' summary written out: one self-contained HTML page, each table beside its chart, and an
.xlsx workbook of the same tables.

The figures themselves are built in summary.py; this module only lays them out. Every text cell goes
through the formula guard, so nothing typed into the sheet becomes a formula or a control character in
the workbook; matplotlib and openpyxl are imported only when a report is written.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .reports import render
from .summary import NOT_RECORDED, Summary, Table
from .wording import long_day, long_moment

# ---------------------------------------------------------------- writing the summary


def report_stem(summary: Summary) -> str:
    """File name without personal data: ``governors-summary-2025-09-01-to-2026-08-31``."""
    return f"governors-summary-{summary.start.isoformat()}-to-{summary.end.isoformat()}"


def summary_page(summary: Summary) -> str:
    """The summary as one self-contained HTML page, each table beside its chart."""
    sections = [{"table": t, "chart": _chart(t)} for t in summary.tables]
    return render(
        "summary.html.j2",
        summary=summary,
        period=f"{long_day(summary.start)} to {long_day(summary.end)}",
        generated=long_moment(summary.generated_at),
        sections=sections,
    )


def write_report(summary: Summary, out_dir: Path | str) -> tuple[Path, Path]:
    """Write the HTML page and the .xlsx workbook of the same tables; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem(summary)
    html_path = out / f"{stem}.html"
    xlsx_path = out / f"{stem}.xlsx"
    html_path.write_text(summary_page(summary), encoding="utf-8")
    write_workbook(summary, xlsx_path)
    return html_path, xlsx_path


def write_workbook(summary: Summary, path: Path) -> Path:
    """One sheet of headline figures, then one sheet per table."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.properties.creator = "homevisits"
    book.properties.title = "Home visits summary"
    first = book.active
    first.title = "Summary"
    _append(first, ["Home visits: summary for governors"])
    first["A1"].font = Font(bold=True, size=14)
    _append(first, ["Period", f"{summary.start.isoformat()} to {summary.end.isoformat()}"])
    if summary.policy:
        _append(first, ["Policy", summary.policy])
    _append(first, ["Generated", summary.generated_at.strftime("%Y-%m-%d %H:%M")])
    _append(first, [])
    _append(first, ["Figure", "Value", "Detail"])
    for cell in first[first.max_row]:
        cell.font = Font(bold=True)
    for figure in summary.figures:
        _append(first, [figure.label, figure.value, figure.note])
    if summary.undated:
        _append(first, [])
        _append(first, [f"{summary.undated} rows have no readable visit date and are not counted."])
    _widths(first, get_column_letter)

    header_fill = PatternFill("solid", fgColor="1F3A5F")
    for table in summary.tables:
        sheet = book.create_sheet(_sheet_name(table.sheet))
        _append(sheet, list(table.columns))
        for cell in sheet[1]:
            cell.font = Font(bold=True, color="FFFFFF")
            cell.fill = header_fill
            cell.alignment = Alignment(vertical="center")
        for row in table.rows:
            _append(sheet, list(row))
        for column in table.shares:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=column + 1, max_col=column + 1):
                cell.number_format = "0%"
        if not table.rows:
            _append(sheet, ["None in this period"])
        if table.note:
            _append(sheet, [])
            _append(sheet, [table.note])
            sheet.cell(sheet.max_row, 1).font = Font(italic=True, color="555555")
        sheet.freeze_panes = "A2"
        _widths(sheet, get_column_letter, skip_last=bool(table.note))
    _text_cells_only(book)
    book.save(path)
    return path


def _append(sheet: Any, values: Sequence[Any]) -> None:
    """A row appended with its text cleaned first (openpyxl refuses control characters)."""
    from .formula_guard import clean

    sheet.append([clean(v) if isinstance(v, str) else v for v in values])


def _text_cells_only(book: Any) -> None:
    """Every text cell through the formula guard: cleaned of what a workbook cannot hold, typed as text
    (never a formula), and quote-prefixed when it looks like one, so editing it in Excel keeps it text."""
    from .formula_guard import text_cell

    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    text, formula_like = text_cell(cell.value)
                    cell.value = text
                    cell.data_type = "s"
                    if formula_like:
                        cell.quotePrefix = True


def _sheet_name(title: str) -> str:
    return re.sub(r"[\[\]:*?/\\]", "-", title)[:31]


def _widths(sheet: Any, letter: Any, skip_last: bool = False) -> None:
    last = sheet.max_row - (1 if skip_last else 0)
    widths: dict[int, int] = {}
    for row in sheet.iter_rows(max_row=last):
        for cell in row:
            if cell.value is not None:
                widths[cell.column] = max(widths.get(cell.column, 0), len(str(cell.value)))
    for column, width in widths.items():
        sheet.column_dimensions[letter(column)].width = min(max(width + 2, 10), 60)


# ---------------------------------------------------------------- charts

INK = "#1f2937"
MUTED = "#6b7280"
BAR = "#2f5d8a"
TONES = {
    "On time": "#2e7d4f",
    "Confirmed on time": "#2e7d4f",
    "Late": "#c77700",
    "Confirmed late": "#c77700",
    "Not sent": "#b3261e",
    "Not confirmed": "#b3261e",
    "LOW": "#2e7d4f",
    "MEDIUM": "#c77700",
    "HIGH": "#b3261e",
    "Completed": "#2e7d4f",
    "Cancelled": "#9ca3af",
    "Not carried out": "#9ca3af",
    "No answer": "#c77700",
    NOT_RECORDED: "#d1d5db",
}


def _chart(table: Table) -> str | None:
    """A PNG chart of the table as a data: URI, or None when there is nothing to draw."""
    if table.chart is None or not table.rows or not any(r[table.chart_column] for r in table.rows):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    labels = [_short_label(r[table.label_column]) for r in table.rows]
    if table.key == "by_month":
        labels = _month_labels(labels)
    values = [r[table.chart_column] or 0 for r in table.rows]
    colours = [TONES.get(str(r[0]), BAR) for r in table.rows]
    top = max(values)
    horizontal = table.chart == "barh"
    height = max(2.0, 0.34 * len(labels) + 0.6) if horizontal else 2.9
    figure = MplFigure(figsize=(5.0, height), dpi=160)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if horizontal:
        positions = list(range(len(labels)))[::-1]
        bars = axes.barh(positions, values, color=colours, height=0.64)
        axes.set_yticks(positions, labels)
        axes.set_xlim(0, top * 1.16)
        axes.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
        for bar, value in zip(bars, values, strict=True):
            x, y = bar.get_width() + top * 0.015, bar.get_y() + bar.get_height() / 2
            axes.text(x, y, f"{value:,}", va="center", fontsize=9, color=INK)
    else:
        bars = axes.bar(range(len(labels)), values, color=colours, width=0.66)
        axes.set_xticks(range(len(labels)), labels)
        axes.set_ylim(0, top * 1.2)
        axes.tick_params(axis="y", which="both", left=False, labelleft=False)
        for bar, value in zip(bars, values, strict=True):
            if value:
                x, y = bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.02
                axes.text(x, y, f"{value:,}", ha="center", fontsize=9, color=INK)
    for side in ("top", "right", "bottom" if horizontal else "left"):
        axes.spines[side].set_visible(False)
    axes.spines["left" if horizontal else "bottom"].set_color("#c9ced6")
    axes.tick_params(colors="#374151", labelsize=9.5, length=0)
    figure.tight_layout(pad=0.6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _month_labels(labels: Sequence[str]) -> list[str]:
    """``Sep 2026`` ... as ``Sep`` with the year under the first month and under January."""
    out = []
    for i, label in enumerate(labels):
        month, _, year = label.partition(" ")
        out.append(f"{month}\n{year}" if i == 0 or month == "Jan" else month)
    return out


def _short_label(value: Any, limit: int = 30) -> str:
    from .formula_guard import clean

    text = clean(str(value))
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")  # a dollar sign would start matplotlib's maths mode
