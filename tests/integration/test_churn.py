"""Rebalance churn: two workers serve while a third joins and leaves every few seconds for about a minute,
leaving by SIGTERM and by SIGKILL in turn, while deposits and transfers flow. Every rebalance hands
partitions over mid-batch; none of it may lose or double a command.

Judged from outside (tests/integration/outside.py) and by `bank verify`: each deposit in effect exactly
once, every account view at its aggregate's last version, one distinct outcome per command (and the API
agrees), transfers terminal.
"""
from __future__ import annotations

import random
import time

import pytest

from conftest import Worker
from faults import (EXTRA_WORKER_PORT, FAULTS_KAFKA_PORT, QUIESCE_S, bank_verify, during, money_storm, own_kafka,
                    own_workers, quiesce, settle)
from outside import (EVENT_TOPICS, OUTCOMES, OutcomeTail, Summary, check_account_views, check_command_views,
                     check_transfers, fold, one_outcome_each, outcomes_in, read_committed)
from streams.client import BankClient, OutcomeReader
from streams.dev.traffic import open_accounts

ACCOUNTS = 40
DEPOSITS = 1500
TRANSFERS = 500
RATE = 33  # commands a second: ~60 s of traffic
CHURN_SECONDS = 60.0
JOIN_PATIENCE = 30.0  # how long a joiner may take to answer /health before it is made to leave anyway


@pytest.mark.faults
@pytest.mark.timeout(420)
def test_a_worker_joining_and_leaving_every_few_seconds_loses_and_doubles_nothing(tmp_path):
    summary = Summary("rebalance churn (a third worker joins, leaves by SIGTERM / SIGKILL in turn)")
    with own_kafka(tmp_path, brokers=1, base_port=FAULTS_KAFKA_PORT) as settings, own_workers(settings) as workers:
        churner = Worker(settings, EXTRA_WORKER_PORT)
        try:
            tail = OutcomeTail(settings)
            client, reader = BankClient(settings), OutcomeReader(settings)
            ledger = open_accounts(client, reader, "cust-churn", ACCOUNTS, zero_every=8)
            reader.close()
            summary.commands["OpenAccount"] += ACCOUNTS
            rng = random.Random(41)

            def churn():
                started = time.monotonic()
                cycle = 0
                while time.monotonic() - started < CHURN_SECONDS:
                    time.sleep(rng.uniform(1.0, 2.0))
                    joined = time.monotonic()
                    churner.start()
                    # Half the time it leaves once it serves; half the time a few seconds after it started,
                    # whether or not it is done joining and recovering (a rebalance in the middle of one).
                    patient = (cycle // 2) % 2 == 0
                    leave_at = joined + (JOIN_PATIENCE if patient else rng.uniform(4.0, 9.0))
                    while churner.health() is None and time.monotonic() < leave_at:
                        if churner.process.poll() is not None:
                            raise RuntimeError(f"the joiner exited ({churner.process.returncode}):\n{churner.tail()}")
                        time.sleep(0.25)
                    up = churner.health() is not None
                    if up:
                        time.sleep(rng.uniform(1.0, 3.0))
                    how = "SIGTERM" if cycle % 2 == 0 else "SIGKILL"
                    if how == "SIGTERM":
                        churner.stop()
                    else:
                        churner.kill()
                    summary.faults.append(f"worker {churner.port} joined, left by {how} after "
                                          f"{time.monotonic() - joined:.1f}s ({'serving' if up else 'not serving yet'}; "
                                          f"exit {churner.process.returncode})")
                    cycle += 1

            storm = during(churn, lambda: money_storm(client, ledger, deposits=DEPOSITS, transfers=TRANSFERS,
                                                       rate=RATE, seed=43))
            client.close()
            summary.commands["Deposit"] += len(storm.deposits)
            summary.commands["TransferMoney"] += len(storm.transfers)

            quiet_from = time.monotonic()
            _, done = settle(settings, workers, tail, storm.command_ids, timeout=90)
            report = quiesce(settings, workers, timeout=QUIESCE_S)
            summary.quiescence["after the churn"] = time.monotonic() - quiet_from
            summary.notes.append(f"settled={done}, verify: {report.summary_line()}")

            log = read_committed(settings, EVENT_TOPICS + [OUTCOMES])
            folded = fold(log)
            summary.notes.append(f"{folded.events} event records, {folded.re_emissions} identical re-emissions")
            summary.check("the event log", folded.violations)
            for deposit in storm.deposits:
                applied = folded.deposits_of(deposit.command_id)
                if len(applied) != 1 or applied[0][0] != deposit.account_id:
                    summary.violations.append(f"deposit {deposit.command_id} ({deposit.amount} into "
                                              f"{deposit.account_id}) in effect {len(applied)} times: {applied}")
            outcomes = outcomes_in(log[OUTCOMES], summary.violations)
            summary.check("outcomes", one_outcome_each(outcomes, storm.command_ids))
            urls = [w.url for w in workers]
            violations, _ = check_account_views(urls, folded, ledger.account_ids)
            summary.check("account views", violations)
            summary.check("command views", check_command_views(urls, outcomes, storm.command_ids))
            summary.check("transfers", check_transfers(urls, folded, ledger.transfers))
            finished = bank_verify(settings)
            if finished.returncode != 0:
                summary.violations.append(f"bank verify exited {finished.returncode}: "
                                          f"{finished.stdout[-3000:]}{finished.stderr[-2000:]}")
            tail.close()
        except BaseException as exc:  # a phase that could not finish is a finding too: say so in the report
            summary.violations.append(f"aborted: {type(exc).__name__}: {str(exc)[:1500]}")
            raise
        finally:
            churner.kill()
            summary.print()
        assert summary.violations == []
