"""The `gdn` command line: one subcommand per module in `gdn.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int` (the exit code). Adding a command is one line in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (subcommand, module under gdn.commands)
COMMANDS: list[tuple[str, str]] = [
    ("profile", "profile"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdn", description="Grouped Decomposed Networks for video action recognition."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        module = importlib.import_module(f"gdn.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
