"""The benchmark scripts keep running and printing their figures; the bill's arithmetic holds.

No timing is asserted: speed is what the scripts print, not what a test checks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from bench.cost import Fleet, RunFigures, monthly_bill, render_bill
from bench.metering import Meter
from bench.moto_speedups import quicker_moto
from local.template import table_definition

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-central-1"
ROW = re.compile(
    r"^(real|naive)\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+\S+\s*$",
    re.MULTILINE,
)
BILL_LINE = re.compile(r"^  (.+?)\s+\$\s*([\d.]+)", re.MULTILINE)


def run_script(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name.removesuffix('.py')}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def bill_lines(output: str) -> dict[str, float]:
    return {m[1].strip(): float(m[2]) for m in BILL_LINE.finditer(output)}


def test_benchmark_prints_the_table_the_ratios_and_the_bill() -> None:
    out = run_script(
        "run_benchmark.py", "--portals", "2", "--lines", "60", "--latency", "0", "--runs", "1"
    )

    rows = {(m[1], m[2].strip()): m for m in ROW.finditer(out)}
    real, naive = rows[("real", "steady run")], rows[("naive", "steady run")]
    # 2 portals x 60 lines: two batches of up to 50 statuses per portal, against one per line
    assert (int(real[5]), int(naive[5])) == (4, 120)
    # the real run reads the state by 3 queries and stores only its run record ...
    assert int(real[6]) == 4
    assert float(real[8]) <= 2
    # ... the naive one reads and writes every target
    assert int(naive[6]) == 240
    assert float(naive[8]) >= 120
    # 1% of 120 targets going down is written in one transaction of that one target
    changed = rows[("real", "1 went down")]
    assert float(changed[8]) == pytest.approx(float(real[8]) + 2)
    refreshed = rows[("real", "tokens expired")]
    assert "secrets-manager:PutSecretValue 2" in out
    assert int(refreshed[5]) == 6  # each portal: expired_token, then the retried batches

    assert "Ratios naive / real" in out
    assert "Writes follow changes: 1 of 120 targets changed" in out
    assert "custom metrics per run: 4" in out
    bill = bill_lines(out)
    assert bill["Total"] == pytest.approx(sum(v for k, v in bill.items() if k != "Total"), abs=1e-3)
    assert 'Claim "well under $1 a month for 1,000 targets"' in out


def test_bill_script_measures_then_prints_a_line_per_item_and_the_total() -> None:
    out = run_script(
        "bill.py", "--targets", "200", "--measure-portals", "2", "--measure-lines", "5"
    )

    bill = bill_lines(out)
    expected = {
        "DynamoDB reads",
        "DynamoDB writes",
        "DynamoDB storage",
        "Secrets Manager",
        "SNS",
        "Lambda",
        "CloudWatch Logs",
        "CloudWatch metrics",
        "X-Ray (Tracing: Active)",
        "EventBridge Scheduler",
        "Total",
    }
    assert set(bill) == expected
    assert bill["CloudWatch metrics"] == 0  # PublishMetrics=false, as deployed by default
    assert "true adds 4 metrics = $1.20" in out
    assert bill["Total"] == pytest.approx(sum(v for k, v in bill.items() if k != "Total"), abs=1e-3)


def known_figures(**changes: object) -> RunFigures:
    values: dict[str, object] = {
        "targets": 1000,
        "portals": 10,
        "seconds": 1.0,
        "read_units": {"target": 100.0},
        "write_units": {"portal": 2.0},
        "secret_reads": 1,
        "log_lines": 2,
        "log_bytes": 1000,
        "metrics": 7,
        "refresh_secret_calls": 2.0,
        "refresh_write_units": 2.0,
        "stored_bytes_per_target": 1000.0,
    }
    values.update(changes)
    return RunFigures(**values)  # type: ignore[arg-type]


def test_the_bill_of_a_known_run() -> None:
    bill = monthly_bill(known_figures(), Fleet(targets=1000, portals=10, incidents_per_month=0))

    runs = 8640
    refreshes = 10 * 720  # one a portal an hour, 30 days
    assert bill.fleet.runs_per_month == runs
    assert bill.dollars("DynamoDB reads") == pytest.approx(100 * runs * 0.125e-6)
    assert bill.dollars("DynamoDB writes") == pytest.approx((2 * runs + 2 * refreshes) * 0.625e-6)
    assert bill.dollars("DynamoDB storage") == pytest.approx(1e6 / 1e9 * 0.25)
    assert bill.dollars("Secrets Manager") == pytest.approx(0.40 + (runs + 2 * refreshes) * 5e-6)
    assert bill.dollars("SNS") == 0
    assert bill.dollars("Lambda") == pytest.approx(runs * 0.25 * 0.0000133334 + runs * 0.2e-6)
    assert bill.dollars("CloudWatch Logs") == pytest.approx(
        (1000 + 700 + 5 * 26) * runs / 1e9 * 0.5
    )
    assert bill.dollars("CloudWatch metrics") == 0  # PublishMetrics=false by default
    assert bill.dollars("X-Ray (Tracing: Active)") == pytest.approx(runs * 5e-6)
    assert bill.dollars("EventBridge Scheduler") == pytest.approx(runs * 1e-6)
    assert bill.total == pytest.approx(0.733523744)
    assert "HOLDS at $0.73/month" in render_bill(bill)


def test_publishing_metrics_is_priced_per_metric() -> None:
    fleet = Fleet(targets=1000, portals=10, incidents_per_month=0, publish_metrics=True)
    bill = monthly_bill(known_figures(), fleet)
    assert bill.dollars("CloudWatch metrics") == pytest.approx(7 * 0.30)
    assert bill.total == pytest.approx(2.833523744)
    assert "DOES NOT HOLD at $2.83/month" in render_bill(bill)


def test_the_bill_scales_reads_per_target_and_run_time_only_upwards() -> None:
    figures = known_figures()
    base = monthly_bill(figures, Fleet(targets=1000, portals=10))
    double = monthly_bill(figures, Fleet(targets=2000, portals=20))
    half = monthly_bill(figures, Fleet(targets=500, portals=5))

    assert double.dollars("DynamoDB reads") == pytest.approx(2 * base.dollars("DynamoDB reads"))
    assert half.dollars("DynamoDB reads") == pytest.approx(base.dollars("DynamoDB reads") / 2)
    assert double.dollars("Lambda") > base.dollars("Lambda")
    assert half.dollars("Lambda") == pytest.approx(base.dollars("Lambda"))  # an upper bound
    assert double.dollars("CloudWatch metrics") == base.dollars("CloudWatch metrics")


def test_the_default_fleet_is_one_stack_and_holds_the_claim() -> None:
    bill = monthly_bill(known_figures(metrics=0), Fleet(incidents_per_month=0))
    refreshes = 4 * 720  # the 4 portals one secret has room for, one refresh an hour each
    assert bill.fleet.portals == 4
    assert bill.dollars("Secrets Manager") == pytest.approx(0.40 + (8640 + 2 * refreshes) * 5e-6)
    assert bill.total < 1
    out = render_bill(bill)
    assert "HOLDS at $0.68/month" in out
    assert "stacks" not in out


def test_more_portals_than_one_secret_holds_are_priced_as_one_stack_and_said_so() -> None:
    out = render_bill(monthly_bill(known_figures(), Fleet(targets=1000, portals=10)))
    assert "10 portals are more than one stack's secret has room for (4" in out
    assert "they need 3 stacks, and this bill prices one" in out


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName="t", **table_definition())
        yield client


def test_the_bench_shortcuts_in_moto_answer_the_same(dynamodb: Any) -> None:
    client = dynamodb
    item = {
        "pk": {"S": "STATE"},
        "sk": {"S": "a"},
        "n": {"N": "1.50"},
        "b": {"B": b"\x00\x01"},
        "m": {"M": {"B": {"S": "x"}, "l": {"L": [{"N": "2"}, {"NULL": True}, {"BOOL": False}]}}},
        "ss": {"SS": ["a", "b"]},
        "empty": {"S": ""},
    }
    client.put_item(TableName="t", Item=item)
    query = {
        "TableName": "t",
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "STATE"}},
    }
    plain = client.query(**query)["Items"]
    with quicker_moto():
        quick = client.query(**query)["Items"]
    assert quick == plain == [item]


def test_a_cancelled_transaction_still_rolls_back_with_the_bench_shortcuts(
    dynamodb: Any,
) -> None:
    client = dynamodb
    client.put_item(TableName="t", Item={"pk": {"S": "STATE"}, "sk": {"S": "a"}})
    with quicker_moto(), pytest.raises(ClientError):
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "STATE"}, "sk": {"S": "b"}}}},
                {
                    "Put": {
                        "TableName": "t",
                        "Item": {"pk": {"S": "STATE"}, "sk": {"S": "a"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    keys = client.scan(TableName="t")["Items"]
    assert [k["sk"]["S"] for k in keys] == ["a"]


def test_the_meter_counts_calls_and_units_by_aws_item_size_rules(dynamodb: Any) -> None:
    client = dynamodb
    meter = Meter()
    meter.attach(client)
    big = {"pk": {"S": "STATE"}, "sk": {"S": "x"}, "text": {"S": "y" * 1500}}  # ~1.5 KB
    client.put_item(TableName="t", Item=big)
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": "t", "Item": {**big, "sk": {"S": "z"}}}}]
    )
    client.query(
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "STATE"}},
        ConsistentRead=True,
    )

    assert meter.calls == {
        "dynamodb:PutItem": 1,
        "dynamodb:TransactWriteItems": 1,
        "dynamodb:Query": 1,
    }
    assert sum(meter.write_units.values()) == 2 + 2 * 2  # 2 KB each; a transaction counts twice
    assert sum(meter.read_units.values()) == 1  # ~3 KB in one strongly consistent query
