"""What the real checker handler logs in one warm run: the log bytes and the custom metrics
the bill prices."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from bench.environment import (
    ROOT,
    Bench,
    patched_environ,
)
from local.handlers import LambdaContext
from local.template import environment_of

# ---- the handler's log output ----------------------------------------------------------------


@dataclass(frozen=True)
class LogCapture:
    lines: int
    bytes: int
    metrics: int  # distinct (namespace, name, dimensions) a warm run publishes
    cold_start_metrics: int  # published by the cold start only
    kinds: Mapping[str, int]  # bytes by kind of line, for the printout


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def load_checker() -> ModuleType:
    path = ROOT / "functions" / "checker" / "app.py"
    spec = importlib.util.spec_from_file_location(f"bench_checker_{uuid.uuid4().hex}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point_logs_at(module: ModuleType, stream: io.TextIOBase) -> None:

    names = [module.logger.name, *(n for n in logging.root.manager.loggerDict if "." in n)]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)


def capture_logs(bench: Bench, table: str) -> LogCapture:
    """Invoke the real checker handler once on a steady table and keep what it printed.

    It is a cold start, so Powertools adds a ColdStart metric in a line of its own: that line
    is counted apart, a warm run does not print it.
    """
    env = environment_of(
        "CheckerFunction",
        resources={
            "Table": table,
            "TokenTable": bench.tokens_table,
            "Topic": bench.topic_arn,
            "PortalSecret": bench.secret_id,
        },
        # the metrics are measured as PublishMetrics=true publishes them (the bill prices both)
        parameters={
            "Targets": ",".join(t.key for t in bench.targets.targets),
            "PublishMetrics": "true",
        },
        extra={"POWERTOOLS_LOG_LEVEL": "INFO"},
    )
    event = json.loads((ROOT / "events" / "schedule.json").read_text())
    buffer = io.StringIO()
    with patched_environ(env), contextlib.redirect_stdout(buffer):
        checker = load_checker()
        _point_logs_at(checker, buffer)
        checker.lambda_handler(event, LambdaContext())
        _point_logs_at(checker, _Discard())  # later runs' lines are not part of the measure
    warm: list[str] = []
    cold_only: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for line in _json_lines(buffer.getvalue()):
        found = _metrics([line])
        if found and all(name == "ColdStart" for _, name, _ in found):
            cold_only |= found
        else:
            warm.append(line)
    kinds: Counter[str] = Counter()
    for line in warm:
        kinds["EMF metrics" if "_aws" in json.loads(line) else "log"] += len(line.encode())
    return LogCapture(
        lines=len(warm),
        bytes=sum(len(line.encode()) for line in warm),
        metrics=len(_metrics(warm)),
        cold_start_metrics=len(cold_only),
        kinds=dict(kinds),
    )


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _metrics(lines: Sequence[str]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Distinct custom metrics (namespace, name, dimensions) in EMF lines."""
    found: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for line in lines:
        blob = json.loads(line)
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                dims = tuple(sorted((d, str(blob.get(d))) for d in dimensions))
                for metric in directive.get("Metrics", []):
                    found.add((directive.get("Namespace", ""), metric["Name"], dims))
    return found
