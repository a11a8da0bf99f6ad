"""`fitbench`: a thin argparse front over the core; no subcommand starts the desktop app."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from fitbench import __version__
from fitbench.commands import COMMANDS

log = logging.getLogger(__name__)


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"fitbench.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fitbench",
        description=(
            "Mixtral 8x7B (MoE) or Llama 2 70B (dense): which one, at which GGUF quantization, "
            "with how much on the GPU, and what speed, latency and memory on THIS machine."
        ),
    )
    parser.add_argument("--version", action="version", version=f"fitbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _command_module(name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        sub_parser.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log debug output to stderr",
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fitbench.core import logsetup

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    log_path = logsetup.setup(verbose=getattr(args, "verbose", False))
    log.debug("fitbench %s, log file %s, argv %s", __version__, log_path, argv)
    if args.command is None:
        args = parser.parse_args(["gui", *argv])
    args.argv = argv  # what the user typed, recorded with runs so they can be repeated
    module: ModuleType = args._module
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a clear message, details in the log
        log.debug("fitbench %s failed", args.command, exc_info=True)
        print(f"fitbench {args.command}: error: {exc}", file=sys.stderr)
        print(f"(details in {log_path})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
