"""The Excel write-back: 500 scattered cells into the 50,000-row bench workbook, two ways.

- ``surgical``: what homevisits does (``ExcelSource.write``: locate each row by Visit ID, write the
  cells into the worksheet part in place, copy every other zip member as it is stored);
- ``openpyxl``: the old way, ``openpyxl.load_workbook`` + set the cells + ``save``.

Each runs on its own copy of the workbook; the read before the write is not timed (a run has it
already). ``run()`` returns the figures as a dict; ``python bench/writeback_bench.py`` prints them.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from make_workbook import make_bench_workbook  # noqa: E402


def run(rows: int = 50_000, cells: int = 500, seed: int = 7, openpyxl: bool | None = None) -> dict[str, Any]:
    """The figures; the openpyxl way (about 4 minutes here) is skipped with bench/run.py --skip-openpyxl."""
    if openpyxl is None:
        openpyxl = "--skip-openpyxl" not in sys.argv
    from homevisits.schema import load_schema
    from homevisits.sheet import header_layout
    from homevisits.sources.excel import ExcelSource
    from homevisits.sources.writeback import CellUpdate, id_key

    workbook = make_bench_workbook(None, rows, 1)
    figures: dict[str, Any] = {"rows": rows, "cells_written": cells}
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
        copy = Path(folder) / "surgical.xlsx"
        shutil.copyfile(workbook, copy)
        source = ExcelSource(copy)
        raw = source.read()
        position, mapping = header_layout(raw.rows, load_schema())
        id_column = mapping.positions["visit_id"]
        ids = [r[id_column] for r in raw.rows[position + 1 :] if r[id_column]]
        counted: dict[str, int] = {}
        for visit_id in ids:
            counted[id_key(visit_id) or ""] = counted.get(id_key(visit_id) or "", 0) + 1
        unique = [v for v in ids if counted[id_key(v) or ""] == 1]
        chosen = random.Random(seed).sample(unique, cells)
        moment = dt.datetime(2026, 11, 23, 12, 10, tzinfo=dt.UTC)
        fields = ("form_sent_at", "escalated_at")
        updates = [CellUpdate(str(v), fields[i % 2], moment) for i, v in enumerate(chosen)]
        started = time.perf_counter()
        result = source.write(updates)
        figures["surgical_write_s"] = round(time.perf_counter() - started, 2)
        figures["surgical_cells_written"] = len(result.written)
        if openpyxl:
            import openpyxl as op

            other = Path(folder) / "openpyxl.xlsx"
            shutil.copyfile(workbook, other)
            places = [(p.row, p.column + 1, p.update.value.replace(tzinfo=None)) for p in result.written]
            started = time.perf_counter()
            book = op.load_workbook(other)
            sheet = book.worksheets[0]
            for row, column, value in places:
                sheet.cell(row=row, column=column, value=value)
            book.save(other)
            figures["openpyxl_load_save_s"] = round(time.perf_counter() - started, 2)
            figures["surgical_speedup"] = round(
                figures["openpyxl_load_save_s"] / figures["surgical_write_s"], 1
            )
    return figures


if __name__ == "__main__":
    for key, value in run(openpyxl="--skip-openpyxl" not in sys.argv).items():
        print(f"{key}: {value}")
