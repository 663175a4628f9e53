"""openapi.json is what the API's routes generate, covers every route, and is valid."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector_monitor.api.resolver import app
from local.openapi import DOCUMENT, generate, main
from local.template import load_template


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def operations(document: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
    }


def test_the_committed_document_is_what_the_code_generates_now() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == generate(), (
        "openapi.json is out of date: run `python -m local.openapi` and commit it"
    )


def test_every_route_of_the_resolver_is_documented(document: dict[str, Any]) -> None:
    # Powertools keeps its routes in these two lists (no public accessor).
    routes = app._static_routes + app._dynamic_routes
    served = {f"{r.method} {r.openapi_path}" for r in routes}

    assert served == operations(document)


def test_the_template_routes_exactly_the_documented_operations(document: dict[str, Any]) -> None:
    resources = load_template()["Resources"].values()
    # The snapshot API's routes; the inbound API's (Bitrix24's install and events, answered
    # to portals, not to scripts) are tests/integration/test_template.py's.
    route_keys = {
        r["Properties"]["RouteKey"]
        for r in resources
        if r["Type"] == "AWS::ApiGatewayV2::Route"
        and r["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    }

    assert route_keys == operations(document)


def test_every_operation_is_authorised_and_documents_its_errors(document: dict[str, Any]) -> None:
    assert document["info"]["title"] == "Bitrix24 connector monitor API"
    schemes = document["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert document["security"] == [{"sigv4": []}, {"jwt": []}]
    error = {"$ref": "#/components/schemas/ErrorView"}
    for path, methods in document["paths"].items():
        for operation in methods.values():
            responses = operation["responses"]
            assert "422" not in responses, path  # invalid requests are 400 here
            assert {"200", "201", "204"} & set(responses), path
            for code in ("500", "503"):
                assert responses[code]["content"]["application/json"]["schema"] == error, path


def test_the_answers_are_described_precisely(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    target = schemas["TargetView"]
    assert target["required"] == [
        "portal",
        "connector",
        "line",
        "state",
        "status",
        "configured",
        "error",
        "since",
        "checked_at",
        "detail",
    ]
    assert target["properties"]["state"]["enum"] == ["UP", "DOWN", "UNKNOWN"]
    assert target["properties"]["line"]["type"] == "integer"
    assert "BAD_FILTER" in schemas["ErrorCode"]["enum"]
    snapshot = document["paths"]["/snapshot"]["get"]
    assert {p["name"] for p in snapshot["parameters"]} == {"state", "portal", "limit", "cursor"}


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")

    validator.validate(document)


def test_the_generator_checks_the_committed_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
