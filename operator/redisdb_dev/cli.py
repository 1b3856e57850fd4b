"""`python -m redisdb_dev.cli`: the development commands (local provider, local control plane, demo).

Kept apart from the installed `redisdb-operator` command, whose image carries only what runs in the cluster.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> module whose `main(argv: list[str]) -> int` implements it (imported lazily: fast start-up).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "local-provider": ("redisdb_dev.local_provider.main", "serve the local Fly + Upstash provider"),
    "cluster": ("redisdb_dev.devcluster.main", "up|down|env: the local control plane"),
    "demo": ("redisdb_dev.demo", "up|down: control plane + local provider + operator + sample"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in SUBCOMMANDS:
        print("usage: python -m redisdb_dev.cli <command> [args]\n\ncommands:")
        for name, (_, help_text) in SUBCOMMANDS.items():
            print(f"  {name:<16}{help_text}")
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(SUBCOMMANDS[args[0]][0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
