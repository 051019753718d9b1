"""The dashboard at `/` in a real headless Chromium: a transfer sent through the HTTP API shows up, with
its state and the new balances, without a reload (server-sent events from GET /api/stream)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from http_api import REPO

CHROMIUM = Path(os.environ.get("BANK_CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium, driven by Playwright; no browser download (`playwright install` fails here).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PATIENCE_MS = 45_000  # generous: the machine is shared; these are waits for a condition, not timing checks


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                    "(or: apt-get install -y chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_dashboard_shows_a_transfer_and_the_new_balances_without_a_reload(api, workers, browser, tmp_path):
    from playwright.sync_api import expect

    customer = api.create_customer("Dorothy", "Vaughan")
    source = api.open_account(customer, "100.00", title="Checking")
    target = api.open_account(customer, "5.00", title="Savings")

    page = browser.new_page(viewport={"width": 1700, "height": 400})
    try:
        # The second worker: it shows every account, also those whose partitions the first one owns.
        page.goto(workers[1].url + "/", wait_until="domcontentloaded")
        balance = lambda account: page.locator(f'tr[data-account-id="{account}"] td.balance')  # noqa: E731
        expect(page.locator("#connection")).to_have_text("live", timeout=PATIENCE_MS)
        expect(balance(source)).to_have_text("100.00", timeout=PATIENCE_MS)
        expect(balance(target)).to_have_text("5.00", timeout=PATIENCE_MS)
        page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

        transfer = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target,
                                                   "amount": "30.00", "description": "rent"})["transfer_id"]
        state = page.locator(f'tr[data-transfer-id="{transfer}"] [data-state]')
        expect(state).to_have_text("COMPLETED", timeout=PATIENCE_MS)
        expect(balance(source)).to_have_text("70.00", timeout=PATIENCE_MS)
        expect(balance(target)).to_have_text("35.00", timeout=PATIENCE_MS)
        row = page.locator(f'tr[data-transfer-id="{transfer}"]')
        # Labelled by customer id and title: names are personal data and stay off a shared page.
        expect(row).to_contain_text(f"{customer[:8]}")
        expect(row).to_contain_text("· Checking")
        expect(page.locator("body")).not_to_contain_text("Vaughan")
        expect(row).to_contain_text("30.00")

        refused = api.accepted("/api/transfers", {"from_account_id": target, "to_account_id": source,
                                                  "amount": "1000.00"})["transfer_id"]
        expect(page.locator(f'tr[data-transfer-id="{refused}"] [data-state]')).to_have_text(
            "FAILED", timeout=PATIENCE_MS)
        expect(page.locator(f'tr[data-transfer-id="{refused}"]')).to_contain_text("INSUFFICIENT_FUNDS")
        assert page.evaluate("window.sameDocument") is True

        # BANK_DASHBOARD_SCREENSHOT=docs/dashboard.png refreshes the README's picture.
        shot = os.environ.get("BANK_DASHBOARD_SCREENSHOT")
        path = (REPO / shot) if shot else tmp_path / "dashboard.png"
        page.screenshot(path=str(path), full_page=False)
        assert path.stat().st_size > 10_000
    finally:
        page.close()
