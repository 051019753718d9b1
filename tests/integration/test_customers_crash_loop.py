"""Customers under kill -9: hundreds of customers are created over HTTP, each opened an account and then
given it as a to-account, while one worker is in a crash loop (kill -9 every 5 s, restarted at once) and
the other stays up. The healthy worker must keep processing what it holds, the group must settle soon
after the last kill, and every customer must read back exactly as posted, before and after both workers
restart with their local state wiped (recovery from Kafka alone).

Judged from outside (tests/integration/outside.py) and by `bank verify`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from faults import (FAULTS_KAFKA_PORT, QUIESCE_S, assignment_of, bank_verify, during, group_settled, own_kafka,
                    own_workers, quiesce, restart_from_kafka_alone, settle)
from http_api import Api
from outside import (EVENT_TOPICS, OUTCOMES, OutcomeTail, Summary, check_account_views, check_command_views,
                     check_customers, fold, one_outcome_each, outcomes_in, read_committed)
from streams.contract import topics
from streams.client import BankClient
from streams.contract.jsonio import new_id

CUSTOMERS = 300
CREATE_RATE = 7.5  # customers a second: the creations span the whole crash loop
KILLS = 8
KILL_EVERY = 5.0
SETTLE_LIMIT = 30.0  # the group must settle this soon after the last kill
# The healthy worker may pause while the group rebalances, but not for longer than a dead member takes
# to be dropped (the 10 s session timeout, streams/worker/app.py) and a rebalance to finish: 15 s at most
# without taking a single command on its partitions while the loop runs. What counts is its own step,
# so that a hop on the crashing worker's partitions cannot be blamed on it: for a CreateCustomer the
# ReserveEmail it sends on (the outcome waits on the email's partition, which may be the other's), for
# OpenAccount and AddToAccount the outcome (one hop, on its partition).
HEALTHY_GAP_LIMIT = 15.0
DRIVE_AFTER_LOOP = 90.0  # how long the flows may take to finish after the loop


@dataclass
class Flow:
    """One customer's way: created over HTTP, an account opened for it, the account added as a to-account."""

    index: int
    first_name: str
    last_name: str
    email: str
    phone: str
    account_id: str
    customer_id: str = ""
    create: str = ""
    open: str = ""
    add: str = ""
    stage: str = "new"  # new, creating, opening, adding, done, failed

    @property
    def title(self) -> str:
        return f"savings {self.index}"

    @property
    def owner(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def expected(self) -> dict:
        return {"name": {"first_name": self.first_name, "last_name": self.last_name}, "email": self.email,
                "phone": self.phone,
                "to_accounts": [{"account_id": self.account_id, "title": self.title, "owner": self.owner}],
                "accounts": [self.account_id]}


@pytest.mark.faults
@pytest.mark.timeout(420)
def test_customers_come_out_whole_while_one_worker_is_in_a_kill_9_loop(tmp_path):
    summary = Summary("customers under kill -9 (one worker in a crash loop, one healthy)")
    run = uuid.uuid4().hex[:8]
    with own_kafka(tmp_path, brokers=1, base_port=FAULTS_KAFKA_PORT) as settings, own_workers(settings) as workers:
        healthy, crasher = workers
        try:
            tail = OutcomeTail(settings, also=[topics.EMAIL_COMMANDS.name])
            client = BankClient(settings)
            api = Api(healthy.url)  # the customers post to the worker that stays up
            mine = assignment_of(settings, healthy)
            assert mine.get(topics.CUSTOMER_COMMANDS.name), f"the healthy worker holds nothing: {mine}"
            summary.notes.append(f"the healthy worker {healthy.port} holds partitions "
                                 f"{sorted(mine[topics.CUSTOMER_COMMANDS.name])} of every topic at the start")
            flows = [Flow(i, f"Ada{i}", "Crashloop", f"ada{i}.{run}@example.com", f"+1555{i:07d}",
                          f"acc-{new_id()}") for i in range(CUSTOMERS)]
            sent: dict[str, tuple[str, int]] = {}  # command id → (command topic, partition)
            sent_at: dict[str, float] = {}
            kills: list[float] = []
            creates: set[str] = set()
            settled_after: list[float] = []

            def on(topic: str, key: str) -> tuple[str, int]:
                return topic, topics.partition_for(key.encode(), settings.partitions)

            def taken(command_id: str) -> float | None:
                """When the worker holding the command's partition had taken it (see HEALTHY_GAP_LIMIT)."""
                if sent[command_id][0] == topics.CUSTOMER_COMMANDS.name and command_id in creates:
                    return tail.seen.get(f"{command_id}.reserve-email")
                return tail.arrived.get(command_id)

            def crash_loop():
                time.sleep(3)
                for _ in range(KILLS):
                    crasher.kill()  # kill -9 the whole process group: no shutdown, no commit
                    crasher.start()
                    kills.append(time.monotonic())
                    summary.faults.append(f"kill -9 worker {crasher.port}, restarted at once")
                    time.sleep(KILL_EVERY)
                last = kills[-1]
                while time.monotonic() - last < SETTLE_LIMIT + 90:
                    if group_settled(settings, workers) is None:
                        settled_after.append(time.monotonic() - last)
                        return
                    time.sleep(0.5)

            def post(path: str, body: dict) -> dict | None:
                try:
                    response = api.post(path, body, wait=0)
                except httpx.HTTPError as exc:
                    summary.violations.append(f"POST {path} to the healthy worker: {exc!r}")
                    return None
                if response.status_code != 202:
                    summary.violations.append(f"POST {path}: {response.status_code} {response.text[:300]}")
                    return None
                return response.json()

            def drive():
                started = time.monotonic()
                created = 0
                while time.monotonic() - started < KILLS * KILL_EVERY + 3 + DRIVE_AFTER_LOOP:
                    if created < CUSTOMERS and created < (time.monotonic() - started) * CREATE_RATE:
                        flow = flows[created]
                        created += 1
                        answer = post("/api/customers", {"name": {"first_name": flow.first_name,
                                                                   "last_name": flow.last_name},
                                                          "email": flow.email, "phone": flow.phone})
                        if answer is None:
                            flow.stage = "failed"
                        else:
                            flow.customer_id, flow.create, flow.stage = answer["customer_id"], answer["command_id"], "creating"
                            sent[flow.create] = on(topics.CUSTOMER_COMMANDS.name, flow.customer_id)
                            sent_at[flow.create] = time.monotonic()
                            creates.add(flow.create)
                            summary.commands["CreateCustomer"] += 1
                    for flow in flows:
                        waiting_on = {"creating": flow.create, "opening": flow.open, "adding": flow.add}.get(flow.stage)
                        if not waiting_on or waiting_on not in tail.first:
                            continue
                        if tail.status(waiting_on) != "ACCEPTED":
                            summary.violations.append(f"customer {flow.index} ({flow.customer_id}): {flow.stage} got "
                                                      f"{tail.first[waiting_on]}")
                            flow.stage = "failed"
                        elif flow.stage == "creating":
                            flow.open = new_id()
                            client.open_account(flow.customer_id, f"account of {flow.index}", "0.00",
                                                account_id=flow.account_id, command_id=flow.open)
                            sent[flow.open] = on(topics.ACCOUNT_COMMANDS.name, flow.account_id)
                            sent_at[flow.open] = time.monotonic()
                            summary.commands["OpenAccount"] += 1
                            flow.stage = "opening"
                        elif flow.stage == "opening":
                            answer = post(f"/api/customers/{flow.customer_id}/toaccounts",
                                          {"account_id": flow.account_id, "title": flow.title, "owner": flow.owner})
                            if answer is None:
                                flow.stage = "failed"
                            else:
                                flow.add, flow.stage = answer["command_id"], "adding"
                                sent[flow.add] = on(topics.CUSTOMER_COMMANDS.name, flow.customer_id)
                                sent_at[flow.add] = time.monotonic()
                                summary.commands["AddToAccount"] += 1
                        else:
                            flow.stage = "done"
                    client.producer.poll(0)
                    if created == CUSTOMERS and all(f.stage in ("done", "failed") for f in flows):
                        return
                    time.sleep(0.02)

            during(crash_loop, drive)
            client.close()
            stuck = [f for f in flows if f.stage not in ("done", "failed")]
            if stuck:
                summary.violations.append(f"{len(stuck)} customers did not get through within the deadline, e.g. "
                                          f"customer {stuck[0].index} {stuck[0].customer_id} still {stuck[0].stage}")

            # The group settles soon after the last kill.
            if not settled_after:
                summary.violations.append(f"the group did not settle within {SETTLE_LIMIT + 90:.0f}s of the last kill: "
                                          f"{group_settled(settings, workers)}")
            else:
                summary.quiescence["group settled after the last kill"] = settled_after[0]
                if settled_after[0] > SETTLE_LIMIT:
                    summary.violations.append(f"the group settled {settled_after[0]:.1f}s after the last kill, "
                                              f"more than {SETTLE_LIMIT:.0f}s")

            # The healthy worker kept taking the commands on its partitions while the loop ran: measured
            # from the first kill until the last such command was sent (so there was always work waiting).
            on_mine = [c for c, (topic, partition) in sent.items() if partition in mine.get(topic, ())]
            window = (kills[0], min(kills[-1] + KILL_EVERY, max(sent_at[c] for c in on_mine)))
            marks = sorted(t for c in on_mine if (t := taken(c)) is not None and window[0] <= t <= window[1])
            points = [window[0]] + marks + [window[1]]
            longest = max(b - a for a, b in zip(points, points[1:]))
            summary.notes.append(f"during the {window[1] - window[0]:.0f}s loop the healthy worker took {len(marks)} "
                                 f"commands on its partitions; longest gap {longest:.1f}s")
            if longest > HEALTHY_GAP_LIMIT:
                summary.violations.append(f"the healthy worker went {longest:.1f}s without taking a command on its "
                                          f"partitions during the crash loop (limit {HEALTHY_GAP_LIMIT:.0f}s)")

            done_flows = [f for f in flows if f.stage == "done"]
            commands = list(sent)
            urls = [w.url for w in workers]

            def check_everything(phase: str):
                log = read_committed(settings, EVENT_TOPICS + [OUTCOMES])
                folded = fold(log)
                summary.check(f"{phase}: the event log", folded.violations)
                outcomes = outcomes_in(log[OUTCOMES], summary.violations)
                summary.check(f"{phase}: outcomes", one_outcome_each(outcomes, commands))
                for flow in done_flows:
                    customer = folded.customers.get(flow.customer_id)
                    want = [(flow.account_id, flow.title, flow.owner)]
                    if customer is None or customer.to_accounts != want or customer.version != 2:
                        summary.violations.append(f"{phase}: customer {flow.customer_id} folds to {customer}, not "
                                                  f"created once with to-accounts {want}")
                summary.check(f"{phase}: customers over HTTP",
                              check_customers(urls, {f.customer_id: f.expected() for f in done_flows}))
                summary.check(f"{phase}: command views", check_command_views(urls, outcomes, commands))
                violations, _ = check_account_views(urls, folded, [f.account_id for f in done_flows])
                summary.check(f"{phase}: account views", violations)
                finished = bank_verify(settings)
                if finished.returncode != 0:
                    summary.violations.append(f"{phase}: bank verify exited {finished.returncode}: "
                                              f"{finished.stdout[-3000:]}{finished.stderr[-2000:]}")

            quiet_from = time.monotonic()
            _, done = settle(settings, workers, tail, commands, timeout=60)
            report = quiesce(settings, workers, timeout=QUIESCE_S)
            summary.quiescence["after the loop"] = time.monotonic() - quiet_from
            summary.notes.append(f"after the loop: settled={done}, verify: {report.summary_line()}")
            check_everything("after the crash loop")

            took = restart_from_kafka_alone(workers)
            summary.faults.append(f"both workers stopped, local state wiped, started again (serving after {took:.0f}s)")
            quiet_from = time.monotonic()
            _, done = settle(settings, workers, tail, [], timeout=60)
            report = quiesce(settings, workers, timeout=QUIESCE_S)
            summary.quiescence["after the restart from Kafka"] = time.monotonic() - quiet_from
            summary.notes.append(f"after the restart: settled={done}, verify: {report.summary_line()}")
            check_everything("after the restart from Kafka")
            tail.close()
        except BaseException as exc:  # a phase that could not finish is a finding too: say so in the report
            summary.violations.append(f"aborted: {type(exc).__name__}: {str(exc)[:1500]}")
            raise
        finally:
            summary.print()
        assert summary.violations == []
