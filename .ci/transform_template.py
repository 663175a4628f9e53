"""Write template.yaml as CloudFormation receives it: after the SAM transform, as JSON.

    .venv-tools/bin/python .ci/transform_template.py template.yaml .aws-sam/transformed.json

Linters read the result, not the SAM template: cfn-lint no longer expands SAM resources itself,
so the roles, policies and schedules SAM generates would go unchecked. Runs in .venv-tools,
which has SAM CLI's translator (samtranslator) and cfn-lint's YAML reader. Needs no AWS account:
code locations become placeholder S3 URIs (as `sam package` would write real ones), and the
region is a fixed example.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

REGION = "eu-central-1"
CODE_LOCATIONS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class NoManagedPolicies:
    """The template names no managed policy by name, so there is nothing to look up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def with_packaged_code(template: dict[str, Any]) -> dict[str, Any]:
    """Local code directories replaced by the S3 URIs `sam package` would upload them to."""
    for logical_id, resource in template["Resources"].items():
        key = CODE_LOCATIONS.get(resource.get("Type", ""))
        if key and isinstance(resource["Properties"].get(key), str):
            resource["Properties"][key] = f"s3://example-artifacts/{logical_id}.zip"
    return template


def transformed(path: Path) -> dict[str, Any]:
    template, problems = decode(str(path))
    if problems or template is None:
        raise SystemExit("\n".join(str(problem) for problem in problems) or f"{path}: empty")
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    result: dict[str, Any] = translator.translate(
        with_packaged_code(template),
        parameter_values={},
        get_managed_policy_map=NoManagedPolicies().load,
    )
    return result


def main(argv: list[str]) -> int:
    source, target = Path(argv[1]), Path(argv[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(transformed(source), indent=1, default=str) + "\n", "utf-8")
    print(f"{source} -> {target} (SAM transform applied)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
