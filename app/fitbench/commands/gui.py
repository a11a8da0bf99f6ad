"""`fitbench gui`: the desktop app."""

from __future__ import annotations

import argparse

HELP = "start the desktop app (the default with no subcommand)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quit-after-paint",
        action="store_true",
        help="exit as soon as the main window has painted (start-up checks)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that headless commands never load Qt.
    from fitbench.ui.app import run_app

    return run_app(quit_after_paint=args.quit_after_paint)
