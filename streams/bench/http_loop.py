"""`bank bench http`: users in a closed loop against the workers' HTTP API (issue 14's latency targets).

Each user deposits 1.00 on its own accounts with `POST /api/accounts/{id}/deposits?wait=5` and, once
the outcome is known (200), reads the account back with `GET /api/accounts/{id}?min_version=N&wait=5`,
N being the version the outcome says the deposit produced. Two figures per deposit: the POST's answer
time (`post_wait_ms`) and the time from the POST's start to the GET's answer at that version
(`post_then_get_ms`). Any other answer (a 202: the outcome was not known within ?wait=; a GET marked
X-Bank-Stale; any other status, a timeout, a connection error) is a failure, and a run with failures
is not a valid figure.

Users run as coroutines on one event loop in this process, with aiohttp's client and keep-alive
connections, spread round robin over the workers (any worker answers for any key).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import orjson

from ..cli import progress
from .env import ACCOUNT_VIEW_TOPIC, BenchEnv, CpuMeter
from .measure import latency_summary
from .workloads import PROGRESS_EVERY, DepositDriver, Options, _cpu_figures

WAIT_S = 5.0
TARGETS = {"post_wait_p99_ms": 50, "post_then_get_p99_ms": 100}
AMOUNT = Decimal("1.00")
BODY = orjson.dumps({"amount": str(AMOUNT)})
#: Untimed deposits per user before the timed loop: connections, and the worker's lazily made producer,
#: are set up then rather than inside the first measured requests.
WARMUP_PER_USER = 1


@dataclass
class Tally:
    deposits: int = 0
    accepted: int = 0          # 200 answers with status ACCEPTED
    gets: int = 0
    read_back: int = 0         # GETs that answered 200 at the deposit's version
    versions_from_answer: int = 0
    versions_assumed: int = 0  # the 200 carried no version: the previous one + 1 was asked for
    post_wait_ms: list[float] = field(default_factory=list)
    post_then_get_ms: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)


class Loop:
    """The users' shared state: the session, each account's last known version and what it was given."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], user_accounts: list[list[str]],
                 versions: dict[str, int | None], token: str | None = None, wait: float = WAIT_S):
        self.session, self.urls, self.user_accounts = session, urls, user_accounts
        self.versions = versions
        self.deposited = {a: Decimal("0.00") for accounts in user_accounts for a in accounts}
        self.position = [0] * len(user_accounts)
        self.post_headers = {"Content-Type": "application/json",
                             **({"Authorization": f"Bearer {token}"} if token else {})}
        self.wait = f"{wait:g}"

    @staticmethod
    async def _exchange(tally: Tally, side: str, request) -> tuple | None:
        """(status, headers, body) of one request; None, with the failure counted under `side`, when it
        timed out or the connection failed."""
        try:
            async with request as response:
                return response.status, response.headers, await response.read()
        except asyncio.TimeoutError:
            tally.failures[f"{side}_timeout"] += 1
        except aiohttp.ClientError as exc:
            tally.failures[f"{side}_{type(exc).__name__}"] += 1
        return None

    async def deposit(self, base: str, account_id: str, tally: Tally) -> None:
        tally.deposits += 1
        started = time.perf_counter()
        answer = await self._exchange(tally, "post", self.session.post(
            f"{base}/api/accounts/{account_id}/deposits", params={"wait": self.wait}, data=BODY,
            headers=self.post_headers))
        if answer is None:
            return
        status, _, body = answer
        answered = time.perf_counter()
        if status != 200:  # 202: the outcome was not known within ?wait=
            tally.failures[f"post_status_{status}"] += 1
            return
        outcome = orjson.loads(body)
        if outcome.get("status") != "ACCEPTED":
            tally.failures[f"post_{str(outcome.get('status')).lower()}"] += 1
            return
        tally.accepted += 1
        self.deposited[account_id] += AMOUNT
        tally.post_wait_ms.append((answered - started) * 1000)
        previous, version = self.versions.get(account_id), outcome.get("version")
        if version is not None:
            tally.versions_from_answer += 1
        elif previous is not None:
            version = previous + 1
            tally.versions_assumed += 1
        else:  # an earlier failure left this account's version unknown
            tally.failures["version_unknown"] += 1
            self.versions[account_id] = None
            return
        self.versions[account_id] = version
        tally.gets += 1
        answer = await self._exchange(tally, "get", self.session.get(
            f"{base}/api/accounts/{account_id}", params={"min_version": str(version), "wait": self.wait}))
        if answer is None:
            return
        status, headers, body = answer
        stale = headers.get("X-Bank-Stale")
        done = time.perf_counter()
        if status != 200:
            tally.failures[f"get_status_{status}"] += 1
        elif stale or orjson.loads(body).get("version", 0) < version:
            tally.failures["get_stale"] += 1
        else:
            tally.read_back += 1
            tally.post_then_get_ms.append((done - started) * 1000)

    async def user(self, index: int, tally: Tally, quota: int | None, deadline: float | None, tick) -> None:
        base, accounts = self.urls[index % len(self.urls)], self.user_accounts[index]
        done = 0
        while (quota is None or done < quota) and (deadline is None or time.perf_counter() < deadline):
            # The rotation over the user's accounts goes on from the warm-up's.
            await self.deposit(base, accounts[self.position[index] % len(accounts)], tally)
            self.position[index] += 1
            done += 1
            tick()


async def closed_loop(urls: list[str], user_accounts: list[list[str]], versions: dict[str, int | None], *,
                      count: int | None = None, seconds: float | None = None, warmup: int = WARMUP_PER_USER,
                      token: str | None = None, wait: float = WAIT_S, snapshot=lambda: None, tick=lambda: None) -> dict:
    """Runs len(user_accounts) users: `warmup` untimed deposits each, then `count` deposits shared out
    among them (or as many as they make in `seconds`). `versions` (each account's current version) is
    updated in place. Returns the timed tally, the warm-up's, what each account was given, the timed
    window and `snapshot()` taken at both ends of it (CPU)."""
    users = len(user_accounts)
    connector = aiohttp.TCPConnector(limit=users + 4)
    timeout = aiohttp.ClientTimeout(total=wait + 10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = Loop(session, urls, user_accounts, versions, token, wait)
        warm = Tally()
        await asyncio.gather(*(loop.user(u, warm, warmup, None, lambda: None) for u in range(users)))
        timed = Tally()
        quotas = [None] * users if seconds else [count // users + (u < count % users) for u in range(users)]
        before = snapshot()
        started = time.perf_counter()
        deadline = started + seconds if seconds else None
        await asyncio.gather(*(loop.user(u, timed, quotas[u], deadline, tick) for u in range(users)))
        ended = time.perf_counter()
        after = snapshot()
    return {"timed": timed, "warmup": warm, "deposited": loop.deposited, "duration_s": ended - started,
            "cpu": (before, after)}


def figures(outcome: dict, users: int, accounts: int) -> dict:
    """The workload's phase: counts, failures, both latency summaries against the targets, throughput."""
    timed, warm = outcome["timed"], outcome["warmup"]
    failures = dict(sorted((timed.failures + warm.failures).items()))
    post, post_get = latency_summary(timed.post_wait_ms), latency_summary(timed.post_then_get_ms)
    duration = outcome["duration_s"]
    return {
        "users": users, "accounts": accounts, "deposits": timed.deposits, "accepted": timed.accepted,
        "read_back": timed.read_back, "warmup_deposits": warm.deposits,
        "versions_from_answer": timed.versions_from_answer, "versions_assumed": timed.versions_assumed,
        # Warm-up failures count too: a run with any failure is not a figure to quote.
        "failures": failures, "failures_total": sum(failures.values()), "valid": not failures,
        "duration_s": round(duration, 3), "throughput_per_s": round(timed.deposits / max(duration, 1e-9), 1),
        "post_wait_ms": post, "post_then_get_ms": post_get, "targets": dict(TARGETS),
        "meets_targets": {"post_wait_p99_ms": _meets(post["p99_ms"], TARGETS["post_wait_p99_ms"], failures),
                          "post_then_get_p99_ms": _meets(post_get["p99_ms"], TARGETS["post_then_get_p99_ms"],
                                                         failures)},
    }


def _meets(value, target, failures) -> bool | None:
    """None when there is nothing to judge: no figure, or failures (the percentiles leave them out)."""
    return None if value is None or failures else value <= target


async def read_balances(urls: list[str], versions: dict[str, int | None], wait: float = WAIT_S) -> dict:
    """Every account as GET /api/accounts/{id} gives it once it reached its last known version."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait + 10)) as session:
        async def one(index: int, account_id: str):
            params = {"min_version": str(versions.get(account_id) or 1), "wait": f"{wait:g}"}
            try:
                async with session.get(f"{urls[index % len(urls)]}/api/accounts/{account_id}", params=params) as r:
                    return account_id, (orjson.loads(await r.read()) if r.status == 200 else None)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return account_id, None
        return dict(await asyncio.gather(*(one(i, a) for i, a in enumerate(versions))))


def http(env: BenchEnv, options: Options, log=print) -> dict:
    users, n_accounts = options.users, max(options.accounts, options.users)
    size = f"for {options.seconds} s" if options.seconds else f"{options.count} deposits"
    log(f"http: {users} users in a closed loop, {size} over {n_accounts} accounts, {options.workers} worker(s)")
    env.reset_topics()
    env.start_workers(options.workers)
    try:
        driver = DepositDriver(env, ACCOUNT_VIEW_TOPIC, n_accounts, timeout=options.timeout)
        try:
            opened = driver.open()
        finally:
            driver.close()  # its reader thread would otherwise share this process (and the GIL) with the users
        accounts = driver.account_ids
        user_accounts = [accounts[u::users] for u in range(users)]
        versions: dict[str, int | None] = dict(driver.versions)
        urls = [f"http://127.0.0.1:{worker.port}" for worker in env.workers]
        meter = env.cpu_meter()
        with progress.bar(None if options.seconds else options.count, "http deposits", every=PROGRESS_EVERY) as shown:
            outcome = asyncio.run(closed_loop(urls, user_accounts, versions, count=options.count,
                                              seconds=options.seconds, token=env.settings.api_token,
                                              snapshot=meter.snapshot, tick=shown.tick))
        served = asyncio.run(read_balances(urls, versions))
    finally:
        env.stop_workers()
    phase = figures(outcome, users, n_accounts)
    wrong = [a for a in accounts if served[a] is None or Decimal(served[a]["balance"]) != outcome["deposited"][a]]
    phase.update({
        "setup_open_accounts_s": round(opened, 3),
        "balance_total": str(sum(Decimal(v["balance"]) for v in served.values() if v is not None)),
        "expected_balance_total": str(sum(outcome["deposited"].values())),
        "accounts_with_wrong_balance": len(wrong),
        # A deposit is two requests (its POST and its GET): CPU per deposit as the other workloads give
        # it per command, and per HTTP request.
        "http_requests": phase["deposits"] + outcome["timed"].gets,
        **_cpu_figures(CpuMeter.delta(*outcome["cpu"]), phase["deposits"])})
    requests = phase["http_requests"]
    phase["cpu_ms_per_http_request_total"] = round(phase["cpu_s_total"] / requests * 1000, 4) if requests else None
    if not phase["valid"]:
        log(f"  INVALID: {phase['failures_total']} failed requests {phase['failures']}")
    return {"workload": "http", "options": vars(options).copy(), "streambank": phase, "baselines": {}}
