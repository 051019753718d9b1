"""The stall detector: work waiting and no progress for long enough means stalled."""
from streams.liveness import StallDetector


def test_a_partition_with_waiting_work_and_no_progress_for_the_stall_time_is_stalled():
    detector = StallDetector(stall_seconds=30)
    assert detector.observe(0, {"p0": (10, 11, 50)}) == []
    assert detector.observe(29, {"p0": (10, 11, 50)}) == []
    assert detector.observe(30, {"p0": (10, 11, 50)}) == ["p0"]


def test_progress_in_reading_or_committing_restarts_the_clock():
    detector = StallDetector(stall_seconds=30)
    detector.observe(0, {"p0": (10, 11, 50)})
    assert detector.observe(25, {"p0": (12, 11, 50)}) == []
    assert detector.observe(50, {"p0": (12, 13, 50)}) == []
    assert detector.observe(79, {"p0": (12, 13, 50)}) == []
    assert detector.observe(80, {"p0": (12, 13, 50)}) == ["p0"]


def test_an_idle_partition_with_everything_committed_is_never_stalled():
    detector = StallDetector(stall_seconds=30)
    for now in (0, 40, 400):
        assert detector.observe(now, {"p0": (49, 50, 50)}) == []


def test_unknown_ends_give_no_opinion_and_revoked_partitions_are_forgotten():
    detector = StallDetector(stall_seconds=30)
    assert detector.observe(0, {"p0": (1, 2, None), "p1": (1, 2, 9)}) == []
    assert detector.observe(100, {"p0": (1, 2, None)}) == []
    assert detector.observe(200, {"p0": (1, 2, None), "p1": (1, 2, 9)}) == []
    assert detector.observe(230, {"p0": (1, 2, None), "p1": (1, 2, 9)}) == ["p1"]
