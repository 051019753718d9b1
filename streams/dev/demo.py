"""`bank demo` / `make demo`: the banking scenario end to end on a real broker, views printed as tables."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import local_broker, local_registry
from ..contract.schema_history import RegistrationError, register_all
from ..cli import progress
from ..kafka.admin import create_topics
from ..config import Settings

console = Console()


class DemoFailure(Exception):
    pass


def http(method: str, url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    token = os.environ.get("BANK_API_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BANK_HOME": str(settings.home), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    if settings.schema_registry_url:
        env["BANK_SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--web-port", str(settings.web_port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_healthy(base: str, worker: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise DemoFailure(f"the worker exited with code {worker.returncode}")
        try:
            status, _ = http("GET", f"{base}/health", timeout=2)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise DemoFailure(f"the worker was not healthy within {timeout:.0f}s")


def stop_worker(worker: subprocess.Popen, timeout: float = 30.0) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)


SCENARIO_STEPS = 10  # the POSTs below


def scenario(base: str, step=lambda: None) -> dict:
    """Two customers, three accounts, deposits and withdrawals (one refused); returns the ids."""
    def post(path, body, expected_status="ACCEPTED"):
        status, answer = http("POST", f"{base}{path}?wait=20", body)
        step()
        expect(status in (200, 202), f"POST {path} answered {status}: {answer}")
        expect(answer.get("status") == expected_status,
               f"POST {path}: expected {expected_status}, got {answer.get('status')} {answer.get('reason', '')}")
        return answer

    suffix = str(int(time.time() * 1000))
    ada = post("/api/customers", {"name": {"first_name": "Ada", "last_name": "Lovelace"},
                                  "email": f"ada.{suffix}@example.com", "phone": "+44 20 0000 0001"})["customer_id"]
    alan = post("/api/customers", {"name": {"first_name": "Alan", "last_name": "Turing"},
                                   "email": f"alan.{suffix}@example.com"})["customer_id"]
    checking = post("/api/accounts", {"customer_id": ada, "title": "Checking", "initial_balance": "100.00"})["account_id"]
    savings = post("/api/accounts", {"customer_id": ada, "title": "Savings", "initial_balance": "0.00",
                                     "description": "rainy days"})["account_id"]
    alans = post("/api/accounts", {"customer_id": alan, "title": "Checking", "initial_balance": "50.00"})["account_id"]
    post(f"/api/accounts/{checking}/deposits", {"amount": "25.50"})
    post(f"/api/accounts/{savings}/deposits", {"amount": "200.00"})
    post(f"/api/accounts/{alans}/withdrawals", {"amount": "30.00"})
    refused = post(f"/api/accounts/{alans}/withdrawals", {"amount": "500.00"}, expected_status="REJECTED")
    expect(refused.get("reason") == "INSUFFICIENT_FUNDS", f"expected INSUFFICIENT_FUNDS, got {refused}")
    post(f"/api/customers/{ada}/toaccounts", {"account_id": alans, "title": "Alan's checking", "owner": "Alan Turing"})
    return {"customers": [ada, alan], "accounts": [checking, savings, alans], "refused": refused["reason"],
            "expected": {checking: "125.50", savings: "200.00", alans: "20.00"}}


def show_views(base: str, ids: dict) -> None:
    accounts = Table(title="Accounts (GET /api/accounts/{id})")
    for column in ("account", "customer", "title", "balance", "status", "version"):
        accounts.add_column(column, justify="right" if column in ("balance", "version") else "left")
    for account_id in ids["accounts"]:
        status, view = http("GET", f"{base}/api/accounts/{account_id}?min_version=1&wait=10")
        expect(status == 200, f"GET account answered {status}: {view}")
        expect(view["balance"] == ids["expected"][account_id],
               f"account {account_id}: balance {view['balance']}, expected {ids['expected'][account_id]}")
        accounts.add_row(account_id[:8], view["customer_id"][:8], view["title"], view["balance"], view["status"],
                         str(view["version"]))
    console.print(accounts)

    for customer_id in ids["customers"]:
        status, view = http("GET", f"{base}/api/customers/{customer_id}?wait=10")
        expect(status == 200, f"GET customer answered {status}: {view}")
        status, by_email = http("GET", f"{base}/api/customers?email={view['email']}&wait=10")
        expect(status == 200 and by_email["customer_id"] == customer_id, "the email lookup finds the customer")
        table = Table(title=f"Customer {view['name']['first_name']} {view['name']['last_name']} "
                            f"<{view['email']}> (GET /api/customers/{{id}}, found by email too)")
        for column in ("account", "title", "balance", "status"):
            table.add_column(column, justify="right" if column == "balance" else "left")
        for account in view["accounts"]:
            table.add_row(account["account_id"][:8], account["title"], account["balance"], account["status"])
        for to in view["to_accounts"]:
            table.add_row(to["account_id"][:8], f"to-account: {to['title']}", "", to["owner"])
        console.print(table)

    status, history = http("GET", f"{base}/api/accounts/{ids['accounts'][2]}/history?min_version=3&wait=10")
    expect(status == 200, f"GET history answered {status}")
    table = Table(title="History of Alan's checking (GET /api/accounts/{id}/history)")
    for column in ("version", "entry", "amount", "balance"):
        table.add_column(column, justify="left" if column == "entry" else "right")
    for entry in history["entries"]:
        table.add_row(str(entry["version"]), entry["entry_type"], entry["amount"], entry["balance"])
    console.print(table)


def start_registry(settings: Settings) -> tuple[Settings, bool]:
    """The local Schema Registry (unless BANK_SCHEMA_REGISTRY_URL names one), with every schema registered."""
    started = False
    if not settings.schema_registry_url:
        if not local_registry.status(settings.home).running:
            console.print("[bold]starting the local Schema Registry[/] (the first run builds it with Maven)")
            started = True
        port = int(os.environ.get("BANK_REGISTRY_PORT", local_registry.DEFAULT_PORT))
        found = local_registry.start(settings.home, port=port)
        settings = replace(settings, schema_registry_url=found.url)
    rows = register_all(settings)
    refused = [row.file for row in rows if not row.ok]
    expect(not refused, f"the registry refused {', '.join(refused)} as incompatible")
    console.print(f"schema registry at {settings.schema_registry_url}: {len(rows)} schema versions registered; "
                  f"the worker writes {settings.record_format} records")
    return settings, started


def run_demo(settings: Settings, keep: bool = False) -> int:

    started_broker = started_registry = False
    worker = None
    base = f"http://{settings.web_host}:{settings.web_port}"
    try:
        if not local_broker.status(settings.home).running:
            console.print("[bold]starting the local Kafka broker[/] (the first run fetches the jars with Maven)")
            # On the port KAFKA_BOOTSTRAP_SERVERS names, so a demo beside another broker stays apart.
            port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
            local_broker.start(settings.home, base_port=port)
            started_broker = True
        created, _ = create_topics(settings)
        console.print(f"topics ready ({len(created)} created)")
        settings, started_registry = start_registry(settings)
        log_path = settings.home / "logs" / f"worker-{settings.web_port}.log"
        worker = start_worker(settings, log_path)
        console.print(f"worker starting on {base} (log: {log_path})")
        with progress.bar(None, "waiting for the worker"):
            wait_healthy(base, worker)
        with progress.bar(SCENARIO_STEPS, "running the scenario") as shown:
            ids = scenario(base, step=shown.tick)
        console.print(f"[yellow]refused as expected:[/] withdraw 500.00 from Alan's checking: {ids['refused']}")
        show_views(base, ids)
        console.print("[bold green]demo finished: every view shows what the commands did[/]")
        return 0
    except (DemoFailure, local_broker.KafkaLocalError, local_registry.RegistryLocalError, RegistrationError,
            RuntimeError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    finally:
        if keep:
            console.print(f"KEEP=1: leaving the worker on {base}, the broker and the registry running")
        else:
            if worker is not None:
                stop_worker(worker)
            if started_registry:
                local_registry.stop(settings.home)
            if started_broker:
                local_broker.stop(settings.home)
