"""Loading the Lambda handlers the way the runtime does, for the local run, tools and tests."""

from __future__ import annotations

import importlib.util
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-central-1"
ACCOUNT_ID = "123456789012"


def load_handler(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh as `<name>_app` (both functions have an app.py, and
    a fresh import starts with empty caches)."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"{name}_app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler, as far as Powertools and the handlers read it.
    The remaining time counts down from `remaining_ms` like the real one."""

    function_name: str = "checker"
    remaining_ms: int = 120_000
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    created: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = int((time.monotonic() - self.created) * 1000)
        return max(0, self.remaining_ms - elapsed)
