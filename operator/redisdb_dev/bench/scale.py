"""`python -m redisdb_dev.bench --scale N` (issue 15, not in CI): N RedisDatabases at once, two operators.

The local provider runs in its pooled mode (N databases on a bounded set of redis-servers) with the injected
latency; two operator processes elect a leader on a Lease (the first serves the webhook). Measured, in order:

1. create: all N applied at once -> all Ready, against the time just to submit them (the ratio); apiserver
   writes and provider calls per create; the leader's RSS.
2. steady: one resync interval (the operator's default, 300 s) with N Ready: the leader's CPU, RSS, provider
   calls per interval (one list per provider, paginated) and apiserver writes.
3. update and delete of a sample (at most 1,000, so the run stays bounded): provider calls per update/delete.
4. failover: SIGTERM of the leader (handover), then SIGKILL of the new leader: time until the standby holds the
   Lease and until a spec edit made at that moment reaches the provider; no database created twice (the
   provider's record of every password it issued, by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from .environment import (
    CREDENTIALS_NAMESPACE,
    LocalProvider,
    OperatorProcess,
    operator_process,
)
from .scenarios import (
    BASE,
    UPDATED_READ_REGIONS,
    Counters,
    DatabaseWatch,
    _for_each,
    _phase_result,
    apply,
    has_updated_regions,
    is_ready,
    manifest,
    say,
    verify_secret,
)
from .webhook import NAMESPACE, Kube

LEASE = "redisdb-bench-leader"
SAMPLE_LIMIT = 300


def election_args(identity: str) -> list[str]:
    return [
        "--leader-election",
        f"--leader-election-namespace={CREDENTIALS_NAMESPACE}",
        f"--leader-election-name={LEASE}",
        f"--leader-election-identity={identity}",
    ]


def lease_holder(kube: Kube) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{CREDENTIALS_NAMESPACE}/leases/{LEASE}"
    with httpx.Client(base_url=kube.server, verify=kube.ssl, timeout=10) as client:
        response = client.get(path)
    if response.status_code != 200:
        return ""
    return str((response.json().get("spec") or {}).get("holderIdentity") or "")


class Candidates:
    """The two operator processes (op-a serves the webhook), each restartable as a standby."""

    def __init__(
        self,
        kube: Kube,
        workdir: Path,
        *,
        resync_interval: float,
        concurrency: int,
        operator_args: Sequence[str] = (),
    ) -> None:
        self.kube = kube
        self.operator_args = list(operator_args)
        self.workdir = workdir
        self.resync_interval = resync_interval
        self.concurrency = concurrency
        self.stack = contextlib.ExitStack()
        self.running: dict[str, OperatorProcess] = {}
        self.starts: dict[str, int] = defaultdict(int)

    def start(self, identity: str) -> OperatorProcess:
        self.starts[identity] += 1
        process = self.stack.enter_context(
            operator_process(
                self.kube,
                self.workdir / f"{identity}-{self.starts[identity]}",
                resync_interval=self.resync_interval,
                max_concurrent_reconciles=self.concurrency,
                extra_args=[*election_args(identity), *self.operator_args],
                webhook=identity == "op-a",
            )
        )
        self.running[identity] = process
        return process

    def leader(self) -> tuple[str, OperatorProcess]:
        holder = lease_holder(self.kube)
        return holder, self.running[holder]

    def close(self) -> None:
        self.stack.close()


def _wait(condition: Callable[[], Any], within: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(interval)


def _cpu_rate(operator: OperatorProcess, seconds: float) -> float:
    first = operator.sample()
    time.sleep(seconds)
    last = operator.sample()
    return (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at)


async def _failover(
    kube: Kube,
    provider: LocalProvider,
    candidates: Candidates,
    how: signal.Signals,
    name: str,
    read_regions: list[str],
    api: httpx.AsyncClient,
) -> dict[str, Any]:
    """Signal the leader; time until another candidate holds the Lease and until an edit reaches the provider."""
    old_identity, old = candidates.leader()
    database_id = await asyncio.to_thread(_database_id, kube, name)
    say(f"failover: {how.name} to the leader {old_identity}")
    started = time.monotonic()
    os.kill(old.pid, how)
    await apply(api, manifest(name, read_regions))  # the edit, made the moment the leader goes
    new_identity = await asyncio.to_thread(
        _wait, lambda: (holder := lease_holder(kube)) not in ("", old_identity) and holder, 120, "a new Lease holder"
    )
    took_lease = time.monotonic() - started

    def edit_landed() -> bool:
        with provider.admin() as client:
            found = client.get(f"/admin/databases/{database_id}")
            return found.status_code == 200 and sorted(found.json()["read_regions"]) == sorted(read_regions)

    await asyncio.to_thread(_wait, edit_landed, 300, "the edit at the provider", 0.1)
    reached = time.monotonic() - started
    with contextlib.suppress(Exception):
        old.process.wait(30)
    return {
        "signal": how.name,
        "from": old_identity,
        "to": new_identity,
        "lease_taken_s": round(took_lease, 2),
        "edit_at_provider_s": round(reached, 2),
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("kube-apiserver", "etcd", "kube-controller-manager", "local-provider", "redis-server")


def cpu_by_process(workdir: Path) -> dict[str, float]:
    """CPU seconds (user + system) so far of every process of this run, by role: the control plane, the local
    provider and its redis-servers, each operator (by identity) and this benchmark process (its submitting clients
    and watch). Where the machine's cores go in a phase, from /proc."""
    marker = str(workdir.parent)
    seconds: dict[str, float] = defaultdict(float)
    provider_pids: set[int] = set()
    rows: list[tuple[int, int, str, float]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
        rows.append((int(entry.name), int(stat[1]), command, cpu))
    for pid, _, command, _ in rows:
        if "local-provider" in command and marker in command:
            provider_pids.add(pid)
    for pid, parent, command, cpu in rows:
        role = None
        if pid == os.getpid():
            role = "benchmark (clients and watch)"
        elif "redis-server" in command and parent in provider_pids:
            role = "redis-server"
        elif marker in command:
            identity = next((part.split("=", 1)[1] for part in command.split() if "election-identity=" in part), None)
            role = f"operator {identity}" if identity else next((r for r in ROLES if r in command), None)
        if role is not None:
            seconds[role] += cpu
    return dict(seconds)


def cpu_spent(before: dict[str, float], after: dict[str, float], per: int) -> dict[str, Any]:
    spent = {role: round(after[role] - before.get(role, 0.0), 2) for role in sorted(after)}
    return {
        "cpu_seconds_by_process": spent,
        "cpu_seconds_total": round(sum(spent.values()), 2),
        "cpu_ms_per_resource": round(1000 * sum(spent.values()) / per, 2) if per else None,
    }


def _database_id(kube: Kube, name: str) -> str:
    text = kube.kubectl("get", "redisdatabase", name, "-n", NAMESPACE, "-o", "json")
    return str(json.loads(text)["status"]["databaseId"])


def _created_twice(provider: LocalProvider, prefix: str) -> int:
    with provider.admin() as client:
        issued = client.get("/admin/issued-credentials").raise_for_status().json()
    ids: dict[str, set[str]] = defaultdict(set)
    for entry in issued.get("passwords", []):
        if str(entry["name"]).startswith(prefix):
            ids[str(entry["name"])].add(str(entry["database_id"]))
    return sum(1 for found in ids.values() if len(found) > 1)


@contextlib.contextmanager
def _sampling(operator: OperatorProcess, every: float = 1.0) -> Iterator[list[int]]:
    """RSS samples of the operator in a background thread while the block runs."""
    samples: list[int] = []
    stop = False

    def run() -> None:
        while not stop:
            with contextlib.suppress(Exception):
                samples.append(operator.sample().rss_kib)
            time.sleep(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop = True
        thread.join(5)


async def scale(
    kube: Kube,
    provider: LocalProvider,
    workdir: Path,
    size: int,
    *,
    resync_interval: float,
    concurrency: int,
    apply_concurrency: int,
    phase_limit: float,
    operator_args: Sequence[str] = (),
) -> dict[str, Any]:
    names = [f"scale-{index}" for index in range(size)]
    result: dict[str, Any] = {"databases": size, "apply_concurrency": apply_concurrency}
    candidates = Candidates(
        kube, workdir, resync_interval=resync_interval, concurrency=concurrency, operator_args=operator_args
    )
    try:
        candidates.start("op-a")
        await asyncio.to_thread(_wait, lambda: lease_holder(kube) == "op-a", 60, "op-a leading")
        candidates.start("op-b")
        leader_identity, leader = candidates.leader()
        async with kube.client(apply_concurrency) as api, DatabaseWatch(kube) as watch:
            # 1. create
            say(f"scale {size}: apply all -> Ready")
            counters = await asyncio.to_thread(Counters, kube, provider)
            watch.expect(is_ready)
            cpu_before = await asyncio.to_thread(cpu_by_process, workdir)
            with _sampling(leader) as rss:
                started = time.perf_counter()
                await _for_each(names, apply_concurrency, lambda name: apply(api, manifest(name)))
                applied = time.perf_counter()
                cpu_submitted = await asyncio.to_thread(cpu_by_process, workdir)
                complete = True
                try:
                    await watch.wait(lambda: all(name in watch.met for name in names), phase_limit, f"{size} Ready")
                except TimeoutError:
                    complete = False  # reported with how many were Ready; the rest of the run goes on
                finished = max(watch.met.values())
                cpu_ready = await asyncio.to_thread(cpu_by_process, workdir)
            create = _phase_result(size, started, finished, watch.met.values())
            create.pop("curve_s")
            create["complete"] = complete
            create["ready"] = len(watch.met)
            create["apply_seconds"] = round(applied - started, 2)
            create["ready_to_submit_ratio"] = round(create["seconds"] / create["apply_seconds"], 2)
            # where the cores went: while submitting, and in all until the last Ready
            create["while_submitting"] = cpu_spent(cpu_before, cpu_submitted, size)
            create["until_all_ready"] = cpu_spent(cpu_before, cpu_ready, size)
            await asyncio.sleep(2)
            create.update(await asyncio.to_thread(counters.result, len(watch.met)))
            create["operator_rss_mib_peak_during"] = round(max(rss, default=0) / 1024, 1)
            result["create"] = create
            ready = [name for name in names if name in watch.met]
            await verify_secret(api, ready[0])
            await verify_secret(api, ready[-1])
            # a sample is updated and deleted (bounded time); the rest stays for the failover
            sample = ready[: min(len(ready) // 2, SAMPLE_LIMIT)]
            result["sample"] = len(sample)

            # 2. steady
            say(f"scale {size}: steady, one resync interval of {resync_interval:g}s")
            await asyncio.sleep(5)
            counters = await asyncio.to_thread(Counters, kube, provider)
            first = leader.sample()
            with _sampling(leader, 2.0) as rss:
                await asyncio.sleep(resync_interval + 5)
            last = leader.sample()
            calls = await asyncio.to_thread(counters.result, size)
            cpu = (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at)
            result["steady"] = {
                "resync_interval_s": resync_interval,
                "operator_cpu_percent": round(100 * cpu, 2),
                "operator_cpu_ms_per_database_per_interval": round(
                    1000 * (last.cpu_seconds - first.cpu_seconds) * resync_interval / ((last.at - first.at) * size),
                    3,
                ),
                "window_s": round(last.at - first.at, 1),
                # list requests (GraphQL `organization { addOns }`, one per page), scaled to one interval
                "list_requests_per_interval": round(
                    calls["provider_calls_by_operation"].get("fly:organization", 0)
                    * resync_interval
                    / (last.at - first.at),
                    2,
                ),
                "provider_calls": calls["provider_calls"],
                "usage_reads": calls["usage_reads"],
                "provider_calls_by_operation": calls["provider_calls_by_operation"],
                "apiserver_writes": calls["operator_writes"],
                "operator_rss_mib": round(statistics.median(rss) / 1024, 1) if rss else None,
            }

            # 3. update and delete a sample
            say(f"scale {size}: update {len(sample)}")
            counters = await asyncio.to_thread(Counters, kube, provider)
            watch.expect(has_updated_regions)
            started = time.perf_counter()
            await _for_each(sample, apply_concurrency, lambda name: apply(api, manifest(name, UPDATED_READ_REGIONS)))
            await watch.wait(lambda: all(name in watch.met for name in sample), phase_limit, "sample updated")
            update = _phase_result(len(sample), started, max(watch.met[n] for n in sample), [])
            update.pop("curve_s")
            await asyncio.sleep(2)
            update.update(await asyncio.to_thread(counters.result, len(sample)))
            result["update"] = update
            say(f"scale {size}: delete {len(sample)}")
            counters = await asyncio.to_thread(Counters, kube, provider)
            watch.expect(lambda _: False)
            started = time.perf_counter()
            await _for_each(sample, apply_concurrency, lambda name: api.delete(f"{BASE}/{name}"))
            await watch.wait(lambda: all(name in watch.gone for name in sample), phase_limit, "sample deleted")
            delete = _phase_result(len(sample), started, max(watch.gone[n] for n in sample), [])
            delete.pop("curve_s")
            await asyncio.sleep(2)
            delete.update(await asyncio.to_thread(counters.result, len(sample)))
            result["update"], result["delete"] = update, delete
            result["operator_peak_rss_mib"] = round(leader.sample().peak_rss_kib / 1024, 1)

            # 4. failover: SIGTERM (handover), then SIGKILL of the new leader
            remaining = [name for name in ready if name not in set(sample)]
            failover: dict[str, Any] = {}
            try:
                failover["sigterm"] = await _failover(
                    kube, provider, candidates, signal.SIGTERM, remaining[0], ["ams"], api
                )
                candidates.start(failover["sigterm"]["from"])  # back as a standby
                _, new_leader = candidates.leader()
                # let the takeover's resumes settle before the next signal (bounded: the run must end)
                with contextlib.suppress(TimeoutError):
                    await asyncio.to_thread(
                        _wait, lambda: _cpu_rate(new_leader, 3.0) < 0.3, 150, "the new leader's resumes to settle", 0
                    )
                failover["sigkill"] = await _failover(
                    kube, provider, candidates, signal.SIGKILL, remaining[-1], ["ams"], api
                )
            except (TimeoutError, KeyError, OSError) as error:
                failover["error"] = f"{type(error).__name__}: {error}"
            result["failover"] = failover
            result["created_twice"] = await asyncio.to_thread(_created_twice, provider, f"{NAMESPACE}-scale-")
            result["leader_identity_at_start"] = leader_identity
    except Exception as error:  # a bounded one-off run: keep what was measured, say what stopped it
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        candidates.close()
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with met/missed."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": met})

    with contextlib.suppress(KeyError):  # a run stopped early: the targets it got to
        _add_targets(result, add)
    return out


def _add_targets(result: dict[str, Any], add: Callable[[str, Any, str, bool], None]) -> None:
    size = result["databases"]
    create, steady = result["create"], result["steady"]
    add(
        f"all Ready / submit time ({size})",
        f"{create['ready_to_submit_ratio']}x ({create['seconds']} s / {create['apply_seconds']} s)",
        "<= 1.5x",
        create["ready_to_submit_ratio"] <= 1.5,
    )
    if size >= 10000:
        add(f"{size} Ready", f"{create['seconds']} s", "< 300 s", create["seconds"] < 300)
    add(
        "provider calls per create (usage reads apart)",
        create["provider_calls_per_resource"],
        "1.00",
        create["provider_calls_per_resource"] <= 1.0,
    )
    add(
        "provider calls per update (usage reads apart)",
        result["update"]["provider_calls_per_resource"],
        "1",
        result["update"]["provider_calls_per_resource"] <= 1.0,
    )
    add(
        "provider calls per delete (usage reads apart)",
        result["delete"]["provider_calls_per_resource"],
        "1",
        result["delete"]["provider_calls_per_resource"] <= 1.0,
    )
    pages = max(1, -(-size // 500))
    add(
        "list requests per resync interval",
        steady["list_requests_per_interval"],
        f"one list per provider ({pages} page(s) of 500)",
        steady["list_requests_per_interval"] <= pages * 1.1,
    )
    peak = result["operator_peak_rss_mib"]
    add(f"operator RSS ({size}), peak", f"{peak} MiB", "< 400 MB", peak * 1.048576 < 400)
    add(f"idle CPU ({size} Ready)", f"{steady['operator_cpu_percent']} %", "< 2 %", steady["operator_cpu_percent"] < 2)
    failover = result["failover"]
    for how, goal in (("sigkill", 15), ("sigterm", 2)):
        if how in failover:
            took = failover[how]["edit_at_provider_s"]
            add(f"failover after {how.upper()} (edit at the provider)", f"{took} s", f"< {goal} s", took < goal)
        else:
            add(f"failover after {how.upper()}", failover.get("error", "not measured"), f"< {goal} s", False)
    add("databases created twice", result["created_twice"], "0", result["created_twice"] == 0)
