"""`fitbench recommend`: the deployment to use, with its reasons, from benchmark results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fitbench.commands._common import (
    EXIT_FAILURE,
    add_gpu_argument,
    emit,
    hardware_with_what_if_gpus,
    load_hardware_json,
)
from fitbench.core import settings
from fitbench.core.advise.candidates import QualityFloor
from fitbench.core.advise.recommend import AdviceError, recommend
from fitbench.core.hardware import detect as hardware
from fitbench.core.model import catalog
from fitbench.core.results import schema as results

HELP = "recommend a deployment from benchmark results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        required=True,
        help="results: fitbench bench's JSONL, or llama-bench's -o jsonl/json output or a "
        "SQLite database (llama-bench -o sql | sqlite3, or FitBench's own)",
    )
    add_goal_arguments(parser, serving=True)
    parser.add_argument(
        "--hardware",
        type=Path,
        help="the machine as `fitbench detect --json` wrote it (default: detect this machine)",
    )
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence (4096)")
    parser.add_argument("--ttft-max-ms", type=float, default=3000.0, help="interactive: TTFT limit")
    parser.add_argument(
        "--itl-p95-max-ms", type=float, default=200.0, help="throughput: p95 inter-token limit"
    )
    parser.add_argument(
        "--ttft-p99-max-ms", type=float, default=5000.0, help="serving: p99 TTFT limit"
    )
    parser.add_argument("--users", type=int, help="serving: users to serve (beyond one machine)")
    parser.add_argument(
        "--load-results",
        type=Path,
        help="serving: `fitbench load --out` levels (default: FitBench's load store)",
    )
    parser.add_argument(
        "--max-ppl-increase",
        type=float,
        default=0.2,
        help="quality floor: most perplexity a quant may add (llama.cpp's table; 0.2 = Q4_K_M)",
    )
    parser.add_argument("--min-mmlu", type=float, help="quality floor: least published MMLU")
    add_gpu_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_goal_arguments(parser: argparse.ArgumentParser, *, serving: bool = False) -> None:
    """--goal and its parameter (shared with `fitbench quick`; `recommend` also has serving)."""
    goals = (*settings.GOALS, "serving") if serving else settings.GOALS
    helps = [f"{g}: {settings.GOAL_HELP[g]}" for g in settings.GOALS]
    if serving:
        helps.append("serving: the most users within the latency limits (load results)")
    parser.add_argument("--goal", choices=goals, default="interactive", help="; ".join(helps))
    parser.add_argument(
        "--min-tps",
        type=float,
        default=None,
        metavar="N",
        help="goal quality: the least tokens/s for one user "
        f"(default {settings.DEFAULT_MIN_TPS:g})",
    )


def _hardware(path: Path | None) -> dict[str, Any]:
    if path is not None:
        return load_hardware_json(path)
    detected: dict[str, Any] = hardware.detect().to_dict()
    return detected


def _print_human(d: dict[str, Any]) -> None:
    print(d["verdict"])
    if d["expected"]:
        print("\nExpected:")
        for name, v in d["expected"].items():
            value = v["value"]
            if name.endswith("_bytes") and value is not None:
                shown = f"{value / 1024**3:.1f} GiB"
            else:
                shown = f"{value}"
            print(f"  {name:14s} {shown:>12s}  ({v['basis']})")
    below = d.get("below_floor")
    if below:
        tg = below["expected"]["tg_ts"]
        print(
            f"\nBest below the floor: {below['model_name']} {below['quant']}, "
            f"{below['placement']['description']}: {tg['value']} t/s ({tg['basis']})"
        )
    print("\nReasons:")
    for r in d["reasons"]:
        print(f"  - {r}")
    if d["alternatives"]:
        print("\nAlternatives (speed vs memory vs quality):")
        for a in d["alternatives"]:
            e = a["expected"]
            speed = e["aggregate_ts"] if d["goal"] == "throughput" else e["tg_ts"]
            mem = ((e["vram_bytes"]["value"] or 0) + (e["ram_bytes"]["value"] or 0)) / 1024**3
            print(
                f"  {a['model_name']} {a['quant']}, {a['placement']['description']}, "
                f"batch {a['batch']}: {speed['value']} t/s ({speed['basis']}), {mem:.1f} GiB"
            )
    if d["caveats"]:
        print("\nCaveats:")
        for c in d["caveats"]:
            print(f"  - {c}")
    recipe = d["recipe"] or (below or {}).get("recipe")
    if recipe:
        print("\nRun it:" if d["recipe"] else "\nRun the best option below the floor:")
        print(f"  {recipe['llama_server']}")
        print(f"  {recipe['llama_cpp_python']}")
        for note in recipe["notes"]:
            print(f"  note: {note}")
    if d["moe_vs_dense"]:
        print("\nMoE vs dense:")
        print(f"  {d['moe_vs_dense']['verdict']}")


def _to_history(records: list[dict[str, Any]], path: Path) -> None:
    """llama-bench results join History once; a database that cannot be written is no error."""
    from fitbench.core.results.store import StoreError, import_llama_bench

    try:
        import_llama_bench(records, path)
    except StoreError as exc:
        print(f"fitbench recommend: note: not added to History: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.goal == "serving":  # its own advice: users within latency limits (advise/serving.py)
        from fitbench.commands.serving_advice import run_serving

        return run_serving(args)
    try:
        records = results.read_results(args.results)
        _to_history(records, args.results)
        hardware = hardware_with_what_if_gpus(_hardware(args.hardware), args)
        advice = recommend(
            records,
            hardware=hardware,
            catalog=catalog.load(),
            goal=args.goal,
            min_tps=args.min_tps,
            ctx=args.ctx,
            ttft_max_ms=args.ttft_max_ms,
            itl_p95_max_ms=args.itl_p95_max_ms,
            quality_floor=QualityFloor(
                min_mmlu=args.min_mmlu, max_ppl_increase=args.max_ppl_increase
            ),
        )
    except (results.ResultError, AdviceError, catalog.CatalogError, ValueError) as exc:
        print(f"fitbench recommend: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return emit(advice.to_dict(), args.json, _print_human)
