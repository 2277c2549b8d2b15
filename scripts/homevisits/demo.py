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
TEXTS, INBOX = DEMO / "texts", DEMO / "inbox"
SAFE_VISIT = "V-131"  # under way today: its staff member texts SAFE before the second run

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
    (
        f"Run it again, as cron would 5 minutes later: nothing new is emailed; the staff text "
        f"'SAFE {SAFE_VISIT}' in {INBOX} is recorded in the sheet and answered in {TEXTS}",
        ["run-scheduled"],
    ),
]


def run() -> int:
    print("homevisits demo: invented data, nothing leaves this machine.\n")
    if DEMO.is_dir():  # a fresh workbook dated around today, and a fresh outbox and ledger
        shutil.rmtree(DEMO)
    for title, argv in STEPS:
        print(f"== {title}: homevisits {' '.join(argv)}", flush=True)
        sent_before = len(list(OUTBOX.glob("*.eml")))
        if argv[0] == "run-scheduled" and sent_before:
            staff_texts_safe(SAFE_VISIT)
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
    print(f"the governors' summary in {DEMO / 'reports'}, the emails in {OUTBOX} and the texts in {TEXTS}.")
    return 0


def staff_texts_safe(visit_id: str) -> None:
    """A text 'SAFE <visit>' from the phone taken on that visit, as Notify would list it, in demo/inbox."""
    import datetime as dt
    import json

    from .config import demo_config
    from .pipeline import load
    from .sms import e164

    now = dt.datetime.now(dt.UTC)
    visits = load(demo_config(), now).visits
    position = visits.position_of(visit_id)
    number = e164(visits.frame["phone_taken"].iat[position]) if position is not None else None
    if number is None:
        return
    INBOX.mkdir(parents=True, exist_ok=True)
    text = {
        "id": "0b7c2f1e-5d2a-4c3e-9a61-1d2f3a4b5c6d",
        "user_number": number.lstrip("+"),
        "notify_number": "07700900000",
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "content": f"SAFE {visit_id}",
    }
    (INBOX / "staff-text.json").write_text(json.dumps(text, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(run())
