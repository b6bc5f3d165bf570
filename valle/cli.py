"""The `valle` command line: one entry point, one sub-command per module of `valle.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands


def _discover_commands():
    found = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if not all(hasattr(module, attr) for attr in ("NAME", "HELP", "add_arguments", "run")):
            raise RuntimeError(
                f"valle.commands.{info.name} must define NAME, HELP, add_arguments(parser) and run(args)"
            )
        found.append(module)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valle",
        description="VALL-E zero-shot text-to-speech: synthesis, data preparation, training, evaluation, conversion.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _discover_commands():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, OSError) as error:
        # Bad input: the message names the problem and the fix; a traceback would only bury it.
        # VALLE_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("VALLE_DEBUG"):
            raise
        print(f"valle {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
