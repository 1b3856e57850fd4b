"""`python -m redisdb_dev.cli`: the development commands (local provider, local control plane, demo).

Kept apart from the installed `redisdb-operator` command, whose image carries only what runs in the cluster.
"""

from __future__ import annotations

import sys

from redisdb_operator.cli import dispatch

# subcommand -> module whose `main(argv: list[str]) -> int` implements it (imported lazily: fast start-up).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "local-provider": ("redisdb_dev.local_provider.main", "serve the local Fly + Upstash provider"),
    "cluster": ("redisdb_dev.devcluster.main", "up|down|env: the local control plane"),
    "demo": ("redisdb_dev.demo", "up|down: control plane + local provider + operator + sample"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(
        SUBCOMMANDS, "python -m redisdb_dev.cli <command> [args]", list(sys.argv[1:] if argv is None else argv)
    )


if __name__ == "__main__":
    sys.exit(main())
