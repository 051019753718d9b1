"""The customer and account flow over HTTP, against a real broker and two real workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from io import BytesIO

import fastavro
import httpx
from confluent_kafka import Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.client import OutcomeReader

from http_api import REPO, Api


def test_a_customer_opens_accounts_deposits_and_withdraws_and_every_view_shows_it(api):
    email = f"Ada.{uuid.uuid4().hex[:8]}@Example.com"
    customer_id = api.create_customer("Ada", "Lovelace", email=email)
    checking = api.open_account(customer_id, "100.00", title="Checking")
    savings = api.open_account(customer_id, "0.00", title="Savings")
    api.accepted(f"/api/accounts/{checking}/deposits", {"amount": "25.50"})
    withdrawal = api.accepted(f"/api/accounts/{checking}/withdrawals", {"amount": "20.25"})
    assert withdrawal["version"] == 3

    account = api.get(f"/api/accounts/{checking}", min_version=3, wait=10).json()
    assert account == {"account_id": checking, "customer_id": customer_id, "title": "Checking",
                       "description": "", "balance": "105.25", "status": "OPEN", "version": 3}
    history = api.get(f"/api/accounts/{checking}/history", min_version=3, wait=10).json()
    assert [(e["entry_type"], e["amount"], e["balance"]) for e in history["entries"]] == [
        ("AccountOpened", "100.00", "100.00"), ("MoneyDeposited", "25.50", "125.50"),
        ("MoneyWithdrawn", "-20.25", "105.25")]

    api.accepted(f"/api/customers/{customer_id}/toaccounts",
                 {"account_id": savings, "title": "my savings", "owner": "Ada"})
    customer = api.get(f"/api/customers/{customer_id}", min_version=2, wait=10).json()
    assert customer["name"] == {"first_name": "Ada", "last_name": "Lovelace"}
    assert customer["email"] == email.lower()
    assert customer["to_accounts"] == [{"account_id": savings, "title": "my savings", "owner": "Ada"}]
    balances = {a["account_id"]: a["balance"] for a in customer["accounts"]}
    assert balances.get(savings) == "0.00"
    # The customer view learns of balance changes through the re-keyed summaries: wait for the last one.
    for _ in range(50):
        if balances.get(checking) == "105.25":
            break
        customer = api.get(f"/api/customers/{customer_id}", wait=0.2).json()
        balances = {a["account_id"]: a["balance"] for a in customer["accounts"]}
    assert balances == {checking: "105.25", savings: "0.00"}

    found = api.get("/api/customers", email=email.upper(), wait=10)
    assert found.status_code == 200 and found.json()["customer_id"] == customer_id


def test_a_withdrawal_beyond_the_balance_is_rejected_with_its_reason_on_http_and_on_kafka(api, kafka):
    account_id = api.open_account(api.create_customer(), "10.00")
    reader = OutcomeReader(kafka)
    try:
        response = api.post(f"/api/accounts/{account_id}/withdrawals", {"amount": "10.01"})
        assert response.status_code == 200
        answer = response.json()
        assert (answer["status"], answer["reason"]) == ("REJECTED", "INSUFFICIENT_FUNDS")
        on_kafka = reader.wait([answer["command_id"]], timeout=20)[answer["command_id"]]
        assert (on_kafka.status, on_kafka.reason) == ("REJECTED", "INSUFFICIENT_FUNDS")
    finally:
        reader.close()
    status = api.get(f"/api/commands/{answer['command_id']}").json()
    assert (status["status"], status["reason"]) == ("REJECTED", "INSUFFICIENT_FUNDS")
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "10.00"
    closing = api.request("DELETE", f"/api/accounts/{account_id}", params={"wait": "20"}).json()
    assert (closing["status"], closing["reason"]) == ("REJECTED", "BALANCE_NOT_ZERO")


def hand_encoded(schema_file: str, record: dict) -> bytes:
    """Single-object Avro exactly as a user outside the project would write it, with plain fastavro."""
    schema = json.loads((REPO / "schemas" / schema_file).read_text())
    body = BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")) + body.getvalue()


def test_a_command_from_a_plain_confluent_kafka_producer_is_processed_and_a_duplicate_changes_nothing(api, kafka):
    account_id = api.open_account(api.create_customer(), "1.00")
    command_id = str(uuid.uuid4())
    value = hand_encoded("streambank.account.Deposit.avsc",
                         {"command_id": command_id, "account_id": account_id, "amount": Decimal("7.25")})
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "partitioner": "murmur2_random"})
    for _ in range(2):  # the same command twice: it must take effect once
        producer.produce("bank.accounts.commands", key=account_id.encode(), value=value)
    assert producer.flush(20) == 0
    outcome = api.get(f"/api/commands/{command_id}", wait=20).json()
    assert (outcome["status"], outcome["version"]) == ("ACCEPTED", 2)
    api.accepted(f"/api/accounts/{account_id}/deposits", {"amount": "1.00"})  # a later command to wait for
    account = api.get(f"/api/accounts/{account_id}", min_version=3, wait=10).json()
    assert (account["balance"], account["version"]) == ("9.25", 3)


def test_two_workers_each_answer_every_key_identically(api, workers):
    customer_id = api.create_customer()
    account_ids = [api.open_account(customer_id, f"{n}.00") for n in range(1, 9)]
    others = [Api(worker.url) for worker in workers]
    for account_id in account_ids:
        answers = [other.get(f"/api/accounts/{account_id}", min_version=1, wait=10) for other in others]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
    customers = [other.get(f"/api/customers/{customer_id}", wait=10).json() for other in others]
    assert customers[0] == customers[1]
    missing = [other.get(f"/api/accounts/{uuid.uuid4()}") for other in others]
    assert [m.status_code for m in missing] == [404, 404]
    assert missing[0].json()["error"]["code"] == "ACCOUNT_NOT_FOUND"


def test_bad_http_input_gets_a_4xx_with_the_contract_error_body(api):
    account_id = api.open_account(api.create_customer(), "5.00")
    cases = [
        (api.request("POST", f"/api/accounts/{account_id}/deposits", content=b"{not json"), 400, "INVALID_JSON"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": "-1.00"}), 400, "INVALID_AMOUNT"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": "0"}), 400, "INVALID_AMOUNT"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": "1.001"}), 400, "INVALID_AMOUNT"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": "1e30"}), 400, "INVALID_AMOUNT"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": "1.00", "extra": 1}), 400, "UNKNOWN_FIELD"),
        (api.post(f"/api/accounts/{account_id}/deposits", {"amount": True}), 400, "INVALID_INPUT"),
        (api.post("/api/accounts", {"customer_id": str(uuid.uuid4()), "title": "x", "initial_balance": "1.00"}),
         404, "CUSTOMER_NOT_FOUND"),
        (api.post("/api/customers", {"name": {"first_name": "A", "last_name": "B"}, "email": "no-at-sign"}),
         400, "INVALID_FIELD"),
        (api.get(f"/api/accounts/{uuid.uuid4()}"), 404, "ACCOUNT_NOT_FOUND"),
        (api.request("POST", f"/api/accounts/{account_id}/deposits", content=b"{" + b" " * 200_000 + b"}"),
         413, "BODY_TOO_LARGE"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code, response.text
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "5.00"


def test_bank_send_produces_a_file_of_commands_and_prints_each_outcome(api, kafka, tmp_path):
    account_id = api.open_account(api.create_customer(), "0.00")
    lines = [{"type": "Deposit", "account_id": account_id, "amount": "10.00"},
             {"type": "Withdraw", "account_id": account_id, "amount": "3.50"},
             {"type": "Withdraw", "account_id": account_id, "amount": "100.00"}]
    commands = tmp_path / "commands.jsonl"
    commands.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "send", "--file", str(commands), "--wait"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["type"], r["status"], r.get("reason")) for r in results] == [
        ("Deposit", "ACCEPTED", None), ("Withdraw", "ACCEPTED", None), ("Withdraw", "REJECTED", "INSUFFICIENT_FUNDS")]
    assert api.get(f"/api/accounts/{account_id}", min_version=3, wait=10).json()["balance"] == "6.50"

    bad = subprocess.run([sys.executable, "-m", "streams.cli", "send", "Deposit", '{"amount": "1.00"}'],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode != 0 and "account_id is required" in bad.stderr


def test_the_worker_health_reports_its_assignment(workers):
    for worker in workers:
        health = httpx.get(f"{worker.url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["assigned_partitions"] > 0
