"""`fitbench cache`: what FitBench keeps on disk (twins, unfinished downloads, quarantined files,
the results database) with sizes, and pruning it."""

from __future__ import annotations

import argparse
import sys

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, print_json
from fitbench.core.download.housekeeping import (
    DEFAULT_PRUNE,
    KINDS,
    CacheEntry,
    Kind,
    cache_entries,
    prune,
)

HELP = "list and prune twins, partial downloads and the results database, with sizes"

_FLAGS: dict[Kind, str] = {
    "twin": "twins",
    "partial": "partial",
    "quarantine": "quarantine",
    "results": "results",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=("list", "prune"),
        default="list",
        help="list (default) or prune",
    )
    what = parser.add_argument_group(
        "what", "default: everything for list; unfinished downloads (--partial) for prune"
    )
    what.add_argument("--twins", action="store_true", help="twins in the twin cache")
    what.add_argument(
        "--partial",
        action="store_true",
        help="unfinished downloads (blobs/*.incomplete in the Hugging Face cache)",
    )
    what.add_argument("--quarantine", action="store_true", help="downloads that failed their hash")
    what.add_argument(
        "--results",
        action="store_true",
        help="the results database (History: every measured run); prune removes it only if named",
    )
    what.add_argument("--all", action="store_true", help="all of the above")
    parser.add_argument(
        "--dry-run", action="store_true", help="prune: say what would go, remove nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _kinds(args: argparse.Namespace) -> tuple[Kind, ...]:
    if args.all:
        return KINDS
    chosen = tuple(k for k in KINDS if getattr(args, _FLAGS[k]))
    if chosen:
        return chosen
    return KINDS if args.action == "list" else DEFAULT_PRUNE


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _table(entries: list[CacheEntry], kinds: tuple[Kind, ...], verb: str) -> None:
    for kind in kinds:
        mine = [e for e in entries if e.kind == kind]
        total = sum(e.size for e in mine)
        print(f"{kind}: {len(mine)} file(s), {_human(total)}{verb if mine else ''}")
        for e in mine:
            print(f"  {_human(e.size):>9}  {e.path}")


def run(args: argparse.Namespace) -> int:
    kinds = _kinds(args)
    try:
        if args.action == "list":
            entries = cache_entries(kinds)
            verb = ""
        else:
            entries = prune(kinds, dry_run=args.dry_run)
            verb = " would be removed" if args.dry_run else " removed"
    except OSError as exc:
        print(f"fitbench cache: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(
            {
                "action": args.action,
                "dry_run": bool(args.dry_run),
                "kinds": list(kinds),
                "total_bytes": sum(e.size for e in entries),
                "entries": [e.to_dict() for e in entries],
            }
        )
    else:
        _table(entries, kinds, verb)
    return EXIT_OK
