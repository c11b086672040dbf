"""`python -m wan_animate <command>`: each command lives with the code it drives.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their command runs, so `--help` stays fast and a missing optional dependency breaks only its command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "preprocess": "wan_animate.preprocess.cli",
    "animate": "wan_animate.engine.cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m wan_animate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
        else:
            sub.add_parser(name, help=f"(run `python -m wan_animate {name} --help`)")
    args = parser.parse_args(argv)
    return importlib.import_module(COMMANDS[args.command]).run(args)
