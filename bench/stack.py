"""What template.yaml creates with the given parameter values, read from the template itself
for the bill (`bench/cost.py`). Every resource type is either priced or known to cost nothing by
itself; any other is listed as unpriced, so a resource added to the template cannot slip past
the bill unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.template import deployed_resources, load_template, parameter_values

# Resource types that cost nothing by themselves (what they do is priced where it is used).
FREE_TYPES = {
    "AWS::IAM::Role",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::Policy",
    "AWS::Serverless::LayerVersion",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Topic",  # its publishes and deliveries are priced
}
# A deploy as the README recommends it: an alert email (subscribed to both topics).
PRICED_PARAMETERS = {"AlertEmail": "ops@example.com", "Targets": ""}


@dataclass
class Function:
    logical_id: str
    memory_mb: int
    traced: bool
    schedules: int = 0  # EventBridge Scheduler schedules (ScheduleV2 events)
    queues: tuple[str, ...] = ()  # SQS queues it polls (event sources)
    http_api: bool = False  # invoked by the HTTP API


@dataclass(frozen=True)
class Table:
    logical_id: str
    pitr: bool
    kms: bool  # SSEEnabled: under aws/dynamodb, KMS requests; else the AWS owned key, free


@dataclass(frozen=True)
class Alarm:
    logical_id: str
    metrics: int
    high_resolution: bool


@dataclass
class Stack:
    """The priced resources of one deploy."""

    parameters: dict[str, str]
    functions: dict[str, Function] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    email_subscriptions: dict[str, int] = field(default_factory=dict)  # topic -> emails
    queues: list[str] = field(default_factory=list)
    log_groups: dict[str, int | None] = field(default_factory=dict)  # -> retention days
    alarms: list[Alarm] = field(default_factory=list)
    http_apis: list[str] = field(default_factory=list)
    access_logs: dict[str, tuple[str, str]] = field(default_factory=dict)  # api -> (group, fmt)
    unpriced: list[str] = field(default_factory=list)

    @property
    def traced_functions(self) -> list[str]:
        return [f.logical_id for f in self.functions.values() if f.traced]


def _ref(value: Any) -> str | None:
    """The logical id a Ref or Fn::GetAtt names, if it is one."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def read_stack(overrides: Mapping[str, str] | None = None) -> Stack:
    """The priced resources of a deploy with these parameters (defaults, an alert email)."""
    values = parameter_values(**{**PRICED_PARAMETERS, **(overrides or {})})
    globals_ = load_template().get("Globals", {}).get("Function", {})
    stack = Stack(parameters=values)
    resources = deployed_resources(values)
    for logical_id, body in resources.items():
        kind = body["Type"]
        props = body.get("Properties") or {}
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            stack.functions[logical_id] = _function(logical_id, props, globals_, kind)
        elif kind == "AWS::Lambda::EventSourceMapping":
            function, queue = _ref(props.get("FunctionName")), _ref(props.get("EventSourceArn"))
            if function in stack.functions and queue:
                stack.functions[function].queues += (queue,)
        elif kind == "AWS::DynamoDB::Table":
            pitr = props.get("PointInTimeRecoverySpecification") or {}
            sse = props.get("SSESpecification") or {}
            stack.tables[logical_id] = Table(
                logical_id,
                pitr=str(pitr.get("PointInTimeRecoveryEnabled", "false")).lower() == "true",
                kms=str(sse.get("SSEEnabled", "false")).lower() == "true",
            )
        elif kind == "AWS::SecretsManager::Secret":
            stack.secrets.append(logical_id)
        elif kind == "AWS::SNS::Subscription":
            topic = _ref(props.get("TopicArn")) or "?"
            if str(props.get("Protocol", "")).lower() in ("email", "email-json"):
                stack.email_subscriptions[topic] = stack.email_subscriptions.get(topic, 0) + 1
        elif kind == "AWS::SQS::Queue":
            stack.queues.append(logical_id)
        elif kind == "AWS::Logs::LogGroup":
            retention = props.get("RetentionInDays")
            stack.log_groups[logical_id] = _int(retention, 0) or None
        elif kind == "AWS::CloudWatch::Alarm":
            stack.alarms.append(_alarm(logical_id, props))
        elif kind == "AWS::ApiGatewayV2::Api":
            if str(props.get("ProtocolType", "HTTP")).upper() == "HTTP":
                stack.http_apis.append(logical_id)
            else:
                stack.unpriced.append(f"{logical_id} ({kind}, {props.get('ProtocolType')})")
        elif kind == "AWS::Scheduler::Schedule":
            target = _ref((props.get("Target") or {}).get("Arn"))
            if target in stack.functions:
                stack.functions[target].schedules += 1
        elif kind not in FREE_TYPES:
            stack.unpriced.append(f"{logical_id} ({kind})")
    for body in resources.values():
        props = body.get("Properties") or {}
        if body["Type"] == "AWS::ApiGatewayV2::Stage":
            api = _ref(props.get("ApiId"))
            settings = props.get("AccessLogSettings") or {}
            group = _ref(settings.get("DestinationArn"))
            if api and group:
                stack.access_logs[api] = (group, str(settings.get("Format", "")))
        if body["Type"] == "AWS::ApiGatewayV2::Integration":
            function = _ref(props.get("IntegrationUri"))
            if function in stack.functions:
                stack.functions[function].http_api = True
    return stack


def _function(
    logical_id: str, props: Mapping[str, Any], globals_: Mapping[str, Any], kind: str
) -> Function:
    serverless = kind == "AWS::Serverless::Function"  # SAM's Globals apply to these only

    def setting(name: str, default: Any) -> Any:
        return props.get(name, globals_.get(name, default) if serverless else default)

    tracing = setting("Tracing", None)
    if not serverless:
        tracing = (props.get("TracingConfig") or {}).get("Mode")
    schedules, queues = 0, []
    for event in (props.get("Events") or {}).values():
        if event.get("Type") in ("ScheduleV2",):
            schedules += 1
        elif event.get("Type") == "SQS":
            queue = _ref((event.get("Properties") or {}).get("Queue"))
            if queue:
                queues.append(queue)
    return Function(
        logical_id,
        memory_mb=_int(setting("MemorySize", 128), 128),
        traced=str(tracing).lower() == "active",
        schedules=schedules,
        queues=tuple(queues),
    )


def _alarm(logical_id: str, props: Mapping[str, Any]) -> Alarm:
    metrics = props.get("Metrics")
    count = sum(1 for m in metrics if "MetricStat" in m) if isinstance(metrics, list) else 1
    periods = [_int(props.get("Period"), 60)]
    if isinstance(metrics, list):
        periods += [_int((m.get("MetricStat") or {}).get("Period"), 60) for m in metrics]
    return Alarm(logical_id, max(1, count), high_resolution=min(periods) < 60)


SAMPLE_CONTEXT = {  # an access log line's values for one signed GET /health, typical lengths
    "requestId": "AbCdEfGhIjKlMnO=",
    "identity.sourceIp": "203.0.113.10",
    "identity.caller": "AIDAJQABLZS4A3QDU576Q",
    "identity.userArn": "arn:aws:iam::123456789012:user/dashboard",
    "authorizer.claims.sub": "-",
    "requestTime": "30/Nov/2026:12:00:05 +0000",
    "routeKey": "GET /health",
    "status": "200",
    "responseLatency": "48",
    "error.message": "-",
}


def access_log_line(fmt: str) -> str:
    """The access log line the stage's Format gives one GET /health (sample values)."""
    line = re.sub(r"\$context\.([A-Za-z.]+)", lambda m: SAMPLE_CONTEXT.get(m[1], "-"), fmt.strip())
    return " ".join(line.split())
