"""An invented home-visits log that shows the product: about 40 visits dated around ``now``.

:func:`build_demo_workbook` writes it the way a school's shared-drive log looks (a title row, a
blank row, then the headers; messy cells people type). Every rule HV001-HV031 is broken by at
least one visit (:data:`DEMO_CASES`), a few cells cannot be read at all (:data:`BAD_CELLS`), and
some visits break nothing (:data:`DEMO_CLEAN`). Every name, address, phone number and email is
invented: Ofcom drama numbers, ``XX`` postcodes, ``school.example`` addresses.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .config import DEFAULT_TIMEZONE

CLOCK = ZoneInfo(DEFAULT_TIMEZONE)  # the demo school keeps the default clock
SHEET_NAME = "Home Visits"
TITLE = "Home visits log - Demo College (every name, address and phone number here is invented)"
# Headers a school would use instead of the catalogue's own.
ALIAS_HEADERS = {
    "visit_date": "Date of visit",
    "expected_return": "Time of expected return",
    "phone_taken": "Phone number that will be taken on the visit",
}

# Rule id -> the visits that break it: exactly these under omg_education (the demo's profile) for the
# rules it enables, and at least these under one of the five profiles for the others.
DEMO_CASES: dict[str, list[str]] = {
    "HV001": ["V-127"],  # learner name left empty
    "HV002": ["V-128", "V-137", "V-138"],  # 01/13/2026, "tomorrow-ish", a 5-digit phone
    "HV003": ["V-103"],  # HIGH risk ("h") carried out
    "HV004": ["V-110"],  # MEDIUM risk (" Med") at home
    "HV005": ["V-139"],  # no expected return, no duration
    "HV006": ["V-112"],  # parent/carer said NO, attendance visit (not exempt)
    "HV007": ["V-114"],  # approved by the lead staff member themself
    "HV008": ["V-115"],  # nobody authorised it (Principal/DSL)
    "HV009": [
        "V-116",
        "V-134",
        "V-135",
        "V-139",
    ],  # sent late; unsent, deadline passed; unsent, due soon; not ready
    "HV010": ["V-117"],  # alone on the learner's first visit
    "HV011": ["V-104", "V-111"],  # a Saturday; an evening
    "HV012": ["V-118"],  # safeguarding team / reception not told
    "HV013": ["V-119"],  # no safe word
    "HV014": ["V-120"],  # laptop without SMT approval
    "HV015": ["V-121"],  # dangerous animals at a planned visit
    "HV016": ["V-122", "V-138"],  # no phone taken; an unreadable one
    "HV017": ["V-140"],  # expected return before the start
    "HV019": ["V-142"],  # the same Visit ID on two rows
    "HV020": ["V-123"],  # completed without arrival and departure times
    "HV021": ["V-124"],  # completed without an outcome
    "HV022": [
        "V-129",
        "V-132",
    ],  # still booked 10 days on: no safe return recorded; today: due back an hour ago
    "HV023": ["V-106"],  # safe return confirmed 70 minutes late
    "HV024": ["V-107"],  # nobody home, no note left
    "HV025": ["V-125"],  # safeguarding concern not logged
    "HV026": ["V-108"],  # cancelled with no reason
    "HV027": ["V-129", "V-141"],  # still booked 10 days on; "done" but dated in the future
    "HV028": ["V-126"],  # no prior contact before a home visit
    "HV031": ["V-144 (moved)"],  # a Visit ID no email header or file name can carry
}
# Cells nobody can read: (visit id, field).
BAD_CELLS: frozenset[tuple[str, str]] = frozenset(
    {("V-128", "visit_date"), ("V-137", "visit_date"), ("V-138", "phone_taken")}
)
# Visits that break no rule (no error or alert under any profile; nothing at all under omg_education).
DEMO_CLEAN: tuple[str, ...] = (
    "V-101",
    "V-102",
    "V-105",
    "V-109",
    "V-113",
    "V-130",
    "V-131",
    "V-133",
    "V-136",
    "V-143",
)


@dataclass(frozen=True)
class Learner:
    name: str
    id: str | int
    phone: str | None
    parent: str
    parent_phone: str
    address: str
    postcode: str


@dataclass(frozen=True)
class Staff:
    name: str
    phone: str
    manager: str

    @property
    def email(self) -> str:
        return _email(self.name)


def _email(name: str) -> str:
    return name.lower().replace(" ", ".").replace("'", "") + "@school.example"


MANAGERS = ("Gareth Lyle", "Bernadette Quinn")
AUTHORISERS = ("Mrs D Achebe (DSL)", "Mr P Lindqvist (Principal)")
STAFF = (
    Staff("Hannah Moss", "07700 900501", "Gareth Lyle"),
    Staff("Kwame Asante", "07700 900502", "Gareth Lyle"),
    Staff("Joanna Pryce", "07700 900503", "Bernadette Quinn"),
    Staff("Imran Siddiqui", "07700 900504", "Bernadette Quinn"),
    Staff("Lucy Harding", "07700 900505", "Gareth Lyle"),
    Staff("Tomasz Zielinski", "07700 900506", "Bernadette Quinn"),
)
_STREETS = (
    "Linden Walk, Kingstanding",
    "Foxglove Close, Erdington",
    "Mallard Road, Castle Vale",
    "Quarry View, Perry Barr",
    "Beechcroft Avenue, Stockland Green",
    "Tanners Row, Aston",
    "Orchard Rise, Sutton Coldfield",
    "Kestrel Way, Great Barr",
)
_POSTCODES = ("B44 0XX", "B23 6XX", "B35 7XX", "B42 1XX", "B23 5XX", "B6 7XX", "B73 5XX", "B43 6XX")
_LEARNERS = (
    ("Amara Okafor", "Ngozi Okafor"),
    ("Jayden Clarke", "Marcia Clarke"),
    ("Zainab Hussain", "Rukhsana Hussain"),
    ("Oliver Nowak", "Agnieszka Nowak"),
    ("Mia Thompson", "Dean Thompson"),
    ("Kacper Wisniewski", "Marta Wisniewska"),
    ("Aaliyah Campbell", "Sharon Campbell"),
    ("Ethan Murphy", "Siobhan Murphy"),
    ("Fatima Begum", "Shahida Begum"),
    ("Leo Fernandes", "Carla Fernandes"),
    ("Ruby O'Connor", "Niamh O'Connor"),
    ("Yusuf Ahmed", "Farah Ahmed"),
    ("Chloe Walsh", "Tracey Walsh"),
    ("Tyrese Mensah", "Abena Mensah"),
    ("Sofia Popescu", "Ioana Popescu"),
    ("Harvey Bennett", "Lisa Bennett"),
    ("Nadia Kaur", "Harpreet Kaur"),
    ("Reece Doyle", "Gemma Doyle"),
    ("Imani Brooks", "Denise Brooks"),
    ("Alfie Sharma", "Anita Sharma"),
    ("Maya Li", "Wei Li"),
    ("Kieran Byrne", "Paula Byrne"),
    ("Hana Yilmaz", "Elif Yilmaz"),
    ("Josh Patel", "Meera Patel"),
    ("Ella-Rose Grant", "Kerry Grant"),
    ("Dylan Evans", "Rhian Evans"),
    ("Safa Malik", "Nasreen Malik"),
    ("Callum Reid", "Joanne Reid"),
    ("Aisha Bello", "Funmi Bello"),
    ("Theo Costa", "Ana Costa"),
    ("Priya Nair", "Lakshmi Nair"),
    ("Jamie Kerr", "Alison Kerr"),
    ("Noah Adebayo", "Tolu Adebayo"),
    ("Lily Chen", "Jun Chen"),
    ("Rhys Morgan", "Bethan Morgan"),
    ("Amelia Zając", "Ewa Zając"),
    ("Samir Haddad", "Leila Haddad"),
    ("Grace Okoro", "Chioma Okoro"),
    ("Finley Shaw", "Donna Shaw"),
    ("Eva Kovacs", "Zsofia Kovacs"),
    ("Omar Farouk", "Samira Farouk"),
    ("Poppy Hughes", "Claire Hughes"),
    ("Kofi Boateng", "Akua Boateng"),
    ("Isla Fraser", "Morag Fraser"),
)


def _learner(n: int) -> Learner:
    name, parent = _LEARNERS[n]
    parent_phone = f"07700 900{200 + n:03d}" if n % 3 else f"0113 496 0{400 + n:03d}"
    return Learner(
        name=name,
        id=f"L{2040 + n}" if n % 4 else 2040 + n,  # some MIS IDs were typed as numbers
        phone=f"07700 900{100 + n:03d}" if n % 5 else None,
        parent=parent,
        parent_phone=parent_phone,
        address=f"{3 + 7 * n % 90} {_STREETS[n % len(_STREETS)]}, Birmingham",
        postcode=_POSTCODES[n % len(_POSTCODES)],
    )


# ---------------------------------------------------------------- the plan: what each visit means


@dataclass
class DemoVisit:
    """One row: ``meant`` holds what staff meant (typed values), ``cells`` what they typed."""

    meant: dict[str, Any]
    cells: dict[str, Any] = field(default_factory=dict)  # raw overrides: bad cells, deliberate spellings


_REASONS = (
    "Attendance below 85%: agree a return plan",
    "Support with coursework and exam entries",
    "Transition meeting about the next placement",
    "Discuss SEND support with the family",
    "Persistent absence follow-up",
)
_CONTACT = (
    "Phoned parent twice; text sent",
    "Calls on 3 days, no reply; letter home",
    "Met parent in school last month; phoned this week",
    "Texts and two calls to learner",
)
_OUTCOMES = (
    "Met learner and parent; return-to-college plan agreed, review in 2 weeks.",
    "Learner at home and well; coursework deadlines agreed with parent.",
    "Parent and learner seen; referral to student services agreed.",
    "Discussed attendance; learner to attend tutor meeting on Monday.",
)
_RISK_NOTES = (
    "No known risks; family engage well.",
    "Older sibling has been verbally aggressive before: two staff, stay near the door.",
    "Flat on third floor, lift often broken.",
    "Parent works nights; visit after 10am.",
)


def _school_day(today: dt.date, offset: int) -> dt.date:
    """``offset`` days away, moved off the weekend (earlier for past days, later for coming ones)."""
    day = today + dt.timedelta(days=offset)
    step = -1 if offset < 0 else 1
    while day.weekday() >= 5:
        day += dt.timedelta(days=step)
    return day


def _floor5(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


def _under_way(
    now: dt.datetime, minutes_ago: int, length: int, overdue: bool
) -> tuple[dt.datetime, dt.datetime]:
    """Start and end (London wall clock) of a visit that began ``minutes_ago`` and lasts ``length`` minutes.

    Counted on instants, so the clock change never stretches a visit. A visit crossing midnight is
    kept on one date: an overdue one moved earlier (to end at 23:55); one under way moved onto the date of
    ``now`` when that is after midnight, else kept where it started and ended at 23:59, so it is still
    under way (not due back plus grace) for the next half hour whatever the hour the demo is built.
    """
    instant = now.replace(tzinfo=CLOCK) if now.tzinfo is None else now
    began = _floor5(instant.astimezone(dt.UTC) - dt.timedelta(minutes=minutes_ago))
    start, end = (_wall(began), _wall(began + dt.timedelta(minutes=length)))
    if start.date() == end.date():
        return start, end
    span = end - start
    if not overdue and end.date() == _london(now).date():
        start = dt.datetime.combine(end.date(), dt.time(0, 0))
        return start, start + span
    if not overdue:
        return start, dt.datetime.combine(start.date(), dt.time(23, 59))
    end = dt.datetime.combine(start.date(), dt.time(23, 55))
    return end - span, end


def _wall(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(CLOCK).replace(tzinfo=None)


def _slot(now: dt.datetime, after: dt.timedelta, before: dt.timedelta, hours: range) -> dt.datetime:
    """The first whole hour in ``hours`` on a weekday between ``now + after`` and ``now + before``."""
    moment = (now + after).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    while moment < now + before:
        if moment.hour in hours and moment.weekday() < 5:
            return moment
        moment += dt.timedelta(hours=1)
    return _floor5(now + after + dt.timedelta(hours=1))


def _meant(
    n: int,
    vid: str,
    learner: Learner,
    staff: Staff,
    start: dt.datetime,
    minutes: int,
    status: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """A visit done by the book; the plan then breaks one thing at a time."""
    buddy = STAFF[(STAFF.index(staff) + 1 + n % 3) % len(STAFF)]
    expected_return = start + dt.timedelta(minutes=minutes + 30)
    sent = dt.datetime.combine(start.date() - dt.timedelta(days=3), dt.time(15, 40))
    meant: dict[str, Any] = {
        "visit_id": vid,
        "learner_name": learner.name,
        "learner_id": str(learner.id),
        "learner_phone": learner.phone,
        "parent_name": learner.parent,
        "parent_phone": learner.parent_phone,
        "address": learner.address,
        "postcode": learner.postcode,
        "reason": _REASONS[n % len(_REASONS)],
        "visit_date": start.date(),
        "start_time": start.time(),
        "expected_return": expected_return.time(),
        "expected_duration": minutes,
        "location_type": "Home",
        "location_details": None,
        "lead_staff": staff.name,
        "staff_email": staff.email,
        "second_staff": buddy.name,
        "phone_taken": staff.phone,
        "line_manager": staff.manager,
        "line_manager_email": _email(staff.manager),
        "line_manager_mobile": f"07700 900{sum(map(ord, staff.manager)) % 900 + 100:03d}",  # texts (sms.py)
        "risk_level": "LOW",
        "risk_notes": _RISK_NOTES[n % len(_RISK_NOTES)],
        "dangerous_animals": False,
        "parent_consent": "YES",
        "approved_by": staff.manager,
        "authorised_by": AUTHORISERS[n % 2],
        "safeguarding_informed": True,
        "safe_word_agreed": True,
        "laptop_taken": False,
        "laptop_approved_by": None,
        "prior_contact": _CONTACT[n % len(_CONTACT)],
        "form_sent_at": min(sent, now - dt.timedelta(hours=3)).replace(minute=40),
        "status": status,
        "arrived_at": None,
        "departed_at": None,
        "returned_at": None,
        "escalated_at": None,
        "outcome": None,
        "safeguarding_concern": None,
        "logged_on": None,
        "note_left": None,
        "cancellation_reason": None,
    }
    if status in ("Completed", "No answer"):
        stay = minutes if status == "Completed" else 10
        meant["arrived_at"] = start + dt.timedelta(minutes=5)
        meant["departed_at"] = start + dt.timedelta(minutes=5 + stay)
        meant["returned_at"] = start + dt.timedelta(minutes=minutes + 20)
        meant["safeguarding_concern"] = False
        meant["logged_on"] = ("Bromcom", "CPOMS", "MyConcern")[n % 3]
        if status == "Completed":
            meant["outcome"] = _OUTCOMES[n % len(_OUTCOMES)]
        else:
            meant["outcome"] = "Nobody answered the door."
            meant["note_left"] = True
    return meant


def demo_visits(now: dt.datetime) -> list[DemoVisit | None]:
    """The demo rows in sheet order (``None`` is a blank row), dated around ``now`` (London time)."""
    local = _london(now)
    today = local.date()
    plan: list[DemoVisit | None] = []
    counter = iter(range(len(_LEARNERS)))

    def visit(
        vid: str,
        start: dt.datetime,
        minutes: int = 60,
        status: str = "Completed",
        learner: Learner | None = None,
        cells: dict[str, Any] | None = None,
        **changes: Any,
    ) -> DemoVisit:
        n = int(vid[2:]) - 100
        who = learner or _learner(next(counter))
        meant = _meant(n, vid, who, STAFF[n % len(STAFF)], start, minutes, status, local)
        for key, value in changes.items():
            meant[key] = value
        row = DemoVisit(meant, dict(cells or {}))
        plan.append(row)
        return row

    def past(offset: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(_school_day(today, offset), dt.time(hour, minute))

    first = visit("V-101", past(-20, 10), 60)
    visit(
        "V-102",
        past(-19, 13, 30),
        45,
        risk_level="MEDIUM",
        location_type="Public place",
        location_details="Kingstanding Library, study room 2",
        risk_notes=_RISK_NOTES[1],
    )
    visit(
        "V-103",
        past(-18, 9, 30),
        45,
        risk_level="HIGH",
        cells={"risk_level": "h"},
        risk_notes="Known to YOT; parent's partner has a history of violence.",
    )
    two_weeks_ago = today - dt.timedelta(days=15)
    saturday = two_weeks_ago - dt.timedelta(days=(two_weeks_ago.weekday() - 5) % 7)
    visit("V-104", dt.datetime.combine(saturday, dt.time(10, 0)), 60)
    visit("V-105", past(-16, 14), 30, status="No answer", cells={"status": "nobody home"})
    late = visit("V-106", past(-15, 11), 60)
    due = dt.datetime.combine(late.meant["visit_date"], late.meant["expected_return"])
    late.meant["returned_at"] = due + dt.timedelta(minutes=70)
    late.meant["escalated_at"] = due + dt.timedelta(minutes=32)
    visit(
        "V-107",
        past(-14, 15),
        30,
        status="No answer",
        note_left=False,
        outcome="No answer; neighbour says family away.",
    )
    visit("V-108", past(-13, 10, 30), 45, status="Cancelled", outcome="Left at the door: staff felt unsafe.")
    visit(
        "V-109",
        past(-12, 11),
        45,
        status="Cancelled",
        cells={"status": "canceled"},
        cancellation_reason="Parent rang to rearrange: learner unwell.",
    )
    visit(
        "V-110",
        past(-11, 9, 30),
        60,
        risk_level="MEDIUM",
        cells={"risk_level": " Med"},
        risk_notes=_RISK_NOTES[1],
    )
    visit("V-111", past(-11, 17, 30), 60)  # back after 18:00
    visit("V-112", past(-10, 14), 45, parent_consent="NO", reason="Attendance below 80%: discuss support")
    visit("V-113", past(-10, 9), 30, parent_consent="N/A", reason="Safe and well check after 3 days absent")
    self_approved = visit("V-114", past(-9, 13), 45)
    self_approved.meant["approved_by"] = self_approved.meant["lead_staff"]
    visit("V-115", past(-9, 10), 60, authorised_by=None)
    sent_late = visit("V-116", past(-8, 14), 45)
    sent_late.meant["form_sent_at"] = dt.datetime.combine(sent_late.meant["visit_date"], dt.time(9, 55))
    visit("V-117", past(-8, 10), 45, second_staff=None)
    visit("V-118", past(-7, 11), 45, safeguarding_informed=False)
    visit("V-119", past(-7, 14, 30), 45, safe_word_agreed=False)
    visit("V-120", past(-6, 10), 60, laptop_taken=True)
    visit("V-122", past(-5, 13, 30), 45, phone_taken=None)
    visit("V-123", past(-4, 10), 60, arrived_at=None, departed_at=None)
    visit("V-144", past(-4, 14), 45, visit_id="V-144 (moved)")  # emails name its row instead
    visit("V-124", past(-4, 14), 45, outcome=None)
    visit(
        "V-125",
        past(-3, 11),
        60,
        safeguarding_concern=True,
        logged_on=None,
        outcome="Learner disclosed worries about home; DSL told the same day.",
    )
    visit("V-126", past(-3, 14), 45, prior_contact=None)
    visit("V-127", past(-2, 10, 30), 45, learner_name=None)
    visit("V-128", past(-2, 13), 45, cells={"visit_date": "01/13/2026"})
    visit("V-129", past(-10, 11), 45, status="Planned", cells={"status": "booked"})
    visit("V-130", past(-1, 10), 60, learner=_same_learner(first))
    plan.append(None)  # someone left a blank line

    # Today: two visits under way, one overdue for its safe-return call.
    def today_at(minutes_ago: int, minutes: int, overdue: bool = False) -> tuple[dt.datetime, dt.time]:
        start, back = _under_way(now, minutes_ago, minutes + 30, overdue)
        return start, back.time()

    start, back = today_at(40, 45)
    visit(
        "V-131", start, 45, status="Planned", expected_return=back, arrived_at=start + dt.timedelta(minutes=5)
    )
    start, back = today_at(150, 60, overdue=True)  # due back an hour ago
    visit(
        "V-132",
        start,
        60,
        status="Planned",
        expected_return=back,
        arrived_at=start + dt.timedelta(minutes=10),
    )
    start, back = today_at(15, 45)
    visit(
        "V-133",
        start,
        45,
        status="Planned",
        expected_return=back,
        risk_level="MEDIUM",
        location_type="Public place",
        location_details="Cafe on the High Street",
        risk_notes=_RISK_NOTES[1],
        cells={"location_type": "cafe"},
    )

    # Coming days.
    soon = _slot(local, dt.timedelta(hours=6), dt.timedelta(hours=23), range(9, 15))
    visit("V-134", soon, 45, status="Planned", form_sent_at=None)
    later = _slot(local, dt.timedelta(hours=30), dt.timedelta(days=6), range(10, 11))
    visit("V-135", later, 45, status="Planned", form_sent_at=None)

    def ahead(offset: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(_school_day(today, offset), dt.time(hour, minute))

    visit("V-136", ahead(4, 10), 45, status="Planned")
    visit("V-137", ahead(3, 13), 45, status="Planned", cells={"visit_date": "tomorrow-ish"})
    visit("V-138", ahead(5, 11), 60, status="Planned", cells={"phone_taken": "12345"})
    visit(
        "V-121",
        ahead(5, 14),
        45,
        status="Planned",
        dangerous_animals=True,
        risk_notes="Two large dogs at the property.",
    )
    # Not ready (no return time) and its form not sent yet: the scheduled job chases the lead staff member.
    visit(
        "V-139",
        ahead(6, 10),
        status="Planned",
        expected_return=None,
        expected_duration=None,
        form_sent_at=None,
    )
    visit(
        "V-140",
        ahead(6, 14),
        60,
        status="Planned",
        expected_return=dt.time(13, 30),
        cells={"expected_return": "1.30pm"},
    )
    done = visit("V-141", ahead(2, 11), 45, status="Completed", cells={"status": "done"})
    done.meant.update(
        arrived_at=None,
        departed_at=None,
        returned_at=None,
        logged_on=None,
        safeguarding_concern=None,
        outcome="Went well.",
    )
    visit("V-142", ahead(7, 10), 45, status="Planned")
    visit("V-142", ahead(8, 13, 30), 45, status="Planned")  # pasted as a new row, ID and all
    visit(
        "V-143",
        ahead(7, 14),
        45,
        status="Planned",
        risk_level="MEDIUM",
        location_type="Public place",
        location_details="Perry Barr Library, meeting room",
        risk_notes=_RISK_NOTES[1],
    )
    for row in plan:
        if row is not None:
            _mark_bad(row)
    return plan


def _same_learner(row: DemoVisit) -> Learner:
    """The learner of an earlier visit, for a follow-up visit to the same learner."""
    m = row.meant
    return Learner(
        m["learner_name"],
        m["learner_id"],
        m["learner_phone"],
        m["parent_name"],
        m["parent_phone"],
        m["address"],
        m["postcode"],
    )


def _mark_bad(row: DemoVisit) -> None:
    """What the tool should make of a cell nobody can read: nothing, and a finding."""
    for vid, name in BAD_CELLS:
        if row.meant["visit_id"] == vid:
            row.meant[name] = None


def _london(now: dt.datetime) -> dt.datetime:
    """``now`` as a naive London wall-clock time (a naive ``now`` is already London time)."""
    if now.tzinfo is not None:
        now = now.astimezone(CLOCK).replace(tzinfo=None)
    return now.replace(microsecond=0)


# ---------------------------------------------------------------- how people type it

_YES = ("YES", "y", "✓", "TRUE", True, "Yes ", "x", "yes")
_NO = ("NO", "n", "No", False, "no")
_CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "risk_level": {
        "LOW": ("LOW", "low", "Low", "L", "LOW"),
        "MEDIUM": ("Medium", " Med", "MEDIUM"),
        "HIGH": ("HIGH",),
    },
    "status": {
        "Completed": ("Completed", "done", "Completed", "visited", "Complete"),
        "Planned": ("Planned", "booked", "Planned", "planned"),
        "No answer": ("No answer", "nobody home"),
        "Cancelled": ("Cancelled", "canceled"),
    },
    "location_type": {
        "Home": ("Home", "home", "Home", "At home"),
        "Public place": ("library", "Public place"),
    },
    "parent_consent": {
        "YES": ("YES", "y", "✓", "Yes", "TRUE", "agreed"),
        "NO": ("NO",),
        "N/A": ("N/A", "n/a"),
    },
    "logged_on": {
        "Bromcom": ("Bromcom",),
        "CPOMS": ("CPOMS", "cpoms"),
        "MyConcern": ("MyConcern", "my concern"),
    },
}
_BARE_TIME_FIELDS = ("arrived_at", "departed_at", "returned_at")


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _twelve_hour(time: dt.time, sep: str = ".") -> str:
    hour = time.hour % 12 or 12
    ampm = "am" if time.hour < 12 else "pm"
    return f"{hour}{sep}{time.minute:02d}{ampm}" if time.minute else f"{hour}{ampm}"


def _serial(day: dt.date) -> float:
    return float((day - dt.date(1899, 12, 30)).days)


_DATE_STYLES: tuple[Callable[[dt.date], Any], ...] = (
    lambda d: d,  # a real date cell
    lambda d: f"{d.day}/{d.month}/{d.year % 100:02d}",
    lambda d: f"{d:%a} {_ordinal(d.day)} {d:%B %Y}",
    lambda d: f"{d:%d/%m/%Y}",
    _serial,  # the column lost its date format
    lambda d: d,
    lambda d: f"{d.day} {d:%b %Y}",
    lambda d: f"{d:%Y-%m-%d}",
)
_TIME_STYLES: tuple[Callable[[dt.time], Any], ...] = (
    lambda t: t,  # a real time cell
    lambda t: f"{t:%H:%M}",
    _twelve_hour,
    lambda t: t.hour * 100 + t.minute,  # 1430 typed as a number
    lambda t: f"{t.hour}.{t.minute:02d}",
    lambda t: t,
    lambda t: f"{t.hour:02d}{t.minute:02d}",
)
_DURATION_STYLES: tuple[Callable[[int], Any], ...] = (
    lambda m: m,
    lambda m: f"{m} mins",
    lambda m: f"{m // 60}h" if m % 60 == 0 else f"{m // 60}h{m % 60}" if m > 60 else f"{m} minutes",
    lambda m: f"{m // 60}:{m % 60:02d}",
    lambda m: f"{m / 60:g} hours" if m % 30 == 0 else str(m),
)
_MOBILE_STYLES: tuple[Callable[[str], Any], ...] = (
    lambda p: p,
    lambda p: int(p.replace(" ", "")),  # Excel dropped the leading zero
    lambda p: "+44 " + p[1:5] + " " + p[6:],
    lambda p: p.replace(" ", ""),
    lambda p: f"{p[:5]} {p[6:9]} {p[9:]}",
)
_LANDLINE_STYLES: tuple[Callable[[str], Any], ...] = (
    lambda p: p,
    lambda p: f"({p[:4]}) {p[5:]}",
    lambda p: int(p.replace(" ", "")),
)
_EMAIL_STYLES: tuple[Callable[[str], Any], ...] = (
    lambda e: e,
    lambda e: e.split("@")[0].title() + "@school.example",
    lambda e: e,
    lambda e: f"{e.split('@')[0].replace('.', ' ').title()} <{e}>",
)


def _style(kind: str, name: str, value: Any, k: int) -> Any:
    """How someone might have typed ``value`` in a ``kind`` column; ``k`` picks the habit."""
    if value is None:
        return None
    if kind == "date":
        return _DATE_STYLES[k % len(_DATE_STYLES)](value)
    if kind == "time":
        return _TIME_STYLES[k % len(_TIME_STYLES)](value)
    if kind == "duration":
        return _DURATION_STYLES[k % len(_DURATION_STYLES)](value)
    if kind == "phone":
        styles = _MOBILE_STYLES if value.startswith("07") else _LANDLINE_STYLES
        return styles[k % len(styles)](value)
    if kind == "email":
        return _EMAIL_STYLES[k % len(_EMAIL_STYLES)](value)
    if kind == "yesno":
        words = _YES if value else _NO
        return words[k % len(words)]
    if kind == "choice":
        spellings = _CHOICES.get(name, {}).get(value, (value,))
        return spellings[k % len(spellings)]
    if kind == "datetime":
        if name in _BARE_TIME_FIELDS and k % 4 != 3:  # staff usually write just the time
            return (value.time(), f"{value:%H:%M}", _twelve_hour(value.time()))[k % 4 % 3]
        return (
            value,
            f"{value:%d/%m/%Y %H:%M}",
            f"{value.day}/{value.month}/{value.year % 100:02d} {_twelve_hour(value.time())}",
        )[k % 3]
    if name == "learner_id" and value.isdigit():
        return int(value)
    return value


def demo_rows(now: dt.datetime) -> tuple[list[str], list[list[Any] | None]]:
    """The header row and the body rows (``None`` for a blank row) as the sheet holds them."""
    from .schema import load_schema

    schema = load_schema()
    headers = [ALIAS_HEADERS.get(c.field, c.header) for c in schema.columns]
    body: list[list[Any] | None] = []
    for r, visit in enumerate(demo_visits(now)):
        if visit is None:
            body.append(None)
            continue
        cells = []
        for c, column in enumerate(schema.columns):
            if column.field in visit.cells:
                cells.append(visit.cells[column.field])
            else:
                cells.append(_style(column.type, column.field, visit.meant[column.field], r * 11 + c * 3))
        body.append(cells)
    return headers, body


# ---------------------------------------------------------------- the workbook


def build_demo_workbook(path: Path | str, now: dt.datetime) -> Path:
    """Write the demo log to ``path`` (an .xlsx), dated around ``now``; return the path."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    path = Path(path)
    headers, body = demo_rows(now)
    book = Workbook()
    sheet = book.active
    sheet.title = SHEET_NAME
    sheet.append([TITLE])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    sheet.append(headers)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for cells in body:
        sheet.append(cells if cells is not None else [])
    for row in sheet.iter_rows(min_row=4):
        for cell in row:
            value = cell.value
            if isinstance(value, dt.datetime):
                cell.number_format = "dd/mm/yyyy hh:mm"
            elif isinstance(value, dt.date):
                cell.number_format = "dd/mm/yyyy"
            elif isinstance(value, dt.time):
                cell.number_format = "hh:mm"
    for column_cells in sheet.iter_cols(min_row=3, max_row=3):
        letter = column_cells[0].column_letter
        sheet.column_dimensions[letter].width = min(max(len(str(column_cells[0].value or "")) + 2, 12), 32)
    sheet.freeze_panes = "C4"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    book.save(partial)
    os.replace(partial, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m homevisits.demo_data [PATH] [--now ISO]``: build the demo workbook, dated around ``--now``."""
    import argparse

    from .errors import HomevisitsError
    from .pipeline import parse_now

    parser = argparse.ArgumentParser(
        prog="python -m homevisits.demo_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", nargs="?", default="demo/home_visits.xlsx")
    parser.add_argument("--now", metavar="ISO", help="date the visits around this time (default: the clock)")
    args = parser.parse_args(argv)
    try:
        moment = parse_now(args.now, CLOCK)
    except HomevisitsError as exc:
        print(f"homevisits: {exc}", file=sys.stderr)
        return 2
    print(build_demo_workbook(Path(args.path), moment))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
