"""`redisdb-operator --version` and `run --log-format json`: what an image, a bug report and a log pipeline use."""

from __future__ import annotations

import io
import json
import logging
import tomllib
from pathlib import Path

import pytest
import yaml

from redisdb_operator import cli, runner

REPO = Path(__file__).resolve().parents[2]


def test_version_matches_the_package_and_the_chart(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    printed = capsys.readouterr().out.strip()
    package = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((REPO / "charts/redisdb-operator/Chart.yaml").read_text())["appVersion"]
    assert printed == f"redisdb-operator {package}"
    assert chart == package, "the chart's appVersion (the image tag it runs) is the package version"


def test_log_format_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.parse_args([]).log_format == "text"
    assert runner.parse_args(["--log-format", "json"]).log_format == "json"
    monkeypatch.setenv("REDISDB_LOG_FORMAT", "json")
    assert runner.parse_args([]).log_format == "json"
    with pytest.raises(SystemExit):
        runner.parse_args(["--log-format", "yaml"])


def _records_through(log_format: str) -> list[str]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        runner.configure_logging(verbose=False, log_format=log_format)
        stream = io.StringIO()
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        reference = {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "name": "cache",
            "namespace": "shop",
        }
        logging.getLogger("kopf.objects").info("Handler 'reconcile' succeeded.", extra={"k8s_ref": reference})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("redisdb_operator.controller").exception("reconcile failed: %s", 'quoted "text"')
        logging.getLogger("redisdb_operator").debug("not at INFO")
        return stream.getvalue().splitlines()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_json_logs_are_one_object_per_line() -> None:
    lines = _records_through("json")
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(entries) == 2, lines
    first, second = entries
    assert first["level"] == "INFO" and first["logger"] == "kopf.objects"
    assert first["message"] == "Handler 'reconcile' succeeded."
    assert first["object"] == {"kind": "RedisDatabase", "namespace": "shop", "name": "cache"}
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and second["message"] == 'reconcile failed: quoted "text"'
    assert "ValueError: boom" in second["exception"]
    assert all(line.startswith("{") for line in lines), "a traceback must not break the one-object-per-line rule"


def test_text_logs_stay_readable_lines() -> None:
    lines = _records_through("text")
    assert " INFO kopf.objects: Handler 'reconcile' succeeded." in lines[0]
    assert not lines[0].startswith("{")
