"""The stall detector: work waiting and no progress for long enough means stalled."""
from streams.worker.liveness import StallDetector


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


def fake_app(position: int, unacked_tps=()):
    from types import SimpleNamespace
    from faust.types import TP
    state = SimpleNamespace(position=position, has_valid_position=True)
    assignment = SimpleNamespace(state_value=lambda tp: state)
    aiokafka = SimpleNamespace(_subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)))
    consumer = SimpleNamespace(
        assignment=lambda: {TP("t", 0)}, highwater=lambda tp: 12, _read_offset={TP("t", 0): 0}, _committed_offset={TP("t", 0): 11},
        _unacked_messages=[SimpleNamespace(tp=tp) for tp in unacked_tps],
        _thread=SimpleNamespace(_ensure_consumer=lambda: aiokafka))
    return SimpleNamespace(consumer=consumer)


def test_a_partition_read_to_its_end_whose_last_record_is_a_transaction_marker_has_no_work_waiting():
    from streams.worker.liveness import source_offsets
    # Records up to 10 handled (committed 11); offset 11 is the commit marker; the highwater is 12.
    offsets = source_offsets(fake_app(position=12), changelog_topics=set())
    detector = StallDetector(stall_seconds=30)
    assert detector.observe(0, offsets) == [] and detector.observe(100, offsets) == []


def test_a_partition_with_fetched_records_still_unhandled_keeps_its_end():
    from streams.worker.liveness import source_offsets
    assert source_offsets(fake_app(position=12, unacked_tps=[("t", 0)]), changelog_topics=set())[("t", 0)] == (0, 11, 12)
    assert source_offsets(fake_app(position=5), changelog_topics=set())[("t", 0)] == (0, 11, 12)
