"""The JSON report is written by hand for speed: it must be exactly what json.dumps would write."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from homevisits.findings import Finding, Report, to_json

TEXT = st.text(max_size=30)  # quotes, backslashes, %, control characters, emoji...
FINDING = st.builds(
    Finding,
    rule=st.sampled_from(["HV001", "HV002", "HV0%s"]),
    severity=st.sampled_from(["alert", "error", "warning", "info"]),
    row=st.none() | st.integers(1, 10**6),
    visit_id=st.none() | TEXT,
    column=st.none() | TEXT,
    message=TEXT,
    fix=TEXT,
    clause=TEXT,
    field=st.none() | TEXT,
    values=st.none()
    | st.dictionaries(
        TEXT,
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | TEXT
        | st.lists(st.integers() | TEXT, max_size=3),
        max_size=4,
    ),
)


@settings(max_examples=300, deadline=None)
@given(findings=st.lists(FINDING, max_size=12), batch=st.integers(1, 5))
def test_json_report_is_exactly_what_json_dumps_writes(findings, batch):
    from homevisits.findings import json_chunks

    report = Report(source="log.xlsx", policy="omg_education", checked_at="2026-11-23T09:00:00+00:00",
                    rows=3, findings=findings)  # fmt: skip
    written = "".join(json_chunks(report, batch=batch))
    assert json.loads(written) == report.as_dict()
    expected = [json.dumps(f.as_dict(), ensure_ascii=False) for f in findings]
    assert written.split('"findings": [\n', 1)[1].rsplit("\n]}", 1)[0].replace(",\n", ", ") == ", ".join(
        expected
    )
    assert json.loads(to_json(report)) == report.as_dict()  # the one-call form says the same
