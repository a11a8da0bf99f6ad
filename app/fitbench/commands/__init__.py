"""One module per `fitbench` subcommand.

Each module defines HELP (one line), add_arguments(parser) and run(args) -> exit code. cli.py only
wires them together, so each command can be owned and tested on its own.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "gui",
    "detect",
    "models",
    "plan",
    "twin",
    "download",
    "cache",
    "bench",
    "recommend",
    "report",
    "quick",
    "serve",
    "load",
)
