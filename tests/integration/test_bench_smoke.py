"""The benchmark scripts keep running and printing their figures; the bill prices every
resource of the template and its arithmetic holds.

No timing is asserted: speed is what the scripts print, not what a test checks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.cost import (
    PRICES,
    FanOutFigures,
    Figures,
    Fleet,
    Usage,
    fitted,
    monthly_bill,
    render_bill,
)
from bench.metering import Meter
from bench.stack import read_stack
from local.template import table_definition
from tests.conftest import MOTO_REGION
from tests.support.moto_speedups import quicker_moto

ROOT = Path(__file__).resolve().parents[2]
REGION = MOTO_REGION  # the moto_account fixture's
ROW = re.compile(
    r"^(real|naive)\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+\S+\s*$",
    re.MULTILINE,
)
# item, list price, the same with the always-free tiers
BILL_LINE = re.compile(r"^  (.+?)\s+\$\s*([\d.]+)  \$\s*([\d.]+)   ", re.MULTILINE)
TOTAL_LINE = re.compile(r"^  Total\s+\$\s*([\d.]+)  \$\s*([\d.]+)$", re.MULTILINE)
FLEET_ROW = re.compile(
    r"^  (first run|second run|steady \(median of \d+\)|rounds run \(1 in 48\)|inventory run"
    r"|refresh run \(\d+ expired\))"
    r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(CPU|wall)\s+([\d.]+)\s+([\d,]+)\s+(\d+)\s+([\d,]+)"
    r"\s+([\d,.]+)\s+([\d,.]+)\s+(\d+)\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d,.]+)$",
    re.MULTILINE,
)
# One invocation of a fanned-out run: planner or shard N, portals, wall, CPU, est, governs, RSS,
# INIT, portal requests, OAuth, DynamoDB calls, RRU, WRU, token store, SQS, log lines and bytes,
# KB sent, targets checked, within 60 s and 256 MB.
FAN_ROW = re.compile(
    r"^  (planner|shard \d+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(CPU|wall)"
    r"\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+(\d+)\s+([\d,]+)\s+([\d,.]+)\s+([\d,.]+)\s+(\d+)"
    r"\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d,.]+)\s+(\S+)\s+(yes|NO)$",
    re.MULTILINE,
)
# Every kind of charge the bill must show, whatever the measured figures.
BILL_ITEMS = {
    "Lambda requests",
    "Lambda duration, checker",
    "Lambda duration, snapshot API",
    "Lambda INIT (cold starts)",
    "DynamoDB reads",
    "DynamoDB writes",
    "DynamoDB storage",
    "DynamoDB point-in-time recovery",
    "Secrets Manager secrets",
    "Secrets Manager API calls",
    "KMS requests",
    "SNS publishes",
    "SNS email deliveries",
    "SQS requests",
    "CloudWatch Logs ingestion",
    "CloudWatch Logs storage",
    "CloudWatch alarms",
    "CloudWatch custom metrics",
    "X-Ray traces",
    "API Gateway HTTP API",
    "EventBridge Scheduler",
    "Data transfer out (to the portals)",
}


def run_script(name: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name.removesuffix('.py')}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def bill_lines(output: str) -> dict[str, float]:
    return {m[1].strip(): float(m[2]) for m in BILL_LINE.finditer(output)}


def bill_total(output: str) -> float:
    found = TOTAL_LINE.search(output)
    assert found is not None, output[-3000:]
    return float(found[1])


def test_benchmark_prints_the_table_and_the_ratios() -> None:
    out = run_script(
        "run_benchmark.py",
        "--portals",
        "2",
        "--lines",
        "60",
        "--latency",
        "0",
        "--runs",
        "1",
        "--exchanges",
        "5",
    )

    rows = {(m[1], m[2].strip()): m for m in ROW.finditer(out)}
    real, naive = rows[("real", "steady run")], rows[("naive", "steady run")]
    # 2 portals x 60 lines: two batches of up to 50 statuses per portal, against one per line
    assert (int(real[5]), int(naive[5])) == (4, 120)
    # the real run reads the state by queries and stores only its run record ...
    assert float(real[8]) <= 2
    # ... the naive one reads and writes every target
    assert int(naive[6]) >= 240
    assert float(naive[8]) >= 120
    # 1% of 120 targets going down is written in one transaction of that one target
    changed = rows[("real", "1 went down")]
    assert float(changed[8]) == pytest.approx(float(real[8]) + 2)
    assert "Ratios naive / real" in out
    assert "Writes follow changes: 1 of 120 targets changed" in out
    assert "custom metrics per run: 4" in out
    # the portal exchange over TLS: fewer bytes out than requests sent (CPU is printed only)
    ratio = re.search(r"ratio new/old: +([\d.]+) +([\d.]+) +([\d.]+)", out)
    assert ratio is not None and "http.client (monitor)" in out
    assert float(ratio[1]) < 0.9


def test_the_fleet_benchmark_runs_the_real_handlers_and_prints_every_figure_and_the_bill() -> None:
    out = run_script(
        "fleet.py",
        *("--portals", "5", "--lines", "2", "--latency", "0.01", "--steady-runs", "1"),
        *("--sweep", "3,5"),
    )

    rows = {m[1].split(" (")[0]: m for m in FLEET_ROW.finditer(out)}
    assert set(rows) >= {
        "first run",
        "second run",
        "steady",
        "rounds run",
        "inventory run",
        "refresh run",
    }
    first, steady = rows["first run"], rows["steady"]
    inventory, refresh = rows["inventory run"], rows["refresh run"]
    # the watch */myconnector/*: the first run lists each portal's lines, then probes them all
    assert (int(first[7]), int(steady[7]), int(inventory[7])) == (10, 5, 10)
    assert (int(steady[8]), int(refresh[8])) == (0, 1)  # one portal's token refreshed at OAuth
    assert float(first[11]) >= 2 * 10  # every target written once, in transactions
    assert float(steady[11]) <= 2  # a steady run writes its run record only
    assert float(inventory[11]) <= 2  # every inventory read, none changed: none written
    assert all(float(r[6]) > 0 and float(r[3]) > 0 for r in rows.values())  # RSS, CPU
    assert int(steady[12]) >= 2  # the token store: the secret (apps) and the token table
    assert int(steady[14]) >= 1 and int(steady[15]) > 0  # the handler's log lines and bytes
    assert float(steady[16]) > 0  # bytes sent to the portals
    assert "token store: secrets-manager:GetSecretValue 1, token table:Query 1" in out
    assert "Cold start (import app + first call's wiring" in out
    assert "GET /health (snapshot API" in out
    assert "Stored after the runs: Table" in out
    assert "One invocation, 5 portals x 2 lines" in out and "<= 60 s: YES" in out
    assert "PORTALS PER INVOCATION: 5 " in out

    bill = bill_lines(out)
    assert set(bill) == BILL_ITEMS
    assert bill_total(out) == pytest.approx(sum(bill.values()), abs=1e-3)
    assert "Monthly bill: 5,000 targets on 1,000 portals, every 5 min = 8,640 runs/month" in out
    assert "Goal: <= $3.00 a month all-in for 5,000 targets on 1,000 portals" in out
    assert "Unpriced resources: none." in out
    assert all(name in out for name in PRICES)  # every price printed with its source


HOSTILE_ROW = re.compile(
    r"^(.{32}) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +(\d+) +([\d.]+)  (\S+)$", re.MULTILINE
)


def test_the_hostile_portal_benchmark_holds_every_other_portal_and_the_deadline() -> None:
    out = run_script(
        # A 5 s deadline (15 s are kept for storing): 402 targets over HTTPS fit it on a loaded
        # 2-core machine, which the 2 s one before did not always.
        "hostile.py",
        *("--portals", "1", "--lines", "1", "--budget", "20", "--pace", "0.5"),
    )

    rows = {m[0].strip(): m for m in HOSTILE_ROW.findall(out)}
    assert len(rows) == 8, out
    for name, row in rows.items():
        seconds, others_up, largest_kb, hostile = float(row[1]), int(row[5]), float(row[6]), row[7]
        assert seconds < 20, name  # the deadline is 5 s; 15 s are kept for storing
        # With a 200-line portal as the subject, the others are the other 200 lines and the
        # healthy portal's line, all UP, and the hostile portal's line, UP once it has healed:
        # whether that happens before this row's run ends depends on the machine's load (the
        # OAuth row expired its token; the 5 s deadline leaves the 3 s a refresh needs).
        if "200 lines" in name:
            assert others_up in (201, 202), name
        else:
            assert others_up == 401, name
        assert largest_kb < 64, name  # no item near DynamoDB's 400 KB
        if name.startswith(("REST trickle", "100 MB", "gzip bomb", "450 KB")):
            assert hostile.startswith("UNKNOWN/"), name
    assert rows["healthy (baseline)"][7] == "UP"
    assert rows["REST trickle, 1 byte / 0.5 s"][7] == "UNKNOWN/deadline"


FANOUT_BILL_ITEMS = (BILL_ITEMS - {"Lambda duration, checker"}) | {
    "Lambda duration, planner",
    "Lambda duration, shard workers",
}


def test_the_fanned_out_fleet_runs_the_planner_and_every_shard_and_prices_them() -> None:
    out = run_script(
        "fleet.py",
        *("--fanout", "--portals", "30", "--lines", "2", "--shard-portals", "10"),
        *("--latency", "0.01", "--steady-runs", "1", "--no-inventory", "--no-refresh"),
    )

    runs = {part.split("'", 1)[0]: part for part in out.split("\nRun '")[1:]}
    assert set(runs) == {"first run", "second run", "steady run"}
    for part in runs.values():
        rows = {m[0]: m for m in FAN_ROW.findall(part)}
        assert set(rows) == {"planner", "shard 0", "shard 1", "shard 2"}
        planner = rows["planner"]
        assert (planner[1], planner[8], planner[14]) == ("30", "0", "1")  # no portal; 1 send
        for shard in ("shard 0", "shard 1", "shard 2"):
            row = rows[shard]
            assert (row[1], row[18], row[19]) == ("10", "20", "yes")  # 10 portals x 2 lines
            assert int(row[8]) >= 10 and float(row[3]) > 0 and float(row[6]) > 0
        assert "3 orders queued, 3 delivered" in part
        assert "run record complete: yes (60 of 60 targets checked: 60 up" in part
    steady = {m[0]: m for m in FAN_ROW.findall(runs["steady run"])}
    # a steady shard writes its part of the run record only (the last one the run record too)
    assert all(float(steady[f"shard {i}"][13]) <= 2 for i in range(3))
    assert "PER SHARD (10 portals a shard" in out
    assert "MAX SHARD:" in out and "every measured shard fits 60 s and 256 MB" in out

    bill = bill_lines(out)
    assert set(bill) == FANOUT_BILL_ITEMS
    total = bill_total(out)
    assert total == pytest.approx(sum(bill.values()), abs=1e-3)
    assert "Monthly bill: 60 targets on 30 portals, every 5 min" in out
    assert "FanOut=true" in out and "ShardPortals=10" in out
    assert "3 shard invocations" not in out  # a month of them: 25,920
    assert "25,920 shard invocations (3 a run)" in out
    per_shard = re.search(r"^BILL PER SHARD: \$([\d.]+) a month / 3 shards = \$([\d.]+)", out, re.M)
    assert per_shard is not None
    assert float(per_shard[2]) == pytest.approx(float(per_shard[1]) / 3, abs=1e-4)
    assert "Unpriced resources: none." in out


def test_a_fanned_out_run_is_priced_per_invocation() -> None:
    planner = Usage(
        {"wall": 2.0, "cpu": 0.5, "ddb.TokenTable.RRU": 300.0, "sqs.SendMessageBatch": 1}
    )
    worker = Usage({"wall": 10.0, "cpu": 1.0, "ddb.Table.RRU": 100.0, "ddb.Table.UpdateItem": 1})
    fan = FanOutFigures(10, planner, planner, (worker, worker), (worker, worker))
    steady = planner + worker.times(10)
    figures = known_figures(steady=steady, inventory=steady, fanout=fan)
    stack = read_stack({"FanOut": "true"})

    bill = monthly_bill(figures, Fleet(), stack)

    runs, polls = 8640, 43_200
    assert {line.item for line in bill.lines} == FANOUT_BILL_ITEMS
    assert bill.dollars("Lambda requests") == pytest.approx((11 * runs + polls) * 0.2e-6)
    # the planner's CPU governs at 256 MB (0.5 s x 1769/256 = 3.5 s); the workers' wall (10 s)
    assert bill.dollars("Lambda duration, planner") == pytest.approx(
        runs * 0.5 * 1769 / 256 * 0.25 * 0.0000133334
    )
    assert bill.dollars("Lambda duration, shard workers") == pytest.approx(
        runs * 10 * 10 * 0.25 * 0.0000133334
    )
    idle = 5 * 3 * 43_200
    assert bill.dollars("SQS requests") == pytest.approx((idle + runs * (1 + 10 + 10)) * 0.4e-6)
    assert bill.dollars("X-Ray traces") == pytest.approx(11 * runs * 5e-6)
    assert bill.dollars("DynamoDB reads") == pytest.approx((1300 * runs + 0.5 * polls) * 0.125e-6)
    assert bill.per_shard == pytest.approx(bill.total / 10)
    assert "Per shard: $" in render_bill(bill)


def known_figures(**changes: object) -> Figures:
    run = Usage(
        {
            "wall": 5.0,
            "cpu": 1.0,
            "ddb.Table.Query": 5,
            "ddb.Table.RRU": 200.0,
            "ddb.Table.WRU": 1.0,
            "ddb.TokenTable.RRU": 40.0,
            "sm.GetSecretValue": 1,
            "log.lines": 1,
            "log.bytes": 700,
            "net.bytes": 600_000,
            "net.connections": 1000,
            "net.segments": 8000,
        }
    )
    values: dict[str, object] = {
        "portals": 1000,
        "targets": 5000,
        "steady": run,
        "inventory": run + Usage({"ddb.Table.WRU": 1000.0}),
        "refresh": Usage({"ddb.Table.WRU": 2.0, "ddb.TokenTable.WRU": 1.0}),
        "health": Usage({"wall": 0.004, "cpu": 0.002, "ddb.Table.RRU": 0.5}),
        "cold": {"CheckerFunction": Usage({"wall": 0.5, "cpu": 0.5})},
        "stored": {"Table": (1.5e6, 6000.0), "TokenTable": (3e5, 1000.0)},
    }
    values.update(changes)
    return Figures(**values)  # type: ignore[arg-type]


def test_the_bill_of_known_figures_prices_every_resource_the_template_creates() -> None:
    stack = read_stack()
    bill = monthly_bill(known_figures(), Fleet(), stack)

    runs, polls, refreshes = 8640, 43_200, 1000 * 720
    inventories = runs * 5 / 240
    assert {line.item for line in bill.lines} == BILL_ITEMS
    assert stack.unpriced == []
    assert bill.dollars("Secrets Manager secrets") == pytest.approx(0.40 * len(stack.secrets))
    alarm_metrics = sum(a.metrics for a in stack.alarms)
    assert bill.dollars("CloudWatch alarms") == pytest.approx(0.10 * alarm_metrics)
    assert bill.dollars("API Gateway HTTP API") == pytest.approx(polls * 1e-6)
    assert bill.dollars("EventBridge Scheduler") == pytest.approx(runs * 1e-6)
    assert "SnapshotApiFunction" not in stack.traced_functions  # Tracing: PassThrough
    assert bill.dollars("X-Ray traces") == pytest.approx(runs * 5e-6)
    assert bill.dollars("Lambda requests") == pytest.approx((runs + polls) * 0.2e-6)
    # reads: 240 RRU a run, half a unit a poll
    assert bill.dollars("DynamoDB reads") == pytest.approx((240 * runs + 0.5 * polls) * 0.125e-6)
    # writes: the run record every run, 1,000 inventory items every 48th, 3 units a refresh
    writes = runs + 1000 * inventories + 3 * refreshes
    assert bill.dollars("DynamoDB writes") == pytest.approx(writes * 0.625e-6)
    # the checker's CPU on 256/1769 of a vCPU governs: 1 s of CPU is 6.9 s of duration
    assert bill.dollars("Lambda duration, checker") == pytest.approx(
        runs * 1769 / 256 * 0.25 * 0.0000133334
    )
    assert bill.checker_run_seconds == pytest.approx(1769 / 256)
    assert bill.dollars("CloudWatch custom metrics") == 0  # PublishMetrics=false by default
    # KMS: a secret read a run, and the token table's key once a run (DynamoDB keeps it 5
    # minutes); the state table, which the checker and every /health poll read, is under an AWS
    # owned key: no KMS request for it
    assert bill.dollars("KMS requests") == pytest.approx((runs + runs) * 0.03e-4)
    assert bill.total == pytest.approx(sum(line.dollars for line in bill.lines))
    out = render_bill(bill)
    assert "Unpriced resources: none." in out
    assert "Goal: <= $3.00 a month all-in for 5,000 targets on 1,000 portals" in out


def test_the_bill_with_the_always_free_tiers_takes_off_only_what_they_cover() -> None:
    heavy = Usage({"net.bytes": 2e7})  # 20 MB out a run: 172.8 GB a month
    bill = monthly_bill(known_figures(steady=heavy, inventory=heavy), Fleet(), read_stack())

    free = {
        item: sum(
            d
            for line, d in zip(bill.lines, bill.free_tier_dollars(), strict=True)
            if line.item == item
        )
        for item in {line.item for line in bill.lines}
    }
    # past the 100 GB a month of free data transfer out, the rest is paid
    assert free["Data transfer out (to the portals)"] == pytest.approx(72.8 * 0.09)
    # within their always-free tiers: 51,840 requests, 8,640 traces, 5 alarm metrics...
    for item in ("Lambda requests", "X-Ray traces", "CloudWatch alarms", "EventBridge Scheduler"):
        assert bill.dollars(item) > 0 and free[item] == 0, item
    # no always-free tier: on-demand DynamoDB requests, the secret, the HTTP API
    for item in ("DynamoDB writes", "Secrets Manager secrets", "API Gateway HTTP API"):
        assert free[item] == pytest.approx(bill.dollars(item)), item
    assert bill.total_with_free_tiers == pytest.approx(sum(free.values()))
    assert f"${bill.total_with_free_tiers:.2f} with the always-free tiers" in render_bill(bill)


def test_publishing_metrics_and_a_fanned_out_stack_are_priced_too() -> None:
    plain = monthly_bill(known_figures(), Fleet(), read_stack())
    metrics = monthly_bill(known_figures(), Fleet(publish_metrics=True), read_stack())
    assert metrics.dollars("CloudWatch custom metrics") == pytest.approx(4 * 0.30)
    assert metrics.total == pytest.approx(plain.total + 4 * 0.30)
    fanned = read_stack({"FanOut": "true"})
    if any(f.queues for f in fanned.functions.values()):
        polled = monthly_bill(known_figures(), Fleet(), fanned)
        # an idle event source: 5 pollers x 3 long polls a minute, all month
        assert polled.dollars("SQS requests") == pytest.approx(5 * 3 * 43_200 * 0.4e-6)


def test_figures_are_fitted_through_two_measured_fleets() -> None:
    small = known_figures(
        portals=50, targets=250, steady=Usage({"cpu": 0.2, "sm.GetSecretValue": 1})
    )
    large = known_figures(
        portals=100, targets=500, steady=Usage({"cpu": 0.3, "sm.GetSecretValue": 1})
    )

    fleet = fitted([small, large], 1000, 5000)

    assert fleet.steady.get("cpu") == pytest.approx(0.1 + 0.002 * 1000)  # a + b x portals
    assert fleet.steady.get("sm.GetSecretValue") == 1  # one secret read a run, whatever the size
    assert fleet.portals == 1000 and "fitted to 1,000 portals" in fleet.measured_on


@pytest.fixture
def dynamodb(moto_account: None) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName="t", **table_definition())
    return client


@pytest.mark.plain_moto
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


@pytest.mark.plain_moto
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
