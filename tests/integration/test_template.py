"""What template.yaml promises operators: least privilege, an authorised API, logs that expire,
a table that keeps its data, and the configuration the handlers read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import annotated_types
import boto3
import pytest
from moto import mock_aws
from pydantic import BaseModel

from bench.stack import read_stack
from connector_monitor.settings import (
    CheckerSettings,
    SnapshotSettings,
    load_settings,
    schedule_interval,
)
from local.template import (
    TEMPLATE_PATH,
    deployed_resources,
    function_environment,
    load_template,
    parameter_values,
    resolve,
    resource,
    table_definition,
    ttl_attribute,
)

REPO_ROOT = TEMPLATE_PATH.parent
LAYER_DIR = REPO_ROOT / "layers" / "monitor"

# Actions that may stand on Resource "*" because the service has no resource-level permission
# for them: X-Ray's (Tracing: Active). Metrics go out as EMF log lines: no PutMetricData at all.
WILDCARD_RESOURCE_ALLOWED: dict[str, set[str]] = {
    "xray:PutTraceSegments": {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
    "xray:PutTelemetryRecords": {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
}

CHECKER_ENV = {
    "TARGETS",
    "SECRET_ID",
    "TABLE_NAME",
    "TOPIC_ARN",
    "FAILURE_THRESHOLD",
    "RECOVERY_THRESHOLD",
    "RENOTIFY_MINUTES",
    "HISTORY_DAYS",
    "VALIDATE_EVERY_MINUTES",
    "SCHEDULE_EXPRESSION",
    "MAX_PARALLEL_PORTALS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "LOG_LEVEL",
}
SNAPSHOT_ENV = {
    "TABLE_NAME",
    "SCHEDULE_EXPRESSION",
    "STALE_AFTER_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
}

# What the checker calls: GetItem, Query, PutItem, UpdateItem, DeleteItem, BatchWriteItem and
# TransactWriteItems of conditional puts, which IAM authorises as dynamodb:PutItem per item
# (TransactWriteItems is no IAM action; ConditionCheckItem would only serve a ConditionCheck).
CHECKER_TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
ROLES = {
    "CheckerFunction": "CheckerRole",
    "ShardWorkerFunction": "ShardWorkerRole",
    "SnapshotApiFunction": "SnapshotApiRole",
    "InboundFunction": "InboundRole",
}
SNAPSHOT_ROUTES = {
    "GET /snapshot",
    "GET /snapshot/{portal}/{connector}/{line}",
    "GET /health",
    "GET /history/{portal}",
    "GET /history/{portal}/{connector}/{line}",
    "GET /",
}
REGISTRY_ROUTES = {
    "GET /registry",
    "PUT /registry/{portal}/{connector}/{line}",
    "DELETE /registry/{portal}/{connector}/{line}",
    "PUT /registry/labels/{portal}",
}
# The inbound API's routes: public by necessity, behind the stack id's random part.
STACK_KEY = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
INBOUND_ROUTES = {
    "InstallRoute": "POST /app/${Key}/install",
    "EventsRoute": "POST /app/${Key}/events",
    "AuthorizedRoute": "GET /app/${Key}/authorized",
}
SILENCE_ROUTES = {
    "GET /silences",
    "POST /silences",
    "DELETE /silences/{silence_id}",
    "POST /acknowledgements/{portal}/{connector}/{line}",
}
IAM_ONLY_ROUTES = REGISTRY_ROUTES | SILENCE_ROUTES
API_ROUTES = SNAPSHOT_ROUTES | IAM_ONLY_ROUTES


# ------------------------------------------------------------------ helpers


def _resources_of_type(type_name: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: body
        for logical_id, body in load_template()["Resources"].items()
        if body["Type"] == type_name
    }


def _functions() -> dict[str, dict[str, Any]]:
    return _resources_of_type("AWS::Serverless::Function")


def _on_the_snapshot_api(body: dict[str, Any]) -> bool:
    """A route or permission of the authorised API (not the inbound API's)."""
    properties = body["Properties"]
    if "ApiId" in properties:
        return bool(properties["ApiId"] == {"Ref": "HttpApi"})
    return "${HttpApi}" in str(properties.get("SourceArn", ""))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _iam_statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement anywhere in the template (inline policies, managed policies...)."""
    if isinstance(node, dict):
        statements = node.get("Statement")
        if isinstance(statements, list):
            for statement in statements:
                yield where, statement
        for key, value in node.items():
            yield from _iam_statements(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _iam_statements(value, f"{where}[{index}]")


def _statements_of(logical_id: str) -> list[dict[str, Any]]:
    """The statements of a function's execution role (its identity policies, not its trust)."""
    policies = resource(ROLES[logical_id])["Properties"]["Policies"]
    return [statement for _, statement in _iam_statements(policies)]


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for statement in statements for action in _as_list(statement["Action"])}


# ------------------------------------------------------------------ least privilege


def test_no_iam_statement_grants_a_wildcard_action_or_resource() -> None:
    # Given every IAM statement in the template
    statements = list(_iam_statements(load_template()["Resources"]))
    assert statements, "the template grants nothing? the walk found no IAM statements"

    # Then none of them allows "*" or "service:*", and none applies to every resource
    for where, statement in statements:
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), f"{where}: wildcard action {actions}"
        for target in _as_list(statement.get("Resource", [])):
            if target == "*":
                allowed = set().union(*(WILDCARD_RESOURCE_ALLOWED.get(a, set()) for a in actions))
                assert set(actions) <= allowed, f"{where}: {actions} on Resource '*'"


def test_each_function_runs_as_its_own_role_with_inline_statements_only() -> None:
    # SAM's generated role would attach AWSLambdaBasicExecutionRole (logs on every group), and
    # policy templates such as DynamoDBCrudPolicy include Scan and more than the handlers need.
    assert set(_functions()) == set(ROLES)
    for logical_id, body in _functions().items():
        properties = body["Properties"]
        assert properties["Role"] == {"Fn::GetAtt": [ROLES[logical_id], "Arn"]}, logical_id
        assert "Policies" not in properties, f"{logical_id}: SAM would generate a role"
        role = resource(ROLES[logical_id])["Properties"]
        assert "ManagedPolicyArns" not in role, f"{ROLES[logical_id]}: managed policies"
        assert role["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]


def _by_resource(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for statement in statements:
        key = json.dumps(statement["Resource"], sort_keys=True)
        found.setdefault(key, set()).update(_as_list(statement["Action"]))
    return found


def _key(reference: Any) -> str:
    return json.dumps(reference, sort_keys=True)


def test_checker_reaches_only_its_table_alert_topic_secret_and_log_group() -> None:
    by_resource = _by_resource(_statements_of("CheckerFunction"))

    secret = {"Fn::If": ["CreateSecret", {"Ref": "PortalSecret"}, {"Ref": "ExistingSecretArn"}]}
    assert by_resource == {
        _key({"Fn::GetAtt": ["Table", "Arn"]}): CHECKER_TABLE_ACTIONS,
        # a fleet's pairs: read by query pages, each refresh one conditional update
        _key({"Fn::GetAtt": ["TokenTable", "Arn"]}): {
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        },
        _key({"Ref": "Topic"}): {"sns:Publish"},
        _key(secret): {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"},
        _key({"Fn::GetAtt": ["WorkQueue", "Arn"]}): {"sqs:SendMessage"},  # shard orders
        _key({"Fn::GetAtt": ["CheckerLogGroup", "Arn"]}): LOG_ACTIONS,
        _key("*"): TRACE_ACTIONS,
    }


def test_a_shard_worker_reaches_what_the_checker_does_but_only_receives_orders() -> None:
    checker = _by_resource(_statements_of("CheckerFunction"))
    worker = _by_resource(_statements_of("ShardWorkerFunction"))

    queue = _key({"Fn::GetAtt": ["WorkQueue", "Arn"]})
    assert worker.pop(queue) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    assert checker.pop(queue) == {"sqs:SendMessage"}  # a worker cannot hand out work
    assert worker.pop(_key({"Fn::GetAtt": ["ShardWorkerLogGroup", "Arn"]})) == LOG_ACTIONS
    assert checker.pop(_key({"Fn::GetAtt": ["CheckerLogGroup", "Arn"]})) == LOG_ACTIONS
    assert worker == checker


def test_nothing_can_scan_the_history() -> None:
    every_action = _actions([s for _, s in _iam_statements(load_template()["Resources"])])
    assert "dynamodb:Scan" not in every_action


def test_the_api_reads_the_table_and_writes_only_registry_silences_and_acknowledgements() -> None:
    statements = _statements_of("SnapshotApiFunction")
    by_resource = _by_resource(statements)

    reads, writes = (
        {"dynamodb:GetItem", "dynamodb:Query"},
        {"dynamodb:PutItem", "dynamodb:DeleteItem"},
    )
    assert by_resource == {
        _key({"Fn::GetAtt": ["Table", "Arn"]}): reads | writes | {"dynamodb:UpdateItem"},
        _key({"Fn::GetAtt": ["SnapshotApiLogGroup", "Arn"]}): LOG_ACTIONS,
        _key("*"): TRACE_ACTIONS,
    }
    # every put and delete is held to the items whose partition key is REGISTRY or SILENCE
    # (IAM checks the key of each PutItem and DeleteItem): not a status, not a run record, not
    # a lease
    (write,) = [s for s in statements if _actions([s]) & writes]
    assert set(_as_list(write["Action"])) == writes
    assert write["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["REGISTRY", "SILENCE"]}
    }
    # an update only acknowledges: a status item's acknowledgement attributes and its version
    (update,) = [s for s in statements if "dynamodb:UpdateItem" in _actions([s])]
    assert _as_list(update["Action"]) == ["dynamodb:UpdateItem"]
    held = update["Condition"]["ForAllValues:StringEquals"]
    assert held["dynamodb:LeadingKeys"] == ["STATE"]
    assert set(held["dynamodb:Attributes"]) == {
        "pk",
        "sk",
        "acked_since",
        "acked_by",
        "version",
        "down_since",
    }
    assert update["Condition"]["StringEqualsIfExists"] == {
        "dynamodb:ReturnValues": ["NONE", "UPDATED_NEW"]
    }


def test_each_function_may_write_only_the_log_group_it_logs_to() -> None:
    for logical_id, body in _functions().items():
        own = body["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        log_statements = [
            s for s in _statements_of(logical_id) if _actions([s]) & {"logs:*", *LOG_ACTIONS}
        ]
        assert log_statements, logical_id
        for statement in log_statements:
            # the log group's Arn attribute ends in ":*": its streams, no other group's
            assert statement["Resource"] == {"Fn::GetAtt": [own, "Arn"]}, logical_id
            assert set(_as_list(statement["Action"])) == LOG_ACTIONS, logical_id
    every_action = _actions([s for _, s in _iam_statements(load_template()["Resources"])])
    assert "logs:CreateLogGroup" not in every_action  # the stack creates its groups itself


# ------------------------------------------------------------------ the HTTP API


def test_every_api_route_requires_iam_signing_by_default() -> None:
    # Given a deploy with default parameters
    deployed = deployed_resources(parameter_values())
    routes = {
        b["Properties"]["RouteKey"]: b
        for b in deployed.values()
        if b["Type"].endswith("Route") and _on_the_snapshot_api(b)
    }

    # Then the routes exist and each one demands SigV4 (AWS_IAM), none is open
    assert set(routes) == API_ROUTES
    for route_key, route in routes.items():
        assert route["Properties"]["AuthorizationType"] == "AWS_IAM", route_key
        assert route["Properties"].get("AuthorizerId", {"Ref": "AWS::NoValue"}) == {
            "Ref": "AWS::NoValue"
        }, route_key
    assert "HttpApiJwtAuthorizer" not in deployed
    assert "SnapshotReaderPolicy" in deployed


def test_jwt_mode_puts_every_route_behind_the_jwt_authorizer() -> None:
    # Given a deploy with ApiAuthorization=JWT and an issuer and audience
    parameters = parameter_values(
        ApiAuthorization="JWT",
        JwtIssuer="https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Example",
        JwtAudience="example-client-id",
    )
    deployed = deployed_resources(parameters)

    # Then every snapshot route uses the JWT authorizer, which checks that issuer and audience;
    # the registry's routes, which change what is watched, stay IAM-signed
    authorizer = deployed["HttpApiJwtAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"]["Issuer"] == parameters["JwtIssuer"]
    assert authorizer["JwtConfiguration"]["Audience"] == [parameters["JwtAudience"]]
    routes = {
        b["Properties"]["RouteKey"]: b["Properties"]
        for b in deployed.values()
        if b["Type"] == "AWS::ApiGatewayV2::Route" and _on_the_snapshot_api(b)
    }
    assert set(routes) == API_ROUTES
    for route_key in SNAPSHOT_ROUTES:
        assert routes[route_key]["AuthorizationType"] == "JWT"
        assert routes[route_key]["AuthorizerId"] == {"Ref": "HttpApiJwtAuthorizer"}
    for route_key in IAM_ONLY_ROUTES:
        assert routes[route_key]["AuthorizationType"] == "AWS_IAM"
        assert "AuthorizerId" not in routes[route_key]


def test_jwt_mode_is_refused_without_issuer_and_audience() -> None:
    rule = load_template()["Rules"]["JwtNeedsIssuerAndAudience"]
    parameters = parameter_values(ApiAuthorization="JWT")
    assert resolve(rule["RuleCondition"], parameters) is True
    assert [resolve(a["Assert"], parameters) for a in rule["Assertions"]] == [False, False]


def test_api_routes_reach_the_api_function_and_only_registry_and_silences_are_written() -> None:
    integration = resource("SnapshotApiIntegration")["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["SnapshotApiFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    for logical_id, route in _resources_of_type("AWS::ApiGatewayV2::Route").items():
        if not _on_the_snapshot_api(route):
            continue  # the inbound API's: test_inbound_routes_are_public_only_behind_the_stack_key
        assert route["Properties"]["Target"] == {
            "Fn::Sub": "integrations/${SnapshotApiIntegration}"
        }
        key = route["Properties"]["RouteKey"]
        assert key.startswith("GET ") or key in IAM_ONLY_ROUTES, logical_id
    allowed = {
        resource(p)["Properties"]["SourceArn"]["Fn::Sub"].split("${HttpApi}")[1]
        for p in (
            "SnapshotApiInvokePermission",
            "RegistryAddInvokePermission",
            "RegistryRemoveInvokePermission",
            "SilenceAddInvokePermission",
            "SilenceRemoveInvokePermission",
            "AcknowledgeInvokePermission",
        )
    }
    assert allowed == {
        "/*/GET/*",
        "/*/PUT/registry/*",
        "/*/DELETE/registry/*",
        "/*/POST/silences",
        "/*/DELETE/silences/*",
        "/*/POST/acknowledgements/*",
    }
    permissions = _resources_of_type("AWS::Lambda::Permission").values()
    assert len([p for p in permissions if _on_the_snapshot_api(p)]) == 6


def test_inbound_routes_are_public_only_behind_the_stack_key_and_throttled() -> None:
    # Bitrix24 cannot sign its requests, so the install and events routes are open: exactly
    # two POST routes, on an API of their own, under a path segment only the stack knows.
    routes = {
        k: b["Properties"]
        for k, b in _resources_of_type("AWS::ApiGatewayV2::Route").items()
        if not _on_the_snapshot_api(b)
    }
    assert {k: r["RouteKey"]["Fn::Sub"][0] for k, r in routes.items()} == INBOUND_ROUTES
    for route in routes.values():
        assert route["RouteKey"]["Fn::Sub"][1] == {"Key": STACK_KEY}
        assert route["ApiId"] == {"Ref": "InboundApi"}
        assert route["AuthorizationType"] == "NONE"
        assert route["Target"] == {"Fn::Sub": "integrations/${InboundIntegration}"}
    integration = resource("InboundIntegration")["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["InboundFunction", "Arn"]}
    stage = resource("InboundApiStage")["Properties"]["DefaultRouteSettings"]
    assert stage["ThrottlingRateLimit"] <= 5 and stage["ThrottlingBurstLimit"] <= 10
    permission = resource("InboundInvokePermission")["Properties"]
    assert permission["FunctionName"] == {"Ref": "InboundFunction"}
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${InboundApi}/*/*/app/*")
    environment = function_environment("InboundFunction")
    assert environment["INBOUND_URL"]["Fn::Sub"][1] == {"Key": STACK_KEY}
    outputs = load_template()["Outputs"]
    for name, route in (
        ("InstallHandlerUrl", "install"),
        ("EventsHandlerUrl", "events"),
        ("AuthorizedHandlerUrl", "authorized"),
    ):
        assert outputs[name]["Value"]["Fn::Sub"][0].endswith(f"/app/${{Key}}/{route}")


def test_the_inbound_function_writes_only_token_items_and_reads_only_the_apps() -> None:
    statements = _statements_of("InboundFunction")
    by_resource = _by_resource(statements)
    secret = {"Fn::If": ["CreateSecret", {"Ref": "PortalSecret"}, {"Ref": "ExistingSecretArn"}]}
    token_actions = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert by_resource == {
        _key({"Fn::GetAtt": ["TokenTable", "Arn"]}): token_actions,
        _key(secret): {"secretsmanager:GetSecretValue"},  # never PutSecretValue
        _key([{"Ref": "Topic"}, {"Ref": "OperationsTopic"}]): {"sns:Publish"},
        _key({"Fn::GetAtt": ["InboundLogGroup", "Arn"]}): LOG_ACTIONS,
        _key("*"): TRACE_ACTIONS,
    }
    (tokens,) = [s for s in statements if _actions([s]) & token_actions]
    assert tokens["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["PORTAL", "MEMBER"]}
    }


def test_api_url_output_points_at_the_default_stage() -> None:
    outputs = load_template()["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
    }
    assert resource("HttpApiStage")["Properties"]["StageName"] == "$default"


# ------------------------------------------------------------------ build and runtime


@pytest.mark.parametrize(
    "logical_id",
    ["MonitorLayer", "CheckerFunction", "ShardWorkerFunction", "SnapshotApiFunction"],
)
def test_sam_builds_each_artifact_with_its_own_makefile_target(logical_id: str) -> None:
    body = resource(logical_id)
    assert body["Metadata"]["BuildMethod"] == "makefile"
    source = body["Properties"].get("CodeUri") or body["Properties"]["ContentUri"]
    makefile = (REPO_ROOT / source / "Makefile").read_text(encoding="utf-8")
    targets = re.search(rf"^((?:build-\w+ )*build-{logical_id}(?: build-\w+)*):", makefile, re.M)
    assert targets, f"{source}/Makefile has no build-{logical_id} target"


def _fake_python(directory: Path, name: str, body: str) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)


def _find_python(version: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(LAYER_DIR / "find-python.sh"), version],
        capture_output=True,
        text=True,
        env={"PATH": f"{path}:/usr/bin:/bin"},
        check=False,
    )


def test_the_layer_build_finds_a_python_of_the_runtimes_version_that_really_runs(
    tmp_path: Path,
) -> None:
    # Given this interpreter on PATH under its versioned name, and a shim of another version
    # that cannot run (as a pyenv shim with no such version selected)
    version = "{}.{}".format(*sys.version_info[:2])
    _fake_python(tmp_path, f"python{version}", f'exec "{sys.executable}" "$@"')
    _fake_python(tmp_path, "python3.98", "exit 127")

    # Then the one that runs is found, the broken one and a missing one are not
    assert _find_python(version, tmp_path).stdout.strip() == str(tmp_path / f"python{version}")
    for missing in ("3.98", "3.99"):
        answer = _find_python(missing, tmp_path)
        assert (answer.returncode, answer.stdout) == (1, "")


@pytest.mark.parametrize("compiler", ["/opt/python3.13/bin/python3.13", ""])
def test_the_layer_ships_bytecode_when_a_313_interpreter_exists_and_says_when_not(
    compiler: str,
) -> None:
    # When make shows the layer's recipe with and without a Python 3.13
    dry_run = ["make", "-n", "-C", str(LAYER_DIR), "build-MonitorLayer"]
    recipe = subprocess.run(
        [*dry_run, "ARTIFACTS_DIR=/tmp/layer", f"BYTECODE_PYTHON={compiler}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    # Then wheels are for the runtime, and bytecode is compiled by that interpreter for /opt,
    # after stale __pycache__ from the source tree is gone; or the build warns it has none
    assert "--platform manylinux2014_aarch64 --python-version 3.13" in recipe
    if compiler:
        compile_step = f'"{compiler}" -m compileall -q -j 0 --invalidation-mode unchecked-hash'
        assert compile_step in recipe
        assert recipe.index("__pycache__") < recipe.index("compileall")
        assert '-p "/opt/python"' in recipe
    else:
        assert "compileall" not in recipe
        assert "WARNING no Python 3.13 found" in recipe


def test_samconfig_tags_the_stack_and_deploys_without_an_interview() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    deploy = config["default"]["deploy"]["parameters"]
    tags = dict(re.findall(r'(\S+?)="([^"]*)"', deploy["tags"]))
    assert tags == {"project": "bitrix24-connector-monitor", "managed-by": "sam"}
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    # every parameter has a default: a deploy naming Targets, or nothing (the registry), is
    # complete
    parameters = load_template()["Parameters"]
    assert {name for name, spec in parameters.items() if "Default" not in spec} == set()


def test_functions_run_python313_on_arm64_with_the_layer_and_tracing() -> None:
    function_globals = load_template()["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    # but not the API's: a /health poll each minute would be most of the X-Ray bill
    assert resource("SnapshotApiFunction")["Properties"]["Tracing"] == "PassThrough"
    assert "Tracing" not in resource("CheckerFunction")["Properties"]
    assert function_globals["LoggingConfig"]["LogFormat"] == "JSON"
    assert function_globals["Layers"] == [{"Ref": "MonitorLayer"}]
    layer = resource("MonitorLayer")["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


@pytest.mark.parametrize(
    ("logical_id", "source"),
    [("CheckerFunction", "functions/checker"), ("SnapshotApiFunction", "functions/snapshot_api")],
)
def test_handlers_are_app_lambda_handler(logical_id: str, source: str) -> None:
    properties = resource(logical_id)["Properties"]
    assert properties["CodeUri"] == source
    assert properties["Handler"] == "app.lambda_handler"


def test_every_function_logs_to_its_own_log_group_that_expires() -> None:
    log_groups = _resources_of_type("AWS::Logs::LogGroup")
    used: set[str] = set()
    for logical_id, body in _functions().items():
        target = body["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert target in log_groups, f"{logical_id} logs to {target}"
        assert log_groups[target]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        used.add(target)
    assert len(used) == len(_functions()), "two functions share a log group"
    assert all("RetentionInDays" in b["Properties"] for b in log_groups.values())


def test_checker_receives_every_setting_the_code_reads() -> None:
    environment = function_environment("CheckerFunction")
    assert set(environment) >= CHECKER_ENV
    assert environment["TARGETS"] == {"Ref": "Targets"}
    assert environment["TABLE_NAME"] == {"Ref": "Table"}
    assert environment["TOPIC_ARN"] == {"Ref": "Topic"}
    assert environment["POWERTOOLS_SERVICE_NAME"] == "bitrix24-connector-monitor"
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "Bitrix24ConnectorMonitor"


def _deployed_environment(logical_id: str) -> dict[str, str]:
    """A function's environment as Lambda would see it with default parameters.

    References to resources (table, topic, secret) become placeholders: their values exist only
    after a deploy, and the settings only check that they are there.
    """
    resolved = resolve(function_environment(logical_id), parameter_values())
    return {
        name: value if isinstance(value, str) else f"<{json.dumps(value)}>"
        for name, value in resolved.items()
    }


@pytest.mark.parametrize(
    ("logical_id", "model"),
    [("CheckerFunction", CheckerSettings), ("SnapshotApiFunction", SnapshotSettings)],
)
def test_functions_accept_the_environment_the_template_gives_them(
    logical_id: str, model: type[BaseModel]
) -> None:
    # Given the environment a default deploy hands the function
    environment = _deployed_environment(logical_id)

    # Then the settings the handler validates at its entry accept it
    settings = load_settings(model, environment)
    assert settings.model_dump(by_alias=True)["SCHEDULE_EXPRESSION"] == "rate(5 minutes)"


def test_parameter_bounds_match_what_the_checker_accepts() -> None:
    # A value CloudFormation lets through must not be refused by the checker at run time.
    parameters = load_template()["Parameters"]
    environment = function_environment("CheckerFunction")
    fields = {field.alias: field for field in CheckerSettings.model_fields.values()}
    compared = 0
    for variable, value in environment.items():
        if not (isinstance(value, dict) and value.get("Ref") in parameters):
            continue
        spec, field = parameters[value["Ref"]], fields[variable]
        if spec["Type"] != "Number":
            continue
        bounds = {type(m): m for m in field.metadata}
        assert spec["Default"] == field.default, variable
        assert spec.get("MinValue") == getattr(bounds.get(annotated_types.Ge), "ge", None), variable
        assert spec.get("MaxValue") == getattr(bounds.get(annotated_types.Le), "le", None), variable
        compared += 1
    assert compared >= 5


def test_secret_id_follows_existing_secret_arn() -> None:
    environment = function_environment("CheckerFunction")
    own = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:bitrix24-AbCdEf"

    assert resolve(environment["SECRET_ID"], parameter_values()) == {"Ref": "PortalSecret"}
    assert resolve(environment["SECRET_ID"], parameter_values(ExistingSecretArn=own)) == own
    assert "PortalSecret" not in deployed_resources(parameter_values(ExistingSecretArn=own))


def test_snapshot_api_receives_its_settings() -> None:
    environment = function_environment("SnapshotApiFunction")
    assert set(environment) >= SNAPSHOT_ENV
    assert environment["TABLE_NAME"] == {"Ref": "Table"}


# ------------------------------------------------------------------ data, alerts, schedule


def test_table_expires_history_and_can_be_restored() -> None:
    table = resource("Table")
    properties = table["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert ttl_attribute() == "expires_at"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_only_the_token_table_pays_kms_for_its_encryption_at_rest() -> None:
    # SSEEnabled false (or absent) is DynamoDB's encryption under an AWS owned key, at no
    # charge; true is the AWS managed key aws/dynamodb, "AWS KMS charges apply" (CloudFormation
    # User Guide, "AWS::DynamoDB::Table SSESpecification"; DynamoDB API Reference,
    # "SSESpecification"). The state table holds statuses, history, the registry, labels,
    # silences and leases, never a credential (tests/security/test_no_secrets_anywhere.py scans
    # it): a KMS Decrypt per function every 5 minutes buys it nothing.
    assert resource("Table")["Properties"]["SSESpecification"] == {"SSEEnabled": False}
    # the token table holds every portal's refresh token: under KMS, its access logged
    tokens = resource("TokenTable")["Properties"]["SSESpecification"]
    assert tokens == {"SSEEnabled": True, "SSEType": "KMS"}
    # and the bill prices KMS requests for the token table only
    assert {t.logical_id: t.kms for t in read_stack().tables.values()} == {
        "Table": False,
        "TokenTable": True,
    }


def test_created_secret_starts_empty_and_survives_stack_deletion() -> None:
    secret = resource("PortalSecret")
    assert json.loads(secret["Properties"]["SecretString"]) == {"portals": {}}
    assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain"


@mock_aws
def test_table_definition_creates_a_working_table_in_moto() -> None:
    # Given a table made from the template's own key schema
    client = boto3.client("dynamodb", region_name="eu-central-1")
    client.create_table(TableName="monitor", **table_definition())

    # When an item is written under a partition key and a sort key
    client.put_item(
        TableName="monitor",
        Item={"pk": {"S": "TARGET#example.bitrix24.com"}, "sk": {"S": "myconnector#12"}},
    )

    # Then it comes back by a query on the partition key
    found = client.query(
        TableName="monitor",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "TARGET#example.bitrix24.com"}},
    )
    assert found["Count"] == 1
    assert found["Items"][0]["sk"] == {"S": "myconnector#12"}


def test_schedule_retries_once_and_keeps_undelivered_runs() -> None:
    schedule = resource("CheckerFunction")["Properties"]["Events"]["Schedule"]
    assert schedule["Type"] == "ScheduleV2"
    properties = schedule["Properties"]
    assert properties["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert properties["RetryPolicy"]["MaximumRetryAttempts"] == 1
    assert 60 <= properties["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 300
    assert properties["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert resource("DeadLetterQueue")["Properties"]["SqsManagedSseEnabled"] is True
    # The checker gets the same shape as the sample event the tests replay.
    scheduled_event = json.loads(properties["Input"]["Fn::Sub"])
    sample = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    assert set(scheduled_event) == set(sample)
    assert scheduled_event["detail-type"] == sample["detail-type"] == "Scheduled Event"


def test_alert_email_is_subscribed_only_when_given() -> None:
    assert "AlertEmailSubscription" not in deployed_resources(parameter_values())
    deployed = deployed_resources(parameter_values(AlertEmail="ops@example.com"))
    subscription = deployed["AlertEmailSubscription"]["Properties"]
    assert subscription == {
        "TopicArn": {"Ref": "Topic"},
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }


@pytest.mark.parametrize(
    ("alert_email", "operations_email", "expected"),
    [
        ("", "", None),  # nobody to tell
        ("team@example.com", "", "team@example.com"),  # AlertEmail gets both unless told
        ("team@example.com", "oncall@example.com", "oncall@example.com"),
        ("", "oncall@example.com", "oncall@example.com"),
        ("team@example.com", "none", None),  # told otherwise: alerts only
    ],
)
def test_operations_email_defaults_to_the_alert_email(
    alert_email: str, operations_email: str, expected: str | None
) -> None:
    values = parameter_values(AlertEmail=alert_email, OperationsEmail=operations_email)
    deployed = deployed_resources(values)

    subscription = deployed.get("OperationsEmailSubscription", {}).get("Properties")
    if expected is None:
        assert subscription is None
    else:
        assert subscription == {
            "TopicArn": {"Ref": "OperationsTopic"},
            "Protocol": "email",
            "Endpoint": expected,
        }
    assert ("AlertEmailSubscription" in deployed) == bool(alert_email)


# ---- alarms: the monitor of the monitor ---------------------------------------------------------
def _evaluate(node: Any) -> Any:
    """`resolve` plus the Fn::Select and Fn::Split the alarms use on the schedule."""
    if isinstance(node, list):
        return [_evaluate(each) for each in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::Split"}:
        separator, text = node["Fn::Split"]
        return _evaluate(text).split(separator)
    if set(node) == {"Fn::Select"}:
        index, items = node["Fn::Select"]
        return _evaluate(items)[int(index)]
    return {key: _evaluate(value) for key, value in node.items()}


def _alarms(**overrides: str) -> dict[str, dict[str, Any]]:
    """Every alarm's properties as a deploy with these parameters creates them."""
    deployed = deployed_resources(parameter_values(**overrides))
    return {
        logical_id: _evaluate(body["Properties"])
        for logical_id, body in deployed.items()
        if body["Type"] == "AWS::CloudWatch::Alarm"
    }


CHECKER = [{"Name": "FunctionName", "Value": {"Ref": "CheckerFunction"}}]
OPERATIONS = [{"Ref": "OperationsTopic"}]
# metric, statistic, period, evaluation periods, datapoints to alarm, comparison, threshold,
# missing data, OK actions: at the default rate(5 minutes).
EXPECTED_ALARMS: dict[str, dict[str, Any]] = {
    # no successful run (an invocation without an error) in 2 periods of 5 minutes: 5 x 2
    # minutes; the metrics are pinned by test_the_heartbeat_counts_runs_that_succeeded
    "CheckerHeartbeatAlarm": {
        "EvaluationPeriods": "5",
        "DatapointsToAlarm": "5",
        "ComparisonOperator": "LessThanThreshold",
        "Threshold": 1,
        "TreatMissingData": "breaching",
        "OKActions": OPERATIONS,
    },
    "SnapshotApiErrorsAlarm": {
        "Namespace": "AWS/ApiGateway",
        "MetricName": "5xx",
        "Dimensions": [
            {"Name": "ApiId", "Value": {"Ref": "HttpApi"}},
            {"Name": "Stage", "Value": "$default"},
        ],
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Threshold": 1,
        "TreatMissingData": "notBreaching",
        "OKActions": OPERATIONS,
    },
}


@pytest.mark.parametrize("alarm", sorted(EXPECTED_ALARMS))
def test_each_alarm_watches_its_metric_with_its_thresholds(alarm: str) -> None:
    # Given the alarm as a default deploy creates it
    properties = _alarms()[alarm]

    # Then metric, window, threshold, missing-data rule and actions are exactly these, and it
    # notifies the operations topic, never the alert topic (whose subscribers filter on
    # attributes an alarm message does not carry)
    expected = EXPECTED_ALARMS[alarm] | {"AlarmActions": OPERATIONS}
    pinned = {key: properties.get(key) for key in {*expected, "OKActions", "DatapointsToAlarm"}}
    assert pinned == {"OKActions": None, "DatapointsToAlarm": None} | expected


def test_the_stack_has_no_other_alarm_and_nothing_alarms_into_the_alert_topic() -> None:
    assert set(_alarms()) == set(EXPECTED_ALARMS)
    for logical_id, body in load_template()["Resources"].items():
        for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            actions = body.get("Properties", {}).get(key, [])
            assert {"Ref": "Topic"} not in actions, f"{logical_id}.{key}"


@pytest.mark.parametrize("minutes", [1, 2, 3, 5, 15, 60, 480])
def test_schedule_bound_alarms_count_schedule_periods(minutes: int) -> None:
    # Given a schedule of N minutes, as the checker and /health read it
    expression = f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    period = schedule_interval(expression)
    assert period == timedelta(minutes=minutes)
    alarms = _alarms(ScheduleExpression=expression)

    # Then the heartbeat covers exactly two schedule periods, none of them with a good run
    heartbeat = alarms["CheckerHeartbeatAlarm"]
    (period_seconds,) = {
        m["MetricStat"]["Period"] for m in heartbeat["Metrics"] if "MetricStat" in m
    }
    window = timedelta(seconds=period_seconds * int(heartbeat["EvaluationPeriods"]))
    assert window == 2 * period
    assert int(heartbeat["DatapointsToAlarm"]) == int(heartbeat["EvaluationPeriods"])

    # and CloudWatch accepts it: under an hour a period, at most one day of them
    assert period_seconds % 60 == 0
    assert period_seconds * int(heartbeat["EvaluationPeriods"]) <= 86_400


def _heartbeat_periods(invocations: list[int | None], errors: list[int | None]) -> list[float]:
    """The heartbeat's expression evaluated on a 2-minute period's Lambda datapoints (None: no
    datapoint, as CloudWatch has none for a function that was not invoked)."""
    expression = _alarms()["CheckerHeartbeatAlarm"]["Metrics"][-1]["Expression"]
    assert expression == "FILL(runs, 0) - FILL(failed, 0)"  # what is evaluated below

    def fill(value: int | None, default: int) -> int:
        return default if value is None else value

    return [
        fill(runs, 0) - fill(failed, 0) for runs, failed in zip(invocations, errors, strict=True)
    ]


def test_the_heartbeat_counts_runs_that_succeeded() -> None:
    heartbeat = _alarms()["CheckerHeartbeatAlarm"]
    stats = {
        m["Id"]: (m["MetricStat"]["Metric"], m["MetricStat"]["Stat"])
        for m in heartbeat["Metrics"]
        if "MetricStat" in m
    }
    assert stats == {
        "runs": (
            {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": CHECKER},
            "Sum",
        ),
        "failed": (
            {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": CHECKER},
            "Sum",
        ),
    }
    assert [m.get("ReturnData", True) for m in heartbeat["Metrics"]] == [False, False, True]
    # two alarm metrics: what the bill counts (bench/stack.py), where four alarms were four
    metrics = {alarm.logical_id: alarm.metrics for alarm in read_stack().alarms}
    assert metrics["CheckerHeartbeatAlarm"] == 2


@pytest.mark.parametrize(
    ("fan_out", "expected"),
    [
        ("false", {"CheckerHeartbeatAlarm": 2, "SnapshotApiErrorsAlarm": 1}),
        (
            "true",
            {
                "CheckerHeartbeatAlarm": 2,
                "SnapshotApiErrorsAlarm": 1,
                "ShardWorkerErrorsAlarm": 1,
                "WorkDeadLetterQueueAlarm": 1,
            },
        ),
    ],
)
def test_the_bill_counts_each_alarms_metrics_at_standard_resolution(
    fan_out: str, expected: dict[str, int]
) -> None:
    # CloudWatch bills an alarm by the metrics it reads (a metric-math alarm: each MetricStat,
    # not its expressions), $0.10 each a month at periods of a minute or more
    alarms = read_stack({"FanOut": fan_out}).alarms
    assert {alarm.logical_id: alarm.metrics for alarm in alarms} == expected
    assert not any(alarm.high_resolution for alarm in alarms)


# AWS's own pages disagree on whether a successful invocation sends Errors = 0. The Lambda
# Developer Guide, "Types of metrics for Lambda functions" (monitoring-metrics-types.html):
# invocation metrics are "binary indicators of the outcome", "if the function returns an error,
# then Lambda sends the Errors metric with a value of 1" (reading A: a 0 for each success). Its
# earlier "AWS Lambda Metrics" (monitoring-functions-metrics.html, and the CloudWatch User
# Guide's lam-metricscollected.html): "AWS Lambda only sends these metrics to CloudWatch if they
# have a nonzero value" (reading B: no Errors datapoint where every run succeeded). Errors alone
# cannot tell "succeeded" from "did not run" under B (a one-metric FILL(failed, 1) would stay in
# ALARM for good, hiding every real outage after the first), and Invocations alone counts failed
# runs: the heartbeat keeps both, and holds under either reading.
READING_A, READING_B = "Errors 0 sent for a success", "no Errors datapoint for a success"


@pytest.mark.parametrize(
    ("case", "invocations", "errors", "fires"),
    [
        (
            "never invoked (schedule off, throttled, every run in the DLQ)",
            [None] * 5,
            [None] * 5,
            True,
        ),
        ("every run failed", [0, 1, 0, 0, 1], [0, 1, 0, 0, 1], True),
        (
            "every run failed, idle periods without data",
            [None, 1, None, None, 1],
            [None, 1, None, None, 1],
            True,
        ),
        (f"runs succeed, {READING_A}", [0, 1, 0, 0, 1], [0, 0, 0, 0, 0], False),
        (
            f"runs succeed, {READING_A}, idle periods without data",
            [None, 1, None, None, 1],
            [None, 0, None, None, 0],
            False,
        ),
        (f"runs succeed, {READING_B}", [None, 1, None, None, 1], [None] * 5, False),
        (f"one run of two failed, {READING_A}", [0, 1, 0, 0, 1], [0, 1, 0, 0, 0], False),
        (
            f"one run of two failed, {READING_B}",
            [None, 1, None, None, 1],
            [None, 1, None, None, None],
            False,
        ),
    ],
)
def test_the_heartbeat_fires_when_no_run_succeeded_for_two_schedule_periods(
    case: str, invocations: list[int | None], errors: list[int | None], fires: bool
) -> None:
    values = _heartbeat_periods(invocations, errors)
    threshold = _alarms()["CheckerHeartbeatAlarm"]["Threshold"]
    assert all(v < threshold for v in values) is fires, case


@pytest.mark.parametrize(
    "expression", ["rate(1 minute)", "rate(2 minutes)", "rate(60 minutes)", "rate(480 minutes)"]
)
def test_schedules_the_alarms_can_count_are_accepted(expression: str) -> None:
    pattern = load_template()["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, expression)


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 hour)",  # a period the alarms cannot turn into minutes
        "rate(1 minutes)",
        "rate(0 minutes)",
        "rate(481 minutes)",  # three periods would pass CloudWatch's one-day window
        "cron(0/5 * * * ? *)",  # no fixed period at all
        "rate(5 minutes) ",
    ],
)
def test_schedules_the_alarms_cannot_count_are_refused_at_deploy_time(expression: str) -> None:
    pattern = load_template()["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, expression) is None


def test_outputs_name_everything_an_operator_needs() -> None:
    outputs = load_template()["Outputs"]
    assert set(outputs) >= {
        "ApiUrl",
        "TopicArn",
        "OperationsTopicArn",
        "TableName",
        "SecretArn",
        "CheckerFunctionName",
        "DeadLetterQueueUrl",
    }


def test_loader_turns_short_tags_into_long_forms() -> None:
    # The loader is what every template test stands on: check it on the real file's shapes.
    template = load_template()
    assert template["Conditions"]["CreateSecret"] == {
        "Fn::Equals": [{"Ref": "ExistingSecretArn"}, ""]
    }
    assert resource("SnapshotApiIntegration")["Properties"]["IntegrationUri"] == {
        "Fn::GetAtt": ["SnapshotApiFunction", "Arn"]
    }
    # and the copy handed out is the caller's own
    template["Resources"].clear()
    assert load_template()["Resources"]


# ---- TARGETS: refused at deploy time when it cannot work ---------------------------------------
@pytest.mark.parametrize("value", [" ", " , ", ",,", "[]", "[ ]", " [,] "])
def test_a_blank_targets_value_is_refused_at_deploy_time(value: str) -> None:
    """CloudFormation matches AllowedPattern against the whole value (Java regex; these
    constructs read the same in Python). Empty is the registry alone; blank is a slip."""
    pattern = load_template()["Parameters"]["Targets"]["AllowedPattern"]
    assert re.fullmatch(pattern, value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "example.bitrix24.com/myconnector/12",
        "*/myconnector/*",
        " , example.bitrix24.com/myconnector/12",
        '[{"portal": "a.bitrix24.com", "connector": "tg", "line": 3}]',
        "a.bitrix24.com/tg/1,\nb.bitrix24.com/tg/2",
    ],
)
def test_a_targets_value_with_a_target_passes_the_deploy_check(value: str) -> None:
    pattern = load_template()["Parameters"]["Targets"]["AllowedPattern"]
    assert re.fullmatch(pattern, value) is not None


def test_the_longest_targets_value_fits_the_functions_4_kb_environment() -> None:
    """Lambda refuses an environment over 4 KB (names and values); MaxLength fails the deploy
    before that, with the other variables at their longest (a 128-character stack name, the
    longest partition and region, a 200-character secret ARN)."""
    stack, region, account = "s" * 128, "ap-southeast-3", "123456789012"
    longest = {
        "Table": f"{stack}-Table-{'X' * 13}",
        "Topic": f"arn:aws-us-gov:sns:{region}:{account}:{stack}-Topic-{'X' * 12}",
        "PortalSecret": "arn:aws-us-gov:secretsmanager:" + "x" * 170,
        "TokenTable": f"{stack}-TokenTable-{'X' * 13}",
    }
    values = parameter_values(Targets="")
    environment = resolve(function_environment("CheckerFunction"), values)
    others = 0
    for name, value in environment.items():
        if name == "TARGETS":
            continue
        text = value if isinstance(value, str) else longest[value["Ref"]]
        others += len(name) + len(text)
    max_targets = load_template()["Parameters"]["Targets"]["MaxLength"]
    assert others + len("TARGETS") + max_targets <= 4096, others
