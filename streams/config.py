"""Configuration from the environment, read when a command starts (never at import)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    home: Path = Path(".bank").resolve()
    partitions: int = 4
    replication_factor: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    api_token: str | None = None
    #: Extra librdkafka/aiokafka security settings (TLS/SASL) passed through as given.
    kafka_security: dict = field(default_factory=dict)
    #: How long producers wait to fill a batch; a few ms saves the broker most of its per-request work.
    linger_ms: int = 5
    #: Agents take up to this many records at a time (streams.worker.batches.take_batches) ...
    batch_max: int = 2000
    #: ... each batch starting at least this long after the one before (Kafka Streams' commit interval):
    #: a record coming to an idle agent is taken at once; under load, fewer and fuller transactions.
    batch_ms: float = 5.0
    #: The secret of the emails' keyed hash (streams.services.privacy); the default is for development only.
    email_hash_key: bytes = b"streambank-dev-email-hash-key"
    #: A Confluent-compatible Schema Registry (streams.schema_registry); readers resolve framed records there.
    schema_registry_url: str | None = None
    schema_registry_user_info: str | None = None  # "user:password" for basic auth
    schema_registry_timeout: float = 3.0
    #: How writers frame records: "single-object" (C3 01 + fingerprint) or "confluent" (00 + registry id).
    record_format: str = "single-object"

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        env = os.environ if env is None else env
        security = {k[len("KAFKA_"):].lower(): v for k, v in env.items()
                    if k.startswith(("KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_"))}
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            home=Path(env.get("BANK_HOME", ".bank")).resolve(),
            partitions=int(env.get("BANK_PARTITIONS", "4")),
            replication_factor=int(env.get("BANK_REPLICATION_FACTOR", "1")),
            web_host=env.get("BANK_WEB_HOST", "127.0.0.1"),
            web_port=int(env.get("BANK_WEB_PORT", "6066")),
            api_token=env.get("BANK_API_TOKEN") or None,
            kafka_security=security,
            linger_ms=int(env.get("BANK_PRODUCER_LINGER_MS", "5")),
            batch_max=int(env.get("BANK_BATCH_MAX", "2000")),
            batch_ms=float(env.get("BANK_BATCH_MS", "5")),
            email_hash_key=env.get("BANK_EMAIL_HASH_KEY", "streambank-dev-email-hash-key").encode("utf-8"),
            schema_registry_url=env.get("BANK_SCHEMA_REGISTRY_URL") or None,
            schema_registry_user_info=env.get("BANK_SCHEMA_REGISTRY_USER_INFO") or None,
            schema_registry_timeout=float(env.get("BANK_SCHEMA_REGISTRY_TIMEOUT", "3")),
            record_format=record_format(env.get("BANK_RECORD_FORMAT")),
        )

    def with_record_format(self, fmt: str) -> "Settings":
        return replace(self, record_format=record_format(fmt))

    def with_web_port(self, port: int | None) -> "Settings":
        return self if port is None else replace(self, web_port=port)

    @property
    def worker_id(self) -> str:
        """A worker's stable name in the consumer group (static membership): its HTTP address."""
        return f"streambank-worker-{self.web_host}-{self.web_port}"

    @property
    def worker_dir(self) -> Path:
        """Each worker's own state directory: RocksDB refuses two processes on one directory."""
        return self.home / "workers" / f"worker-{self.web_port}"

    def confluent_config(self, **extra) -> dict:
        """Settings for confluent-kafka clients; security settings pass through unchanged."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        config.update({k.replace("_", "."): v for k, v in self.kafka_security.items()})
        config.update(extra)
        return config

    def consumer_config(self, **extra) -> dict:
        """`confluent_config` for a Consumer: it reads only committed records (the workers write in
        transactions; librdkafka's default, made explicit so no reader ever sees an aborted write)."""
        return self.confluent_config(**{"isolation.level": "read_committed", **extra})


RECORD_FORMATS = ("single-object", "confluent")


def record_format(value: str | None) -> str:
    """BANK_RECORD_FORMAT: single-object (the default) or confluent (needs BANK_SCHEMA_REGISTRY_URL)."""
    value = (value or "single-object").strip().lower()
    if value not in RECORD_FORMATS:
        raise ValueError(f"BANK_RECORD_FORMAT={value!r}: expected one of {', '.join(RECORD_FORMATS)}")
    return value
