"""The OpenAPI description (streams/http/openapi.py) against the routes a wired worker really registers."""
from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser

import jsonschema
import schemathesis
from aiohttp.test_utils import TestClient, TestServer

from streams.http import openapi
from streams.worker.app import create_app
from streams.worker.wiring import wire
from streams.config import Settings
from streams.http.responses import error_response


def registered_routes(tmp_path) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route `wire` adds to the worker's aiohttp app (HEAD aside)."""
    async def collect():
        settings = Settings(home=tmp_path)
        app = create_app(settings, store="memory://")
        wire(app, settings)
        return {(route.method, route.resource.canonical) for route in app.web.web_app.router.routes()
                if route.method != "HEAD"}
    return asyncio.run(collect())


def test_every_route_of_the_worker_is_described_and_every_described_operation_is_a_route(tmp_path):
    routes = registered_routes(tmp_path)
    described = {(method, path) for method, path, _ in openapi.operations()}
    assert routes - described == set(), "routes missing from streams/http/openapi.py"
    assert described - routes == set(), "described in streams/http/openapi.py but not registered"


def test_the_description_is_a_valid_openapi_3_1_document():
    document = openapi.spec("http://127.0.0.1:6066")
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.1 meta-schema, offline
    for name, schema in document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(document)  # served as JSON as it is


def test_every_request_body_is_closed_and_names_its_required_fields():
    document = openapi.spec()
    bodies = [op["requestBody"] for _, _, op in openapi.operations(document) if "requestBody" in op]
    assert len(bodies) == 6
    for body in bodies:
        schema = openapi.resolve(document, body["content"]["application/json"]["schema"])
        assert schema["additionalProperties"] is False and schema["required"], schema
    for name in ("PersonName", "CreateCustomer", "AddToAccount", "OpenAccount", "MoneyMovement", "TransferMoney"):
        assert document["components"]["schemas"][name]["additionalProperties"] is False


def test_every_operation_describes_its_errors_with_the_error_schema():
    document = openapi.spec()
    for method, path, operation in openapi.operations(document):
        responses = operation["responses"]
        if path.startswith("/api/"):
            assert {"400", "503"} <= set(responses), (method, path)
        if method in ("POST", "DELETE"):
            assert {"200", "202", "401"} <= set(responses), (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
        if method == "GET" and re.search(r"/(customers|accounts|transfers)/\{", path):
            assert "404" in responses, (method, path)
            names = {p.get("name") or p["$ref"].rsplit("/", 1)[1] for p in operation["parameters"]}
            assert {"wait", "min_version"} <= names, (method, path)
        for status, answer in responses.items():
            if status[0] in "45" and path != "/health":  # /health's 503 is its own body, saying why
                answer = openapi.resolve(document, answer)
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def validator(document: dict, name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document})


def test_the_apis_own_error_bodies_match_the_error_schema():
    document = openapi.spec()
    for response in (error_response(400, "INVALID_AMOUNT", "amount must be greater than 0", "amount"),
                     error_response(404, "ACCOUNT_NOT_FOUND", "account a does not exist")):
        validator(document, "Error").validate(json.loads(response.body))
    assert not validator(document, "Error").is_valid({"error": {"code": "X", "message": "m", "extra": 1}})


def test_money_is_a_string_with_two_places_out_and_at_most_two_in():
    document = openapi.spec()
    money, money_in, positive = (validator(document, name) for name in ("Money", "MoneyInput", "PositiveMoneyInput"))
    assert money.is_valid("105.25") and money.is_valid("-20.25") and money.is_valid("0.00")
    assert not money.is_valid("105.2") and not money.is_valid(105.25)
    assert money_in.is_valid("0") and money_in.is_valid("12.5") and money_in.is_valid("9999999999999999.99")
    assert not money_in.is_valid("1.234") and not money_in.is_valid("-1") and not money_in.is_valid(12)
    assert not money_in.is_valid("10000000000000000")
    assert positive.is_valid("0.01") and positive.is_valid("12.50") and positive.is_valid("7")
    assert not positive.is_valid("0") and not positive.is_valid("0.00") and not positive.is_valid("-5")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external, self.scripts, self.ids = [], 0, set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.scripts += tag == "script"
        self.ids.add(attrs.get("id"))
        for name in ("src", "href"):
            if (attrs.get(name) or "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[name])


def test_the_docs_page_shows_every_operation_and_loads_nothing_from_elsewhere():
    page = openapi.docs_html()
    parser = _Links()
    parser.feed(page)
    assert parser.external == [] and parser.scripts == 0
    for method, path, operation in openapi.operations():
        assert operation["operationId"] in parser.ids
        assert path in page
    assert "additionalProperties" not in page  # rendered for people, not dumped
    assert "No other fields are accepted." in page


def test_the_worker_serves_openapi_json_and_docs(tmp_path):
    async def fetch():
        settings = Settings(home=tmp_path)
        app = create_app(settings, store="memory://")
        wire(app, settings)
        async with TestClient(TestServer(app.web.web_app)) as client:
            described = await client.get("/openapi.json")
            docs = await client.get("/docs")
            return described.status, await described.json(), docs.status, docs.content_type, await docs.text()

    status, document, docs_status, docs_type, page = asyncio.run(fetch())
    assert status == 200 and document["paths"].keys() == openapi.SPEC["paths"].keys()
    assert document["servers"][0]["url"].startswith("http://127.0.0.1:")
    assert docs_status == 200 and docs_type == "text/html" and "<h1>streambank HTTP API" in page
