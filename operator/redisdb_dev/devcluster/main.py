"""`python -m redisdb_dev.cli cluster up|down|status|env`: the local control plane for people (make cluster-up/down)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from redisdb_dev.devcluster.controlplane import ControlPlane, ControlPlaneError, default_state_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m redisdb_dev.cli cluster", description=__doc__)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"state directory (default: $REDISDB_CLUSTER_DIR or {default_state_dir()})",
    )
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    args = parser.parse_args(argv)
    plane = ControlPlane(args.dir)
    export_line = f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}"

    if args.command == "up":
        started = time.monotonic()
        was_running = plane.is_running()
        try:
            plane.start()
        except ControlPlaneError as error:
            print(f"cluster up failed: {error}", file=sys.stderr)
            return 1
        how = "already running" if was_running else f"started in {time.monotonic() - started:.1f}s"
        print(f"control plane {how}; {export_line}")
        return 0
    if args.command == "down":
        plane.stop()
        return 0
    if args.command == "status":
        state = plane.state()
        if state is None or not plane.is_running():
            print(f"control plane not running (state dir {plane.state_dir})")
            return 1
        processes = ", ".join(f"{p.name}={p.pid}" for p in state.processes)
        print(f"control plane running at {state.server}: {processes}; {export_line}")
        return 0
    # env: for `eval "$(python -m redisdb_dev.cli cluster env)"`
    if not plane.is_running():
        print("control plane not running; start it with `make cluster-up`", file=sys.stderr)
        return 1
    print(export_line)
    return 0
