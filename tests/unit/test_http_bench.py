"""`bank bench http`'s closed loop against a stand-in for the API: what it counts as answered and as failed."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from aiohttp import web

from streams.bench.http_loop import closed_loop, figures, read_balances


def fake_api(*, pending: set[str] = frozenset(), stale: set[str] = frozenset(), with_version: bool = True):
    """The API's answers as streams/http/api.py gives them: a POST ?wait= 200 carries the outcome with the
    version the deposit produced; a GET ?min_version= is the account view. `pending` accounts answer 202
    (the outcome not known in time), `stale` ones a GET marked X-Bank-Stale."""
    accounts: dict[str, dict] = {}

    def account(account_id):
        return accounts.setdefault(account_id, {"account_id": account_id, "balance": Decimal("0.00"), "version": 1})

    async def deposit(request):
        account_id = request.match_info["account_id"]
        view = account(account_id)
        view["balance"] += Decimal((await request.json())["amount"])
        view["version"] += 1
        if account_id in pending:
            return web.json_response({"account_id": account_id, "command_id": "c", "status": "PENDING"}, status=202)
        body = {"account_id": account_id, "command_id": "c", "status": "ACCEPTED", "command_type": "Deposit"}
        if with_version:
            body["version"] = view["version"]
        return web.json_response(body)

    async def get(request):
        view = account(request.match_info["account_id"])
        headers = {"X-Bank-Stale": "true"} if view["account_id"] in stale else None
        return web.json_response({**view, "balance": str(view["balance"])}, headers=headers)

    app = web.Application()
    app.router.add_post("/api/accounts/{account_id}/deposits", deposit)
    app.router.add_get("/api/accounts/{account_id}", get)
    return app


async def against(app, user_accounts, **kw):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        versions = {a: 1 for accounts in user_accounts for a in accounts}
        outcome = await closed_loop([url], user_accounts, versions, wait=1, **kw)
        return outcome, versions, await read_balances([url], versions, wait=1)
    finally:
        await runner.cleanup()


def test_every_deposit_is_answered_read_back_and_timed_once():
    users = [["a0", "a3"], ["a1"], ["a2"]]
    outcome, versions, served = asyncio.run(against(fake_api(), users, count=20))
    phase = figures(outcome, users=3, accounts=4)
    assert phase["deposits"] == phase["accepted"] == phase["read_back"] == 20
    assert phase["warmup_deposits"] == 3
    assert phase["post_wait_ms"]["count"] == phase["post_then_get_ms"]["count"] == 20
    assert phase["failures"] == {} and phase["failures_total"] == 0 and phase["valid"] is True
    assert phase["versions_from_answer"] == 20 and phase["versions_assumed"] == 0
    assert phase["meets_targets"] == {"post_wait_p99_ms": True, "post_then_get_p99_ms": True}
    # 20 shared out as 7, 7, 6, one warm-up deposit each, user 0 alternating over its two accounts.
    assert versions == {"a0": 1 + 4, "a3": 1 + 4, "a1": 1 + 8, "a2": 1 + 7}
    assert {a: Decimal(v["balance"]) for a, v in served.items()} == outcome["deposited"]
    assert sum(outcome["deposited"].values()) == Decimal("23.00")


def test_without_a_version_in_the_answer_the_next_one_is_asked_for():
    outcome, versions, _ = asyncio.run(against(fake_api(with_version=False), [["a0"], ["a1"]], count=6))
    phase = figures(outcome, users=2, accounts=2)
    assert phase["read_back"] == 6 and phase["versions_assumed"] == 6 and phase["valid"]
    assert versions == {"a0": 5, "a1": 5}


def test_a_202_and_a_stale_read_are_failures_that_void_the_figure():
    outcome, _, _ = asyncio.run(against(fake_api(pending={"a1"}, stale={"a2"}), [["a0"], ["a1"], ["a2"]], count=9))
    phase = figures(outcome, users=3, accounts=3)
    assert phase["deposits"] == 9
    assert phase["accepted"] == 6 and phase["read_back"] == 3
    assert phase["failures"] == {"get_stale": 4, "post_status_202": 4}  # warm-up included
    assert phase["failures_total"] == 8 and phase["valid"] is False
    assert phase["meets_targets"] == {"post_wait_p99_ms": None, "post_then_get_p99_ms": None}
    assert phase["post_then_get_ms"]["count"] == 3


def test_seconds_bound_the_loop_instead_of_a_count():
    outcome, _, _ = asyncio.run(against(fake_api(), [["a0"], ["a1"]], seconds=0.3))
    phase = figures(outcome, users=2, accounts=2)
    assert phase["deposits"] == phase["read_back"] > 0 and phase["valid"]


def test_the_text_report_shows_both_summaries_against_their_targets_and_the_failures():
    from streams.bench.report import text_report
    outcome, _, _ = asyncio.run(against(fake_api(pending={"a1"}), [["a0"], ["a1"]], count=4))
    outcome["cpu"] = None
    phase = {**figures(outcome, users=2, accounts=2), "balance_total": "3.00", "expected_balance_total": "3.00",
             "accounts_with_wrong_balance": 0, "cpu_ms_per_command": {"worker-1": 1.5},
             "cpu_ms_per_http_request_total": 0.9}
    text = text_report({"workload": "http", "bootstrap_servers": "b", "partitions": 4,
                        "machine": {"nproc": 2, "cpu_model": "x"}, "runs": [{"run": 1, "streambank": phase}]})
    assert "INVALID: 3 failures {'post_status_202': 3}" in text
    assert "(target p99 <= 50 ms)" in text and "(target p99 <= 100 ms)" in text
