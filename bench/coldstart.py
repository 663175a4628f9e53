"""Cold start (`make coldstart`): each handler's `import app`, and its first call's wiring, as a
ratio to a bare `import boto3`: medians of `--runs` fresh interpreters (-B -I -S), the subjects
taking turns, each seeing what Lambda gives it (sys.path: the handler's directory, the layer,
the runtime's boto3; template.yaml's environment and Lambda's variables). README.md says how.
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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local.template import function_environment, parameter_values, resolve  # noqa: E402

RUNTIME_PYTHON = "3.13"
LAYER_SOURCE = ROOT / "layers" / "monitor"
BUILT = ROOT / ".aws-sam" / "build" / "MonitorLayer" / "python"
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
# What each handler's first invocation builds before its first network call (the imports it
# defers, its AWS clients; the API: a request refused before it reads DynamoDB). Lazy imports
# move this cost out of the init phase, they do not remove it: the report shows it too.
FIRST_CALL = {
    "checker": "from datetime import timedelta\napp.root().cycle(timedelta(seconds=120))",
    "snapshot_api": "import json\n"
    "from connector_monitor.api.context import Services\n"
    "from connector_monitor.api.resolver import answer\n"
    "app.service()\n"
    "event = json.load(open({event!r}))\n"
    "event['rawQueryString'] = 'state=BOGUS'\n"
    "event['queryStringParameters'] = {{'state': 'BOGUS'}}\n"
    "services = Services(app.service, app.registry, app.utcnow, app.logger, app.history,"
    " app.status_page, silences=app.silences)\n"
    "assert answer(event, None, services)['statusCode'] == 400",
}


@dataclass(frozen=True)
class Subject:
    name: str
    module: str
    paths: tuple[str, ...]  # before it on sys.path
    environment: Mapping[str, str]
    first_call: str = ""


@dataclass
class Timings:
    imports: list[float] = field(default_factory=list)
    first_calls: list[float] = field(default_factory=list)  # the import and the first call


def run_quietly(command: Sequence[str]) -> str:
    """Run a step; its output is shown only when it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


def prepare(python: str | None) -> tuple[str, str, Path, str, Path]:
    """The interpreter, its major.minor, the layer, where the layer comes from and the
    runtime's boto3 (installed at the project's pinned versions, compiled like the runtime's)."""
    find = ["sh", str(LAYER_SOURCE / "find-python.sh"), RUNTIME_PYTHON]
    found = subprocess.run(find, capture_output=True, text=True, check=False).stdout.strip()
    chosen = python or found or sys.executable
    code = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"
    version, machine = run_quietly([chosen, "-c", code]).split()
    wheels = f"manylinux2014_{machine}"
    if BUILT.is_dir() and version == RUNTIME_PYTHON and machine in ("aarch64", "arm64"):
        layer, origin = BUILT, "sam build output (.aws-sam/build)"
    else:
        artifacts = WORK / f"layer-{version}-{machine}"
        shutil.rmtree(artifacts, ignore_errors=True)
        run_quietly(
            ["make", "--no-print-directory", "-C", str(LAYER_SOURCE), "build-MonitorLayer",
             f"ARTIFACTS_DIR={artifacts}", f"PYTHON={sys.executable}", f"TARGET_PLATFORM={wheels}",
             f"TARGET_PYTHON={version}", f"BYTECODE_PYTHON={chosen}"]
        )  # fmt: skip
        layer, origin = (
            artifacts / "python",
            f"layers/monitor/Makefile built for {wheels}, Python {version}",
        )
    runtime = WORK / f"runtime-{version}-{machine}"
    pins = [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
    stamp = runtime / ".pins"
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != " ".join(pins):
        shutil.rmtree(runtime, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        wheel = ["--only-binary=:all:", "--implementation", "cp", "--python-version", version]
        into = ["--no-compile", "--platform", wheels, "--target", str(runtime)]
        run_quietly([*pip, *wheel, *into, *pins])
        run_quietly([chosen, "-m", "compileall", "-q", "-j", "0", str(runtime)])
        stamp.write_text(" ".join(pins), encoding="utf-8")
    return chosen, version, layer, origin, runtime


def lambda_environment(logical_id: str, task_root: Path) -> dict[str, str]:
    """The function's template environment (default parameters; resource references as
    placeholders) and what Lambda itself sets, on an otherwise empty environment."""
    declared = resolve(function_environment(logical_id), parameter_values())
    nowhere = str(WORK / "no-such-file")
    return {
        **{k: v if isinstance(v, str) else f"placeholder-{k.lower()}" for k, v in declared.items()},
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


def subjects(layer: Path, runtime: Path) -> list[Subject]:
    """A bare `import boto3`, then each handler from its source directory (`sam build` only
    copies app.py: a copy left by an earlier build would time yesterday's handler)."""
    env = lambda_environment("CheckerFunction", ROOT)
    found = [Subject("import boto3 (bare)", "boto3", (str(runtime),), env)]
    event = str(ROOT / "events" / "snapshot_get.json")
    for name, logical_id in HANDLERS.items():
        task_root = ROOT / "functions" / name
        paths = (str(task_root), str(layer), str(runtime))
        env = lambda_environment(logical_id, task_root)
        first_call = FIRST_CALL[name].format(event=event)
        found.append(Subject(f"{name} (import app)", "app", paths, env, first_call))
    return found


def time_import(python: str, subject: Subject) -> tuple[float, float]:
    """Seconds one fresh interpreter spends in `import <module>`, and with the first call."""
    code = TIMED_IMPORT.format(
        paths=list(subject.paths), module=subject.module, first_call=subject.first_call
    )
    answer = subprocess.run(
        [python, "-B", "-I", "-S", "-c", code], capture_output=True, text=True,
        env=dict(subject.environment), cwd=str(WORK), check=False,
    )  # fmt: skip
    if answer.returncode != 0:
        raise RuntimeError(f"{subject.name}: the import failed\n{answer.stderr[-2000:]}")
    imported, first_call = answer.stdout.strip().splitlines()[-1].split()
    return float(imported), float(first_call)


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


def report(
    python: str, version: str, layer: Path, origin: str, timings: Mapping[str, Timings], runs: int
) -> list[str]:
    tag = "cpython-" + version.replace(".", "")
    sources = list(layer.rglob("*.py"))
    compiled = sum(
        1 for s in sources if (s.parent / "__pycache__" / f"{s.stem}.{tag}.pyc").is_file()
    )
    medians = {name: statistics.median(each.imports) for name, each in timings.items()}
    baseline = next(iter(medians.values()))
    lines = [
        f"Cold import, median of {runs} fresh interpreters ({platform.machine()}, "
        f"Python {version}: {python})",
        f"layer: {origin}; bytecode for {compiled} of its {len(sources)} modules",
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
    return [
        *lines,
        "",
        f"goal: each handler's import <= {GOAL:.1f}x import boto3; {verdict}",
        "+ 1st call: the import plus what the first invocation builds before its first network",
        "call (deferred imports, AWS clients); lazy imports move that cost, they do not remove it",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per subject (median)")
    parser.add_argument(
        "--python", help=f"interpreter to measure (default: Python {RUNTIME_PYTHON})"
    )
    parser.add_argument("--json", action="store_true", help="also print the timings as JSON")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    python, version, layer, origin, runtime = prepare(args.python)
    timings = measure(python, subjects(layer, runtime), args.runs)
    print("\n".join(report(python, version, layer, origin, timings, args.runs)))
    if args.json:
        print(json.dumps({name: vars(each) for name, each in timings.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
