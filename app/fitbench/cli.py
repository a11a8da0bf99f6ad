"""`fitbench`: a thin argparse front over the core; no subcommand starts the desktop app."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

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


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so a sweep ends its run as `interrupted` and
    stops its worker. A BaseException, so no `except Exception` along the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def _handle_termination() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        # an ignored SIGHUP (nohup) stays ignored; a handler someone installed stays theirs
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_terminate)


# exceptions whose message alone does not say what went wrong (Python's own words about
# Python's values: "integer modulo by zero", "int() argument must be ...", "'n_layer'")
_CRYPTIC = (
    TypeError,
    LookupError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    RecursionError,
    UnicodeError,
    struct.error,
    MemoryError,
)
_INPUT_ARGS = ("file", "model", "results", "catalog", "config", "hardware", "repo", "out")


def _input_of(args: argparse.Namespace) -> str:
    """The file (or repo) the command was reading, as the user gave it."""
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, (str, Path)) and str(value):
            return os.fsdecode(value) if isinstance(value, Path) else value
        if isinstance(value, list) and value and isinstance(value[0], (str, Path)):
            return ", ".join(str(v) for v in value)
    return ""


def _where(exc: BaseException) -> str:
    """The innermost FitBench source line the exception passed through."""
    package = Path(__file__).resolve().parent
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if path.is_relative_to(package) and path.name != "cli.py":  # this file is always there
            found = f"{path.relative_to(package.parent)}:{frame.lineno}"
    return found


def describe_error(exc: BaseException, args: argparse.Namespace) -> str:
    """One line that says what failed: never empty, never Python's words alone."""
    message = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        message = f"missing key {exc.args[0]!r}"
    cryptic = not message or (isinstance(exc, _CRYPTIC) and type(exc).__module__ == "builtins")
    cryptic = cryptic or isinstance(exc, struct.error) or "invalid literal for" in message
    if not cryptic:
        return message
    parts = [f"{type(exc).__name__}: {message}" if message else type(exc).__name__]
    source = _input_of(args)
    if source:
        parts.append(f"while reading {source}")
    where = _where(exc)
    if where:
        parts.append(f"at {where}")
    return f"{parts[0]} ({'; '.join(parts[1:])})" if len(parts) > 1 else parts[0]


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
    _handle_termination()
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        print(f"fitbench {args.command}: stopped by {name}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as exc:  # the last line of defence: a clear message, details in the log
        log.debug("fitbench %s failed", args.command, exc_info=True)
        print(f"fitbench {args.command}: error: {describe_error(exc, args)}", file=sys.stderr)
        print(f"(details in {log_path})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
