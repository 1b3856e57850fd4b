"""`make bench ARGS=--check` fails when a target is missed; without --check the numbers are only reported."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redisdb_dev.bench.__main__ as bench_main
from redisdb_dev.bench.__main__ import _targets, exit_code, parse_args

REPO = Path(__file__).resolve().parents[2]


def test_check_fails_on_a_missed_target() -> None:
    missed = _targets({"webhook": {"webhook": {"p99_ms": 51}}})
    met = _targets({"webhook": {"webhook": {"p99_ms": 49}}})
    assert [target["met"] for target in missed + met] == [False, True]
    assert exit_code(missed, check=True) == 1
    assert exit_code(missed, check=False) == 0
    assert exit_code(met, check=True) == 0
    assert parse_args(["--check"]).check and not parse_args([]).check


def test_make_bench_passes_args() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "bench", "ARGS=--quick --check"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "-m redisdb_dev.bench --quick --check" in dry_run.stdout


def test_scale_run_honours_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--scale N --check` exits 1 on a missed target too (it once returned 0 whatever the targets said); the
    control plane, provider and measurement are stood in for: only the report and exit path run."""

    @contextlib.contextmanager
    def nothing(*_args: Any, **_kwargs: Any) -> Iterator[None]:
        yield None

    async def measured(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {"databases": 10}

    monkeypatch.setattr(bench_main, "control_plane", nothing)
    monkeypatch.setattr(bench_main, "local_provider", nothing)
    monkeypatch.setattr(bench_main, "install", lambda *_args: None)
    monkeypatch.setattr(bench_main.scale, "scale", measured)
    verdict = {"target": "10 Ready", "value": "1 s", "goal": "< 300 s", "met": False}
    monkeypatch.setattr(bench_main.scale, "targets", lambda _results: [verdict])
    out = ["--scale", "10", "--out", str(tmp_path)]
    assert bench_main.main([*out, "--check"]) == 1
    assert bench_main.main(out) == 0
    verdict["met"] = True
    assert bench_main.main([*out, "--check"]) == 0
    assert (tmp_path / "scale-10.json").exists()


def test_cpu_spent_is_by_process_and_per_resource() -> None:
    from redisdb_dev.bench.scale import cpu_spent

    spent = cpu_spent(
        {"etcd": 1.0, "operator op-a": 2.0}, {"etcd": 3.5, "operator op-a": 12.0, "local-provider": 4.5}, 100
    )
    assert spent["cpu_seconds_by_process"] == {"etcd": 2.5, "local-provider": 4.5, "operator op-a": 10.0}
    assert spent["cpu_seconds_total"] == 17.0 and spent["cpu_ms_per_resource"] == 170.0
