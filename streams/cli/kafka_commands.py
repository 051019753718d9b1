"""`bank kafka ...`: manage the local Apache Kafka (KRaft) broker in $BANK_HOME/kafka."""
from __future__ import annotations

import json
import os
import time

import click

from ..dev import local_broker
from .local_services import fail, home, log_to_stderr
from ..dev.local_broker import BrokerStatus, KafkaLocalError


_home, _fail = home, fail


def _setup_logging() -> None:
    log_to_stderr(local_broker.__name__)


def _describe(st: BrokerStatus) -> str:
    if st.brokers == 0:
        return f"kafka not running (no cluster yet), data in {st.data_dir}"
    if st.running:
        pids = ", ".join(str(p) for p in st.pids)
        word = "pid" if len(st.pids) == 1 else "pids"
        return f"kafka {st.version} running on {st.bootstrap_servers} ({word} {pids}), data in {st.data_dir}"
    if st.pids:
        down = [str(i) for i, p in st.nodes.items() if p is None]
        up = [f"{i}:{p}" for i, p in st.nodes.items() if p is not None]
        return (f"kafka {st.version} degraded on {st.bootstrap_servers}: brokers {', '.join(down)} down "
                f"(running broker:pid {', '.join(up)}), data in {st.data_dir}")
    return f"kafka {st.version} not running ({st.brokers}-broker cluster on {st.bootstrap_servers}), data in {st.data_dir}"


def _bootstrap_note(st: BrokerStatus) -> str | None:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env and env != st.bootstrap_servers:
        return f"note: KAFKA_BOOTSTRAP_SERVERS={env} (the pipeline connects there, not to this broker)"
    return None


@click.group(help="Run a local Apache Kafka broker (KRaft mode, no Docker) with its data in $BANK_HOME/kafka.")
def kafka() -> None:
    _setup_logging()


@kafka.command(short_help="Start the local broker(s) and wait until ready.", help="Start the local broker (1 node on 127.0.0.1:9092, or 3 nodes on 9092-9094) "
                    "and wait until it answers; does nothing if it is already running.")
@click.option("--brokers", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="Number of combined broker+controller nodes.")
@click.option("--timeout", type=float, default=90.0, show_default=True,
              help="Seconds to wait for the broker to answer a metadata request.")
@click.option("--base-port", type=int, default=local_broker.DEFAULT_BASE_PORT, show_default=True,
              help="Port of broker 1 (broker i uses base+i-1; controllers base+10000+i-1).")
def start(brokers: str, timeout: float, base_port: int) -> None:
    home = _home()
    try:
        before = local_broker.status(home)
        st = local_broker.start(home, brokers=int(brokers), timeout=timeout, base_port=base_port)
    except KafkaLocalError as exc:
        _fail(str(exc))
    if before.running and before.pids == st.pids:
        click.echo("already running: " + _describe(st))
    else:
        click.echo(_describe(st))
    if note := _bootstrap_note(st):
        click.echo(note)
    if int(brokers) == 3 and os.environ.get("BANK_REPLICATION_FACTOR") != "3":
        # Topics are created with BANK_REPLICATION_FACTOR replicas (default 1): say so before
        # `bank topics create` makes single-replica topics on a cluster meant to survive a broker loss.
        click.echo(f"note: for replication 3 and min.insync.replicas 2, export BANK_REPLICATION_FACTOR=3 "
                   f"KAFKA_BOOTSTRAP_SERVERS={st.bootstrap_servers} before `bank topics create` and `bank worker`")


@kafka.command(short_help="Stop the local broker(s).", help="Stop the local broker(s): SIGTERM, then SIGKILL after --timeout seconds.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a clean shutdown before SIGKILL.")
def stop(timeout: float) -> None:
    home = _home()
    try:
        pids = local_broker.stop(home, timeout=timeout)
    except KafkaLocalError as exc:
        _fail(str(exc))
    if pids:
        click.echo(f"kafka stopped (pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))})")
    else:
        click.echo("kafka was not running")


@kafka.command(short_help="Show broker status.", help="Show whether the local broker is running, its address, pids and data directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    home = _home()
    try:
        st = local_broker.status(home)
    except KafkaLocalError as exc:
        _fail(str(exc))
    if as_json:
        d = st.to_dict()
        d["env_bootstrap_servers"] = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(_describe(st))
    if note := _bootstrap_note(st):
        click.echo(note)


@kafka.command(short_help="Show a broker log.", help="Print the last lines of a broker's log (optionally keep following it).")
@click.option("--lines", "-n", type=int, default=50, show_default=True, help="How many lines to show.")
@click.option("--broker", type=int, default=1, show_default=True, help="Which broker (1-based).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
def logs(lines: int, broker: int, follow: bool) -> None:
    home = _home()
    path = local_broker.broker_dir(home, broker) / "broker.log"
    if not path.exists():
        _fail(f"no log for broker {broker} at {path} (has `bank kafka start` run?)")
    text = local_broker.logs(home, lines, broker=broker)
    if text:
        click.echo(text)
    if not follow:
        return
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            while True:
                chunk = fh.read()
                if chunk:
                    click.echo(chunk.decode("utf-8", errors="replace"), nl=False)
                else:
                    if fh.tell() > path.stat().st_size:  # truncated/replaced
                        fh.seek(0)
                    time.sleep(0.5)
    except KeyboardInterrupt:
        pass


@kafka.command(short_help="Stop and delete all Kafka data (keeps the jars).", help="Stop the broker(s) and delete all Kafka data in $BANK_HOME/kafka (the cached jars are kept).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a clean shutdown before SIGKILL.")
def reset(timeout: float) -> None:
    home = _home()
    try:
        pids = local_broker.reset(home, timeout=timeout)
    except KafkaLocalError as exc:
        _fail(str(exc))
    stopped = f"stopped pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))}; " if pids else ""
    click.echo(f"kafka reset: {stopped}deleted the data in {local_broker.kafka_dir(home)} (kept libs/)")
