"""The visits table: typed columns, instants across the clock change, ragged and messy rows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from homevisits.schema import find_header_row, load_schema, map_headers
from homevisits.sheet import RawSheet
from homevisits.visits import build_visits

LONDON = ZoneInfo("Europe/London")
SCHEMA = load_schema()
HEADERS = [c.header for c in SCHEMA.columns]


def _sheet(rows: list[dict]) -> RawSheet:
    return RawSheet(
        name="log.xlsx", worksheet="Home Visits", rows=[HEADERS] + [[r.get(h) for h in HEADERS] for r in rows]
    )


def _build(raw: RawSheet):
    header = find_header_row(raw.rows, SCHEMA)
    return build_visits(raw, SCHEMA, map_headers(raw.rows[header], SCHEMA), header, LONDON)


def test_wall_clock_times_become_utc_instants_across_the_clock_change():
    raw = _sheet(
        [
            {
                "Visit ID": "A",
                "Visit date": "28/03/2026",
                "Start time": "09:00",
                "Expected duration (mins)": 60,
            },
            {"Visit ID": "B", "Visit date": "30/03/2026", "Start time": "09:00", "Expected return": "10:30"},
            {
                "Visit ID": "C",
                "Visit date": "30/03/2026",
                "Start time": "09:00",
                "Returned safely at": "10:40",
            },
        ]
    )
    frame = _build(raw).frame
    assert frame["start_at"].tolist() == [
        pd.Timestamp("2026-03-28 09:00", tz="UTC"),  # GMT
        pd.Timestamp("2026-03-30 08:00", tz="UTC"),  # BST
        pd.Timestamp("2026-03-30 08:00", tz="UTC"),
    ]
    assert frame["return_due_at"].tolist()[:2] == [
        pd.Timestamp("2026-03-28 10:00", tz="UTC"),
        pd.Timestamp("2026-03-30 09:30", tz="UTC"),
    ]
    assert frame["returned_at"].iloc[2] == pd.Timestamp(
        "2026-03-30 09:40", tz="UTC"
    )  # a bare time on the visit date


def test_record_gives_plain_python_values_on_the_school_clock():
    raw = _sheet(
        [
            {
                "Visit ID": "A",
                "Visit date": "3/4/26",
                "Start time": "2.30pm",
                "Phone taken on visit": 7700900123,
            }
        ]
    )
    record = _build(raw).record(0)
    assert record["visit_date"] == dt.date(2026, 4, 3)
    assert record["start_time"] == dt.time(14, 30)
    assert record["start_at"] == dt.datetime(2026, 4, 3, 14, 30, tzinfo=LONDON)
    assert record["phone_taken"] == "07700 900123"
    assert record["row"] == 2


def test_short_rows_read_as_empty_cells_at_their_end():
    raw = RawSheet(name="g", worksheet="w", rows=[HEADERS, ["HV-1", "Ada Example"], ["HV-2"]])
    frame = _build(raw).frame
    assert frame["visit_id"].tolist() == ["HV-1", "HV-2"]
    assert frame["learner_name"].tolist() == ["Ada Example", None]
    assert frame["status"].isna().all()


def test_a_header_with_no_visits_yet_is_an_empty_table():
    visits = _build(RawSheet(name="new.xlsx", worksheet="Home Visits", rows=[HEADERS]))
    assert len(visits) == 0 and visits.problems == []
    assert set(SCHEMA.fields) <= set(visits.frame.columns)


@pytest.mark.filterwarnings("error")  # nothing may leak onto an admin's screen as a warning
def test_thousands_of_messy_rows_build_without_a_warning():
    cycle = {
        "Visit date": ["03/04/2026", "3 Apr 2026", dt.date(2026, 4, 3), "01/13/2026", 46115],
        "Start time": ["14:30", "2.30pm", 0.5, "25:00"],
        "Expected duration (mins)": [45, "1h", None, "soon"],
        "Returned safely at": ["15:40", "03/04/2026 16:00", "soon", None],
        "Phone taken on visit": [7700900123, "+44 7700 900456", "12345"],
    }
    rows = [
        {h: values[n % len(values)] for h, values in cycle.items()} | {"Visit ID": f"HV-{n}"}
        for n in range(3000)
    ]
    visits = _build(_sheet(rows))
    assert len(visits) == 3000
    assert {p.field for p in visits.problems} == {
        "visit_date",
        "start_time",
        "expected_duration",
        "returned_at",
        "phone_taken",
    }


def test_the_visits_table_needs_nothing_from_the_sources():
    """Issue 13: the core reads a snapshot (sheet.RawSheet); it never imports the edges that fetch it."""
    import subprocess
    import sys

    code = (
        "import sys, homevisits.visits, homevisits.sheet, homevisits.visit_ids, homevisits.findings_tab;"
        "print(sorted(m for m in sys.modules if m.startswith('homevisits.sources')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
