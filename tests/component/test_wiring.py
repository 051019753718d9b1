"""What `wire` declares: topics, tables and agents, as the worker and the web views rely on them."""
from __future__ import annotations

import asyncio

import pytest
from faust.types import Message

from harness import scenario
from streams.contract import topics

TABLES = {
    "customer_to_state", "account_to_state", "transfer_to_state", "email_to_reservation",
    "transfer_to_view", "account_to_view", "account_version_to_entry", "customer_to_view", "email_to_customer",
    "command_to_outcome", "transfer_to_pending_steps", "customer_to_pending_steps",
    "customer_to_key",  # the keystore of streams.services.privacy; its changelog is bank.customer-keys
}
#: Readers in streams.contract.topics that are no agents of the worker.
NOT_AGENTS = {"bank verify", "bank send --wait", "operators"}


def topics_read_by_agents() -> dict[str, set[str]]:
    """agent name → the topics whose spec names it as a reader: what the worker must subscribe to."""
    read: dict[str, set[str]] = {}
    for spec in topics.ALL_TOPICS:
        for reader in spec.readers:
            if reader not in NOT_AGENTS:
                read.setdefault(reader, set()).add(spec.name)
    return read


AGENTS = topics_read_by_agents()


def test_the_topic_specs_name_nine_agents_as_readers():
    assert len(AGENTS) == 9, sorted(AGENTS)
    assert AGENTS["process_customer_commands"] == {topics.CUSTOMER_COMMANDS.name, topics.CUSTOMER_REPLIES.name}
    assert AGENTS["process_transfer_commands"] == {topics.TRANSFER_COMMANDS.name, topics.TRANSFER_REPLIES.name}
    assert AGENTS["process_email_commands"] == {topics.EMAIL_COMMANDS.name}
    assert AGENTS["project_transfers"] == {topics.TRANSFER_EVENTS.name, topics.VIEW_REBUILD.name}


@scenario
async def test_wire_declares_exactly_the_thirteen_tables_and_nine_agents(bank):
    assert len(TABLES) == 13
    assert set(bank.pipeline.tables) == TABLES
    assert set(bank.pipeline.agents) == set(AGENTS)


def test_co_read_topics_share_their_key_so_they_are_co_partitioned():
    for name, read in AGENTS.items():
        # bank.view-rebuild is written to explicit partitions: each entry goes where its view key lives
        keys = {spec.key for spec in topics.ALL_TOPICS if spec.name in read and spec is not topics.VIEW_REBUILD}
        assert len(keys) == 1, (name, keys)


@scenario
async def test_every_table_has_raw_keys_so_it_partitions_like_its_source_topic(bank):
    for name, table in bank.pipeline.tables.items():
        assert table.key_serializer == "raw", name
        assert table.partitions == bank.settings.partitions, name
        assert table.name == name


@scenario
async def test_every_table_has_a_help_text(bank):
    for name, table in bank.pipeline.tables.items():
        assert isinstance(table.help, str) and table.help.strip(), name
        assert "→" in table.help, f"{name}: say what maps to what"


@scenario
async def test_every_agent_has_a_one_line_docstring(bank):
    for name, agent in bank.pipeline.agents.items():
        doc = agent.fun.__doc__
        assert doc and doc.strip(), name
        assert len(doc.strip().splitlines()) == 1, name


@scenario
async def test_every_agent_reads_exactly_the_topics_that_name_it_as_reader(bank):
    for name, agent in bank.pipeline.agents.items():
        assert set(agent.channel.topics) == AGENTS[name], name
    assert set(bank.pipeline.agents) | NOT_AGENTS == {r for spec in topics.ALL_TOPICS for r in spec.readers}


@scenario
async def test_every_declared_topic_exists_with_raw_serializers_and_the_configured_partitions(bank):
    assert set(bank.pipeline.faust_topics) == {spec.name for spec in topics.ALL_TOPICS}
    for spec in topics.ALL_TOPICS:
        topic = bank.pipeline.faust_topics[spec.name]
        assert list(topic.topics) == [spec.name]
        assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw"), spec.name
        assert topic.partitions == bank.settings.partitions, spec.name


@pytest.mark.parametrize("name", sorted(TABLES))
@scenario
async def test_a_table_changelog_carries_raw_utf8_keys_that_recovery_can_decode_back(bank, name):
    table = bank.pipeline.tables[name]
    changelog = table.changelog_topic
    assert changelog.key_serializer == "raw"  # a JSON key serializer would quote keys and misroute GETs
    key, _ = changelog.prepare_key("acc-1#000000000001 é", None)
    assert key == "acc-1#000000000001 é".encode()  # the bytes a changelog write carries
    # Recovery reads the changelog through a clone of this topic: a non-JSON key must decode, not raise.
    recovery_channel = changelog.clone_using_queue(asyncio.Queue())
    message = Message(topic=changelog.get_topic_name(), partition=0, offset=0, timestamp=0.0, timestamp_type=0,
                      headers=None, key=b"acc-1", value=b"\xc3\x01", checksum=b"", serialized_key_size=5,
                      serialized_value_size=2)
    assert (await recovery_channel.decode(message, propagate=True)).key == b"acc-1"
    assert (await changelog.decode(message, propagate=True)).key == b"acc-1"
