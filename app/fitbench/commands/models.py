"""`fitbench models`: every catalog quant, its size and its best-fitting placement here."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fitbench.commands import plan as plan_cmd
from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, print_json
from fitbench.core.model import catalog
from fitbench.core.predict import plan_report

HELP = "list the catalog: every quant, its size and best-fitting placement"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence (tokens)")
    parser.add_argument("--parallel", type=int, default=1, help="parallel sequences")
    plan_cmd.add_machine_arguments(parser)
    parser.add_argument("--offline", action="store_true", help="never ask the Hub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The table: the plan's defaults (headroom, batch) at --ctx x --parallel."""
    settings = plan_report.PlanSettings(ctx=args.ctx, parallel=args.parallel)
    return plan_report.catalog_rows(plan_cmd.machine_of(args), settings, args.offline)


def run(args: argparse.Namespace) -> int:
    try:
        table = rows(args)
    except (catalog.CatalogError, ValueError) as exc:  # ValueError: a bad --hardware file
        print(f"fitbench models: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(table)
        return EXIT_OK
    for r in table:
        head = f"{r['model']:24s} {r['quant']:8s} {r['size_bytes'] / 1e9:7.2f} GB"
        if "error" in r:
            print(f"{head}  cannot plan: {r['error']}")
            continue
        best = r["best"]
        where = (
            f"best: {best['label']} (VRAM {best['vram_bytes'] / 1e9:.1f} GB, "
            f"RAM {best['ram_bytes'] / 1e9:.1f} GB, tg {best['predicted_tg_ts']:.1f} t/s, "
            "predicted)"
            if best
            else "does not fit"
        )
        flag = "" if r["compatible"] else "  INCOMPATIBLE: " + "; ".join(r["compat_reasons"])
        print(f"{head}  {where}{flag}")
    return EXIT_OK
