"""engine/phases.py: seconds per phase, summed, in run order."""

import time

from preftune.engine.phases import PhaseClock


def test_phases_sum_their_time_and_report_in_run_order():
    clock = PhaseClock()
    for _ in range(2):
        with clock.phase("backward"):
            time.sleep(0.01)
        with clock.phase("forward"):
            time.sleep(0.02)
    summary = clock.summary()
    assert list(summary) == ["forward", "backward"]
    assert 0.04 <= summary["forward"] < 0.5
    assert 0.02 <= summary["backward"] < 0.5


def test_a_phase_that_raises_is_still_counted():
    clock = PhaseClock()
    try:
        with clock.phase("checkpoint"):
            time.sleep(0.01)
            raise OSError("disk full")
    except OSError:
        pass
    assert clock.summary()["checkpoint"] >= 0.01
