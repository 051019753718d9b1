"""Baseline: the account command processor as a plain confluent-kafka loop, no Faust.

consume `bank.accounts.commands` → decode → `streams.domain.accounts.decide` → evolve the state in a
dict → produce the events (`bank.accounts.events`), the outcome (`bank.command-outcomes`) and the
account view (`bench.plain.account-views`, projected in the same loop). At-least-once like the
workers: the producer is flushed before the consumed offsets are committed. No dedup table, no
changelogs, no second hop for the projection: the least a framework-free design costs.

Run: `python -m streams.bench.plain` (settings from the environment); SIGTERM stops it.
"""
from __future__ import annotations

import signal
import time

from confluent_kafka import Consumer, Producer

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..kafka.producer import producer_config
from ..config import Settings
from ..domain import accounts, views
from ..domain.base import Rejection
from ..domain.outcomes import outcome_of
from .env import PLAIN_VIEW_TOPIC

GROUP = "bench-plain"


def run(settings: Settings) -> None:
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    codec = Codec()
    consumer = Consumer(settings.consumer_config(**{
        "group.id": GROUP, "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "fetch.wait.max.ms": 10}))
    producer = Producer(producer_config(settings))
    consumer.subscribe([topics.ACCOUNT_COMMANDS.name])
    states: dict[str, accounts.Account] = {}
    account_views: dict[str, views.AccountView] = {}
    events_topic, outcomes_topic = topics.ACCOUNT_EVENTS.name, topics.COMMAND_OUTCOMES.name
    try:
        while not stop["now"]:
            messages = consumer.consume(500, timeout=0.05)
            if not messages:
                continue
            for message in messages:
                if message.error() is not None:
                    continue
                try:
                    command = codec.decode(message.value())
                except DecodeError:
                    continue
                aggregate_id = command.aggregate_id
                state = states.get(aggregate_id)
                at = int(time.time() * 1000)
                result = accounts.decide(state, command, at)
                if not isinstance(result, Rejection):
                    view = account_views.get(aggregate_id)
                    for event in result:
                        state = accounts.evolve(state, event)
                        producer.produce(events_topic, key=aggregate_id.encode(), value=codec.encode(event))
                        view = views.project_account(view, event)
                    states[aggregate_id] = state
                    account_views[aggregate_id] = view
                    producer.produce(PLAIN_VIEW_TOPIC, key=aggregate_id.encode(), value=codec.encode(view))
                outcome = outcome_of(command, result, at)
                producer.produce(outcomes_topic, key=outcome.command_id.encode(), value=codec.encode(outcome))
                producer.poll(0)
            producer.flush()
            consumer.commit(asynchronous=True)
    finally:
        producer.flush(10)
        consumer.close()


if __name__ == "__main__":
    run(Settings.from_env())
