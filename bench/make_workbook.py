"""A large invented home-visits log for the benchmark: every column, mostly valid, ~2% bad cells.

``make_bench_workbook()`` writes bench/visits-<rows>-<seed>.xlsx once (openpyxl write-only mode) and
reuses it while it exists. Cells mix real date/time cells with the text people type, like the demo.

Three shapes (``SHAPES``), so each kind of cost shows on its own:

  standard  8,000 learners sharing 1,000 mobiles and 1,000 landlines; ~2% bad cells (~67,000 findings)
  phones    9,000 learners, each with their own mobile and their own parent's phone (70% landlines),
            400 staff with their own phones: every distinct number is parsed (bench/visits-phones-...)
  findings  the standard log with ~14% bad cells: ~200,000 findings to word and write
            (bench/visits-findings-...)

Every number is one nobody can own: Ofcom's drama ranges for landlines, and for mobiles 07700 900xxx
and the rest of 07700 9xxxxx, which is not allocated (phonenumbers calls it invalid; homevisits reads
any 07[1-57-9] mobile). Run directly: ``python bench/make_workbook.py [--shape S] [--rows N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# The moment the benchmark checks the log at; visits are spread over the school year around it.
BENCH_NOW = "2026-03-24T11:20:00+00:00"
YEAR_START = dt.date(2025, 9, 1)
YEAR_DAYS = 320
BAD_SHARE = 0.02


@dataclass(frozen=True)
class Shape:
    """What makes one benchmark log differ from the standard one."""

    name: str
    learners: int = 8000
    staff: int = 60
    own_phones: bool = False  # every learner, parent and member of staff has a number of their own
    bad_share: float = BAD_SHARE


SHAPES = {
    "standard": Shape("standard"),
    "phones": Shape("phones", learners=9000, staff=400, own_phones=True),
    "findings": Shape("findings", bad_share=0.14),
}
# Ofcom's drama ranges that phonenumbers reads as valid UK numbers: each prefix + 000..999.
DRAMA_LANDLINES = (
    "0113 496 0", "0114 496 0", "0116 496 0", "0117 496 0", "0118 496 0", "0121 496 0", "0131 496 0",
    "0141 496 0", "0151 496 0", "0161 496 0", "0191 498 0", "020 7946 0", "028 9649 6", "029 2018 0",
    "0306 999 0",
)  # fmt: skip

FIRST = [
    "Amara",
    "Jayden",
    "Zainab",
    "Oliver",
    "Mia",
    "Kacper",
    "Aaliyah",
    "Ethan",
    "Fatima",
    "Leo",
    "Ruby",
    "Yusuf",
    "Chloe",
    "Tyrese",
    "Sofia",
    "Harvey",
    "Nadia",
    "Reece",
    "Imani",
    "Alfie",
    "Maya",
    "Kieran",
    "Hana",
    "Josh",
    "Dylan",
    "Safa",
    "Callum",
    "Aisha",
    "Theo",
    "Priya",
    "Jamie",
    "Noah",
    "Lily",
    "Rhys",
    "Samir",
    "Grace",
    "Finley",
    "Eva",
    "Omar",
    "Poppy",
    "Kofi",
    "Isla",
]
LAST = [
    "Okafor",
    "Clarke",
    "Hussain",
    "Nowak",
    "Thompson",
    "Wisniewski",
    "Campbell",
    "Murphy",
    "Begum",
    "Fernandes",
    "O'Connor",
    "Ahmed",
    "Walsh",
    "Mensah",
    "Popescu",
    "Bennett",
    "Kaur",
    "Doyle",
    "Brooks",
    "Sharma",
    "Li",
    "Byrne",
    "Yilmaz",
    "Patel",
    "Grant",
    "Evans",
    "Malik",
    "Reid",
    "Bello",
    "Costa",
    "Nair",
    "Kerr",
    "Adebayo",
    "Chen",
    "Morgan",
    "Haddad",
    "Okoro",
    "Shaw",
    "Kovacs",
    "Farouk",
    "Hughes",
    "Boateng",
    "Fraser",
]
STREETS = (
    "Linden Walk",
    "Foxglove Close",
    "Mallard Road",
    "Quarry View",
    "Beechcroft Avenue",
    "Tanners Row",
    "Orchard Rise",
    "Kestrel Way",
    "Willow Bank",
    "Hawthorn Drive",
)
AREAS = ("Kingstanding", "Erdington", "Castle Vale", "Perry Barr", "Aston", "Great Barr", "Stockland Green")
REASONS = (
    "Attendance below 85%",
    "Persistent absence follow-up",
    "Coursework support",
    "Safe and well check",
    "Transition meeting",
    "Welfare check",
    "Discuss SEND support",
    "Emergency safeguarding check",
)
CONTACT = (
    "Phoned parent twice; text sent",
    "Calls on 3 days, no reply",
    "Met parent in school",
    None,
    "Texts and two calls",
    "Letter home and phone call",
)
OUTCOMES = (
    "Met learner and parent; return plan agreed.",
    "Learner well; coursework deadlines agreed.",
    "Referral to student services agreed.",
    "Discussed attendance; review in 2 weeks.",
    None,
)
RISK_NOTES = (
    "No known risks.",
    "Sibling verbally aggressive before: two staff.",
    "Third-floor flat, no lift.",
    "Dog at the property.",
    None,
)
MYSTERY = ("tbc-ish", "see notes", "ask Sam", "??", "next week")

BAD = {
    "date": ("01/13/2026", "31/02/2026", "next tues", "tomorrow-ish", "2026-13-01"),
    "time": ("25:00", "lunchtime", "2.75pm", "after school"),
    "duration": ("ages", "-5", "a while"),
    "phone": ("12345", "0770090", "call office", "07700 9001"),
    "email": ("hannah.moss@", "hannah at school", "www.school.example"),
    "yesno": ("maybe", "dunno", "not sure"),
    "choice": ("v high", "medium-ish", "dunno", "tbd later"),
    "datetime": ("yesterday", "32/01/2026 10:00", "after lunch"),
}
CHOICES = {
    "location_type": (
        ("Home",) * 14 + ("home", "At home", "Public place", "library", "cafe", "School", "Other")
    ),
    "risk_level": (("LOW",) * 12 + ("low", "L", "MEDIUM", " Med", "Medium", "medium", "HIGH", "h")),
    "parent_consent": (("YES",) * 10 + ("y", "✓", "Yes", "TRUE", "NO", "N/A", None)),
    "logged_on": ("Bromcom", "CPOMS", "cpoms", "MyConcern", "my concern", None),
}
STATUS_PAST = ("Completed",) * 14 + (
    "done",
    "visited",
    "No answer",
    "nobody home",
    "Cancelled",
    "canceled",
    "Not carried out",
    "Planned",
)
STATUS_FUTURE = ("Planned",) * 16 + ("booked", "Cancelled", "planned", None)
YES = ("YES", "YES", "YES", "y", "Yes", "✓", "TRUE", True, "x")
NO = ("NO", "NO", "n", "No", False)


def bench_path(rows: int = 50_000, seed: int = 1, folder: Path = BENCH_DIR, shape: str = "standard") -> Path:
    kind = "" if shape == "standard" else f"{shape}-"
    return folder / f"visits-{kind}{rows}-{seed}.xlsx"


def make_bench_workbook(
    path: Path | str | None = None, rows: int = 50_000, seed: int = 1, shape: str = "standard"
) -> Path:
    """Write (or reuse) the benchmark workbook; ``path`` may be a folder or None (bench/)."""
    target = Path(path) if path is not None else BENCH_DIR
    if target.suffix.lower() != ".xlsx":
        target = bench_path(rows, seed, target, shape)
    if target.is_file() and target.stat().st_size > 0:
        return target
    from openpyxl import Workbook

    from homevisits.schema import load_schema

    schema = load_schema()
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Home Visits")
    sheet.append(["Home visits log (benchmark: invented data)"])
    sheet.append([])
    sheet.append([column.header for column in schema.columns])
    maker = _RowMaker(random.Random(seed), schema, SHAPES[shape])
    for i in range(rows):
        sheet.append(maker.row(i))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    book.save(partial)
    os.replace(partial, target)
    return target


class _RowMaker:
    """One visit per call, as a school's log would hold it."""

    def __init__(self, rng: random.Random, schema, shape: Shape = SHAPES["standard"]) -> None:
        self.rng = rng
        self.shape = shape
        self.columns = schema.columns
        self.kinds = [c.type for c in schema.columns]
        self.now = dt.datetime.fromisoformat(BENCH_NOW).replace(tzinfo=None)
        if shape.own_phones:  # drawn without repeats: nobody shares a number
            count = 2 * shape.learners + 2 * shape.staff
            self.mobiles = iter(f"07700 9{n:05d}" for n in rng.sample(range(100_000), count))
            lines = rng.sample(range(1000 * len(DRAMA_LANDLINES)), shape.learners)
            self.landlines = iter(f"{DRAMA_LANDLINES[n // 1000]}{n % 1000:03d}" for n in lines)
        self.learners = [self._learner(n) for n in range(shape.learners)]
        self.staff = [self._staff(n) for n in range(shape.staff)]

    def _learner(self, n: int) -> tuple:
        r = self.rng
        first, last = r.choice(FIRST), r.choice(LAST)
        if self.shape.own_phones:
            mobile, own = next(self.mobiles), next(self.mobiles)
            parent_phone = own if r.random() < 0.3 else next(self.landlines)
            learner_phone = mobile if r.random() < 0.9 else None
        else:
            mobile = f"07700 900{r.randrange(1000):03d}"
            parent_phone = mobile if r.random() < 0.7 else f"0113 496 0{r.randrange(1000):03d}"
            learner_phone = f"07700 900{r.randrange(1000):03d}" if r.random() < 0.6 else None
        return (
            f"{first} {last}",
            f"L{100000 + n}" if n % 5 else 100000 + n,
            learner_phone,
            f"{r.choice(FIRST)} {last}",
            parent_phone,
            f"{r.randrange(1, 200)} {r.choice(STREETS)}, {r.choice(AREAS)}, Birmingham",
            f"B{r.choice((6, 23, 24, 35, 42, 43, 44, 73))} {r.randrange(10)}XX",
        )

    def _staff(self, n: int) -> tuple:
        r = self.rng
        name = f"{r.choice(FIRST)} {r.choice(LAST)}"
        email = name.lower().replace(" ", ".").replace("'", "") + "@school.example"
        manager = f"{r.choice(FIRST)} {r.choice(LAST)}"
        return (
            name,
            email,
            next(self.mobiles) if self.shape.own_phones else f"07700 900{n:03d}",
            manager,
            manager.lower().replace(" ", ".").replace("'", "") + "@school.example",
            next(self.mobiles) if self.shape.own_phones else f"07700 900{(n + 500) % 1000:03d}",
        )

    # -------------------------------------------------------------- how values are typed

    def date(self, day: dt.date):
        k = self.rng.random()
        if k < 0.5:
            return day
        if k < 0.7:
            return f"{day:%d/%m/%Y}"
        if k < 0.8:
            return f"{day.day}/{day.month}/{day.year % 100:02d}"
        if k < 0.87:
            suffix = "th" if 10 <= day.day <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
            return f"{day:%a} {day.day}{suffix} {day:%B %Y}"
        if k < 0.93:
            return float((day - dt.date(1899, 12, 30)).days)
        return f"{day:%Y-%m-%d}"

    def time(self, moment: dt.time):
        k = self.rng.random()
        if k < 0.5:
            return moment
        if k < 0.75:
            return f"{moment:%H:%M}"
        if k < 0.85:
            hour = moment.hour % 12 or 12
            ampm = "am" if moment.hour < 12 else "pm"
            return f"{hour}.{moment.minute:02d}{ampm}" if moment.minute else f"{hour}{ampm}"
        if k < 0.93:
            return moment.hour * 100 + moment.minute
        return f"{moment.hour}.{moment.minute:02d}"

    def moment(self, when: dt.datetime, bare: bool):
        k = self.rng.random()
        if bare and k < 0.6:
            return self.time(when.time())
        if k < 0.8:
            return when
        return f"{when:%d/%m/%Y %H:%M}"

    def phone(self, number: str | None):
        if number is None:
            return None
        k = self.rng.random()
        if k < 0.6:
            return number
        if k < 0.75 and number.startswith("07"):
            return int(number.replace(" ", ""))
        if k < 0.85 and number.startswith("07"):
            return "+44 " + number[1:5] + " " + number[6:]
        return number.replace(" ", "")

    def yes_no(self, value: bool | None):
        if value is None:
            return None
        return self.rng.choice(YES if value else NO)

    # -------------------------------------------------------------- one visit

    def row(self, i: int) -> list:
        r = self.rng
        learner = r.choice(self.learners)
        lead, buddy = r.sample(self.staff, 2)
        day = YEAR_START + dt.timedelta(days=r.randrange(YEAR_DAYS))
        if day.weekday() >= 5 and r.random() < 0.9:
            day -= dt.timedelta(days=day.weekday() - 4)
        start = dt.datetime.combine(
            day, dt.time(r.randrange(8, 17), r.choice((0, 0, 15, 30, 45, 10, 20, 50)))
        )
        minutes = r.choice((30, 45, 45, 60, 60, 90, 120))
        due = start + dt.timedelta(minutes=minutes + 30)
        past = start < self.now
        status = r.choice(STATUS_PAST if past else STATUS_FUTURE)
        happened = past and status in ("Completed", "done", "visited", "No answer", "nobody home")
        sent = start - dt.timedelta(days=r.choice((1, 2, 3, 5)), minutes=r.randrange(600))
        arrived = start + dt.timedelta(minutes=r.randrange(0, 15))
        departed = arrived + dt.timedelta(minutes=minutes - r.randrange(0, 15))
        returned = due - dt.timedelta(minutes=r.randrange(-45, 30))
        values = {
            "visit_id": f"HV-{i + 1:06d}" if r.random() > 0.001 else f"HV-{max(i, 1):06d}",
            "learner_name": learner[0],
            "learner_id": learner[1],
            "learner_phone": self.phone(learner[2]),
            "parent_name": learner[3],
            "parent_phone": self.phone(learner[4]),
            "address": learner[5],
            "postcode": learner[6],
            "reason": r.choice(REASONS),
            "visit_date": self.date(day),
            "start_time": self.time(start.time()),
            "expected_return": self.time(due.time()) if r.random() < 0.9 else None,
            "expected_duration": r.choice((minutes, f"{minutes} mins", f"{minutes / 60:g}h", minutes)),
            "location_type": r.choice(CHOICES["location_type"]),
            "location_details": r.choice((None, None, "Library study room", "Cafe on the High Street")),
            "lead_staff": lead[0],
            "staff_email": lead[1],
            "second_staff": buddy[0] if r.random() < 0.7 else None,
            "phone_taken": self.phone(lead[2]) if r.random() < 0.97 else None,
            "line_manager": lead[3],
            "line_manager_email": lead[4],
            "risk_level": r.choice(CHOICES["risk_level"]),
            "risk_notes": r.choice(RISK_NOTES),
            "dangerous_animals": self.yes_no(r.random() < 0.05),
            "parent_consent": r.choice(CHOICES["parent_consent"]),
            "approved_by": lead[3] if r.random() < 0.95 else r.choice((None, lead[0])),
            "authorised_by": r.choice(("Mrs D Achebe (DSL)", "Mr P Lindqvist (Principal)", None)),
            "safeguarding_informed": self.yes_no(r.random() < 0.93),
            "safe_word_agreed": self.yes_no(r.random() < 0.9),
            "laptop_taken": self.yes_no(r.random() < 0.1),
            "laptop_approved_by": r.choice(("Mr P Lindqvist", None)),
            "prior_contact": r.choice(CONTACT),
            "form_sent_at": self.moment(sent, bare=False) if r.random() < 0.85 else None,
            "status": status,
            "arrived_at": self.moment(arrived, bare=True) if happened and r.random() < 0.9 else None,
            "departed_at": self.moment(departed, bare=True) if happened and r.random() < 0.9 else None,
            "returned_at": self.moment(returned, bare=True) if happened and r.random() < 0.95 else None,
            "escalated_at": self.moment(due + dt.timedelta(minutes=35), bare=False)
            if r.random() < 0.01
            else None,
            "outcome": r.choice(OUTCOMES) if happened else None,
            "safeguarding_concern": self.yes_no(r.random() < 0.05) if happened else None,
            "logged_on": r.choice(CHOICES["logged_on"]) if happened else None,
            "note_left": self.yes_no(r.random() < 0.8) if status in ("No answer", "nobody home") else None,
            "cancellation_reason": r.choice(("Parent rearranged", "Learner unwell", None))
            if status in ("Cancelled", "canceled", "Not carried out")
            else None,
            "line_manager_mobile": self.phone(lead[5]) if r.random() < 0.9 else None,
        }
        cells = []
        for column, kind in zip(self.columns, self.kinds, strict=True):
            value = values[column.field]
            if kind != "text" and value is not None and r.random() < self.shape.bad_share:
                value = r.choice(BAD[kind])
            elif kind == "text" and value is not None and r.random() < 0.002:
                value = r.choice(MYSTERY)
            cells.append(value)
        return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="standard")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = make_bench_workbook(None, args.rows, args.seed, args.shape)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
