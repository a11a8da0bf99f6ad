"""`fitbench models`: every catalog quant, its size and its best-fitting placement here."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fitbench.commands import plan as plan_cmd
from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, print_json
from fitbench.core import catalog, gguf

HELP = "list the catalog: every quant, its size and best-fitting placement"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence (tokens)")
    parser.add_argument("--parallel", type=int, default=1, help="parallel sequences")
    parser.add_argument("--vram-gb", help="what-if: GPU VRAM in GB, comma-separated per GPU")
    parser.add_argument("--ram-gb", type=float, help="what-if: host RAM in GB")
    parser.add_argument("--offline", action="store_true", help="never ask the Hub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    hw = plan_cmd.machine(args.vram_gb, args.ram_gb)
    plan_args = argparse.Namespace(
        ctx=args.ctx,
        parallel=args.parallel,
        vram_headroom=5.0,
        ram_headroom_gb=2.0,
        flash_attn=False,
        ubatch=512,
    )
    out = []
    for model in catalog.load().models:
        for q in model.quants:
            row: dict[str, Any] = {
                "model": model.id,
                "name": model.name,
                "kind": model.kind,
                "quant": q.quant,
                "size_bytes": q.size,
                "parts": list(q.parts),
            }
            try:
                resolved = plan_cmd.resolve(model.id, q.quant, args.offline)
                report = plan_cmd.plan_report(resolved, hw, plan_args)
            except (gguf.GGUFError, catalog.CatalogError, ValueError) as exc:
                row["error"] = str(exc)
                out.append(row)
                continue
            row.update(
                manifest_source=report["manifest_source"],
                weights_bytes=report["weights_bytes"],
                compatible=report["compatible"],
                compat_reasons=report["compat_reasons"],
                best=report["best"],
                basis=report["basis"],
            )
            out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        table = rows(args)
    except catalog.CatalogError as exc:
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
            f"RAM {best['ram_bytes'] / 1e9:.1f} GB, predicted)"
            if best
            else "does not fit"
        )
        flag = "" if r["compatible"] else "  INCOMPATIBLE: " + "; ".join(r["compat_reasons"])
        print(f"{head}  {where}{flag}")
    return EXIT_OK
