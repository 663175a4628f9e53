"""Reads template.yaml, CloudFormation short tags included, so tests build on the real template.

Tests that need the DynamoDB table create it from `table_definition()`, so the table in moto and
the table CloudFormation deploys cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
TABLE_LOGICAL_ID = "Table"


class _CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that also reads `!Ref`, `!Sub`, `!GetAtt`, `!If`, `!Equals` and the rest."""


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")

    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # `!GetAtt Table.Arn` is the short form of {"Fn::GetAtt": ["Table", "Arn"]}.
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


@cache
def _parsed_template() -> dict[str, Any]:
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    # A SafeLoader subclass: plain data plus the CloudFormation tags, no arbitrary objects.
    document = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506
    if not isinstance(document, dict):
        raise TypeError(f"{TEMPLATE_PATH} is not a YAML mapping")
    return document


def load_template() -> dict[str, Any]:
    """The whole template as plain data; short tags become their long `Fn::` / `Ref` forms."""
    return copy.deepcopy(_parsed_template())


def resource(logical_id: str) -> dict[str, Any]:
    """One resource of the template (Type, Properties, Metadata...)."""
    resources: dict[str, Any] = load_template()["Resources"]
    if logical_id not in resources:
        raise KeyError(f"template.yaml has no resource {logical_id!r}")
    found: dict[str, Any] = resources[logical_id]
    return found


def table_definition(logical_id: str = TABLE_LOGICAL_ID) -> dict[str, Any]:
    """Keyword arguments for `dynamodb.create_table(TableName=..., **table_definition())`.

    KeySchema, AttributeDefinitions and BillingMode (and any GlobalSecondaryIndexes) exactly as
    the template declares them, for the state table or another (`TokenTable`).
    """
    properties = resource(logical_id)["Properties"]
    wanted = ("KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes")
    return {key: properties[key] for key in wanted if key in properties}


def ttl_attribute() -> str:
    """The attribute DynamoDB expires items by (TimeToLiveSpecification.AttributeName)."""
    name: str = resource(TABLE_LOGICAL_ID)["Properties"]["TimeToLiveSpecification"]["AttributeName"]
    return name


def function_environment(logical_id: str) -> dict[str, Any]:
    """A function's environment variables as written in the template (intrinsics unresolved)."""
    properties = resource(logical_id)["Properties"]
    variables: dict[str, Any] = properties.get("Environment", {}).get("Variables", {})
    return variables


# What differs off AWS: no X-Ray daemon to send traces to.
OFF_AWS = {"POWERTOOLS_TRACE_DISABLED": "true"}


def environment_of(
    logical_id: str,
    *,
    resources: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A function's environment as Lambda would see it, from template.yaml itself: the
    parameters (defaults, then `parameters`) and the stack's `resources` (logical id -> name or
    ARN) resolved, then `extra` for running off AWS (which may also stand for a value only
    CloudFormation computes, such as a URL built from the stack id). The one description of it
    that the local run, the tests and the benchmark share."""
    values = {**parameter_values(**(parameters or {})), **resources}
    resolved = resolve(function_environment(logical_id), values)
    environment: dict[str, str] = {}
    for name, value in resolved.items():
        if name in (extra or {}):
            continue
        if not isinstance(value, str):
            raise ValueError(f"{logical_id}: {name} is not resolved ({value!r}): name its resource")
        environment[name] = value
    return {**environment, **OFF_AWS, **(extra or {})}


def parameter_values(**overrides: str) -> dict[str, str]:
    """Parameter values of a deploy: the template's defaults, a sample `Targets`, overrides."""
    declared = load_template()["Parameters"]
    values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    values["Targets"] = "example.bitrix24.com/myconnector/12"
    values.update(overrides)
    return values


def resolve(node: Any, values: dict[str, str]) -> Any:
    """Resolve Ref-to-parameter, conditions, Fn::Equals/Not/And/Or and Fn::If the way
    CloudFormation would with these parameter values; `AWS::NoValue` drops its key."""
    conditions = _parsed_template().get("Conditions", {})

    def walk(item: Any) -> Any:
        if isinstance(item, list):
            return [walk(each) for each in item]
        if not isinstance(item, dict):
            return item
        if len(item) == 1:
            ((key, argument),) = item.items()
            if key == "Ref" and argument in values:
                return values[argument]
            if key == "Condition":
                return walk(conditions[argument])
            if key == "Fn::Equals":
                left, right = (walk(each) for each in argument)
                return left == right
            if key == "Fn::Not":
                return not walk(argument[0])
            if key == "Fn::And":
                return all(walk(each) for each in argument)
            if key == "Fn::Or":
                return any(walk(each) for each in argument)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return walk(when_true if walk(conditions[name]) else when_false)
        return {k: walk(v) for k, v in item.items() if v != {"Ref": "AWS::NoValue"}}

    return walk(node)


def deployed_resources(values: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The resources a deploy with these parameter values creates, intrinsics resolved."""
    conditions = _parsed_template().get("Conditions", {})
    found = {}
    for logical_id, body in _parsed_template()["Resources"].items():
        condition = body.get("Condition")
        if condition is None or resolve(conditions[condition], values):
            found[logical_id] = resolve(body, values)
    return found
