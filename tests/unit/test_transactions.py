"""One batch, one transaction per input partition (streams.kafka.transactions), without a broker: which records a
task takes, what goes into a transaction, and what a failed or fenced one leaves behind."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.config import Settings
from streams.services.handling import Outgoing
from streams.kafka.transactions import Fenced, PartitionEffects, Task, TransactionFailed, Transactions


class FakeProducer:
    """Records the transactional calls; deliveries succeed unless `refuse` names a topic. As librdkafka
    does, a refused record fails commit_transaction (abortable), whether or not it asked for a report."""

    def __init__(self, refuse: str | None = None, fail_commit: KafkaError | None = None):
        self.calls: list = []
        self.pending: list = []
        self.refuse = refuse
        self.fail_commit = fail_commit
        self.offset = 100
        self.failed = 0

    def begin_transaction(self):
        self.calls.append("begin")

    def produce(self, topic, key=None, value=None, partition=None, headers=None, on_delivery=None):
        self.calls.append(("produce", topic, key, value, partition))
        self.pending.append((topic, partition if partition is not None else 0, on_delivery))

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.calls.append(("offsets", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))

    def flush(self, timeout):
        for topic, partition, on_delivery in self.pending:
            self.offset += 1
            message = Message(topic, partition, self.offset)
            error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if topic == self.refuse else None
            self.failed += error is not None
            if on_delivery is not None:
                on_delivery(error, message)
        self.pending.clear()
        return 0

    def commit_transaction(self, timeout):
        if self.fail_commit is not None:
            raise KafkaException(self.fail_commit)
        if self.failed:
            raise KafkaException(KafkaError(KafkaError._INCONSISTENT, f"{self.failed} message(s) failed delivery "
                                            "(see individual delivery reports)", txn_requires_abort=True))
        self.calls.append("commit")

    def abort_transaction(self, timeout):
        self.calls.append("abort")


class Message:
    def __init__(self, topic, partition, offset):
        self._where = (topic, partition, offset)

    def topic(self):
        return self._where[0]

    def partition(self):
        return self._where[1]

    def offset(self):
        return self._where[2]


class Group:
    def consumer_group_metadata(self):
        return "metadata"


def transactions_with(producer: FakeProducer, agent: str = "process_account_commands",
                      sources=("bank.accounts.commands",)) -> tuple[Transactions, Task]:
    txns = Transactions(Settings(), {agent: tuple(sources)})
    txns._group = Group()
    task = Task(agent, 2, producer, {topic: 10 for topic in sources})
    txns.tasks[(agent, 2)] = task
    return txns, task


def effects() -> PartitionEffects:
    return PartitionEffects(2, [("streambank-account_to_state-changelog", [(b"state:A", b"s"), (b"command:c", b"d")])],
                            [Outgoing("bank.accounts.events", "A", b"event")], {"bank.accounts.commands": 13})


def test_a_task_takes_records_at_or_past_its_position_and_each_once():
    task = Task("agent", 0, producer=None, positions={"t": 5})
    assert not task.accepts("t", 4)  # committed already, delivered again after a rebalance
    assert task.accepts("t", 5)
    assert not task.accepts("t", 5)  # the same record buffered twice
    assert task.accepts("t", 8)  # offsets 6-7: transaction markers


def test_a_task_with_nothing_committed_takes_the_first_record_it_sees():
    task = Task("agent", 0, producer=None, positions={"t": None})
    assert task.accepts("t", 0)


def test_a_stopped_task_takes_nothing():
    task = Task("agent", 0, producer=None, positions={"t": 0})
    task.active = False
    assert not task.accepts("t", 0)


def test_a_transaction_holds_the_changelog_records_the_outputs_and_the_input_offsets_then_commits():
    producer = FakeProducer()
    txns, task = transactions_with(producer)
    effect = effects()
    txns._transact(task, effect, txns._offsets(task, effect))
    assert producer.calls == [
        "begin",
        ("produce", "streambank-account_to_state-changelog", b"state:A", b"s", 2),
        ("produce", "streambank-account_to_state-changelog", b"command:c", b"d", 2),
        ("produce", "bank.accounts.events", b"A", b"event", None),
        ("offsets", [("bank.accounts.commands", 2, 13)]),
        "commit",
    ]
    # The changelog offset the local WriteBatch records: that of the partition's last changelog record.
    assert effect.changelog_offsets == {"streambank-account_to_state-changelog": 102}


def test_a_refused_record_aborts_the_transaction_instead_of_being_forgotten():
    producer = FakeProducer(refuse="bank.accounts.events")
    txns, task = transactions_with(producer)
    with pytest.raises(TransactionFailed, match="failed delivery"):
        txns._transact(task, effects(), [])
    assert "commit" not in producer.calls and producer.calls[-1] == "abort"


def test_a_fenced_commit_is_told_apart_from_other_failures_and_not_aborted():
    producer = FakeProducer(fail_commit=KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))
    txns, task = transactions_with(producer)
    with pytest.raises(Fenced):
        txns._transact(task, effects(), [])
    assert "abort" not in producer.calls  # a fenced producer cannot abort; the broker already did


def test_a_topic_several_agents_read_is_committed_apart_at_the_least_offset_all_of_them_have_done():
    import asyncio
    shared = "bank.view-rebuild"
    txns = Transactions(Settings(), {"project_accounts": ("bank.accounts.events", shared),
                                     "project_transfers": ("bank.transfers.events", shared)}, shared=[shared])
    txns._group = Group()
    accounts_producer = FakeProducer()
    accounts = Task("project_accounts", 1, accounts_producer, {"bank.accounts.events": 0, shared: 0})
    transfers = Task("project_transfers", 1, FakeProducer(), {"bank.transfers.events": 0, shared: 0})
    transfers.committed[shared] = 4
    txns.tasks = {("project_accounts", 1): accounts, ("project_transfers", 1): transfers}
    effect = PartitionEffects(1, [], [], {"bank.accounts.events": 30, shared: 9})
    # Not in the batch's own transaction: agents commit concurrently, and a least offset computed
    # before the others finished would stay behind for good.
    assert [(tp.topic, tp.offset) for tp in txns._offsets(accounts, effect)] == [("bank.accounts.events", 30)]
    asyncio.run(txns.commit("project_accounts", [effect]))
    offsets = [call for call in accounts_producer.calls if call[0] == "offsets"]
    assert offsets == [("offsets", [("bank.accounts.events", 1, 30)]), ("offsets", [(shared, 1, 4)])]

def test_an_unexpected_error_from_a_fenced_producer_counts_as_fenced_not_as_a_failure():
    # Seen here: flush() raised SystemError once the producer had been fenced.
    class Broken(FakeProducer):
        def flush(self, timeout):
            raise SystemError("_PyErr_SetObject: exception <class 'str'> is not a BaseException subclass")

        def abort_transaction(self, timeout):
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))
    txns, task = transactions_with(Broken())
    with pytest.raises(Fenced):
        txns._transact(task, effects(), [])


def test_an_unexpected_error_from_a_producer_still_ours_aborts_and_fails():
    class Broken(FakeProducer):
        def flush(self, timeout):
            raise SystemError("something else")
    producer = Broken()
    txns, task = transactions_with(producer)
    with pytest.raises(TransactionFailed):
        txns._transact(task, effects(), [])
    assert producer.calls[-1] == "abort"


def test_a_stopped_task_remembers_the_records_it_refused_so_that_they_come_again():
    task = Task("agent", 0, producer=None, positions={"t": 10})
    task.active = False
    assert not task.accepts("t", 17)
    assert task.seen == {"t": 17}


def test_a_task_rewound_after_a_failed_batch_takes_nothing_buffered_until_the_first_record_comes_again():
    task = Task("agent", 0, producer=None, positions={"t": 10})
    task.rewinding = {"t": 14}  # the failed batch was offsets 10-14; 15-20 were buffered behind it
    assert not task.accepts("t", 15) and not task.accepts("t", 20)  # buffered before the seek: they come again
    assert task.accepts("t", 10)  # sought back: the failed batch's first record again
    assert task.accepts("t", 11) and task.accepts("t", 15)  # then everything, in order


def test_a_failed_transaction_restarts_its_task_from_the_committed_offsets_and_seeks_back():
    import asyncio
    producer = FakeProducer(fail_commit=KafkaError(KafkaError._TIMED_OUT, "coordinator gone"))
    txns, task = transactions_with(producer)
    task.seen = {"bank.accounts.commands": 12}  # the batch's records were delivered up to offset 12
    sought = []

    async def seek(tp, offset):
        sought.append((tp.topic, tp.partition, offset))
    txns.seek = seek
    txns._init = lambda agent, partition: FakeProducer()
    txns._committed = lambda wanted: {("bank.accounts.commands", 2): 10}

    async def run():
        committed = await txns.commit("process_account_commands", [effects()])
        assert committed == []  # nothing of the batch is applied locally
        assert not task.active and task.abandoned
        for _ in range(100):
            await asyncio.sleep(0.01)
            if txns.tasks[("process_account_commands", 2)] is not task:
                break
    asyncio.run(run())
    assert "abort" in producer.calls
    restarted = txns.tasks[("process_account_commands", 2)]
    assert restarted is not task and restarted.active
    assert restarted.positions == {"bank.accounts.commands": 10}
    assert restarted.rewinding == {"bank.accounts.commands": 12}  # the batch read up to offset 12
    assert sought == [("bank.accounts.commands", 2, 10)]


def test_a_transaction_that_committed_after_all_rejoins_the_group_rather_than_run_on_stale_state(monkeypatch):
    # The answer to the commit was lost, but it committed: the local tables lack the batch's writes.
    txns, task = transactions_with(FakeProducer())
    did = restart_after(txns, task, KafkaError(KafkaError._TIMED_OUT, "lost answer"), 13, monkeypatch)
    assert did["rejoins"] == 1 and did["inits"] == 0 and did["seeks"] == []
    assert not txns.tasks[("process_account_commands", 2)].active


def restart_after(txns, task, fail_commit, committed_after: int, monkeypatch) -> dict:
    """Commits a batch that fails with `fail_commit` while the group's committed offset moves to
    `committed_after`; returns what the restart did."""
    import asyncio
    import streams.kafka.transactions as transactions
    monkeypatch.setattr(transactions, "FENCED_BACKOFF_S", 0.0)
    task.producer.fail_commit = fail_commit
    task.seen = {"bank.accounts.commands": 12}
    did = {"inits": 0, "rejoins": 0, "seeks": []}

    def init(agent, partition):
        did["inits"] += 1
        return FakeProducer()

    async def seek(tp, offset):
        did["seeks"].append(offset)
    txns._init, txns.seek = init, seek
    txns.rejoin = lambda: did.__setitem__("rejoins", did["rejoins"] + 1)
    txns._committed = lambda wanted: {("bank.accounts.commands", 2): committed_after}

    async def run():
        await txns.commit("process_account_commands", [effects()])
        for _ in range(50):
            await asyncio.sleep(0.01)
    asyncio.run(run())
    return did


def test_a_zombie_fenced_after_another_worker_committed_does_not_fence_it_back_but_rejoins_the_group(monkeypatch):
    txns, task = transactions_with(FakeProducer())
    did = restart_after(txns, task, KafkaError(KafkaError._FENCED, "fenced", fatal=True), 11, monkeypatch)
    assert did["inits"] == 0  # a new producer would fence the partition's real owner
    assert did["rejoins"] == 1  # the rebalance that follows recovers the tables from their changelogs
    assert did["seeks"] == []
    assert txns.tasks[("process_account_commands", 2)] is task and not task.active  # refuses records till then
    assert not task.accepts("bank.accounts.commands", 11)


def test_a_fenced_task_whose_committed_offsets_did_not_move_restarts_in_place(monkeypatch):
    # Fenced by a zombie that then found the offsets moved and gave up: the owner's state is current.
    txns, task = transactions_with(FakeProducer())
    did = restart_after(txns, task, KafkaError(KafkaError._FENCED, "fenced", fatal=True), 10, monkeypatch)
    assert did["inits"] == 1 and did["rejoins"] == 0
    restarted = txns.tasks[("process_account_commands", 2)]
    assert restarted is not task and restarted.active and restarted.positions == {"bank.accounts.commands": 10}


def test_a_failed_task_whose_offsets_another_worker_moved_meanwhile_rejoins_instead_of_running_on_stale_state(
        monkeypatch):
    txns, task = transactions_with(FakeProducer())
    did = restart_after(txns, task, KafkaError(KafkaError._TIMED_OUT, "coordinator gone"), 11, monkeypatch)
    assert did["rejoins"] == 1 and did["seeks"] == []
    assert not txns.tasks[("process_account_commands", 2)].active


def test_a_partition_revoked_with_a_batch_uncommitted_and_assigned_again_reads_that_batch_first():
    import asyncio
    from faust.types import TP as FaustTP
    txns, task = transactions_with(FakeProducer())
    task.accepts("bank.accounts.commands", 10)
    task.accepts("bank.accounts.commands", 12)  # handed on, never committed (its transaction hung)
    txns._init = lambda agent, partition: FakeProducer()
    txns._committed = lambda wanted: {("bank.accounts.commands", 2): 10}

    async def run():
        await txns.on_revoked({FaustTP("bank.accounts.commands", 2)})
        await txns.on_assigned({FaustTP("bank.accounts.commands", 2)})
    asyncio.run(run())
    again = txns.tasks[("process_account_commands", 2)]
    assert not again.accepts("bank.accounts.commands", 13)  # buffered behind the uncommitted batch
    assert again.accepts("bank.accounts.commands", 10)  # the seek to committed brings it again first


def test_records_handed_on_while_no_task_holds_the_partition_come_again_before_any_buffered_behind_them():
    # Between a revocation and the next assignment the agent is handed records (0-4) that no task
    # takes; with nothing committed, the next task took the first record it saw, a buffered later
    # one (5), and refused 0-4 when the fetch from the start brought them again: a transfer's first
    # reply was never processed and the transfer stayed INITIATED.
    import asyncio
    from faust.types import TP as FaustTP
    txns, task = transactions_with(FakeProducer())
    txns._init = lambda agent, partition: FakeProducer()
    txns._committed = lambda wanted: {("bank.accounts.commands", 2): None}
    tp = FaustTP("bank.accounts.commands", 2)

    async def revoked_then_assigned():
        await txns.on_revoked({tp})
        for offset in range(5):
            assert not txns.accepts("process_account_commands", "bank.accounts.commands", 2, offset)
        await txns.on_assigned({tp})
    asyncio.run(revoked_then_assigned())
    assert not txns.accepts("process_account_commands", "bank.accounts.commands", 2, 5)
    assert [txns.accepts("process_account_commands", "bank.accounts.commands", 2, offset)
            for offset in range(6)] == [True] * 6
