"""The layering of docs/architecture.md, checked on the source: data flows one way, event -> handler -> plan ->
provider -> Secret/status, so the pure core never reaches the I/O around it and lower layers never reach up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "redisdb_operator"
RUNTIME = Path(__file__).resolve().parents[2] / "operator" / PACKAGE


def module_path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = RUNTIME / relative / "__init__.py"
    return package if package.exists() else (RUNTIME / relative).with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Absolute names of everything `module` imports directly (relative imports resolved)."""
    path = module_path(module)
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = str(node.module)
            found.add(stem)
            # `from . import x` and `from .pkg import module` may name modules, not attributes
            for alias in node.names:
                candidate = f"{stem}.{alias.name}"
                if candidate.startswith(PACKAGE) and module_path(candidate).exists():
                    found.add(candidate)
    return found


def reachable(module: str) -> set[str]:
    """Every module of the package `module` imports, directly or through others, and every outside name."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in imports_of(current):
            if name in seen:
                continue
            seen.add(name)
            if name.startswith(PACKAGE + ".") and module_path(name).exists():
                todo.append(name)
    return seen


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


CORE = ["reconcile", "decision", "duplicates", "deletion", "desired", "status"]


@pytest.mark.parametrize("module", [f"{PACKAGE}.{name}" for name in CORE])
def test_the_reconcile_core_does_no_io(module: str) -> None:
    everything = reachable(module)
    assert not top_level(everything) & {"kopf", "httpx", "aiohttp", "asyncio"}, sorted(everything)
    assert not everything & {f"{PACKAGE}.kube", f"{PACKAGE}.controller", f"{PACKAGE}.errors"}, sorted(everything)


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (f"{PACKAGE}.provider_registry", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.admission", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.provider_checks", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.provider_registry", f"{PACKAGE}.controller"),
        (f"{PACKAGE}.errors", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.secrets", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.secrets", f"{PACKAGE}.controller"),
        (f"{PACKAGE}.admission", f"{PACKAGE}.controller"),
        (f"{PACKAGE}.usage", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.usage", f"{PACKAGE}.controller"),
        (f"{PACKAGE}.providers.base", f"{PACKAGE}.reconcile"),
        (f"{PACKAGE}.providers.fly", f"{PACKAGE}.kube"),
        (f"{PACKAGE}.providers.upstash", f"{PACKAGE}.kube"),
    ],
)
def test_lower_layers_never_reach_up(module: str, forbidden: str) -> None:
    assert forbidden not in reachable(module)


@pytest.mark.parametrize("module", ["decision", "duplicates", "deletion"])
def test_the_core_parts_never_reach_the_reconcile_that_uses_them(module: str) -> None:
    """`reconcile` builds on the vocabulary (`decision`) and the duplicate rule (`duplicates`), and the deletion
    stands beside it: none of them imports `reconcile` back, which would tie the split together again."""
    assert f"{PACKAGE}.reconcile" not in reachable(f"{PACKAGE}.{module}")


def test_the_walk_sees_imports() -> None:
    """The checks above are only worth something if the walk finds what is there."""
    assert f"{PACKAGE}.reconcile" in reachable(f"{PACKAGE}.controller")
    assert f"{PACKAGE}.kube" in reachable(f"{PACKAGE}.errors")
    assert f"{PACKAGE}.providers.catalog" in reachable(f"{PACKAGE}.reconcile")
    assert "kopf" in top_level(reachable(f"{PACKAGE}.controller"))


def test_no_private_name_is_imported_across_modules() -> None:
    """A leading underscore means "this module only": nothing of the package imports one from another module."""
    offenders = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or str(node.module).startswith(PACKAGE)):
                offenders += [
                    f"{path.relative_to(RUNTIME)}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and alias.name != "__version__"
                ]
    assert offenders == []
