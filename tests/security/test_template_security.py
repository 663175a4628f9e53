"""Who can do what once template.yaml is deployed, in every way it can be deployed.

test_template.py checks each function's own statements as written. These tests look at the stack
as a whole and per deploy mode (IAM or JWT API, created or existing secret, with or without an
alert email), so a new policy, route, queue or function cannot quietly widen access:

- who holds each sensitive permission (write the secret, publish alerts, write the table, call
  the API), and that every grant names one of the stack's own resources;
- a role per function that only Lambda may assume, no managed policy, logs only to the
  function's own log group;
- statements without loopholes (NotAction, NotResource, `?` globs, public principals);
- no way into the API or a function around the authorised routes (catch-all routes, implicit
  SAM APIs, function URLs, open invoke permissions);
- encryption at rest for every store, nothing secret in parameters, environment, traces or the
  access log;
- cfn-lint (the linter `make sam` runs through `sam validate --lint`) finds nothing.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from local.template import (
    TEMPLATE_PATH,
    deployed_resources,
    function_environment,
    load_template,
    parameter_values,
)

# Deploy modes: parameter overrides on top of the template's defaults.
MODES: dict[str, dict[str, str]] = {
    "defaults (IAM API, created secret)": {},
    "JWT API": {
        "ApiAuthorization": "JWT",
        "JwtIssuer": "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Example",
        "JwtAudience": "example-client-id",
    },
    "existing secret, alert email": {
        "ExistingSecretArn": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:b24-AbCdEf",
        "AlertEmail": "ops@example.com",
    },
    "fleet (fan-out)": {"FanOut": "true"},
}
CHECKER = "CheckerFunction"
WORKER = "ShardWorkerFunction"
SNAPSHOT = "SnapshotApiFunction"
INBOUND = "InboundFunction"
INBOUND_TOKEN_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
}
READER_POLICY = "SnapshotReaderPolicy"
REGISTRY_POLICY = "RegistryEditorPolicy"
SILENCE_POLICY = "SilenceEditorPolicy"
REGISTRY_WRITES = {"dynamodb:PutItem", "dynamodb:DeleteItem"}
TABLE_READS = {"dynamodb:GetItem", "dynamodb:Query"}
# Transactions of conditional puts are authorised per item as dynamodb:PutItem.
TABLE_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
}
LOG_WRITES = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Actions that may stand on Resource "*": X-Ray has no resource-level permissions.
WILDCARD_RESOURCE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# Stores left unencrypted on purpose, with the reason (template.yaml says the same).
UNENCRYPTED_TOPICS = {
    "Topic": "alert messages carry names, never credentials (test_no_secrets_anywhere.py reads "
    "every one); a customer-managed key would cost more than the stack",
    "OperationsTopic": "CloudWatch alarms cannot publish to a topic under the AWS-managed SNS "
    "key; alarm messages name the stack's resources",
}
# Tables that hold credentials (every portal's OAuth pair): under KMS. The state table holds
# none (test_no_secrets_anywhere.py scans its every item): DynamoDB's AWS owned key.
CREDENTIAL_TABLES = {"TokenTable"}
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
SENSITIVE_NAME = re.compile(r"secret|token|password|passwd|credential|private|apikey", re.I)
ROUTE_AUTHORIZATION = {"AWS_IAM", "JWT"}


# ---- the template as CloudFormation would deploy it ----------------------------------------
def deployed(mode: str) -> dict[str, dict[str, Any]]:
    """The resources (conditions applied, intrinsics resolved) of one deploy mode."""
    return deployed_resources(parameter_values(**MODES[mode]))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement under `node`."""
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list):
            yield from node["Statement"]
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)


def role_users(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Role -> the function that runs as it (a function's grants live in its role)."""
    users = {}
    for logical_id, body in resources.items():
        role = (
            body.get("Properties", {}).get("Role") if body["Type"].endswith("::Function") else None
        )
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            users[role["Fn::GetAtt"][0]] = logical_id
    return users


def grants(resources: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, Any]]:
    """(principal, action, resource) for every Allow of an identity policy in the stack; a
    function's role counts as the function."""
    users = role_users(resources)
    for logical_id, body in resources.items():
        properties = body.get("Properties", {})
        if body["Type"] == "AWS::Serverless::Function":
            documents: Any = properties.get("Policies", [])
        elif body["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents = properties["PolicyDocument"]
        elif body["Type"] == "AWS::IAM::Role":
            documents = [properties.get("Policies", []), properties.get("ManagedPolicyArns", [])]
        else:
            continue
        for statement in statements(documents):
            if statement.get("Effect") != "Allow":
                continue
            for action in as_list(statement.get("Action", [])):
                for target in as_list(statement.get("Resource", [])):
                    yield users.get(logical_id, logical_id), action, target


def holders(mode: str) -> dict[str, set[str]]:
    """Action -> the principals granted it, in one deploy mode."""
    found: dict[str, set[str]] = {}
    for principal, action, _ in grants(deployed(mode)):
        found.setdefault(action, set()).add(principal)
    return found


def own_resource_reference(target: Any, resources: dict[str, Any], mode: str) -> bool:
    """Does `target` name one of this stack's resources (or the operator's own secret)?"""
    if isinstance(target, dict) and "Fn::GetAtt" in target:
        name, attribute = target["Fn::GetAtt"]
        return name in resources and attribute == "Arn"
    if isinstance(target, dict) and "Ref" in target:
        return target["Ref"] in resources
    if isinstance(target, dict) and "Fn::Sub" in target:
        # an execute-api ARN of this stack's API: stage and route may vary, the API may not
        text = target["Fn::Sub"]
        return isinstance(text, str) and bool(
            re.fullmatch(
                r"arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                r"\$\{HttpApi\}/\*/(GET/snapshot(/\*)?|GET/health|GET/history/\*|GET/"
                r"|GET/registry"
                r"|(PUT|DELETE)/registry/\*|(GET|POST)/silences|DELETE/silences/\*"
                r"|POST/acknowledgements/\*)",
                text,
            )
        )
    return target == MODES[mode].get("ExistingSecretArn")


# ---- least privilege, as a whole -------------------------------------------------------------
def expected_holders(mode: str) -> dict[str, set[str]]:
    checkers = {CHECKER, WORKER} if MODES[mode].get("FanOut") == "true" else {CHECKER}
    expected = {action: set(checkers) for action in TABLE_WRITES}
    for action in REGISTRY_WRITES:  # the API's, on REGISTRY items only (test_template.py)
        expected[action] = {*checkers, SNAPSHOT}
    expected |= {action: {*checkers, SNAPSHOT} for action in TABLE_READS}
    # the API's acknowledgements: STATE items' acked_* attributes only (test_template.py)
    expected["dynamodb:UpdateItem"] = {*checkers, SNAPSHOT}
    for action in INBOUND_TOKEN_ACTIONS:  # on the token table only (test_template.py)
        expected[action] = {*expected[action], INBOUND}
    expected["secretsmanager:GetSecretValue"] = {*checkers, INBOUND}  # the inbound: apps only
    expected["secretsmanager:PutSecretValue"] = set(checkers)
    expected["sns:Publish"] = {*checkers, INBOUND}  # the inbound: the uninstall notice
    expected["sqs:SendMessage"] = {CHECKER}  # shard orders: the planner alone
    if WORKER in checkers:
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
            expected[action] = {WORKER}
    expected |= {
        action: {*checkers, SNAPSHOT, INBOUND} for action in LOG_WRITES | WILDCARD_RESOURCE_ACTIONS
    }
    expected["execute-api:Invoke"] = {REGISTRY_POLICY, SILENCE_POLICY}
    if parameter_values(**MODES[mode])["ApiAuthorization"] == "IAM":
        expected["execute-api:Invoke"].add(READER_POLICY)
    return expected


@pytest.mark.parametrize("mode", MODES)
def test_each_sensitive_permission_is_held_by_exactly_who_needs_it(mode: str) -> None:
    # Given the stack as this mode deploys it, every principal's grants
    granted = holders(mode)

    # Then: only the checker reads or writes the secret, publishes alerts and writes the table;
    # the snapshot function only reads the table; each function writes logs and traces; only
    # the reader policy may call the API (IAM mode); nobody can Scan, and nothing else is
    # granted at all (no invented action such as dynamodb:TransactWriteItems either).
    assert granted == expected_holders(mode)
    assert "dynamodb:Scan" not in granted
    assert SNAPSHOT not in granted["secretsmanager:GetSecretValue"]


@pytest.mark.parametrize("mode", MODES)
def test_each_function_writes_only_its_own_log_group(mode: str) -> None:
    resources = deployed(mode)
    log_group_of = {
        name: body["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for name, body in resources.items()
        if body["Type"] == "AWS::Serverless::Function"
    }
    checked = 0
    for principal, action, target in grants(resources):
        if action.startswith("logs:"):
            assert action in LOG_WRITES, f"{principal}: {action}"
            assert target == {"Fn::GetAtt": [log_group_of[principal], "Arn"]}, principal
            checked += 1
    assert checked == 2 * len(log_group_of)


def test_no_role_takes_a_managed_policy_and_only_lambda_assumes_the_functions_roles() -> None:
    resources = load_template()["Resources"]
    roles = {k: b["Properties"] for k, b in resources.items() if b["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(role_users(resources))  # a role per function, nothing else
    for logical_id, role in roles.items():
        assert "ManagedPolicyArns" not in role, logical_id  # e.g. AWSLambdaBasicExecutionRole
        assert "PermissionsBoundary" not in role, logical_id
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust == {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }, logical_id


@pytest.mark.parametrize("mode", MODES)
def test_every_grant_names_a_specific_action_on_one_of_the_stacks_own_resources(
    mode: str,
) -> None:
    resources = deployed(mode)
    seen = 0
    for principal, action, target in grants(resources):
        seen += 1
        assert ACTION.fullmatch(action), f"{principal}: {action!r} is not one specific action"
        if target == "*":
            assert action in WILDCARD_RESOURCE_ACTIONS, f"{principal}: {action} on every resource"
            continue
        assert own_resource_reference(target, resources, mode), f"{principal}: {action} {target}"
        if action.startswith("dynamodb:"):
            tables = [{"Fn::GetAtt": [t, "Arn"]} for t in ("Table", "TokenTable")]
            assert target in tables, f"{principal}: {action} {target}"
            if target == tables[1] and principal == INBOUND:  # installs: token items only
                assert action in INBOUND_TOKEN_ACTIONS, f"{principal}: {action} on the tokens"
            elif target == tables[1]:  # the fleet's token pairs: else the checker's alone
                assert principal in {CHECKER, WORKER}, f"{principal}: {action} on the tokens"
                assert action in {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}
    assert seen >= 19


def identity_statements(resources: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements that grant (policies), not the trust policies saying who may be a role."""
    for body in resources.values():
        properties = dict(body.get("Properties", {}))
        properties.pop("AssumeRolePolicyDocument", None)
        yield from statements(properties)


def test_statements_have_no_negations_wildcard_globs_or_public_principals() -> None:
    found = list(identity_statements(load_template()["Resources"]))
    assert len(found) >= 8
    for statement in found:
        assert set(statement) <= STATEMENT_KEYS, f"{sorted(statement)}: Not*/Principal loophole"
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, action
    # resource policies (bucket, topic, queue, secret...) would carry a Principal: none is public
    text = json.dumps(load_template()["Resources"])
    assert '"Principal": "*"' not in text
    assert '"AWS": "*"' not in text


# ---- the way in ------------------------------------------------------------------------------
def invocable_routes(mode: str, policy: str) -> set[str]:
    """The API's routes (`GET /snapshot`, ...) a holder of `policy` may call: each route's
    execute-api ARN (stage, method, a path for it) matched as IAM matches a Resource (`*` spans
    any characters, `/` included) against the policy's `execute-api:Invoke` grants."""
    resources = deployed(mode)
    routes = [
        b["Properties"]["RouteKey"]
        for b in resources.values()
        if b["Type"] == "AWS::ApiGatewayV2::Route" and not inbound_route(b)
    ]
    granted = [
        target["Fn::Sub"].split("${HttpApi}/", 1)[1]
        for principal, action, target in grants(resources)
        if principal == policy and action == "execute-api:Invoke"
    ]
    reachable = set()
    for route in routes:
        method, path = route.split(" ", 1)
        concrete = re.sub(r"\{[^}]+\}", "example", path)  # a request the route answers
        arn_tail = f"$default/{method}{concrete}"
        if any(fnmatch.fnmatchcase(arn_tail, pattern) for pattern in granted):
            reachable.add(route)
    return reachable


@pytest.mark.parametrize(
    "mode", [m for m in MODES if parameter_values(**MODES[m])["ApiAuthorization"] == "IAM"]
)
def test_the_reader_policy_reaches_the_snapshot_and_health_routes_and_not_the_registry(
    mode: str,
) -> None:
    # GET /registry lists who edited the registry (their IAM ARNs): it is an editor's route,
    # never a snapshot reader's.
    assert invocable_routes(mode, READER_POLICY) == {
        "GET /snapshot",
        "GET /snapshot/{portal}/{connector}/{line}",
        "GET /health",
        "GET /history/{portal}",
        "GET /history/{portal}/{connector}/{line}",
        "GET /",
    }
    assert invocable_routes(mode, REGISTRY_POLICY) == {
        "GET /registry",
        "PUT /registry/{portal}/{connector}/{line}",
        "DELETE /registry/{portal}/{connector}/{line}",
        "PUT /registry/labels/{portal}",
    }
    assert invocable_routes(mode, SILENCE_POLICY) == {
        "GET /silences",
        "POST /silences",
        "DELETE /silences/{silence_id}",
        "POST /acknowledgements/{portal}/{connector}/{line}",
    }


def inbound_route(body: dict[str, Any]) -> bool:
    """A route of the inbound API (Bitrix24's install and events: open by necessity)."""
    return bool(body["Properties"].get("ApiId") == {"Ref": "InboundApi"})


@pytest.mark.parametrize("mode", MODES)
def test_the_only_open_routes_are_the_inbound_ones_behind_the_stack_key(mode: str) -> None:
    resources = deployed(mode)
    open_routes = {
        k: b["Properties"]
        for k, b in resources.items()
        if b["Type"].endswith("::Route") and b["Properties"].get("AuthorizationType") == "NONE"
    }
    assert set(open_routes) == {"InstallRoute", "EventsRoute", "AuthorizedRoute"}
    for logical_id, route in open_routes.items():
        assert inbound_route(resources[logical_id]), logical_id
        template, names = route["RouteKey"]["Fn::Sub"]
        assert template in {
            "POST /app/${Key}/install",
            "POST /app/${Key}/events",
            "GET /app/${Key}/authorized",
        }, logical_id
        # the stack id's random part: no caller can list or guess it
        assert names == {"Key": {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}}
    # nothing else is on the inbound API
    on_inbound = {
        k for k, b in resources.items() if b["Type"].endswith("::Route") and inbound_route(b)
    }
    assert on_inbound == set(open_routes)


@pytest.mark.parametrize("mode", MODES)
def test_no_route_is_open_and_no_catch_all_route_exists(mode: str) -> None:
    resources = deployed(mode)
    routes = {
        k: b["Properties"]
        for k, b in resources.items()
        if b["Type"].endswith("::Route") and not inbound_route(b)
    }
    authorizers = {k for k, b in resources.items() if b["Type"].endswith("::Authorizer")}
    assert routes
    for logical_id, route in routes.items():
        # a Route without AuthorizationType is NONE: open to the internet
        assert route.get("AuthorizationType") in ROUTE_AUTHORIZATION, logical_id
        if route["AuthorizationType"] == "JWT":
            assert route["AuthorizerId"]["Ref"] in authorizers, logical_id
        method, path = route["RouteKey"].split(" ", 1) if " " in route["RouteKey"] else ("", "")
        if method in {"PUT", "POST", "DELETE"}:  # registry and silences, only IAM-signed
            assert path in {
                "/registry/{portal}/{connector}/{line}",
                "/registry/labels/{portal}",
                "/silences",
                "/silences/{silence_id}",
                "/acknowledgements/{portal}/{connector}/{line}",
            }, logical_id
            assert route["AuthorizationType"] == "AWS_IAM", logical_id
            continue
        assert method == "GET", f"{logical_id}: {route['RouteKey']} (catch-all or not GET)"


def test_the_api_has_no_quick_create_route_or_inline_definition() -> None:
    # Quick create (Target, RouteKey) makes an unauthorised $default route; a Body or an
    # imported definition can declare routes the Route resources above never show.
    for logical_id, body in load_template()["Resources"].items():
        if body["Type"] == "AWS::ApiGatewayV2::Api":
            loose = {"Target", "RouteKey", "Body", "BodyS3Location", "CredentialsArn"}
            assert not loose & set(body["Properties"]), logical_id
        assert body["Type"] not in {
            "AWS::Serverless::Api",
            "AWS::Serverless::HttpApi",
            "AWS::ApiGateway::RestApi",
            "AWS::Lambda::Url",
        }, f"{logical_id}: another way in ({body['Type']})"


def test_no_function_has_a_url_or_an_implicit_api_event() -> None:
    template = load_template()
    assert "FunctionUrlConfig" not in template["Globals"]["Function"]
    for logical_id, body in template["Resources"].items():
        if body["Type"] != "AWS::Serverless::Function":
            continue
        properties = body["Properties"]
        assert "FunctionUrlConfig" not in properties, logical_id
        # An Api or HttpApi event makes SAM create an API with no authoriser of ours.
        for name, event in properties.get("Events", {}).items():
            assert event["Type"] not in {"Api", "HttpApi"}, f"{logical_id}.{name}"


def test_only_this_apis_get_registry_and_silence_routes_may_invoke_a_function() -> None:
    permissions = {
        k: b["Properties"]
        for k, b in load_template()["Resources"].items()
        if b["Type"] == "AWS::Lambda::Permission"
    }
    assert permissions
    for logical_id, permission in permissions.items():
        assert permission["Action"] == "lambda:InvokeFunction", logical_id
        assert permission["Principal"] == "apigateway.amazonaws.com", logical_id
        assert "FunctionUrlAuthType" not in permission, logical_id
        source = permission["SourceArn"]["Fn::Sub"]  # without it any API in any account could
        if logical_id == "InboundInvokePermission":  # the inbound API's /app/ routes
            assert permission["FunctionName"] == {"Ref": INBOUND}
            assert source.endswith(":${AWS::AccountId}:${InboundApi}/*/*/app/*")
            continue
        assert ":${AWS::AccountId}:${HttpApi}/" in source, logical_id
        assert source.split("${HttpApi}")[1] in {
            "/*/GET/*",
            "/*/PUT/registry/*",
            "/*/DELETE/registry/*",
            "/*/POST/silences",
            "/*/DELETE/silences/*",
            "/*/POST/acknowledgements/*",
        }, logical_id


# ---- data at rest, and what must never be written down --------------------------------------
def test_every_store_is_encrypted_at_rest() -> None:
    resources = load_template()["Resources"]
    kinds = {b["Type"] for b in resources.values()}
    assert {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic"} <= kinds
    for logical_id, body in resources.items():
        properties = body.get("Properties", {})
        if body["Type"] == "AWS::DynamoDB::Table":
            # DynamoDB encrypts every table at rest, under an AWS owned key unless SSEEnabled
            # asks for KMS (CloudFormation User Guide, "AWS::DynamoDB::Table SSESpecification");
            # a table with credentials in it must be under KMS, whose use CloudTrail records
            sse = properties["SSESpecification"]
            if logical_id in CREDENTIAL_TABLES:
                assert sse == {"SSEEnabled": True, "SSEType": "KMS"}, logical_id
            else:
                assert sse == {"SSEEnabled": False}, logical_id
            assert properties["PointInTimeRecoverySpecification"] == {
                "PointInTimeRecoveryEnabled": True
            }, logical_id
        elif body["Type"] == "AWS::SQS::Queue":
            encrypted = properties.get("SqsManagedSseEnabled") is True
            assert encrypted or "KmsMasterKeyId" in properties, logical_id
        elif body["Type"] == "AWS::SNS::Topic" and "KmsMasterKeyId" not in properties:
            assert logical_id in UNENCRYPTED_TOPICS, f"{logical_id}: unencrypted topic"


def test_no_parameter_or_environment_variable_carries_a_secret() -> None:
    template = load_template()
    for name, spec in template["Parameters"].items():
        if SENSITIVE_NAME.search(name) and not name.endswith("Arn"):
            assert spec.get("NoEcho") is True, f"parameter {name} would show in the console"
    for function in (CHECKER, WORKER, SNAPSHOT, INBOUND):
        for name, value in function_environment(function).items():
            if SENSITIVE_NAME.search(name):
                # only a reference to where the secret lives, never the secret itself
                assert name in {"SECRET_ID", "TOKENS_TABLE"}, f"{function}: {name}"
                assert isinstance(value, dict), f"{function}: {name} is a literal"
    for name in ("SECRET_ID", "TOKENS_TABLE"):  # the API never learns where tokens live
        assert name not in function_environment(SNAPSHOT)


def test_traces_and_logs_are_not_configured_to_record_payloads() -> None:
    for function in (CHECKER, WORKER, SNAPSHOT, INBOUND):
        environment = function_environment(function)
        assert environment.get("POWERTOOLS_TRACER_CAPTURE_RESPONSE") == "false", function
        assert environment.get("POWERTOOLS_LOGGER_LOG_EVENT", "false") == "false", function
        # DEBUG would print request and response bodies of every SDK and HTTP call
        for variable in ("POWERTOOLS_LOG_LEVEL", "LOG_LEVEL"):
            assert str(environment.get(variable, "INFO")).upper() != "DEBUG", function
    logging_config = load_template()["Globals"]["Function"]["LoggingConfig"]
    assert logging_config.get("ApplicationLogLevel", "INFO") != "DEBUG"


def test_the_api_access_log_records_no_credentials() -> None:
    stage = load_template()["Resources"]["HttpApiStage"]["Properties"]
    log_format = stage["AccessLogSettings"]["Format"]
    fields = json.loads(log_format)
    # the caller's identity is logged; its Authorization header, JWT and query string are not
    assert not re.search(r"\$request\.|authorization|\.token|querystring", log_format, re.I)
    assert {"requestId", "routeKey", "status"} <= set(fields)


# ---- the linter ----------------------------------------------------------------------------
def test_cfn_lint_finds_nothing() -> None:
    if importlib.util.find_spec("cfnlint") is None:
        pytest.skip("cfn-lint is not installed in this venv (`make sam` lints in CI)")
    from cfnlint.api import ManualArgs, lint

    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    config = ManualArgs(regions=["eu-central-1", "us-east-1"])

    matches = lint(text, config=config)
    assert [f"{m.rule.id} {m.rule.severity}: {m.message}" for m in matches] == []

    # and the linter does look at this template: a dangling reference is caught
    broken = text.replace("!GetAtt SnapshotApiFunction.Arn", "!GetAtt NoSuchFunction.Arn", 1)
    assert broken != text
    assert any(m.rule.id.startswith("E") for m in lint(broken, config=config))
