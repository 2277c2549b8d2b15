"""``make demo``: the whole pipeline on the bundled demo workbook, exactly as an admin would run it.

Starts afresh in demo/: builds demo/home_visits.xlsx (invented visits dated around today), then runs
each command on it with ``--demo``: the demo's own settings, whatever homevisits.toml or
$HOMEVISITS_CONFIG say, so every output lands under demo/ and no mail leaves the machine.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .cli import main as homevisits

DEMO = Path("demo")
OUTBOX = DEMO / "outbox"

STEPS: list[tuple[str, list[str]]] = [
    ("Check every visit against the OMG Education policy", ["validate", "--format", "text"]),
    (
        "The same check as a page to open or forward",
        ["validate", "--format", "html", "--output", "demo/validation.html"],
    ),
    ("... and as JSON for other tools", ["validate", "--format", "json", "--output", "demo/validation.json"]),
    ("Fill in the forms due in the next 14 days, as HTML and PDF", ["forms", "--due", "--pdf"]),
    ("The governors' summary for this academic year", ["report"]),
    (
        "Send what is due: forms, missed deadlines and overdue-return alerts, as .eml files in demo/outbox",
        ["run-scheduled"],
    ),
    ("Run it again, as cron would 5 minutes later: nothing new is sent", ["run-scheduled"]),
]


def run() -> int:
    print("homevisits demo: invented data, nothing leaves this machine.\n")
    if DEMO.is_dir():  # a fresh workbook dated around today, and a fresh outbox and ledger
        shutil.rmtree(DEMO)
    for title, argv in STEPS:
        print(f"== {title}: homevisits {' '.join(argv)}", flush=True)
        sent_before = len(list(OUTBOX.glob("*.eml")))
        status = homevisits([*argv, "--demo"])  # sealed: never a homevisits.toml or $HOMEVISITS_CONFIG
        if status not in (0, 1):  # 1 only says the demo sheet has problems to fix, as it should
            print(f"homevisits demo: step failed with exit status {status}.", file=sys.stderr)
            return status
        if argv[0] == "run-scheduled" and sent_before and len(list(OUTBOX.glob("*.eml"))) == sent_before:
            print(f"Nothing new was sent: {OUTBOX} still holds the {sent_before} messages of the first run.")
        print(flush=True)
    print(
        f"Done. Open {DEMO / 'validation.html'} in a browser for the findings; the forms are in {DEMO / 'forms'},"
    )
    print(f"the governors' summary in {DEMO / 'reports'} and the emails in {OUTBOX}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
