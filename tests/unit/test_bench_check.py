"""`make bench ARGS=--check` fails when a target is missed; without --check the numbers are only reported."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
