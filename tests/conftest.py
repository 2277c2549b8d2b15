"""Fixtures many test files share, defined once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtp_fixtures import Server, smtp_server


@pytest.fixture
def server() -> Iterator[Server]:
    """A real SMTP server on 127.0.0.1 for one test, recording every message it accepts."""
    with smtp_server() as running:
        yield running
