"""`bank registry ...` and `bank schemas ...`: the local Schema Registry and the schemas kept in it."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..dev import local_registry
from .local_services import fail, home, log_to_stderr
from ..dev.local_registry import RegistryLocalError, RegistryStatus


_home, _fail = home, fail


def _setup_logging() -> None:
    log_to_stderr(local_registry.__name__)


def _describe(st: RegistryStatus) -> str:
    if not st.running:
        return f"registry not running, data in {st.data_dir}"
    state = "running" if st.answering else "running (not answering yet)"
    return f"registry {state} at {st.url} (pid {st.pid}), data in {st.data_dir}"


def _url_note(st: RegistryStatus) -> str | None:
    env = os.environ.get("BANK_SCHEMA_REGISTRY_URL")
    if env and env.rstrip("/") not in (st.url, st.url.removesuffix(local_registry.CCOMPAT_PATH)):
        return f"note: BANK_SCHEMA_REGISTRY_URL={env} (the pipeline uses that registry, not this one)"
    if not env:
        return (f"note: export BANK_SCHEMA_REGISTRY_URL={st.url} for the pipeline to read Confluent-framed records, "
                "and BANK_RECORD_FORMAT=confluent for it to write them")
    return None


@click.group(help="Run a local Confluent-compatible Schema Registry (Apicurio 2.4.2, built with Maven once) "
                  "with its data in $BANK_HOME/registry.")
def registry() -> None:
    _setup_logging()


@registry.command(short_help="Start the local registry and wait until it answers.",
                  help="Build the registry once (Maven), start it on 127.0.0.1:PORT and wait until its Confluent "
                       "API answers; does nothing if it is already running.")
@click.option("--port", type=int, default=lambda: int(os.environ.get("BANK_REGISTRY_PORT", local_registry.DEFAULT_PORT)),
              show_default=f"$BANK_REGISTRY_PORT or {local_registry.DEFAULT_PORT}", help="HTTP port.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for it to answer.")
def start(port: int, timeout: float) -> None:
    home = _home()
    started = time.monotonic()
    try:
        before = local_registry.status(home)
        st = local_registry.start(home, port=port, timeout=timeout)
    except RegistryLocalError as exc:
        _fail(str(exc))
    if before.running and before.pid == st.pid:
        click.echo("already running: " + _describe(st))
    else:
        click.echo(_describe(st) + f" (ready in {time.monotonic() - started:.1f} s)")
    if note := _url_note(st):
        click.echo(note)


@registry.command(short_help="Build the registry once (Maven); cached.",
                  help="Build the registry with Maven if it is not built yet (cached in $BANK_REGISTRY_APP or "
                       "$BANK_HOME/registry/app; rebuilt only when registry/pom.xml changes).")
def build() -> None:
    started = time.monotonic()
    try:
        app = local_registry.ensure_app(_home())
    except RegistryLocalError as exc:
        _fail(str(exc))
    click.echo(f"registry built in {app} ({time.monotonic() - started:.1f} s)")


@registry.command(short_help="Stop the local registry.", help="Stop the local registry: SIGTERM, then SIGKILL "
                                                              "after --timeout seconds. Its schemas are kept.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a clean shutdown before SIGKILL.")
def stop(timeout: float) -> None:
    try:
        pid = local_registry.stop(_home(), timeout=timeout)
    except RegistryLocalError as exc:
        _fail(str(exc))
    click.echo(f"registry stopped (pid {pid})" if pid else "registry was not running")


@registry.command(short_help="Show registry status.", help="Whether the local registry runs, its URL, pid and data.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    st = local_registry.status(_home())
    if as_json:
        click.echo(json.dumps(st.to_dict(), indent=2))
    else:
        click.echo(_describe(st))


@registry.command(short_help="Show the registry log.", help="Print the last lines of the registry's log.")
@click.option("--lines", "-n", type=int, default=50, show_default=True, help="How many lines to show.")
def logs(lines: int) -> None:
    home = _home()
    if not local_registry.log_file(home).exists():
        _fail(f"no registry log at {local_registry.log_file(home)} (has `bank registry start` run?)")
    click.echo(local_registry.logs(home, lines))


@click.group(help="The Avro schemas of schemas/ and the Schema Registry.")
def schemas() -> None:
    pass


@schemas.command("register", help="Register every schema version in schemas/ with the registry "
                                  "($BANK_SCHEMA_REGISTRY_URL), oldest first, one subject per record name, "
                                  "compatibility BACKWARD: the registry refuses an incompatible change (exit 1).")
@click.option("--check", is_flag=True, help="Only ask the registry whether each version would be accepted.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per schema version.")
@click.option("--dir", "schema_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The schemas directory (default: the repository's schemas/).")
def schemas_register(check: bool, as_json: bool, schema_dir: Path | None) -> None:
    from ..contract.avro import SCHEMA_DIR
    from ..config import Settings
    from ..contract.schema_history import RegistrationError, register_all

    settings = Settings.from_env()
    if not settings.schema_registry_url:
        _fail("no schema registry configured: set BANK_SCHEMA_REGISTRY_URL (`bank registry start` runs one)")

    def report(row) -> None:
        click.echo(json.dumps(row.to_dict()) if as_json else row.line())

    try:
        rows = register_all(settings, check=check, report=report, schema_dir=schema_dir or SCHEMA_DIR)
    except RegistrationError as exc:
        _fail(str(exc))
    refused = [row for row in rows if not row.ok]
    if not as_json:
        verb = "would be accepted" if check else "registered"
        click.echo(f"{len(rows) - len(refused)} of {len(rows)} schema versions {verb}"
                   + (f"; {len(refused)} refused as incompatible" if refused else ""))
    sys.exit(1 if refused else 0)
