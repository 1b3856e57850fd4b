"""Markdown tables of benchmark results: the README's latest numbers, and before/after comparisons.

python -m redisdb_dev.bench.report docs/bench/latest.json [docs/bench/before.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, str, Callable[[dict[str, Any]], str]]


def _bulk(results: dict[str, Any], size: int) -> dict[str, Any]:
    for run in results.get("bulk") or []:
        if run["databases"] == size:
            found: dict[str, Any] = run
            return found
    return {}


def _sizes(results: dict[str, Any]) -> list[int]:
    return [run["databases"] for run in results.get("bulk") or []]


def _size_rows(size: int) -> list[Row]:
    def create(results: dict[str, Any]) -> str:
        return "{seconds:.1f} s ({per_second:.0f}/s)".format(**_bulk(results, size)["create"])

    def costs(results: dict[str, Any]) -> str:
        create = _bulk(results, size)["create"]
        calls, writes = create["provider_calls_per_resource"], create["operator_writes_per_resource"]
        return f"{calls:g} / {writes:g} / {create['events_per_resource']:g}"

    def update_delete(results: dict[str, Any]) -> str:
        run = _bulk(results, size)
        return f"{run['update']['seconds']:.1f} s; {run['delete']['seconds']:.1f} s"

    def provider_calls(results: dict[str, Any]) -> str:
        steady = _bulk(results, size)["steady"]
        return f"{steady['provider_calls_per_interval']:g} ({steady['resync_interval_s']:g} s interval)"

    def cpu_memory(results: dict[str, Any]) -> str:
        run = _bulk(results, size)
        steady = run["steady"]
        # CPU per database per resync: comparable across runs made with different resync intervals
        per_resync = steady["operator_cpu_percent"] / 100 * steady["resync_interval_s"] * 1000 / size
        return (
            f"{steady['operator_cpu_percent']:.2f} % ({per_resync:.1f} ms per database per resync); "
            f"{steady['operator_rss_mib']:.0f} / {run['operator_peak_rss_mib']:.0f} MiB"
        )

    large = size >= 1000
    return [
        (f"{size} applied at once -> all Ready", "< 60 s" if large else "", create),
        (f"{size}: provider calls / apiserver writes / Events per create", "writes <= 5", costs),
        (f"{size}: change every read region; delete all", "", update_delete),
        (f"{size} Ready: provider calls per resync interval", "1 list", provider_calls),
        (f"{size} Ready: operator CPU; RSS steady / peak", "CPU < 2%, RSS < 250 MB" if large else "", cpu_memory),
    ]


def _rows(sizes: list[int]) -> list[Row]:
    rows: list[Row] = [
        (
            "single apply -> Ready, p50 / p95 / p99",
            "p50 <= 1.5x floor",
            lambda r: "{p50_ms:.0f} / {p95_ms:.0f} / {p99_ms:.0f} ms".format(**r["single"]["apply_to_ready"]),
        ),
        (
            "floor (provider create + 3 apiserver round trips)",
            "",
            lambda r: f"{r['single']['floor']['floor_ms']:.0f} ms (ratio {r['single']['ratio_p50_to_floor']:.2f})",
        ),
    ]
    for size in sizes:
        rows += _size_rows(size)
    rows += [
        (
            "webhook p50 / p99, 50 reviews in flight",
            "p99 < 50 ms",
            lambda r: "{p50_ms:.1f} / {p99_ms:.1f} ms".format(**r["webhook"]["webhook"]),
        ),
        (
            "webhook as the apiserver times it, 50 concurrent dry-run applies",
            "",
            lambda r: "p50 <= {p50_le_ms:g} ms, p99 <= {p99_le_ms:g} ms".format(
                **r["webhook"]["apiserver_webhook_metric"]
            ),
        ),
    ]
    return rows


def _cell(row: Row, results: dict[str, Any]) -> str:
    try:
        return row[2](results)
    except (KeyError, TypeError, ValueError):
        return "-"


def machine(results: dict[str, Any]) -> str:
    meta = results["meta"]
    box = meta["machine"]
    load = meta["load_average_before"]
    return (
        f"{box['cpus']} cores ({box['cpu_model'] or 'unknown CPU'}), {box['memory_gib']:.0f} GB, "
        f"shared (load average {load[0]:.1f} at the start), {meta['date']}, commit {meta['commit']}, "
        f"provider latency {meta['settings']['provider_latency_ms']} ms per call"
    )


def latest_table(results: dict[str, Any]) -> str:
    lines = ["| Measurement | Target | Latest |", "|---|---|---|"]
    for row in _rows(_sizes(results)):
        lines.append(f"| {row[0]} | {row[1]} | {_cell(row, results)} |")
    return "\n".join(lines)


def comparison_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = ["| Measurement | Target | Before | After |", "|---|---|---|---|"]
    sizes = sorted(set(_sizes(before)) | set(_sizes(after)))
    for row in _rows(sizes):
        lines.append(f"| {row[0]} | {row[1]} | {_cell(row, before)} | {_cell(row, after)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        raise SystemExit("usage: python -m redisdb_dev.bench.report LATEST.json [BEFORE.json]")
    latest = json.loads(paths[0].read_text())
    if len(paths) > 1:
        print(comparison_table(json.loads(paths[1].read_text()), latest))
    else:
        print(latest_table(latest))
    print(f"\nMachine: {machine(latest)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
