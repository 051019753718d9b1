"""State as of a time, over HTTP and the CLI, against hand-computed balances at recorded instants."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import jsonschema

from streams.ops.as_of import format_instant

from http_api import REPO

D = Decimal


def now_ms() -> int:
    return int(time.time() * 1000)


def test_as_of_answers_the_balance_and_history_at_several_instants(api, kafka):
    account_id = api.open_account(api.create_customer(), "100.00")
    marks = []  # (instant between two commands, expected balance, status, version)
    steps = [("deposits", "25.50", D("125.50")), ("withdrawals", "40.25", D("85.25")),
             ("deposits", "0.75", D("86.00")), ("withdrawals", "86.00", D("0.00"))]
    time.sleep(0.3)
    marks.append((now_ms(), D("100.00"), "OPEN", 1))
    for version, (kind, amount, balance) in enumerate(steps, start=2):
        time.sleep(0.3)
        api.accepted(f"/api/accounts/{account_id}/{kind}", {"amount": amount})
        time.sleep(0.3)
        marks.append((now_ms(), balance, "OPEN", version))
    response = api.request("DELETE", f"/api/accounts/{account_id}", params={"wait": "20"})
    assert response.json()["status"] == "ACCEPTED", response.text
    time.sleep(0.3)
    marks.append((now_ms(), D("0.00"), "CLOSED", 6))

    for at, balance, status, version in marks:
        answer = api.get(f"/api/accounts/{account_id}", as_of=format_instant(at))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (D(body["balance"]), body["status"], body["version"]) == (balance, status, version), (at, body)
        assert body["account_id"] == account_id and body["as_of"] == format_instant(at)
        assert [entry["version"] for entry in body["history"]] == list(range(1, version + 1))
        assert D(body["history"][-1]["balance"]) == balance
        assert sum(D(entry["amount"]) for entry in body["history"]) == balance

    # The full history as of now equals the live statement, entry for entry.
    live = api.get(f"/api/accounts/{account_id}/history", min_version=6, wait=10).json()["entries"]
    assert api.get(f"/api/accounts/{account_id}", as_of=format_instant(now_ms())).json()["history"] == live
    # With an offset instead of Z, the same instant gives the same answer.
    opened_at = live[0]["occurred_at"]
    plus_two = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(opened_at / 1000 + 7200))
    plus_two += f".{opened_at % 1000:03d}+02:00"
    assert api.get(f"/api/accounts/{account_id}", as_of=plus_two).json()["version"] == 1

    # Before the account existed, and an account that never existed: 404. A bad instant: 400.
    before = api.get(f"/api/accounts/{account_id}", as_of=format_instant(opened_at - 1))
    assert before.status_code == 404 and before.json()["error"]["code"] == "ACCOUNT_NOT_FOUND"
    assert api.get("/api/accounts/no-such-account", as_of=format_instant(now_ms())).status_code == 404
    bad = api.get(f"/api/accounts/{account_id}", as_of="yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "as_of", bad.text

    # Every answer matches the served OpenAPI description of GET /api/accounts/{account_id}.
    document = api.get("/openapi.json").json()
    described = document["paths"]["/api/accounts/{account_id}"]["get"]
    assert "as_of" in [p.get("name") for p in described["parameters"]]
    for response in (api.get(f"/api/accounts/{account_id}", as_of=format_instant(marks[2][0])), before, bad):
        answer = described["responses"][str(response.status_code)]
        while "$ref" in answer:
            answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        schema = {**answer["content"]["application/json"]["schema"], "components": document["components"]}
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(response.json()))
        assert not errors, (response.status_code, errors[0].message)

    # The same answers from the CLI.
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    for at, balance, status, version in (marks[0], marks[2], marks[-1]):
        done = subprocess.run([sys.executable, "-m", "streams.cli", "state", "account", account_id,
                               "--as-of", format_instant(at), "--json"],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert (D(body["balance"]), body["status"], body["version"]) == (balance, status, version)
        assert len(body["history"]) == version
    text = subprocess.run([sys.executable, "-m", "streams.cli", "state", "account", account_id,
                           "--as-of", format_instant(marks[1][0])],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert text.returncode == 0 and "balance 125.50 OPEN version 2" in text.stdout, text.stdout + text.stderr
    missing = subprocess.run([sys.executable, "-m", "streams.cli", "state", "account", account_id,
                              "--as-of", format_instant(opened_at - 1)],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert missing.returncode == 1 and "no events" in missing.stderr
    bad_cli = subprocess.run([sys.executable, "-m", "streams.cli", "state", "account", account_id, "--as-of", "x"],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert bad_cli.returncode == 2 and "--as-of" in bad_cli.stderr
