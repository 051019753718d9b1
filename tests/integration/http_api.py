"""A small HTTP client for the tests, behaving as a careful user would: it retries 503 + Retry-After."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


class Api:
    def __init__(self, base: str):
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=60)

    def request(self, method: str, path: str, *, json=None, content=None, params=None,
                retry_for: float = 30.0) -> httpx.Response:
        deadline = time.monotonic() + retry_for
        while True:
            response = self.http.request(method, path, json=json, content=content, params=params)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            assert response.headers.get("Retry-After"), "a 503 must say when to retry"
            time.sleep(float(response.headers["Retry-After"]) / 4)

    def post(self, path: str, body, wait: float = 20.0) -> httpx.Response:
        return self.request("POST", path, json=body, params={"wait": str(wait)} if wait else None)

    def get(self, path: str, **params) -> httpx.Response:
        return self.request("GET", path, params={k: str(v) for k, v in params.items()} or None)

    def accepted(self, path: str, body) -> dict:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "ACCEPTED", answer
        return answer

    def create_customer(self, first="Grace", last="Hopper", email=None) -> str:
        email = email or f"{first.lower()}.{uuid.uuid4().hex[:10]}@example.com"
        return self.accepted("/api/customers", {"name": {"first_name": first, "last_name": last},
                                                "email": email})["customer_id"]

    def open_account(self, customer_id: str, initial_balance="0.00", title="Checking") -> str:
        return self.accepted("/api/accounts", {"customer_id": customer_id, "title": title,
                                               "initial_balance": initial_balance})["account_id"]
