"""The load's housekeeping: the collector paused and the read's idle time used, never changing what is read."""

import gc
import threading

from homevisits import pipeline


def test_bulk_work_files_what_it_made_with_the_oldest_objects():
    with pipeline.bulk_work():
        assert not gc.isenabled()
        made = [[i] for i in range(1000)]
    assert gc.isenabled()
    young = {id(o) for o in gc.get_objects(generation=0)} | {id(o) for o in gc.get_objects(generation=1)}
    assert not any(id(cell) in young for cell in made), "a cell made during bulk work is still young"
    assert any(id(made[0]) == id(o) for o in gc.get_objects(generation=2))


def test_bulk_work_leaves_the_collector_off_when_it_was_off():
    gc.disable()
    try:
        with pipeline.bulk_work():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def _recording(monkeypatch):
    done: list[str] = []
    monkeypatch.setattr(pipeline, "WARM_UPS", (lambda: done.append("first"), lambda: done.append("second")))
    return done


def test_a_long_read_leaves_time_for_the_warm_ups(monkeypatch):
    done = _recording(monkeypatch)
    release = threading.Event()
    reading = pipeline.InBackground(lambda: release.wait(30) and "rows")
    try:
        pipeline.meanwhile(reading, patience=0.01)
        assert done == ["first", "second"]
        assert reading.running()
    finally:
        release.set()
    assert reading.result() == "rows"


def test_a_quick_read_skips_the_warm_ups(monkeypatch):
    done = _recording(monkeypatch)
    reading = pipeline.InBackground(lambda: "rows")
    pipeline.meanwhile(reading, patience=30)
    assert done == []
    assert reading.result() == "rows"


def test_warm_ups_stop_when_the_read_ends(monkeypatch):
    release = threading.Event()
    reading = pipeline.InBackground(lambda: release.wait(30))
    done: list[str] = []

    def first() -> None:
        done.append("first")
        release.set()
        reading.wait()

    monkeypatch.setattr(pipeline, "WARM_UPS", (first, lambda: done.append("second")))
    pipeline.meanwhile(reading, patience=0.01)
    assert done == ["first"]


def test_the_real_warm_ups_run():
    for warm_up in pipeline.WARM_UPS:
        warm_up()
    from homevisits import uk_numbers

    assert uk_numbers._plan.cache_info().currsize == 1
