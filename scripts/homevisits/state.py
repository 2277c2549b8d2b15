"""What a visit's Status means, defined once for the rules, the scheduled job, the forms and the reports.

- cancelled: called off before it happened (``Cancelled``, ``Not carried out``);
- live: everything else, a blank or unreadable Status included (a doubt keeps the visit watched);
- planned: ``Planned`` or a blank Status (as staff leave it until the visit is done);
- happened: the visit went ahead (``Completed``, ``No answer``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

CANCELLED = ("Cancelled", "Not carried out")
HAPPENED = ("Completed", "No answer")


def cancelled(status: Any) -> np.ndarray:
    """True where the Status says the visit was called off (``status``: the table's status column)."""
    return status.isin(CANCELLED).to_numpy(dtype=bool)


def live(status: Any) -> np.ndarray:
    """Planned or went ahead: not called off. A blank or unreadable Status is live."""
    return ~cancelled(status)


def planned(status: Any) -> np.ndarray:
    return (status.isna() | (status == "Planned")).to_numpy(dtype=bool)


def happened(status: Any) -> np.ndarray:
    return status.isin(HAPPENED).to_numpy(dtype=bool)


def is_cancelled(value: Any) -> bool:
    """The same test for one visit's Status as plain text."""
    return value in CANCELLED
