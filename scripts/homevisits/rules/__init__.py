"""The rules, one small function each, registered by a stable id (HV001...).

A rule reads the visits table through a :class:`Context` and yields :class:`Hit` records as data:
which visit, which field, the values that made the finding and which of the rule's ``texts`` words
it; the message and fix are rendered from those templates at the edge (policy.check, with the
sheet's own headers). A rule never opens a file and never knows which school it serves: the profile
(policies/*.toml) turns it on, sets its parameters and names the clause it enforces. The simple
"this cell must be filled in when..." rules are not here: profiles declare them as ``[[checks]]``
(checks.py). Masks are computed over whole columns (pandas); only the rows that break a rule are
looped over.

The package: catalogue.py (what a rule is and yields, and the registry), context.py (what a rule
reads, and cells as plain data), and the rules by topic: entries.py (what is typed in the sheet),
risk.py (risk, consent, approval), planning.py (the form deadline, pairs, office hours, times),
after_visit.py (safe return, concerns, status, prior contact) and reading.py (how the sheet was read).
"""

# Each topic module registers its rules as it is imported, so the order of this line is the order of
# the registry (RULES): HV001, HV002, HV019, HV031, HV003 ... HV029, HV030, as it has always been.
# It comes first, kept by hand (not sorted), so that no import below registers a topic out of turn.
# isort: off
from . import entries, risk, planning, after_visit, reading
# isort: on

from .after_visit import DEFAULT_STEPS, SAFE_RETURN
from .catalogue import EXEMPT_REASONS, RULES, Hit, Hits, Rule, rule, rule_titles
from .context import Context, instants, instants_at, plain, plain_column, positions
from .entries import CELL_HINTS
from .planning import PAIRS
from .reading import LOCALE_NAMES, MONTH_FIRST_LOCALES

__all__ = [
    "CELL_HINTS",
    "DEFAULT_STEPS",
    "EXEMPT_REASONS",
    "LOCALE_NAMES",
    "MONTH_FIRST_LOCALES",
    "PAIRS",
    "RULES",
    "SAFE_RETURN",
    "Context",
    "Hit",
    "Hits",
    "Rule",
    "after_visit",
    "entries",
    "instants",
    "instants_at",
    "plain",
    "plain_column",
    "planning",
    "positions",
    "reading",
    "risk",
    "rule",
    "rule_titles",
]
