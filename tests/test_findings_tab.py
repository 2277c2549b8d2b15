"""The Policy check tab's rows: built from the findings where findings live, written by any source as given."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from homevisits.findings_tab import FINDINGS_HEADER, FINDINGS_TAB, FINDINGS_WIDTHS, findings_table
from workbooks import ALL_HEADERS, NOW, run_check, visit, write_workbook


def test_each_row_is_one_finding_as_it_has_them_worst_first(tmp_path):
    rows = [
        visit(2, "done"),
        visit(3, "planned", risk_level="HIGH"),
        visit(4, "done", visit_date="31/02/2026"),
        visit(5, "planned", risk_level="medium", location_type="home"),
    ]
    checked = run_check(
        write_workbook(tmp_path / "log.xlsx", rows, columns=ALL_HEADERS), "omg_education", NOW
    )
    header, table = findings_table(checked.findings, "2026-11-23T12:00:00+00:00")
    assert (
        FINDINGS_TAB == "Policy check" and header == FINDINGS_HEADER and len(FINDINGS_WIDTHS) == len(header)
    )
    assert len(table) == len(checked.findings) >= 3
    ranks = ["ALERT", "ERROR", "WARNING", "INFO"]
    assert [(ranks.index(r[0]), r[1]) for r in table] == sorted((ranks.index(r[0]), r[1]) for r in table)
    for finding in checked.findings:
        assert [
            finding.severity.upper(),
            finding.row,
            finding.visit_id or "",
            finding.column or "",
            finding.rule,
            finding.message,
            finding.fix,
            finding.clause,
            "23/11/2026 12:00",
        ] in table
    assert {r[4] for r in table} >= {"HV002", "HV003", "HV004"}


def test_a_checked_at_that_is_not_a_timestamp_is_kept_as_given():
    assert findings_table([], "now-ish") == (FINDINGS_HEADER, [])
    header, _ = findings_table([], "2026-11-23T12:00:00+00:00")
    header.append("mutated")
    assert FINDINGS_HEADER[-1] == "Checked at"  # each table gets its own header list
