"""The background read and its two signals: the main thread waits for the read's long part to begin,
and a helper of the read waits for the main thread to be idle; neither wait can hold the work up."""

from __future__ import annotations

import threading

import pytest

from homevisits.background import InBackground, begun, when_idle


def test_the_main_thread_waits_until_the_read_has_begun_its_long_part():
    steps: list[str] = []
    go, release = threading.Event(), threading.Event()

    def read() -> str:
        go.wait(30)  # first steps that take a while
        steps.append("first steps")
        begun()
        release.wait(30)
        return "rows"

    reading = InBackground(read)
    threading.Timer(0.05, go.set).start()
    reading.settle(patience=30)
    try:
        assert steps == ["first steps"]  # settle came back once the read said so, not at the end
        assert reading.running()
    finally:
        release.set()
    assert reading.result() == "rows"


def test_a_read_that_never_says_it_has_begun_holds_the_main_thread_only_for_its_patience():
    release = threading.Event()
    reading = InBackground(lambda: release.wait(30) and "rows")
    try:
        reading.settle(patience=0.01)
        assert reading.running()  # back while the read still runs
    finally:
        release.set()
    assert reading.result() == "rows"


def test_a_read_that_fails_before_it_begins_releases_the_main_thread_and_hands_over_its_error():
    def read() -> None:
        raise OSError("the drive is gone")

    reading = InBackground(read)
    reading.settle(patience=30)  # never waits the 30 s: the read has ended
    with pytest.raises(OSError, match="the drive is gone"):
        reading.result()


def test_a_helper_of_the_read_starts_once_the_main_thread_waits_for_the_read():
    order: list[str] = []

    def read() -> list[str]:
        ready = when_idle()

        def helper() -> None:
            ready()
            order.append("helper")

        thread = threading.Thread(target=helper)
        thread.start()
        begun()
        thread.join(30)
        return order

    reading = InBackground(read)
    reading.settle(patience=30)
    order.append("main thread loaded")  # the helper cannot have run: the main thread is not idle yet
    assert reading.result() == ["main thread loaded", "helper"]


def test_outside_a_background_read_nothing_waits():
    begun()  # no one to tell: nothing happens
    ready = when_idle()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (ready(), done.set()))
    thread.start()
    assert done.wait(30)
    thread.join()


def test_the_excel_read_in_the_background_still_shows_error_cells(tmp_path):
    from homevisits.sources.excel_read import read
    from test_sheet_reading import letter, with_error_cells
    from workbooks import ALL_HEADERS, visit, write_workbook

    path = write_workbook(tmp_path / "log.xlsx", [visit(2), visit(3)], columns=ALL_HEADERS)
    with_error_cells(path, {f"{letter('Learner name')}3": "#N/A"})
    reading = InBackground(lambda: read(path))
    reading.settle()
    raw = reading.result()  # the scan waited for this: the main thread is idle from here
    assert raw.rows[2][ALL_HEADERS.index("Learner name")] == "#N/A"
