"""docker-compose.yml (not run by CI: no Docker here) read as YAML: the services it must have, and every
variable it gives streambank is one that streams/config.py really reads."""
from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from streams.cli.main import cli
from streams.config import Settings
from streams.dev.local_broker import pom_kafka_version

REPO = Path(__file__).resolve().parents[2]


class Recording(dict):
    """An environment that notes which names Settings.from_env asks for."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def settings_variables() -> set[str]:
    env = Recording()
    Settings.from_env(env)
    return env.asked


def is_settings_variable(name: str) -> bool:
    """Read by name, or passed through as a Kafka security setting (KAFKA_SASL_MECHANISM, ...)."""
    return name in settings_variables() or bool(Settings.from_env({name: "x"}).kafka_security)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def streambank_services(compose: dict) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items() if service.get("build") == "."}


def test_the_stack_has_the_broker_the_topic_one_shot_two_workers_and_a_kafka_ui(compose):
    services = compose["services"]
    assert {"kafka", "topics", "worker-1", "worker-2", "kafka-ui"} <= set(services)
    assert set(streambank_services(compose)) == {"topics", "schemas", "worker-1", "worker-2"}
    assert services["kafka-ui"]["image"].split(":")[0] in ("kafbat/kafka-ui", "provectuslabs/kafka-ui")


def test_the_broker_is_the_apache_kafka_image_of_the_local_broker_version_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{pom_kafka_version()}"
    environment = kafka["environment"]
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # as `bank kafka start`: topics come from us
    assert "healthcheck" in kafka


def test_every_variable_given_to_streambank_is_one_its_settings_read(compose):
    known = settings_variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "BANK_HOME", "BANK_PARTITIONS", "BANK_WEB_HOST", "BANK_WEB_PORT"} <= known
    for name, service in streambank_services(compose).items():
        unknown = [variable for variable in service["environment"] if not is_settings_variable(variable)]
        assert unknown == [], f"{name}: not read by streams/config.py: {unknown}"
    assert not is_settings_variable("BANK_NO_SUCH_THING")  # the check can fail


def test_every_streambank_service_reaches_the_broker_on_its_internal_listener(compose):
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = dict(listener.split("://") for listener in advertised.split(","))["INTERNAL"]
    for service in streambank_services(compose).values():
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == internal
    assert compose["services"]["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == internal


def test_topics_are_created_once_before_the_workers_start(compose):
    services = compose["services"]
    assert services["topics"]["command"] == ["bank", "topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker-1", "worker-2"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_the_two_workers_have_their_own_port_state_and_an_address_the_other_can_reach(compose):
    workers = [compose["services"][name] for name in ("worker-1", "worker-2")]
    ports = [w["environment"]["BANK_WEB_PORT"] for w in workers]
    assert len(set(ports)) == 2
    for worker, port in zip(workers, ports):
        # The worker binds and advertises BANK_WEB_HOST: its own hostname, so forwarded GETs reach it.
        assert worker["environment"]["BANK_WEB_HOST"] == worker["hostname"]
        assert worker["ports"] == [f"{port}:{port}"]
        assert worker["command"][:2] == ["bank", "worker"]
        assert "healthcheck" in worker
    assert len({w["volumes"][0] for w in workers}) == 2
    assert Settings.from_env(workers[0]["environment"]).partitions == 4


def test_every_command_the_stack_runs_is_a_real_bank_command_with_real_options(compose):
    for name, service in streambank_services(compose).items():
        command = service["command"]
        assert command[0] == "bank"
        resolved, words = cli, list(command[1:])
        while isinstance(resolved, click.Group) and words and not words[0].startswith("-"):
            resolved = resolved.commands[words.pop(0)]
        assert not isinstance(resolved, click.Group), (name, command)
        resolved.make_context(" ".join(command), words)  # raises on an unknown option or a bad value


def test_the_kafka_ui_and_the_workers_use_the_registry_and_the_schemas_are_registered_first(compose):
    services = compose["services"]
    url = services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"]
    assert url == "http://registry:8080/apis/ccompat/v7" and services["registry"]["image"].endswith(":2.4.2.Final")
    for name in ("worker-1", "worker-2"):
        assert services[name]["environment"]["BANK_SCHEMA_REGISTRY_URL"] == url
        assert services[name]["environment"]["BANK_RECORD_FORMAT"] == "confluent"
        assert services[name]["depends_on"]["schemas"]["condition"] == "service_completed_successfully"
    assert services["schemas"]["command"] == ["bank", "schemas", "register"]
