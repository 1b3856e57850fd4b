"""The `redisdb-operator` command: one entry point, each subcommand implemented in its own module."""

from __future__ import annotations

import importlib
import sys

from . import __version__

# subcommand -> module whose `main(argv: list[str]) -> int` implements it (imported lazily: fast start-up).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("redisdb_operator.runner", "run the operator (kopf) against the configured cluster"),
    "gen-crds": ("redisdb_operator.crdgen", "write crds/*.yaml from the pydantic models"),
}


def dispatch(subcommands: dict[str, tuple[str, str]], usage: str, args: list[str]) -> int:
    """Run the subcommand named first in `args` (its module imported only then), or print the usage."""
    if not args or args[0] in ("-h", "--help") or args[0] not in subcommands:
        print(f"usage: {usage}\n\ncommands:")
        for name, (_, help_text) in subcommands.items():
            print(f"  {name:<16}{help_text}")
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(subcommands[args[0]][0])
    result: int = module.main(args[1:])
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["version"]):
        # What an image or a bug report runs: the package version, which the chart's appVersion matches.
        print(f"redisdb-operator {__version__}")
        return 0
    return dispatch(SUBCOMMANDS, "redisdb-operator [--version] <command> [args]", args)


if __name__ == "__main__":
    sys.exit(main())
