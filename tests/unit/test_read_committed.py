"""Every confluent-kafka consumer the project builds reads committed records only.

The workers write in Kafka transactions: a reader with `isolation.level=read_uncommitted` would see
fenced or aborted writes (an event, an outcome, a view entry that never happened). librdkafka's default
is `read_committed`; the project says so explicitly, in one place (`Settings.consumer_config`), and
every `Consumer(...)` in streams/ and bench/ is built from it.
"""
from __future__ import annotations

import ast
from pathlib import Path

from streams.config import Settings

REPO = Path(__file__).resolve().parents[2]
#: The project's own files: not the peers' environments (bench/peers/quix/.venv, made by a bench run).
SOURCES = sorted(p for folder in ("streams", "bench") for p in (REPO / folder).rglob("*.py")
                 if ".venv" not in p.relative_to(REPO).parts)


def consumer_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == "Consumer":
                calls.append(node)
    return calls


def test_given_any_settings_then_the_consumer_config_reads_committed_records_only():
    settings = Settings(kafka_security={"security_protocol": "SSL"})
    config = settings.consumer_config(**{"group.id": "g"})
    assert config["isolation.level"] == "read_committed"
    assert (config["group.id"], config["security.protocol"]) == ("g", "SSL")
    assert config["bootstrap.servers"] == settings.bootstrap_servers


def test_given_the_project_sources_then_every_confluent_consumer_is_built_from_the_consumer_config():
    found, wrong = set(), []
    for path in SOURCES:
        for call in consumer_calls(path):
            found.add(str(path.relative_to(REPO)))
            config = call.args[0] if call.args else None
            if not (isinstance(config, ast.Call) and isinstance(config.func, ast.Attribute)
                    and config.func.attr == "consumer_config"):
                wrong.append(f"{path.relative_to(REPO)}:{call.lineno}")
    # Every tool reads through streams/kafka/reader.py (the workers' transactions have their own group
    # consumer; the benchmarks theirs): the scan must find those, or it is not looking at the code.
    assert {"streams/kafka/reader.py", "streams/kafka/transactions.py", "streams/bench/plain.py"} <= found, \
        "the scan found no consumers: has the code moved?"
    assert wrong == [], f"Consumer(...) not built from Settings.consumer_config: {', '.join(wrong)}"


def test_given_the_project_sources_then_no_consumer_asks_for_uncommitted_records():
    for path in SOURCES:
        text = path.read_text()
        assert "read_uncommitted" not in text, f"{path.relative_to(REPO)} asks for read_uncommitted"


def test_given_the_project_sources_then_only_streams_kafka_and_the_benchmarks_import_confluent_kafka():
    outside = []
    for path in SOURCES:
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(("streams/kafka/", "streams/bench/", "bench/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(name.split(".")[0] == "confluent_kafka" for name in names):
                outside.append(f"{relative}:{node.lineno}")
    assert outside == [], f"confluent-kafka imported outside streams/kafka: {', '.join(outside)}"
