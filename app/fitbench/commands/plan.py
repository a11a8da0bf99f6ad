"""`fitbench plan`: VRAM, RAM and predicted speed of every placement of one model quant, before
any download."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fitbench.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_gpu_argument,
    print_json,
    with_what_if_gpus,
)
from fitbench.core import gguf
from fitbench.core.model import catalog
from fitbench.core.plan import margin, memory
from fitbench.core.predict import plan_report
from fitbench.core.results import schema as results

HELP = "memory plan: VRAM, RAM and predicted speed for every placement, before any download"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="catalog id or path to a .gguf file")
    parser.add_argument("--quant", help="quantization (catalog models; default: the model's)")
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence (tokens)")
    parser.add_argument("--parallel", type=int, default=1, help="parallel sequences")
    parser.add_argument("--ubatch", type=int, default=512, help="physical batch size")
    parser.add_argument("--flash-attn", action="store_true", help="plan with flash attention")
    parser.add_argument(
        "--vram-headroom",
        type=float,
        metavar="PCT",
        help="%% of each GPU's VRAM kept free instead of the default margin "
        f"({margin.DEFAULT_VRAM_MARGIN.words().replace('%', '%%')} of the VRAM planned against; "
        "docs/memory.md)",
    )
    parser.add_argument(
        "--ram-headroom-gb",
        type=float,
        help=f"GB of RAM kept free (default {memory.DEFAULT_RAM_HEADROOM_BYTES / 1e9:.2f}, "
        "i.e. 2 GiB, as the advice)",
    )
    add_machine_arguments(parser)
    parser.add_argument(
        "--results",
        type=Path,
        help="results JSONL of this machine (fitbench bench --out): calibrates the predicted "
        "speeds on its measurements",
    )
    parser.add_argument("--offline", action="store_true", help="never ask the Hub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vram",
        choices=("free", "total"),
        default="free",
        help="plan against the VRAM free at detection (default: other processes keep theirs) "
        "or each GPU's total, as if nothing else ran (a what-if)",
    )
    parser.add_argument("--vram-gb", help="what-if: GPU VRAM in GB, comma-separated per GPU")
    parser.add_argument("--ram-gb", type=float, help="what-if: host RAM in GB")
    add_gpu_argument(parser)
    parser.add_argument(
        "--hardware",
        type=Path,
        help="plan for the machine of this file (`fitbench detect --json`) instead of this one",
    )


def machine_of(args: argparse.Namespace) -> plan_report.Machine:
    """--vram-gb, --ram-gb and --hardware (shared with `fitbench models`)."""
    vram = (
        [float(v) for v in args.vram_gb.split(",") if v.strip()]
        if args.vram_gb is not None
        else None
    )
    return with_what_if_gpus(plan_report.machine(vram, args.ram_gb, args.hardware, args.vram), args)


def settings_of(args: argparse.Namespace) -> plan_report.PlanSettings:
    return plan_report.PlanSettings(
        ctx=args.ctx,
        parallel=args.parallel,
        ubatch=args.ubatch,
        flash_attn=args.flash_attn,
        vram_headroom_pct=args.vram_headroom,
        ram_headroom_bytes=memory.DEFAULT_RAM_HEADROOM_BYTES
        if args.ram_headroom_gb is None
        else int(args.ram_headroom_gb * 1e9),
        results=args.results,
    )


def _gb(n: int | float) -> str:
    return f"{n / 1e9:6.2f} GB"


def print_text(r: dict[str, Any]) -> None:
    hw = r["hardware"]
    gpus = ", ".join(_gb(v).strip() for v in hw["gpus_vram_bytes"]) or "no GPU"
    print(
        f"{r['model']} {r['quant']}: file {_gb(r['file_bytes']).strip()}, "
        f"weights {_gb(r['weights_bytes']).strip()}, "
        f"KV {r['kv_bytes_per_token'] / 1024:.0f} KiB/token"
    )
    print(f"  from: {r['manifest_source']}")
    print(f"  machine ({hw['source']}): {gpus}; RAM {_gb(hw['ram_bytes']).strip()}")
    for words in hw.get("vram_words") or []:
        print(f"  VRAM: {words}")
    if hw["gpus_vram_bytes"]:
        print(f"  VRAM margin kept free on each GPU: {r['vram_margin']['words']}")
    if not r["compatible"]:
        print("  INCOMPATIBLE with the installed llama.cpp: " + "; ".join(r["compat_reasons"]))
    print(f"  predicted memory at ctx {r['ctx']} x {r['parallel']} sequence(s), and speed:")
    print(f"  speed: {r['speed']['basis']}")
    for note in r["speed"]["notes"]:
        print(f"  note: {note}")
    head = f"{'placement':38s} {'VRAM':>10s} {'RAM':>10s} {'tg128 t/s':>10s} {'pp512 t/s':>10s}"
    print(f"  {head}  fits")
    for p in r["placements"]:
        fits = "yes" if p["fits"] else f"no ({p['reason']})"
        print(
            f"  {p['label']:38s} {_gb(p['vram_bytes'])} {_gb(p['ram_bytes'])} "
            f"{p['predicted_tg_ts']:10.2f} {p['predicted_pp_ts']:10.1f}  {fits}"
        )
    best = r["best"]
    print(
        f"  best fitting: {best['label']}, {best['predicted_tg_ts']:.2f} tokens/s generation, "
        f"{best['predicted_pp_ts']:.1f} tokens/s prompt (predicted)"
        if best
        else "  best fitting: none"
    )
    fit = r.get("llama_cpp_fit") or {}
    if fit.get("words") and hw["gpus_vram_bytes"]:
        line = f"  {fit['words']}"
        ours = fit.get("plan")
        if ours:
            line += (
                f"; FitBench plans it at {_gb(ours['vram_bytes']).strip()} VRAM, "
                f"{ours['predicted_tg_ts']:.2f} tokens/s generation (predicted)"
            )
        print(line)


def run(args: argparse.Namespace) -> int:
    if args.ctx <= 0 or args.parallel <= 0:
        print("fitbench plan: --ctx and --parallel must be positive", file=sys.stderr)
        return EXIT_FAILURE
    try:
        resolved = plan_report.resolve_model(args.model, args.quant, args.offline)
        report = plan_report.plan_report(resolved, machine_of(args), settings_of(args))
    except (gguf.GGUFError, catalog.CatalogError, results.ResultError, ValueError) as exc:
        print(f"fitbench plan: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(report)
    else:
        print_text(report)
    return EXIT_OK
