"""What template.yaml promises operators: least privilege, an authorised API, logs that expire,
a table that keeps its data, and the configuration the handlers read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import annotated_types
import boto3
import pytest
from moto import mock_aws
from pydantic import BaseModel

from connector_monitor.settings import CheckerSettings, SnapshotSettings, load_settings
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

# Resources that may stand as "*" because the service has no resource-level permission for the
# action. Empty today: X-Ray comes from `Tracing: Active` and metrics go out as EMF log lines,
# so no PutMetricData permission is needed at all.
WILDCARD_RESOURCE_ALLOWED: dict[str, set[str]] = {}

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

CHECKER_TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:ConditionCheckItem",
}
API_ROUTES = {"GET /snapshot", "GET /snapshot/{portal}/{connector}/{line}", "GET /health"}


# ------------------------------------------------------------------ helpers


def _resources_of_type(type_name: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: body
        for logical_id, body in load_template()["Resources"].items()
        if body["Type"] == type_name
    }


def _functions() -> dict[str, dict[str, Any]]:
    return _resources_of_type("AWS::Serverless::Function")


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
    return [statement for _, statement in _iam_statements(resource(logical_id)["Properties"])]


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


def test_functions_use_explicit_statements_not_broad_policy_templates() -> None:
    # DynamoDBCrudPolicy and friends include Scan and more than the handlers need.
    for logical_id, body in _functions().items():
        for policy in body["Properties"].get("Policies", []):
            assert isinstance(policy, dict), f"{logical_id}: managed policy {policy!r}"
            assert "Statement" in policy, f"{logical_id}: policy template {sorted(policy)}"


def test_checker_reaches_only_its_table_topic_and_secret() -> None:
    statements = _statements_of("CheckerFunction")

    by_resource = {
        json.dumps(s["Resource"], sort_keys=True): _as_list(s["Action"]) for s in statements
    }
    table = json.dumps({"Fn::GetAtt": ["Table", "Arn"]}, sort_keys=True)
    topic = json.dumps({"Ref": "Topic"}, sort_keys=True)
    secret = json.dumps(
        {"Fn::If": ["CreateSecret", {"Ref": "PortalSecret"}, {"Ref": "ExistingSecretArn"}]},
        sort_keys=True,
    )
    assert set(by_resource) == {table, topic, secret}
    assert set(by_resource[table]) == CHECKER_TABLE_ACTIONS
    assert by_resource[topic] == ["sns:Publish"]
    assert set(by_resource[secret]) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    }


def test_nothing_can_scan_the_history() -> None:
    every_action = _actions([s for _, s in _iam_statements(load_template()["Resources"])])
    assert "dynamodb:Scan" not in every_action


def test_snapshot_api_can_only_read_the_table() -> None:
    statements = _statements_of("SnapshotApiFunction")
    assert _actions(statements) == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}
    assert all(s["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]} for s in statements)


# ------------------------------------------------------------------ the HTTP API


def test_every_api_route_requires_iam_signing_by_default() -> None:
    # Given a deploy with default parameters
    deployed = deployed_resources(parameter_values())
    routes = {
        b["Properties"]["RouteKey"]: b for b in deployed.values() if b["Type"].endswith("Route")
    }

    # Then the three routes exist and each one demands SigV4 (AWS_IAM), none is open
    assert set(routes) == API_ROUTES
    for route_key, route in routes.items():
        assert route["Properties"]["AuthorizationType"] == "AWS_IAM", route_key
        assert route["Properties"]["AuthorizerId"] == {"Ref": "AWS::NoValue"}, route_key
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

    # Then every route uses the JWT authorizer, which checks that issuer and audience
    authorizer = deployed["HttpApiJwtAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"]["Issuer"] == parameters["JwtIssuer"]
    assert authorizer["JwtConfiguration"]["Audience"] == [parameters["JwtAudience"]]
    routes = [b for b in deployed.values() if b["Type"] == "AWS::ApiGatewayV2::Route"]
    assert len(routes) == len(API_ROUTES)
    for route in routes:
        assert route["Properties"]["AuthorizationType"] == "JWT"
        assert route["Properties"]["AuthorizerId"] == {"Ref": "HttpApiJwtAuthorizer"}


def test_jwt_mode_is_refused_without_issuer_and_audience() -> None:
    rule = load_template()["Rules"]["JwtNeedsIssuerAndAudience"]
    parameters = parameter_values(ApiAuthorization="JWT")
    assert resolve(rule["RuleCondition"], parameters) is True
    assert [resolve(a["Assert"], parameters) for a in rule["Assertions"]] == [False, False]


def test_api_routes_reach_the_snapshot_function_and_only_by_get() -> None:
    integration = resource("SnapshotApiIntegration")["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["SnapshotApiFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    for logical_id, route in _resources_of_type("AWS::ApiGatewayV2::Route").items():
        assert route["Properties"]["Target"] == {
            "Fn::Sub": "integrations/${SnapshotApiIntegration}"
        }
        assert route["Properties"]["RouteKey"].startswith("GET "), logical_id
    permission = resource("SnapshotApiInvokePermission")["Properties"]
    assert permission["SourceArn"]["Fn::Sub"].endswith("${HttpApi}/*/GET/*")


def test_api_url_output_points_at_the_default_stage() -> None:
    outputs = load_template()["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
    }
    assert resource("HttpApiStage")["Properties"]["StageName"] == "$default"


# ------------------------------------------------------------------ build and runtime


@pytest.mark.parametrize("logical_id", ["MonitorLayer", "CheckerFunction", "SnapshotApiFunction"])
def test_sam_builds_each_artifact_with_its_own_makefile_target(logical_id: str) -> None:
    body = resource(logical_id)
    assert body["Metadata"]["BuildMethod"] == "makefile"
    source = body["Properties"].get("CodeUri") or body["Properties"]["ContentUri"]
    makefile = (REPO_ROOT / source / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^build-{logical_id}:", makefile, re.MULTILINE), f"{source}/Makefile"


def test_functions_run_python313_on_arm64_with_the_layer_and_tracing() -> None:
    function_globals = load_template()["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
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
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


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
    ("alarm", "metric"),
    [
        ("CheckerErrorsAlarm", "Errors"),
        ("CheckerThrottlesAlarm", "Throttles"),
        ("DeadLetterQueueAlarm", "ApproximateNumberOfMessagesVisible"),
    ],
)
def test_operational_alarms_notify_the_alert_topic(alarm: str, metric: str) -> None:
    properties = resource(alarm)["Properties"]
    assert properties["MetricName"] == metric
    assert properties["Threshold"] == 1
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert properties["AlarmActions"] == [{"Ref": "Topic"}]


def test_outputs_name_everything_an_operator_needs() -> None:
    outputs = load_template()["Outputs"]
    assert set(outputs) >= {
        "ApiUrl",
        "TopicArn",
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
@pytest.mark.parametrize("value", ["", " ", " , ", ",,", "[]", "[ ]", " [,] "])
def test_an_empty_targets_value_is_refused_at_deploy_time(value: str) -> None:
    """CloudFormation matches AllowedPattern against the whole value (Java regex; these
    constructs read the same in Python)."""
    pattern = load_template()["Parameters"]["Targets"]["AllowedPattern"]
    assert re.fullmatch(pattern, value) is None


@pytest.mark.parametrize(
    "value",
    [
        "example.bitrix24.com/myconnector/12",
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
