"""Cold start: how long each handler's `import app` takes, as a ratio to a bare `import boto3`.

    .venv/bin/python -m bench.coldstart [--runs 9] [--python PATH]      (or `make coldstart`)

Every figure is the median of `--runs` fresh interpreter processes, each timing one import with
`time.perf_counter()` (interpreter start-up is not counted), the three subjects taking turns so
that drift hits them alike. Each process sees what a Lambda function sees: sys.path is the
handler's directory, then the layer (/opt/python), then the runtime's boto3; the environment is
the function's own from template.yaml plus the variables Lambda sets, so Powertools' Tracer is
on and patches what it is told to. Nothing writes bytecode while it is measured (-B), so only
the bytecode the layer ships is used, as on Lambda's read-only /opt.

The interpreter is the runtime's Python (3.13, found as the layer build finds it) when there is
one, else this one. The layer is `.aws-sam/build/MonitorLayer/python` (`make sam`) when that
interpreter can load it: same Python, and the machine of its wheels (arm64). Otherwise the
layer's own Makefile builds the same layer for this machine and this interpreter into
.aws-sam/coldstart/, bytecode included. boto3 is installed there too, at the version the
project pins, compiled like the runtime's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local.template import function_environment, parameter_values, resolve  # noqa: E402

RUNTIME_PYTHON = "3.13"
LAYER_SOURCE = ROOT / "layers" / "monitor"
BUILT = ROOT / ".aws-sam" / "build"
WORK = ROOT / ".aws-sam" / "coldstart"
GOAL = 1.3  # each handler's cold import at most this many times a bare `import boto3`
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")  # what the Lambda runtime provides
HANDLERS = {"checker": "CheckerFunction", "snapshot_api": "SnapshotApiFunction"}
TIMED_IMPORT = """\
import sys, time
sys.path[:0] = {paths!r}
start = time.perf_counter()
import {module}
imported = time.perf_counter()
{first_call}
print(imported - start, time.perf_counter() - start)
"""
# What each handler's first invocation builds before its first network call: the imports it
# deferred and its AWS clients (the checker's whole wiring; the API's repository and a request
# refused before it reads DynamoDB). Lazy imports move this cost out of the init phase, they do
# not remove it, so the report shows it next to the import.
FIRST_CALL = {
    "checker": "from datetime import timedelta\n"
    "app.build_cycle(app.settings(), timedelta(seconds=120))",
    "snapshot_api": "import json\n"
    "from connector_monitor.api.context import Services\n"
    "from connector_monitor.api.resolver import answer\n"
    "app.service()\n"
    "event = json.load(open({event!r}))\n"
    "event['rawQueryString'] = 'state=BOGUS'\n"
    "event['queryStringParameters'] = {{'state': 'BOGUS'}}\n"
    "services = Services(app.service, app.registry, app.utcnow, app.logger)\n"
    "assert answer(event, None, services)['statusCode'] == 400",
}


@dataclass(frozen=True)
class Subject:
    """One thing to import cold: a module, the directories before it on sys.path, an
    environment."""

    name: str
    module: str
    paths: tuple[str, ...]
    environment: Mapping[str, str]
    first_call: str = ""


@dataclass(frozen=True)
class Setup:
    python: str
    python_version: str
    layer: Path
    layer_origin: str
    runtime: Path


# ---- the interpreter, the layer and the runtime's boto3 -------------------------------------
def find_python(version: str) -> str | None:
    """An interpreter of `version`, found the way the layer build looks for one."""
    found = subprocess.run(
        ["sh", str(LAYER_SOURCE / "find-python.sh"), version],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def interpreter_facts(python: str) -> tuple[str, str]:
    """(major.minor, machine) of an interpreter."""
    code = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"
    answer = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    version, machine = answer.stdout.split()
    return version, machine


def wheel_platform(machine: str) -> str:
    return f"manylinux2014_{machine}"


def loads_built_layer(version: str, machine: str) -> bool:
    """Can this interpreter run the layer `sam build` made (Python 3.13, arm64 wheels)?"""
    layer = BUILT / "MonitorLayer" / "python"
    return layer.is_dir() and version == RUNTIME_PYTHON and machine in ("aarch64", "arm64")


def run_quietly(command: Sequence[str]) -> None:
    """Run a build step; its output is shown only when it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def build_layer(python: str, version: str, machine: str) -> Path:
    """The layer, built by its own Makefile for this machine and this interpreter."""
    artifacts = WORK / f"layer-{version}-{machine}"
    shutil.rmtree(artifacts, ignore_errors=True)
    run_quietly(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(LAYER_SOURCE),
            "build-MonitorLayer",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON={sys.executable}",
            f"TARGET_PLATFORM={wheel_platform(machine)}",
            f"TARGET_PYTHON={version}",
            f"BYTECODE_PYTHON={python}",
        ]
    )
    return artifacts / "python"


def install_runtime_sdk(python: str, version: str, machine: str) -> Path:
    """boto3, botocore and s3transfer at the project's pinned versions, with their own
    dependencies and bytecode: what the runtime's site-packages offers."""
    target = WORK / f"runtime-{version}-{machine}"
    pins = [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
    stamp = target / ".pins"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == " ".join(pins):
        return target
    shutil.rmtree(target, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    wheels = ["--only-binary=:all:", "--implementation", "cp", "--python-version", version]
    into = ["--no-compile", "--platform", wheel_platform(machine), "--target", str(target)]
    run_quietly([*pip, *wheels, *into, *pins])
    run_quietly([python, "-m", "compileall", "-q", "-j", "0", str(target)])
    stamp.write_text(" ".join(pins), encoding="utf-8")
    return target


def prepare(python: str | None) -> Setup:
    chosen = python or find_python(RUNTIME_PYTHON) or sys.executable
    version, machine = interpreter_facts(chosen)
    if loads_built_layer(version, machine):
        layer, origin = BUILT / "MonitorLayer" / "python", "sam build output (.aws-sam/build)"
    else:
        layer = build_layer(chosen, version, machine)
        origin = f"layers/monitor/Makefile built for {wheel_platform(machine)}, Python {version}"
    return Setup(chosen, version, layer, origin, install_runtime_sdk(chosen, version, machine))


def bytecode_coverage(layer: Path, version: str) -> tuple[int, int]:
    """(modules with bytecode for this Python, modules) in the layer."""
    tag = "cpython-" + version.replace(".", "")
    sources = list(layer.rglob("*.py"))
    compiled = sum(
        1
        for source in sources
        if (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").is_file()
    )
    return compiled, len(sources)


# ---- what each process sees -------------------------------------------------------------------
def handler_dir(name: str) -> Path:
    """The handler's source directory: `sam build` only copies its app.py, and a copy left by
    an earlier build would time yesterday's handler."""
    return ROOT / "functions" / name


def lambda_environment(logical_id: str, task_root: Path) -> dict[str, str]:
    """The function's template environment (default parameters; resource references as
    placeholders) and what Lambda itself sets, on an otherwise empty environment."""
    declared = resolve(function_environment(logical_id), parameter_values())
    environment = {
        name: value if isinstance(value, str) else f"placeholder-{name.lower()}"
        for name, value in declared.items()
    }
    nowhere = str(WORK / "no-such-file")
    environment |= {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"coldstart-{logical_id}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": "app.lambda_handler",
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
    }
    return environment


def subjects(setup: Setup) -> list[Subject]:
    runtime = str(setup.runtime)
    baseline = Subject(
        "import boto3 (bare)", "boto3", (runtime,), lambda_environment("CheckerFunction", ROOT)
    )
    found = [baseline]
    for name, logical_id in HANDLERS.items():
        task_root = handler_dir(name)
        found.append(
            Subject(
                f"{name} (import app)",
                "app",
                (str(task_root), str(setup.layer), runtime),
                lambda_environment(logical_id, task_root),
                FIRST_CALL[name].format(event=str(ROOT / "events" / "snapshot_get.json")),
            )
        )
    return found


# ---- measuring --------------------------------------------------------------------------------
def time_import(python: str, subject: Subject) -> tuple[float, float]:
    """Seconds one fresh interpreter spends in `import <module>`, and in it plus the first
    call's wiring (-I: no user site, no PYTHON* variables; -S: no site-packages; -B: writes no
    bytecode)."""
    code = TIMED_IMPORT.format(
        paths=list(subject.paths), module=subject.module, first_call=subject.first_call
    )
    answer = subprocess.run(
        [python, "-B", "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env=dict(subject.environment),
        cwd=str(WORK),
        check=False,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"{subject.name}: the import failed\n{answer.stderr[-2000:]}")
    imported, first_call = answer.stdout.strip().splitlines()[-1].split()
    return float(imported), float(first_call)


@dataclass
class Timings:
    imports: list[float] = field(default_factory=list)
    first_calls: list[float] = field(default_factory=list)


def measure(python: str, chosen: Sequence[Subject], runs: int) -> dict[str, Timings]:
    for subject in chosen:  # one untimed round: the OS file cache, not the disk, is measured
        time_import(python, subject)
    timings = {subject.name: Timings() for subject in chosen}
    for _ in range(runs):
        for subject in chosen:
            imported, first_call = time_import(python, subject)
            timings[subject.name].imports.append(imported)
            timings[subject.name].first_calls.append(first_call)
    return timings


def report(setup: Setup, timings: Mapping[str, Timings], runs: int) -> list[str]:
    compiled, modules = bytecode_coverage(setup.layer, setup.python_version)
    medians = {name: statistics.median(each.imports) for name, each in timings.items()}
    baseline = next(iter(medians.values()))
    lines = [
        f"Cold import, median of {runs} fresh interpreters ({platform.machine()}, "
        f"Python {setup.python_version}: {setup.python})",
        f"layer: {setup.layer_origin}; bytecode for {compiled} of its {modules} modules",
        "",
        f"{'subject':<28}{'median ms':>10}{'min ms':>8}{'max ms':>8}{'ratio':>8}"
        f"{'+ 1st call ms':>15}{'ratio':>8}",
    ]
    for name, each in timings.items():
        first_call = statistics.median(each.first_calls)
        lines.append(
            f"{name:<28}{medians[name] * 1000:>10.0f}{min(each.imports) * 1000:>8.0f}"
            f"{max(each.imports) * 1000:>8.0f}{medians[name] / baseline:>7.2f}x"
            f"{first_call * 1000:>15.0f}{first_call / baseline:>7.2f}x"
        )
    over = [name for name in list(medians)[1:] if medians[name] / baseline > GOAL]
    verdict = f"over the goal: {', '.join(over)}" if over else "every handler within the goal"
    lines += [
        "",
        f"goal: each handler's import <= {GOAL:.1f}x import boto3; {verdict}",
        "+ 1st call: the import plus what the first invocation builds before its first network",
        "call (deferred imports, AWS clients); lazy imports move that cost, they do not remove it",
    ]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per subject (median)")
    parser.add_argument(
        "--python", help=f"interpreter to measure (default: Python {RUNTIME_PYTHON})"
    )
    parser.add_argument("--json", action="store_true", help="also print the timings as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    setup = prepare(args.python)
    chosen = subjects(setup)
    timings = measure(setup.python, chosen, args.runs)
    print("\n".join(report(setup, timings, args.runs)))
    if args.json:
        print(json.dumps({name: asdict(each) for name, each in timings.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
