"""`bank`: the command line. Each command reads its configuration from the environment when it starts."""
from __future__ import annotations

import json
import sys
import time

import click

from ..config import Settings
from .kafka_commands import kafka
from .registry_commands import registry, schemas
from ..bench.cli import bench


@click.group(help="streambank: an event-sourced banking pipeline on Kafka.")
def cli():
    pass


cli.add_command(kafka)
cli.add_command(bench)
cli.add_command(registry)
cli.add_command(schemas)


@cli.group(help="Kafka topics of the pipeline.")
def topics():
    pass


@topics.command("create", help="Create every topic of the pipeline (idempotent).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def topics_create(as_json: bool):
    from ..kafka.admin import create_topics  # on demand: keeps `bank` quick to start

    settings = Settings.from_env()
    try:
        created, existing = create_topics(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc))
    if as_json:
        click.echo(json.dumps({"created": created, "existing": existing}))
        return
    for name in created:
        click.echo(f"created {name}")
    for name in existing:
        click.echo(f"exists  {name}")


@cli.command(help="Run a stream-processing worker with its HTTP API (several may run side by side).")
@click.option("--web-port", type=int, default=None, help="HTTP port (default $BANK_WEB_PORT or 6066).")
@click.option("--loglevel", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Worker log level.")
@click.option("--reset-local-state", is_flag=True,
              help="Delete this worker's local RocksDB state first; it is recovered from the changelogs. "
                   "(State that contradicts Kafka is dropped automatically at every start.)")
def worker(web_port: int | None, loglevel: str, reset_local_state: bool):
    from ..worker.run import run_worker  # on demand: keeps `bank` quick to start

    run_worker(Settings.from_env().with_web_port(web_port), loglevel, reset_local_state=reset_local_state)


@cli.command(help="Produce commands: `bank send TYPE JSON` or `bank send --file F.jsonl`; "
                  "prints one JSON line per command with its ids.")
@click.argument("command_type", required=False)
@click.argument("fields", required=False)
@click.option("--file", "file", type=click.File("r"), help="JSON lines, each {\"type\": \"Deposit\", ...}.")
@click.option("--wait", is_flag=True, help="Wait for each command's outcome and print it.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for outcomes.")
@click.option("--quiet", is_flag=True, help="No progress bar on stderr (there is none when stderr is not a terminal).")
def send(command_type: str | None, fields: str | None, file, wait: bool, timeout: float, quiet: bool):
    from . import progress  # on demand: keeps `bank` quick to start
    from .sending import SendError, send_commands  # on demand: keeps `bank` quick to start

    if quiet:
        progress.disable()

    try:
        if file is not None:
            if command_type or fields:
                raise SendError("give either TYPE JSON or --file, not both")
            lines = [(number, line) for number, line in enumerate(file, 1) if line.strip()]
        else:
            if not command_type:
                raise SendError("give TYPE JSON (e.g. bank send Deposit '{\"account_id\": \"a1\", \"amount\": \"10.00\"}') "
                                "or --file F.jsonl")
            data = fields or "{}"
            lines = [(1, json.dumps({"type": command_type, **json.loads(data)}) if _is_object(data) else data)]
        results, failed = send_commands(Settings.from_env(), lines, wait=wait, timeout=timeout)
    except SendError as exc:
        raise click.ClickException(str(exc))
    for result in results:
        click.echo(json.dumps(result))
    if failed:
        sys.exit(1)


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@cli.command(help="Run the banking scenario end to end on the local broker and print the views.")
@click.option("--keep", is_flag=True, envvar="KEEP", help="Leave the broker and worker running afterwards.")
@click.option("--quiet", is_flag=True, help="No progress bars on stderr (none when stderr is not a terminal).")
def demo(keep: bool, quiet: bool):
    from . import progress  # on demand: keeps `bank` quick to start
    from ..dev.demo import run_demo  # on demand: keeps `bank` quick to start

    if quiet:
        progress.disable()

    sys.exit(run_demo(Settings.from_env(), keep=keep))


@cli.command(help="Read the event log from the start and check every ledger invariant; "
                  "exit 0 only when all hold (1: violations, 2: Kafka unreachable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--no-views", is_flag=True, help="Skip the views (the tables' changelog topics).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to read the whole log.")
@click.option("--allow-in-flight", is_flag=True,
              help="Count transfers not yet COMPLETED, FAILED or REFUNDED instead of reporting them (for checks "
                   "while the pipeline runs; by default the log is taken to be quiet).")
def verify(as_json: bool, no_views: bool, timeout: float, allow_in_flight: bool):
    from ..ops.verify import KafkaUnavailable, run  # on demand: keeps `bank` quick to start

    settings = Settings.from_env()
    try:
        report = run(settings, views=not no_views, timeout=timeout, allow_in_flight=allow_in_flight)
    except KafkaUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(report.summary_line())
        for violation in report.violations:
            click.echo(violation)
    sys.exit(0 if report.ok else 1)


@cli.command(help="Broker, topics (partitions, replication, end offsets), workers (up or not), consumer lag "
                  "and which worker holds which partition (exit 2: Kafka unreachable).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per Kafka request.")
def status(as_json: bool, timeout: float):
    from ..ops.status import StatusUnavailable, collect, render  # on demand: keeps `bank` quick to start

    try:
        found = collect(Settings.from_env(), timeout=timeout)
    except StatusUnavailable as exc:
        if as_json:
            click.echo(json.dumps({"broker": {"reachable": False, "error": str(exc)}}))
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(found) if as_json else render(found))


@cli.group(help="State as it was at a time, folded from the event log.")
def state():
    pass


@state.command("account", help="An account's balance, status, version and history as of a time "
                               "(exit 1: no such account by then, 2: Kafka unreachable).")
@click.argument("account_id")
@click.option("--as-of", "as_of", default=None, metavar="ISO-8601",
              help="The instant, e.g. 2024-05-01T12:00:00Z (no offset: UTC). Default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print the state as one JSON object.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to read the log.")
def state_account(account_id: str, as_of: str | None, as_json: bool, timeout: float):
    # on demand: keeps `bank` quick to start
    from ..ops.as_of import HistoryUnavailable, account_state_at, as_json as state_json, format_instant, parse_instant

    try:
        instant = parse_instant(as_of) if as_of is not None else int(time.time() * 1000)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--as-of")
    try:
        found = account_state_at(Settings.from_env(), account_id, instant, timeout=timeout)
    except HistoryUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if found is None:
        click.echo(f"Error: account {account_id} had no events at or before {format_instant(instant)}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(state_json(found)))
        return
    view = found.view
    click.echo(f"account {view.account_id} as of {format_instant(found.as_of)}: balance {view.balance} "
               f"{view.status} version {view.version}")
    for entry in found.history:
        click.echo(f"  v{entry.version:<4} {format_instant(entry.occurred_at)}  {entry.entry_type:<16} "
                   f"{entry.amount:>14} -> {entry.balance:>14}" + (f"  transfer {entry.transfer_id}"
                                                                 if entry.transfer_id else ""))


@cli.group(help="Rebuild read models or aggregate state from the event log.")
def replay():
    pass


@replay.command("views", help="Rebuild the read models from the log into a new generation while the current one "
                              "keeps answering; the workers serve the new one once they have loaded it "
                              "(exit 1: not switched, 2: Kafka unreachable).")
@click.option("--view", "views", multiple=True, type=click.Choice(["accounts", "transfers", "customers", "emails",
                                                                   "outcomes"]),
              help="Only this view (repeatable). Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds for reading the log, and again for the workers to load the new generation.")
def replay_views(views: tuple[str, ...], as_json: bool, no_progress: bool, timeout: float):
    from ..ops.replay import ReplayError, replay_views as run  # on demand: keeps `bank` quick to start

    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    try:
        report = run(Settings.from_env(), views or None, show_progress=not no_progress, timeout=timeout, log=say)
    except ReplayError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2 if "cannot reach" in str(exc) else 1)
    summary = report.to_dict()
    click.echo(json.dumps(summary) if as_json else
               f"rebuilt {', '.join(f'{v} (generation {g})' for v, g in report.generations.items())}: "
               f"{report.events:,} records folded at {summary['events_per_second'] or 0:,} records/s, "
               f"{report.entries:,} entries loaded by the workers in {report.load_seconds:.1f}s")


@replay.command("state", help="Disaster recovery: with the workers stopped, rebuild every table's changelog "
                              "(aggregate state, command dedup, waiting saga steps, views) from the event log. "
                              "Deletes and recreates the changelog topics. Start the workers afterwards; "
                              "their stale local state is dropped automatically (exit 1: refused or failed).")
@click.option("--force", is_flag=True, help="Run even though workers seem to be running.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to read the log.")
def replay_state(force: bool, as_json: bool, no_progress: bool, timeout: float):
    from ..ops.replay import ReplayError, replay_state as run  # on demand: keeps `bank` quick to start

    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    try:
        report = run(Settings.from_env(), force=force, show_progress=not no_progress, timeout=timeout, log=say)
    except ReplayError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(report.to_dict()) if as_json else
               f"rebuilt {sum(report.aggregates.values()):,} aggregates from {report.events:,} events, "
               f"{report.dedup_entries:,} dedup records, {report.pending_transfers} transfers in flight")


@cli.group(help="Records the agents parked on bank.deadletter (undecodable, or foreign to their topic).")
def deadletter():
    pass


@deadletter.command("list", help="Print every parked record: where it came from, why, its key and size "
                                 "(exit 2: Kafka unreachable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the value in base64.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N records (the oldest first).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to read the topics.")
def deadletter_list(as_json: bool, limit: int | None, timeout: float):
    # on demand: keeps `bank` quick to start
    from ..ops.deadletters import DeadletterUnavailable, read_parked, read_resent

    settings = Settings.from_env()
    try:
        parked = read_parked(settings, timeout, limit)
        replayed = read_resent(settings, timeout) if parked else set()
    except DeadletterUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    for record in parked:
        done = record.marker in replayed
        click.echo(json.dumps(record.to_dict(replayed=done)) if as_json else record.line(replayed=done))


@deadletter.command("replay", help="Produce each parked record's original bytes again to its original topic "
                                   "with its original key, once (exit 1: something was not replayed, "
                                   "2: Kafka unreachable).")
@click.option("--topic", default=None, help="Only records that came from this topic.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; produce nothing.")
@click.option("--force", is_flag=True, help="Replay records that still do not decode (or do not belong) too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per Kafka step.")
def deadletter_replay(topic: str | None, dry_run: bool, force: bool, as_json: bool, timeout: float):
    from ..ops.deadletters import DeadletterUnavailable, resend  # on demand: keeps `bank` quick to start

    def report(result):
        click.echo(json.dumps(result.to_dict()) if as_json else result.line())

    try:
        results = resend(Settings.from_env(), topic=topic, dry_run=dry_run, force=force, timeout=timeout,
                         report=report)
    except DeadletterUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    sys.exit(1 if any(r.action in ("refused", "failed") for r in results) else 0)


def main():
    cli(prog_name="bank")


if __name__ == "__main__":
    main()
