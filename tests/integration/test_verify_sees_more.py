"""`bank verify` on a real flow checks the tables' changelogs too: state, dedup records, history and
outcome views, and that each sealed customer's data opens with its key."""
from __future__ import annotations

import re
import time

import pytest

from faults import bank_verify, quiesce

CHECKED = re.compile(r"checked (\d+) state entries, (\d+) dedup records, (\d+) history entries, "
                     r"(\d+) outcome entries, (\d+) sealed customers")


def wait_completed(api, transfer_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    view = {}
    while time.monotonic() < deadline:
        view = api.get(f"/api/transfers/{transfer_id}", wait=5).json()
        if view.get("state") in ("COMPLETED", "FAILED", "REFUNDED"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"transfer {transfer_id} did not finish: {view}")


@pytest.mark.timeout(400)
def test_given_a_small_real_flow_then_bank_verify_is_clean_and_has_checked_the_changelogs(api, kafka, workers):
    customer = api.create_customer("Ada", "Lovelace")
    source, target = api.open_account(customer, "100.00"), api.open_account(customer, "5.00", title="Savings")
    deposit = api.post(f"/api/accounts/{source}/deposits", {"amount": "25.00"})
    assert (deposit.status_code, deposit.json()["status"]) == (200, "ACCEPTED"), deposit.text
    started = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target,
                                             "amount": "40.00", "description": "savings"})
    assert wait_completed(api, started["transfer_id"])["state"] == "COMPLETED"

    report = quiesce(kafka, workers)  # the changelogs and views catch up with the events
    assert report.ok, report.violations

    done = bank_verify(kafka)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.splitlines()[0]
    assert summary.startswith("OK: ") and ", 0 violations" in summary, summary
    checked = CHECKED.search(summary)
    assert checked, summary
    states, dedup, history, outcomes, sealed = (int(n) for n in checked.groups())
    # at least: 1 customer, its email, 2 accounts, 1 transfer; create, 2 opens, deposit, transfer and its 2 steps;
    # 2 opens + deposit + debit + credit
    assert states >= 5 and dedup >= 7 and history >= 5 and outcomes >= 7 and sealed >= 1, summary
