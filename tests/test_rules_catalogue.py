"""The rule catalogue as a package: the registry keeps its order whatever module a rule lives in, and
the names callers import from homevisits.rules are still there."""

import homevisits.rules as rules
from homevisits.rules import RULES, rule_titles

# The registry's order as it was when the rules were one module (the topic modules are imported in it).
REGISTRY_ORDER = [
    *("HV001", "HV002", "HV019", "HV031"),  # entries
    *("HV003", "HV004", "HV005", "HV015", "HV006", "HV007"),  # risk
    *("HV009", "HV010", "HV011", "HV017"),  # planning
    *("HV022", "HV023", "HV025", "HV027", "HV028"),  # after_visit
    *("HV029", "HV030"),  # reading
]


def test_the_registry_keeps_its_order():
    assert list(RULES) == REGISTRY_ORDER


def test_each_topic_module_holds_one_run_of_the_registry():
    modules = [r.func.__module__.removeprefix("homevisits.rules.") for r in RULES.values()]
    assert (
        modules == ["entries"] * 4 + ["risk"] * 6 + ["planning"] * 4 + ["after_visit"] * 5 + ["reading"] * 2
    )


def test_rule_titles_lists_every_id_in_id_order():
    """The rule functions and the checks the bundled profiles declare, sorted by id."""
    assert list(rule_titles()) == [
        *("HV001", "HV002", "HV003", "HV004", "HV005", "HV006", "HV007", "HV008", "HV009", "HV010"),
        *("HV011", "HV012", "HV013", "HV014", "HV015", "HV016", "HV017", "HV019", "HV020", "HV021"),
        *("HV022", "HV023", "HV024", "HV025", "HV026", "HV027", "HV028", "HV029", "HV030", "HV031"),
    ]


def test_the_names_callers_import_are_still_in_homevisits_rules():
    for name in ("RULES", "Context", "Hit", "Hits", "Rule", "rule", "rule_titles", "plain", "positions"):
        assert hasattr(rules, name), name
    assert rules.DEFAULT_STEPS == ("Call the staff member", "Call the school office", "Call the police")
