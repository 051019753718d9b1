"""Zombie, as in life: a worker frozen (SIGSTOP) for longer than its session timeout loses its partitions
to the other worker, then wakes up (SIGCONT) still believing it owns them, with a batch in hand. Three
times during a storm of deposits and transfers. Afterwards both workers lose their local state and start
again from Kafka alone, and one more deposit goes into every account.

Judged from outside (tests/integration/outside.py: the log read with confluent-kafka, read_committed, and
the HTTP views) and by `bank verify`: no two different events at one (aggregate, version), money
conserved, every transfer terminal, every view the fold of its events, the last deposits applied once.
"""
from __future__ import annotations

import os
import random
import signal
import time
from decimal import Decimal

import pytest

from faults import (FAULTS_KAFKA_PORT, QUIESCE_S, bank_verify, during, health_of, money_storm, own_kafka,
                    own_workers, quiesce, restart_from_kafka_alone, settle)
from outside import (EVENT_TOPICS, OUTCOMES, OutcomeTail, Summary, check_account_views, check_transfers, fold,
                     one_outcome_each, outcomes_in, read_committed)
from streams.client import BankClient, OutcomeReader
from streams.contract.jsonio import new_id
from streams.dev.traffic import open_accounts

ACCOUNTS = 40
DEPOSITS = 2000
TRANSFERS = 600
RATE = 45  # commands a second: the storm lasts ~58 s, long enough for three stops
STOPS = 3
STOP_SECONDS = 15.0  # longer than the workers' broker_session_timeout (10 s, streams/worker/app.py)
BETWEEN_STOPS = 4.0
FINAL_DEPOSIT = Decimal("1.00")


@pytest.mark.faults
@pytest.mark.timeout(420)
def test_a_worker_frozen_past_its_session_timeout_and_woken_writes_nothing_twice(tmp_path):
    summary = Summary("zombie (SIGSTOP past the session timeout, SIGCONT)")
    with own_kafka(tmp_path, brokers=1, base_port=FAULTS_KAFKA_PORT) as settings, own_workers(settings) as workers:
        frozen: set[int] = set()
        try:
            tail = OutcomeTail(settings)
            client, reader = BankClient(settings), OutcomeReader(settings)
            ledger = open_accounts(client, reader, "cust-zombie", ACCOUNTS, zero_every=8)
            reader.close()
            summary.commands["OpenAccount"] += ACCOUNTS
            rng = random.Random(17)

            def zombies():
                time.sleep(3)
                for index in range(STOPS):
                    # Freeze the one holding more partitions (alternating on a tie): it has work to lose.
                    held = [(health_of(w) or {}).get("assigned_partitions", 0) for w in workers]
                    victim = workers[index % 2] if held[0] == held[1] else workers[held.index(max(held))]
                    pid = victim.process.pid
                    os.killpg(pid, signal.SIGSTOP)  # the worker runs in a session of its own
                    frozen.add(pid)
                    stopped = time.monotonic()
                    try:
                        time.sleep(STOP_SECONDS)
                    finally:
                        os.killpg(pid, signal.SIGCONT)
                        frozen.discard(pid)
                    summary.faults.append(f"SIGSTOP worker {victim.port} (assigned {max(held)} topic-partitions) for "
                                          f"{time.monotonic() - stopped:.1f}s, then SIGCONT")
                    time.sleep(BETWEEN_STOPS + rng.uniform(0, 1))

            storm_started = time.monotonic()
            storm = during(zombies, lambda: money_storm(client, ledger, deposits=DEPOSITS, transfers=TRANSFERS,
                                                         rate=RATE, seed=29))
            summary.commands["Deposit"] += len(storm.deposits)
            summary.commands["TransferMoney"] += len(storm.transfers)
            summary.notes.append(f"storm and faults took {time.monotonic() - storm_started:.0f}s")

            quiet_from = time.monotonic()
            _, done = settle(settings, workers, tail, storm.command_ids, timeout=90)
            report = quiesce(settings, workers, timeout=QUIESCE_S)
            summary.quiescence["after the storm"] = time.monotonic() - quiet_from
            summary.notes.append(f"after the storm: settled={done}, verify: {report.summary_line()}")
            before = fold(read_committed(settings, EVENT_TOPICS))
            summary.check("the event log before the restart", before.violations)
            known = set(before.violations)
            violations, _ = check_account_views([w.url for w in workers], before, ledger.account_ids)
            summary.check("account views before the restart", violations)

            # Local state gone: everything the workers know now comes from Kafka.
            took = restart_from_kafka_alone(workers)
            summary.faults.append(f"both workers stopped, local state wiped, started again (serving after {took:.0f}s)")
            final = {account_id: new_id() for account_id in ledger.account_ids}
            for account_id, command_id in final.items():
                client.deposit(account_id, FINAL_DEPOSIT, command_id=command_id)
            client.flush()
            client.close()
            summary.commands["Deposit"] += len(final)
            quiet_from = time.monotonic()
            _, done = settle(settings, workers, tail, final.values(), timeout=90)
            report = quiesce(settings, workers, timeout=QUIESCE_S)
            summary.quiescence["after the restart from Kafka"] = time.monotonic() - quiet_from
            summary.notes.append(f"after the restart: settled={done}, verify: {report.summary_line()}")

            # From outside.
            log = read_committed(settings, EVENT_TOPICS + [OUTCOMES])
            after = fold(log)
            summary.notes.append(f"{after.events} event records, {after.re_emissions} identical re-emissions")
            summary.check("the event log since the restart",
                          [v for v in after.violations if v not in known])
            outcomes = outcomes_in(log[OUTCOMES], summary.violations)
            every_command = storm.command_ids + list(final.values())
            summary.check("outcomes", one_outcome_each(outcomes, every_command))

            accepted = sum((d.amount for d in storm.deposits
                            if {o[0] for o in outcomes.get(d.command_id, ())} == {"ACCEPTED"}), Decimal("0.00"))
            expected_total = ledger.total + accepted + FINAL_DEPOSIT * len(final)
            if after.total_balance != expected_total:
                summary.violations.append(
                    f"money: the accounts hold {after.total_balance}, the opening balances {ledger.total} + accepted "
                    f"deposits {accepted} + final deposits {FINAL_DEPOSIT * len(final)} = {expected_total}")
            for deposit in storm.deposits:
                if len(after.deposits_of(deposit.command_id)) > 1:
                    summary.violations.append(f"deposit {deposit.command_id} took effect "
                                              f"{len(after.deposits_of(deposit.command_id))} times: "
                                              f"{after.deposits_of(deposit.command_id)}")
            for account_id, command_id in final.items():
                applied = after.deposits_of(command_id)
                was, now = before.accounts.get(account_id), after.accounts.get(account_id)
                if was is None or now is None:
                    summary.violations.append(f"account {account_id} has no events (before {was}, after {now})")
                elif applied != [(account_id, was.version + 1)]:
                    summary.violations.append(f"final deposit {command_id} into {account_id}: in effect as {applied}, "
                                              f"expected once, at v{was.version + 1}")
                elif now.balance != was.balance + FINAL_DEPOSIT or now.version != was.version + 1:
                    summary.violations.append(f"final deposit into {account_id}: {was.balance} v{was.version} became "
                                              f"{now.balance} v{now.version}")

            urls = [w.url for w in workers]
            violations, view_total = check_account_views(urls, after, ledger.account_ids)
            summary.check("account views", violations)
            if view_total != after.total_balance:
                summary.violations.append(f"money: the account views hold {view_total}, the events {after.total_balance}")
            summary.check("transfers", check_transfers(urls, after, ledger.transfers))
            done = bank_verify(settings)
            if done.returncode != 0:
                summary.violations.append(f"bank verify exited {done.returncode}: {done.stdout[-3000:]}{done.stderr[-2000:]}")
            tail.close()
        except BaseException as exc:  # a phase that could not finish is a finding too: say so in the report
            summary.violations.append(f"aborted: {type(exc).__name__}: {str(exc)[:1500]}")
            raise
        finally:
            for pid in list(frozen):  # never leave a frozen worker behind
                os.killpg(pid, signal.SIGCONT)
            summary.print()
        assert summary.violations == []
