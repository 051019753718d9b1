"""The Quix Streams peer: streambank's deposit pipeline as a Quix Streams application, exactly-once.

    bank.accounts.commands --decide [state, command:<id>]--> bank.accounts.events, bank.command-outcomes
    bank.accounts.events   --project accounts [view, h:<version>]--> bank.customer-accounts (by customer),
                                                                      bench.quix.account-views
    bank.customer-accounts --project customers [view]--> bench.quix.customer-views
    bank.command-outcomes  --record outcomes [outcome]

The same topics, keys and Avro single-object records as the workers, decided and projected with
streambank's own domain code (streams.domain, streams.avro); state in Quix's RocksDB stores with their
changelogs (`changelog__bench-quix--<topic>--default`: one store per input topic, keys `<record key>|<name>`,
values our Avro bytes). Those changelogs are not keyed by account id, so the account view is also produced
to `bench.quix.account-views` (LogAppendTime, created by the benchmark), which is what the benchmark
measures, and the customer view to `bench.quix.customer-views` likewise: two records per deposit more than
the workers and the Kafka Streams peer write. Deposits and the account commands only (no transfer steps).

Runs in its own venv (bench/peers/quix/requirements.txt: quixstreams pins confluent-kafka<2.13) with the
repository on PYTHONPATH: `python bench/peers/quix/deposit_peer.py BOOTSTRAP STATE_DIR`; SIGTERM stops it.
Environment: BANK_PEER_COMMIT_MS (checkpoint interval; default 100, as Kafka Streams' exactly-once).
"""
from __future__ import annotations

import os
import sys
import time

from quixstreams import Application
from quixstreams.models.serializers import Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from streams.contract.avro import Codec, DecodeError
from streams.domain import accounts, views
from streams.domain.base import Reason, Rejection, derived_id_error
from streams.domain.outcomes import ProcessedCommand, outcome_of

GROUP = "bench-quix"
COMMANDS = "bank.accounts.commands"
EVENTS = "bank.accounts.events"
OUTCOMES = "bank.command-outcomes"
SUMMARIES = "bank.customer-accounts"
VIEWS = "bench.quix.account-views"
CUSTOMER_VIEWS = "bench.quix.customer-views"  # as VIEWS: what the benchmark measures the pipeline's end by
CLIENT_COMMANDS = (accounts.OpenAccount, accounts.Deposit, accounts.Withdraw, accounts.CloseAccount)

codec = Codec()


class Out(Serializer):
    """Values flow as {"t": topic, "k": key, "v": encoded bytes}: the bytes are what is produced."""

    def __call__(self, value, ctx) -> bytes:
        return value["v"]


def _dumps(value) -> bytes:  # state keys are str, state values our encoded bytes: no JSON on the way
    return value if isinstance(value, bytes) else value.encode()


def _loads(value: bytes) -> bytes:
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


def out(topic: str, key: str, value: bytes) -> dict:
    return {"t": topic, "k": key, "v": value}


def _outcome(command, rejection: Rejection, at: int) -> dict:
    outcome = outcome_of(command, rejection, at)
    return out(OUTCOMES, outcome.command_id, codec.encode(outcome))


def decide(value: bytes, key: str, timestamp: int, headers, state) -> list[dict]:
    """A command → its events and outcome, with the account's state and the command's dedup entry."""
    try:
        command = codec.decode(value)
    except DecodeError:
        return []  # the workers park it on bank.deadletter; the deposit workloads send none
    if not isinstance(command, CLIENT_COMMANDS):
        return []
    at = now_ms()
    if key != command.aggregate_id:
        return [_outcome(command, Rejection(Reason.INVALID_FIELD, "the record key must be the aggregate id", "key"), at)]
    if rejection := derived_id_error(command):
        return [_outcome(command, rejection, at)]
    seen = state.get("command:" + command.command_id)
    if seen is not None:  # a redelivery: what it produced, again
        processed: ProcessedCommand = codec.decode(seen)
        records = [out(EVENTS, key, e) for e in processed.events]
        if processed.outcome is not None:
            records.append(out(OUTCOMES, command.command_id, processed.outcome))
        return records
    data = state.get("state")
    current = codec.decode(data) if data is not None else None
    result = accounts.decide(current, command, at)
    encoded_events = ()
    if isinstance(result, tuple) and result:
        for event in result:
            current = accounts.evolve(current, event)
        encoded_events = tuple(codec.encode(e) for e in result)
    outcome = outcome_of(command, result, at)
    encoded_outcome = codec.encode(outcome)
    state.set("command:" + command.command_id,
              codec.encode(ProcessedCommand(aggregate_id=key, outcome=encoded_outcome, events=encoded_events)))
    if encoded_events:
        state.set("state", codec.encode(current))
    return [out(EVENTS, key, e) for e in encoded_events] + [out(OUTCOMES, outcome.command_id, encoded_outcome)]


def project_account(value: bytes, key: str, timestamp: int, headers, state) -> list[dict]:
    """An account event → the account view and its statement entry; the summary to the customer."""
    try:
        event = codec.decode(value)
    except DecodeError:
        return []
    data = state.get("view")
    current = codec.decode(data) if data is not None else None
    if not views.is_next(current.version if current else 0, event):
        # Already applied (a re-emitted event): as the workers, tell the customer again, change nothing.
        if current is not None and event.version == current.version:
            return [out(SUMMARIES, current.customer_id, codec.encode(views.summarize(current)))]
        return []
    view = views.project_account(current, event)
    encoded = codec.encode(view)
    state.set("view", encoded)
    state.set(f"h:{view.version:012d}", codec.encode(views.history_entry(view, event)))
    return [out(VIEWS, key, encoded), out(SUMMARIES, view.customer_id, codec.encode(views.summarize(view)))]


def project_customer(value: bytes, key: str, timestamp: int, headers, state) -> list[dict]:
    """An account summary (keyed by customer) → the customer view."""
    try:
        summary = codec.decode(value)
    except DecodeError:
        return []
    data = state.get("view")
    current = codec.decode(data) if data is not None else views.placeholder_customer(summary.customer_id)
    updated = views.with_account(current, summary)
    if updated is not current:
        encoded = codec.encode(updated)
        state.set("view", encoded)
        return [out(CUSTOMER_VIEWS, summary.customer_id, encoded)]
    return []


def record_outcome(value: bytes, key: str, timestamp: int, headers, state) -> list[dict]:
    if state.get("outcome") is None:
        state.set("outcome", value)
    return []


def main(bootstrap: str, state_dir: str) -> None:
    commit_s = float(os.environ.get("BANK_PEER_COMMIT_MS") or 100) / 1000
    app = Application(
        broker_address=bootstrap, consumer_group=GROUP, auto_offset_reset="earliest",
        processing_guarantee="exactly-once", commit_interval=commit_s, state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=_loads),
        producer_extra_config={"linger.ms": 5, "compression.type": "lz4", "partitioner": "murmur2_random"},
        consumer_extra_config={"fetch.wait.max.ms": 10},
    )
    topics = {name: app.topic(name, key_deserializer="str", value_deserializer="bytes", key_serializer="str",
                              value_serializer=Out())
              for name in (COMMANDS, EVENTS, OUTCOMES, SUMMARIES, VIEWS, CUSTOMER_VIEWS)}

    def to(value, key, timestamp, headers):
        return topics[value["t"]]

    for source, handler in ((COMMANDS, decide), (EVENTS, project_account), (SUMMARIES, project_customer),
                            (OUTCOMES, record_outcome)):
        sdf = app.dataframe(topics[source])
        sdf = sdf.apply(handler, stateful=True, expand=True, metadata=True)
        sdf.to_topic(to, key=lambda value: value["k"])
    print("STATE RUNNING", flush=True)
    app.run()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: deposit_peer.py BOOTSTRAP STATE_DIR")
    main(sys.argv[1], sys.argv[2])
