"""`pip install .` with no extras: what the image carries. No `redis`, every runtime module imports, the command
starts, and the dev tooling is not installed (it lives beside the package in the repository only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pip_install_without_extras_carries_only_the_runtime(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # A copy of the tree, so the build leaves nothing (build/, *.egg-info) in the work tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((REPO / name).read_bytes())
    shutil.copytree(REPO / "operator", source / "operator", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert "redisdb-operator" in installed
    assert "redis" not in installed, "the runtime must not depend on the redis client (it is a dev extra)"
    probe = (
        "import importlib, pkgutil, redisdb_operator\n"
        "names = [m.name for m in pkgutil.walk_packages(redisdb_operator.__path__, 'redisdb_operator.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('redisdb_dev') is None, 'the dev package was installed'\n"
        "print(len(names))\n"
    )
    # Without the Makefile's PYTHONPATH (which puts the repository's operator/ on the path): only what pip installed.
    clean_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    imported = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=clean_env)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert int(imported.stdout.strip()) > 20
    started = subprocess.run(
        [str(env_dir / "bin" / "redisdb-operator"), "run", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert started.returncode == 0, started.stderr[-3000:]
    assert "--resync-interval" in started.stdout and "--log-format" in started.stdout
    version = subprocess.run(
        [str(env_dir / "bin" / "redisdb-operator"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.returncode == 0 and version.stdout.startswith("redisdb-operator 0."), version.stdout
    plugin = subprocess.run(
        [str(env_dir / "bin" / "kubectl-redisdb"), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert plugin.returncode == 0, plugin.stderr[-3000:]  # the kubectl plugin ships as a console script
    assert "rotate" in plugin.stdout and "connect" in plugin.stdout
