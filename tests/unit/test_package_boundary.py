"""The installed package carries only what runs in the cluster: nothing in it reaches the dev tooling.

Checked on the source (imports and import-by-string), so a stray `importlib.import_module("redisdb_dev…")` or a
`from redisdb_dev…` fails here before it fails in an image that lacks the dev package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "operator" / "redisdb_operator"
DEV_PACKAGE = "redisdb_dev"
RUNTIME_FILES = sorted(RUNTIME.rglob("*.py"))


def dev_references(source: str) -> list[str]:
    """Every import of, and every string naming, the dev package in one module's source."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == DEV_PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == DEV_PACKAGE:
                found.append(str(node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DEV_PACKAGE in node.value:
            found.append(node.value)
    return found


def test_the_runtime_package_is_found() -> None:
    assert len(RUNTIME_FILES) > 20


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda path: str(path.relative_to(RUNTIME)))
def test_runtime_module_never_reaches_the_dev_package(path: Path) -> None:
    assert dev_references(path.read_text()) == []


def test_the_check_sees_imports_and_import_strings() -> None:
    assert dev_references("import redisdb_dev.bench") == ["redisdb_dev.bench"]
    assert dev_references("from redisdb_dev.local_provider import main") == ["redisdb_dev.local_provider"]
    assert dev_references("import importlib\nimportlib.import_module('redisdb_dev.demo')") == ["redisdb_dev.demo"]
    assert dev_references("from . import redisdb_devious") == []
