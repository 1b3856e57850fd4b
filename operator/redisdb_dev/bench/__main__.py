"""`make bench`: latency, scale and provider cost of the operator, each measured against its floor or target.

Starts its own control plane (in a temporary directory, never the developer's .run/cluster), the local provider
with an injected latency per API call (default 50 ms) and the operator as a separate process, then runs:

1. single: one RedisDatabase at idle, apply -> Ready with a working Secret, against the floor (the provider's
   own create measured directly plus the minimal apiserver round trips);
2. bulk: apply N RedisDatabases at once -> all Ready, change every read region, delete all; time, provider calls
   and apiserver writes (Events apart) per resource;
3. steady: with N Ready databases, provider calls per resync interval, operator CPU and RSS;
4. webhook: admission latency under 50 concurrent requests.

Writes bench-results/latest.json and bench-results/latest.png (and a copy under docs/bench/ with --publish).

    python -m redisdb_dev.bench [--quick] [--parts single,bulk,steady,webhook] [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from . import chart, scale, scenarios
from .environment import REPO, control_plane, install, local_provider, operator_process
from .report import latest_table, machine

PARTS = ("single", "bulk", "steady", "webhook")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m redisdb_dev.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a ~2 minute version: fewer runs, sizes 20 and 100")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--sizes", default=None, help="bulk sizes, comma-separated (default 100,1000; quick 20,100)")
    parser.add_argument("--single-runs", type=int, default=None, help="single applies (default 30; quick 10)")
    parser.add_argument("--webhook-requests", type=int, default=None, help="default 1000; quick 200")
    parser.add_argument("--webhook-concurrency", type=int, default=50)
    parser.add_argument("--apply-concurrency", type=int, default=20, help="bulk applies in flight")
    parser.add_argument("--provider-latency-ms", type=int, default=50, help="injected per provider API call")
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=None,
        help="operator resync in seconds (default 300, the operator's own default; quick 10)",
    )
    parser.add_argument(
        "--steady-intervals",
        type=int,
        default=None,
        help="resync intervals measured in steady state (default 1; quick 2)",
    )
    parser.add_argument("--max-concurrent-reconciles", type=int, default=32)
    parser.add_argument("--phase-timeout", type=float, default=600, help="seconds before a bulk phase fails")
    parser.add_argument("--operator-arg", action="append", default=[], help="extra flag for the operator")
    parser.add_argument("--profile", action="store_true", help="py-spy record the operator in each bulk phase")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="results directory")
    parser.add_argument("--publish", action="store_true", help="also copy the results to docs/bench/")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. 'before')")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when any target is missed (CI, or `make bench ARGS=--check`)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="instead of the parts: N databases at once with two electing operators (create, one resync interval "
        "idle, a sample updated and deleted, SIGTERM and SIGKILL failover), the provider in its pooled mode; "
        "results in scale-N.json (not in CI)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=8, help="with --scale: the local provider's shared redis-servers (default 8)"
    )
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    sizes = args.sizes or ("20,100" if args.quick else "100,1000")
    args.sizes = [int(size) for size in sizes.split(",") if size]
    args.single_runs = args.single_runs or (10 if args.quick else 30)
    args.webhook_requests = args.webhook_requests or (200 if args.quick else 1000)
    args.resync_interval = args.resync_interval or (10.0 if args.quick else 300.0)
    args.steady_intervals = args.steady_intervals or (2 if args.quick else 1)
    return args


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    return ""


def _profiler(pid: int, directory: Path) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """py-spy record of the operator for one phase, as collapsed stacks (one line per stack, with its count)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    @contextlib.contextmanager
    def record(phase: str) -> Iterator[None]:
        output = directory / f"profile-{phase}.txt"
        command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--output", str(output)]
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()

    return record


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool) -> None:
        targets.append({"target": name, "value": value, "goal": goal, "met": met})

    single = results.get("single")
    if single:
        add(
            "single apply -> Ready, p50 / floor",
            single["ratio_p50_to_floor"],
            "<= 1.5",
            single["ratio_p50_to_floor"] <= 1.5,
        )
    for run in results.get("bulk") or []:
        size = run["databases"]
        create = run["create"]
        if size >= 1000:
            add(f"{size} databases Ready", f"{create['seconds']} s", "< 60 s", create["seconds"] < 60)
        add(
            f"apiserver writes per created database ({size})",
            create["operator_writes_per_resource"],
            "<= 5 (Events apart)",
            create["operator_writes_per_resource"] <= 5,
        )
        steady = run.get("steady")
        if steady:
            add(
                f"provider calls per resync interval ({size} databases)",
                steady["provider_calls_per_interval"],
                "1 list per provider",
                steady["provider_calls_per_interval"] <= 1.5,
            )
            add(
                f"operator CPU in steady state ({size})",
                f"{steady['operator_cpu_percent']} %",
                "< 2 %",
                steady["operator_cpu_percent"] < 2,
            )
        add(
            f"operator peak RSS ({size})",
            f"{run['operator_peak_rss_mib']} MiB",
            "< 250 MB",
            run["operator_peak_rss_mib"] * 1.048576 < 250,
        )
    webhook = results.get("webhook")
    if webhook:
        p99 = webhook["webhook"]["p99_ms"]
        add("webhook p99 under 50 concurrent", f"{p99} ms", "< 50 ms", p99 < 50)
    return targets


async def run_parts(args: argparse.Namespace, kube: Any, provider: Any, operator: Any, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "single" in args.parts:
        results["single"] = await scenarios.single(kube, provider, args.single_runs)
    profiler = _profiler(operator.pid, args.out) if args.profile else None
    if "webhook" in args.parts:
        with profiler("webhook") if profiler else contextlib.nullcontext():
            results["webhook"] = await scenarios.webhook(kube, args.webhook_requests, args.webhook_concurrency)
    if "bulk" in args.parts or "steady" in args.parts:
        results["bulk"] = []
        for size in args.sizes:
            results["bulk"].append(
                await scenarios.bulk(
                    kube,
                    provider,
                    operator,
                    size,
                    concurrency=args.apply_concurrency,
                    phase_limit=args.phase_timeout,
                    steady_interval=args.resync_interval if "steady" in args.parts else None,
                    steady_intervals=args.steady_intervals,
                    profiler=profiler,
                )
            )
    return results


def main_scale(args: argparse.Namespace) -> int:
    """`--scale N`: the issue 15 measurement (bench/scale.py), its targets printed with met/missed."""
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="redisdb-bench-scale-") as tmp:
        workdir = Path(tmp)
        scenarios.say(f"scale {args.scale}: control plane, pooled local provider and two operators in {workdir}")
        with (
            control_plane(workdir) as kube,
            local_provider(workdir / "provider", args.provider_latency_ms, pool_size=args.pool_size) as provider,
        ):
            install(kube, provider)
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    results = runner.run(
                        scale.scale(
                            kube,
                            provider,
                            workdir / "operators",
                            args.scale,
                            resync_interval=args.resync_interval,
                            concurrency=args.max_concurrent_reconciles,
                            apply_concurrency=args.apply_concurrency,
                            phase_limit=args.phase_timeout,
                            operator_args=args.operator_arg,
                        )
                    )
            finally:
                for log in sorted((workdir / "operators").glob("*/operator.log")):
                    shutil.copy(log, args.out / f"scale-{log.parent.name}.log")
    finished = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "meta": _meta(
            args,
            started,
            finished,
            load_before,
            {
                "provider_pool_size": args.pool_size,
                **({"operator_args": args.operator_arg} if args.operator_arg else {}),
            },
        ),
        "scale": results,
    }
    report["targets"] = scale.targets(results)
    json_path = args.out / f"scale-{args.scale}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    if args.publish:
        published = REPO / "docs" / "bench"
        published.mkdir(parents=True, exist_ok=True)
        shutil.copy(json_path, published / json_path.name)
    print(json.dumps(results, indent=2))
    print_targets(report["targets"])
    print(f"results: {json_path}")
    return exit_code(report["targets"], check=args.check)


def _meta(
    args: argparse.Namespace,
    started: datetime.datetime,
    finished: datetime.datetime,
    load_before: tuple[float, float, float],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """What a published run was: when, where, on which commit and with which settings (both kinds of run)."""
    return {
        "date": started.strftime("%Y-%m-%d"),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds()),
        "label": args.label,
        "commit": _git_commit(),
        "machine": _machine(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "settings": {
            "provider_latency_ms": args.provider_latency_ms,
            "resync_interval_s": args.resync_interval,
            "max_concurrent_reconciles": args.max_concurrent_reconciles,
            "apply_concurrency": args.apply_concurrency,
            **settings,
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale:
        args.out.mkdir(parents=True, exist_ok=True)
        return main_scale(args)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="redisdb-bench-") as tmp:
        workdir = Path(tmp)
        scenarios.say(f"control plane, local provider and operator in {workdir}")
        with (
            control_plane(workdir) as kube,
            local_provider(workdir / "provider", args.provider_latency_ms) as provider,
        ):
            install(kube, provider)
            with operator_process(
                kube,
                workdir / "operator",
                resync_interval=args.resync_interval,
                max_concurrent_reconciles=args.max_concurrent_reconciles,
                # Usage reads off: their own budget (--usage-calls-per-minute) is not the resync's one list per
                # provider per interval measured here; `--operator-arg=--usage-interval=3600` turns them back on.
                extra_args=["--usage-interval", "0", *args.operator_arg],
            ) as operator:
                try:
                    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                        results = runner.run(run_parts(args, kube, provider, operator, workdir))
                finally:
                    shutil.copy(operator.log_path, args.out / "operator.log")
                operator_argv = operator.argv[3:]
    finished = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "meta": _meta(args, started, finished, load_before, {"quick": args.quick, "operator_argv": operator_argv}),
        **results,
    }
    report["targets"] = _targets(report)
    json_path = args.out / "latest.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    chart.draw(report, args.out / "latest.png")
    if args.publish:
        published = REPO / "docs" / "bench"
        published.mkdir(parents=True, exist_ok=True)
        shutil.copy(json_path, published / "latest.json")
        shutil.copy(args.out / "latest.png", published / "latest.png")
    print(latest_table(report))
    print(f"\nMachine: {machine(report)}.\n")
    print_targets(report["targets"])
    print(f"results: {json_path} and {args.out / 'latest.png'}")
    return exit_code(report["targets"], check=args.check)


def print_targets(targets: list[dict[str, Any]]) -> None:
    for target in targets:
        mark = "met   " if target["met"] else "MISSED"
        print(f"{mark} {target['target']}: {target['value']} (goal {target['goal']})")


def exit_code(targets: list[dict[str, Any]], *, check: bool) -> int:
    """0, or with --check 1 when a target was missed (the numbers are printed and saved either way)."""
    missed = [target["target"] for target in targets if not target["met"]]
    if check and missed:
        print(f"bench --check: {len(missed)} target(s) missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
