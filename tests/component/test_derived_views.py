"""A view route declared in streams.topology with its record: the worker serves it and the OpenAPI
description has it, with no handler and no operation written for it."""
from __future__ import annotations

import asyncio
import copy
import dataclasses

from aiohttp.test_utils import TestClient, TestServer

from streams import topology
from streams.config import Settings
from streams.domain import views
from streams.http import openapi
from streams.worker.app import create_app
from streams.worker.wiring import wire

ROUTE = "/api/account-copies/{account_id}"


def declare_copy_route(monkeypatch) -> None:
    """account_to_view, served a second time at ROUTE, from its record."""
    served = [dataclasses.replace(t, route=ROUTE, record=views.AccountView) if t.name == "account_to_view" else t
              for t in topology.ALL_TABLES]
    monkeypatch.setattr(topology, "ALL_TABLES", tuple(served))
    monkeypatch.setattr(openapi, "PATHS", copy.deepcopy(openapi.PATHS))
    monkeypatch.setattr(openapi, "SCHEMAS", copy.deepcopy(openapi.SCHEMAS))
    openapi._derived_view_paths()


def test_given_a_view_route_declared_with_its_record_then_the_worker_serves_it_as_described(tmp_path, monkeypatch):
    declare_copy_route(monkeypatch)

    async def run():
        settings = Settings(home=tmp_path)
        app = create_app(settings, store="memory://")
        wire(app, settings)
        routes = {(r.method, r.resource.canonical) for r in app.web.web_app.router.routes()}
        async with TestClient(TestServer(app.web.web_app)) as client:
            answer = await client.get("/api/account-copies/a1", headers={"X-Bank-Routed": "1"})
            return routes, answer.status
    routes, status = asyncio.run(run())
    assert ("GET", ROUTE) in routes
    assert openapi.PATHS[ROUTE]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == \
        openapi.ref("AccountView")
    assert status in (404, 503)  # no worker owns the key in a worker that never joined: never a 500
