"""The registry of processors and views (streams.topology) and what is derived from it or must agree
with it: topology.md, the OpenAPI description, bank verify's checked views and events, the wiring."""
from streams import topology
from streams.contract import topics
from streams.contract.records import EVENT_TYPES
from streams.http import openapi
from streams.ops import verify
from streams.ops.verify import Log, audit
from streams.worker import metrics


def test_given_topology_md_then_its_agents_tables_and_routes_are_the_registrys():
    written = topology.written_sections(topology.TOPOLOGY_MD.read_text())
    assert set(written) == set(topology.SECTIONS), "a generated section of topology.md lost its markers"
    for name, render in topology.SECTIONS.items():
        assert written[name] == render(), f"topology.md's {name} are stale: run `python -m streams.topology`"


def test_given_the_registry_then_every_table_has_one_writer_and_every_agent_reads_declared_topics():
    names = [t.name for t in topology.ALL_TABLES]
    assert len(names) == len(set(names))
    declared = {spec.name for spec in topics.ALL_TOPICS}
    for spec in topology.AGENTS:
        assert {s.name for s in spec.agent_sources} <= declared
        assert {s.name for s in spec.emits} <= declared
    assert len({spec.agent for spec in topology.AGENTS}) == len(topology.AGENTS)


def test_given_the_registry_then_verify_reads_every_view_table_and_has_a_rule_for_each():
    assert set(verify.VIEW_TABLES) == set(topology.VIEW_OF_TABLE)
    report_audit = verify._Audit(Log(views={table: [] for table in topology.VIEW_TABLES}), check_views=True)
    report_audit.run()
    assert report_audit.compared == set(topology.VIEW_TABLES)
    assert not [v for v in report_audit.violations if "no audit rule" in v]


def test_given_verify_then_it_has_an_audit_rule_for_every_event_type():
    assert verify.AUDITED_EVENTS == set(EVENT_TYPES)
    for processor in topology.PROCESSORS:
        assert {t.__name__ for t in processor.events.values} <= verify.AUDITED_EVENTS


def test_given_an_event_type_verify_does_not_know_then_it_fails_loudly(monkeypatch):
    from test_verify import clean_pipeline  # test_verify's small bank, its log folded by the workers' code

    log = clean_pipeline().log()
    monkeypatch.setattr(verify, "AUDITED_EVENTS", verify.AUDITED_EVENTS - {"MoneyDeposited"})
    report = audit(log, check_views=False)
    assert any(v.startswith("[audit] no audit rule for MoneyDeposited") for v in report.violations)


def test_given_a_view_table_verify_has_no_rule_for_then_it_fails_loudly(monkeypatch):
    monkeypatch.setattr(verify, "VIEW_TABLES", verify.VIEW_TABLES + ("account_to_monthly_statement",))
    report = audit(Log(views={table: [] for table in verify.VIEW_TABLES}), check_views=True)
    assert any("no audit rule for view table account_to_monthly_statement" in v for v in report.violations)


def test_given_the_openapi_description_then_it_has_a_get_for_every_view_route():
    paths = openapi.spec()["paths"]
    for table, route in topology.ROUTES.items():
        assert "get" in paths.get(route, {}), f"{table} is served at {route}, which the OpenAPI description lacks"


def test_given_the_metrics_then_they_know_every_view_agent_by_the_registry():
    assert metrics.VIEW_AGENTS == {view.agent: view.table for view in topology.VIEWS}


def test_given_a_view_route_declared_with_its_record_then_the_openapi_description_derives_its_get(monkeypatch):
    import copy

    from streams.domain import views

    route = "/api/accounts/{account_id}/statements/{month}"
    table = topology.Table("account_month_to_statement", "account id#month → AccountView: a month's statement",
                           route=route, record=views.AccountView)
    monkeypatch.setattr(topology, "ALL_TABLES", topology.ALL_TABLES + (table,))
    monkeypatch.setattr(openapi, "PATHS", copy.deepcopy(openapi.PATHS))
    monkeypatch.setattr(openapi, "SCHEMAS", copy.deepcopy(openapi.SCHEMAS))
    openapi._derived_view_paths()
    operation = openapi.PATHS[route]["get"]
    assert operation["operationId"] == "getAccountMonthToStatement"
    assert [p["name"] for p in operation["parameters"] if "name" in p] == ["account_id", "month"]
    assert openapi.SCHEMAS["AccountView"] == openapi.view_schema(views.AccountView)
