"""`bank bench deposits|transfers|latency|http|replay|memory|soak|idle`: see bench/README.md."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import click

from ..config import Settings


def _common_options(f):
    """The options of every workload run through `_run`; `_options` adds the baselines' and peers'."""
    f = click.option("--count", type=int, default=None, help="Commands (replay: events) per run.")(f)
    f = click.option("--accounts", type=int, default=None, help="Accounts the work is spread over.")(f)
    f = click.option("--workers", type=click.IntRange(1, 2), default=1, show_default=True,
                     help="Worker processes.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object (no progress bars).")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bars on stderr (none when stderr is not a terminal).")(f)
    f = click.option("--repeat", type=int, default=1, show_default=True,
                     help="Runs; the summary gives the median of each figure.")(f)
    f = click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the JSON results to this file.")(f)
    f = click.option("--web-port", type=int, default=None,
                     help="First worker's web port (default $BANK_WEB_PORT); the second uses the next.")(f)
    f = click.option("--force", is_flag=True,
                     help="Delete bank.* topics even on a broker no benchmark has used (they hold data!).")(f)
    f = click.option("--keep-broker", is_flag=True, help="Leave running a broker that the benchmark started.")(f)
    f = click.option("--formats", default=None, metavar="LIST",
                     help="Record formats to compare in this run, e.g. single-object,confluent (interleaved within "
                          "each repeat; confluent needs BANK_SCHEMA_REGISTRY_URL). Default: $BANK_RECORD_FORMAT.")(f)
    f = click.option("--timeout", type=float, default=300.0, show_default=True,
                     help="Seconds to wait for the effects of one phase.")(f)
    return f


def _options(f):
    f = _common_options(f)
    f = click.option("--no-baselines", is_flag=True, help="Skip the same-run baselines.")(f)
    f = click.option("--baseline-count", type=int, default=None,
                     help="Records for the Kafka tools and the bare loop (default: the larger of --count and 20000).")(f)
    f = click.option("--no-kstreams", is_flag=True,
                     help="Skip both Kafka Streams peers (bench/peers/kstreams; built with Maven on first use).")(f)
    f = click.option("--no-kstreams-simple", is_flag=True,
                     help="Skip the simple Kafka Streams peer (DepositPeer: one processor, at-least-once).")(f)
    f = click.option("--no-kstreams-full", is_flag=True,
                     help="Skip the Kafka Streams peer with streambank's topology (PipelinePeer, exactly_once_v2).")(f)
    f = click.option("--no-quix", is_flag=True,
                     help="Skip the Quix Streams peer (bench/peers/quix; its own venv, made on first use).")(f)
    return f


DEFAULTS = {"deposits": (5_000, 500), "transfers": (2_000, 500), "latency": (2_000, 500), "http": (2_000, 16),
            "replay": (50_000, 1_000), "memory": (0, 1_000_000)}


@click.group(help="Benchmarks on the real broker: clean topics each run, fixed work, same-run baselines. "
                  "WARNING: deletes and recreates every bank.*, streambank-* and bench.* topic.")
def bench():
    pass


@contextlib.contextmanager
def _bench_env(web_port, force: bool, keep_broker: bool, log):
    """A benchmark's world for one command: the broker ensured; workers stopped and (unless kept) the
    broker the benchmark started stopped afterwards; its errors as clean CLI errors."""
    from .env import BenchEnv, BenchError

    env = BenchEnv(Settings.from_env(), web_port=web_port, force=force, log=log)
    try:
        env.ensure_broker()
        yield env
    except (BenchError, TimeoutError, RuntimeError) as exc:
        raise click.ClickException(str(exc))
    finally:
        env.stop_workers()
        if not keep_broker:
            env.close()


def _run(workload: str, count, accounts, workers, as_json, no_baselines, baseline_count, repeat, save, web_port,
         force, keep_broker, timeout, no_kstreams, no_kstreams_simple=False, no_kstreams_full=False, no_quix=False,
         quiet=False, formats=None, **extra):
    from ..cli import progress
    from .report import machine, summarize, text_report
    from .http_loop import http
    from .memory import memory
    from .workloads import WORKLOADS, Options

    WORKLOADS = {**WORKLOADS, "memory": memory, "http": http}

    if as_json or quiet:
        progress.disable()
    default_count, default_accounts = DEFAULTS[workload]
    options = Options(count=count or default_count, accounts=accounts or default_accounts, workers=workers,
                      baselines=not no_baselines, baseline_count=baseline_count, timeout=timeout,
                      kstreams=not (no_kstreams or no_kstreams_simple), kstreams_full=not (no_kstreams or no_kstreams_full),
                      quix=not no_quix, **extra)
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    runs = []
    from ..config import record_format
    try:
        compared = [record_format(f) for f in formats.split(",")] if formats else [None]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--formats")
    before = os.environ.get("BANK_RECORD_FORMAT")
    with _bench_env(web_port, force, keep_broker, log) as env:
        for index in range(repeat):
            for fmt in compared:
                if fmt:  # the workers and the load's own codec read it when they start
                    os.environ["BANK_RECORD_FORMAT"] = fmt
                if repeat > 1 or fmt:
                    log(f"run {len(runs) + 1}" + (f" ({fmt})" if fmt else "") + f", repeat {index + 1}/{repeat}")
                result = WORKLOADS[workload](env, options, log=log)
                result["run"] = len(runs) + 1
                if fmt:
                    result["record_format"] = fmt
                runs.append(result)
    if before is None:
        os.environ.pop("BANK_RECORD_FORMAT", None)
    else:
        os.environ["BANK_RECORD_FORMAT"] = before
    report = {"workload": workload, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": "bank " + " ".join(sys.argv[1:]),
              "bootstrap_servers": env.settings.bootstrap_servers, "partitions": env.settings.partitions,
              "machine": machine(), "runs": runs, "median": summarize(runs)}
    if formats:
        report["median_by_format"] = {fmt: summarize([r for r in runs if r.get("record_format") == fmt])
                                      for fmt in compared}
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(report, indent=1, default=str))
    if as_json:
        click.echo(json.dumps(report, default=str))
    else:
        click.echo(text_report(report))
        for fmt, median in report.get("median_by_format", {}).items():
            figures = {k: v for k, v in median.items() if k.startswith("streambank.") and
                       ("throughput_per_s" in k or "cpu_ms_per_command" in k)}
            click.echo(f"median, {fmt}: " + ", ".join(f"{k} {v}" for k, v in sorted(figures.items())))


@bench.command(help="Deposits: one command → one event → account view, customer view, history, outcome.")
@_options
def deposits(**kw):
    _run("deposits", **kw)


@bench.command(help="Transfers: the saga (initiate, debit, credit), measured to the terminal transfer view.")
@_options
def transfers(**kw):
    _run("transfers", **kw)


@bench.command(help="Latency: deposits at the maximum rate, then at fixed rates (fractions of it, or --rates).")
@_options
@click.option("--rates", default="", help="Comma-separated commands/s (default: fractions of the measured max).")
@click.option("--fractions", default="0.25,0.5,0.75", show_default=True, help="Rates as fractions of the max.")
def latency(rates, fractions, **kw):
    _run("latency", rates=tuple(float(r) for r in rates.split(",") if r.strip()),
         fractions=tuple(float(f) for f in fractions.split(",") if f.strip()), **kw)


@bench.command(help="HTTP: --users users in a closed loop against the workers' HTTP API, each depositing 1.00 on "
                    "accounts of its own with POST /api/accounts/{id}/deposits?wait=5, then reading the account "
                    "with GET ?min_version=<the version the deposit produced>&wait=5. Reports p50/p95/p99/max of "
                    "post_wait_ms (until the POST's 200) and post_then_get_ms (POST start to the GET's answer) against "
                    "issue 14's targets (p99 <= 50 ms and <= 100 ms), and counts failures (any non-200, a stale GET, "
                    "a timeout): a run with failures is no valid figure. No baselines or peers: they have no HTTP API.")
@_common_options
@click.option("--users", type=click.IntRange(min=1), default=16, show_default=True,
              help="Concurrent users; each owns --accounts/--users accounts (default --accounts: one each).")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=None,
              help="Run the loop this long instead of --count deposits in all.")
def http(users, seconds, **kw):
    kw["accounts"] = kw["accounts"] or users
    if kw["accounts"] < users:
        raise click.BadParameter(f"at least one account per user ({users})", param_hint="--accounts")
    _run("http", users=users, seconds=seconds, no_baselines=True, baseline_count=None, no_kstreams=True,
         no_quix=True, **kw)


@bench.command(help="Replay: account views rebuilt from N events already on the log by workers with empty state.")
@_options
def replay(**kw):
    _run("replay", **kw)


@bench.command(help="Memory: RSS of one worker holding --accounts accounts (default 1,000,000), its tables "
                    "recovered from changelogs written with the real application services.")
@_options
@click.option("--recover", is_flag=True,
              help="Let the worker recover its tables from the changelogs (slow) instead of starting with them on disk.")
def memory(recover, **kw):
    kw["no_baselines"] = True
    _run("memory", recover=recover, **kw)


def _one_run_options(command):
    """The options of a workload that runs once and reports one JSON object (idle, soak)."""
    for option in reversed([
            click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object."),
            click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="Also write the JSON report to this file."),
            click.option("--web-port", type=int, default=None, help="First worker's web port (default $BANK_WEB_PORT)."),
            click.option("--force", is_flag=True, help="Delete bank.* topics even on a broker no benchmark has used."),
            click.option("--keep-broker", is_flag=True, help="Leave running a broker that the benchmark started.")]):
        command = option(command)
    return command


def _one_run(workload: str, run, text_report, as_json, save, web_port, force, keep_broker, **described) -> None:
    """Runs `run(env, log)` in a benchmark world and reports its result, described like every workload's."""
    from .report import machine

    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    with _bench_env(web_port, force, keep_broker, log) as env:
        result = run(env, log)
    result.update({"workload": workload, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "command": "bank " + " ".join(sys.argv[1:]), "bootstrap_servers": env.settings.bootstrap_servers,
                   "partitions": env.settings.partitions, **described, "machine": machine()})
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, indent=1, default=str))
    click.echo(json.dumps(result, default=str) if as_json else text_report(result))


@bench.command(help="Idle: the CPU one worker with nothing to do spends (% of a core), after it has settled.")
@click.option("--seconds", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Length of the measurement.")
@click.option("--settle", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between the worker serving and the measurement (start-up, first rebalance).")
@_one_run_options
def idle(seconds, settle, **kw):
    from .idle import idle as run_idle, text_report

    _one_run("idle", lambda env, log: run_idle(env, seconds=seconds, settle=settle, log=log), text_report, **kw)


@bench.command(help="Soak: a steady mix of deposits and transfers for --minutes at half the maximum rate (or --rate); "
                    "samples every process's memory (RSS) and the consumer lag, and reports each process's RSS "
                    "slope in MB/min after a warm-up.")
@click.option("--minutes", type=click.FloatRange(min=0.05), default=10.0, show_default=True, help="Length of the load.")
@click.option("--rate", type=click.FloatRange(min=1), default=None,
              help="Commands per second (default: half the max measured by a short burst first).")
@click.option("--workers", type=click.IntRange(1, 2), default=1, show_default=True, help="Worker processes.")
@click.option("--accounts", type=click.IntRange(min=2), default=200, show_default=True,
              help="Accounts the load is spread over.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=None,
              help="Seconds between samples (default: about 30 samples, at most every 10 s).")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for outcomes (accounts, the rate probe, the end of the load).")
@_one_run_options
def soak(minutes, rate, workers, accounts, interval, timeout, **kw):
    from .soak import soak as run_soak, text_report

    _one_run("soak", lambda env, log: run_soak(env, minutes=minutes, rate=rate, workers=workers, accounts=accounts,
                                               interval=interval, timeout=timeout, log=log),
             text_report, workers=workers, **kw)
