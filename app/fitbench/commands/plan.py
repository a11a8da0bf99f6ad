"""`fitbench plan` (not built yet)."""

from __future__ import annotations

import argparse

from fitbench.commands._common import not_implemented

HELP = "memory plan: VRAM and RAM for every placement, before any download"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    return not_implemented("plan")
