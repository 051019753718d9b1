"""Logs carry no personal data: a customer's name, email, phone and address never reach a worker log
or the output of the command-line tools, whatever happens to their commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from http_api import REPO


def bank(kafka, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "BANK_PARTITIONS": str(kafka.partitions)}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def personal_data(tag: str) -> dict:
    """Values unique to this run, so a hit can only come from this test's customer."""
    digits = str(int(tag, 16))[-7:].rjust(7, "0")
    return {
        "tag": tag,
        "first_name": f"Philomena{tag}",
        "last_name": f"Quarrington{tag}",
        "email": f"philomena.{tag}@private.example",
        "phone": f"+44 20 {digits[:3]} {digits[3:]}",
        "address": f"{int(tag[:4], 16)} Wisteria Lane {tag}, Springfield",
    }


def needles(person: dict) -> list[str]:
    """Every piece someone could find a person by: whole values and their distinctive parts (the run's tag
    is in the name, email and address, so it catches any of them cut up or reformatted)."""
    found = [person["first_name"], person["last_name"], person["email"], person["email"].split("@")[0],
             person["phone"], person["phone"].replace(" ", ""), person["address"], person["tag"]]
    return [n.lower() for n in found]


def leaks(text: str, person: dict) -> list[str]:
    lowered = text.lower()
    return [needle for needle in needles(person) if needle in lowered]


def test_no_worker_log_or_tool_output_carries_a_customers_name_email_phone_or_address(api, kafka, workers):
    alice = personal_data(uuid.uuid4().hex[:10])
    bob = personal_data(uuid.uuid4().hex[:10])
    outputs: list[str] = []

    # The happy path over HTTP, with every personal field.
    created = api.accepted("/api/customers", {
        "name": {"first_name": alice["first_name"], "last_name": alice["last_name"]},
        "email": alice["email"], "phone": alice["phone"], "address": alice["address"]})
    customer_id = created["customer_id"]
    checking = api.open_account(customer_id, "50.00")
    savings = api.open_account(customer_id, "0.00", title="Savings")
    api.accepted(f"/api/customers/{customer_id}/toaccounts",
                 {"account_id": savings, "title": "savings", "owner": alice["first_name"]})
    api.accepted("/api/transfers", {"from_account_id": checking, "to_account_id": savings, "amount": "20.00",
                                    "description": f"to {alice['first_name']}"})
    found = api.get("/api/customers", email=alice["email"], wait=10)
    assert found.status_code == 200 and found.json()["customer_id"] == customer_id
    assert api.get(f"/api/customers/{customer_id}", min_version=2, wait=10).json()["phone"] == alice["phone"]

    # The unhappy paths: a taken email (rejected by the registry), bad input, an unknown email.
    taken = api.post("/api/customers", {"name": {"first_name": alice["first_name"], "last_name": "Other"},
                                        "email": alice["email"], "phone": alice["phone"]})
    assert taken.status_code == 200 and taken.json()["reason"] == "EMAIL_TAKEN", taken.text
    too_long = api.post("/api/customers", {"name": {"first_name": alice["first_name"], "last_name": "X"},
                                           "email": alice["email"], "phone": alice["phone"] * 10})
    assert too_long.status_code == 400, too_long.text
    assert api.get("/api/customers", email=bob["email"]).status_code == 404

    # The command-line path: `bank send --wait`, then `bank verify` over the whole log.
    line = json.dumps({"type": "CreateCustomer", "first_name": bob["first_name"], "last_name": bob["last_name"],
                       "email": bob["email"], "phone": bob["phone"], "address": bob["address"]})
    sent = bank(kafka, "send", "--wait", "--file", "-", stdin=line + "\n")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert json.loads(sent.stdout.splitlines()[0])["status"] == "ACCEPTED", sent.stdout
    outputs.append(sent.stdout + sent.stderr)
    again = bank(kafka, "send", "--wait", "--file", "-", stdin=line.replace(bob["first_name"], "Someone") + "\n")
    outputs.append(again.stdout + again.stderr)
    assert "EMAIL_TAKEN" in again.stdout, again.stdout + again.stderr
    verified = bank(kafka, "verify")
    outputs.append(verified.stdout + verified.stderr)

    # Let the agents finish with what was sent, so whatever they would log is in the logs.
    bob_id = json.loads(sent.stdout.splitlines()[0])["aggregate_id"]
    assert api.get(f"/api/customers/{bob_id}", wait=10).status_code == 200

    logs = {str(worker.log): worker.log.read_text(errors="replace") for worker in workers}
    assert all(logs.values()), "the workers write logs at info level: an empty log proves nothing"
    for person in (alice, bob):
        for name, text in [*logs.items(), *(("tool output", o) for o in outputs)]:
            hits = leaks(text, person)
            context = [ln for ln in text.splitlines() if any(h in ln.lower() for h in hits)][:5]
            assert not hits, f"{name} carries personal data {hits}:\n" + "\n".join(context)
