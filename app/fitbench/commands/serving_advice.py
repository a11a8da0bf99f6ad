"""`fitbench recommend --goal serving`: the text and JSON of core/advise/serving.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, emit, load_hardware_json


def format_serving(d: dict[str, Any]) -> str:
    lines = [d["verdict"], "", "Deployments (users within the limits; basis of each number):"]
    lines += [f"  - {r}" for r in d["reasons"]]
    choice = d["choice"]
    if choice:
        lines += ["", f"Curve of the choice ({choice['model_name']} {choice['quant']}):"]
        lines.append("  users  slots  TTFT p50/p99 ms      ITL p50/p95 ms   tokens/s  basis")
        for p in choice["curve"]:
            lines.append(
                f"  {p['users']:>5}  {p['slots']:>5}  "
                f"{p['ttft_ms']['p50']:>8.0f}/{p['ttft_ms']['p99']:<8.0f}  "
                f"{p['itl_ms']['p50']:>7.1f}/{p['itl_ms']['p95']:<7.1f}  "
                f"{p['output_tokens_per_s']:>9.1f}  {p['basis']}"
            )
    if d["beyond_one_machine"]:
        lines += ["", "Beyond this machine (predicted):"]
        lines += [f"  - {b['text']}" for b in d["beyond_one_machine"]]
    if d["caveats"]:
        lines += ["", "Caveats:"]
        lines += [f"  - {c}" for c in d["caveats"]]
    if d["recipe"]:
        lines += ["", "Run it:", f"  {d['recipe']['llama_server']}"]
        lines += [f"  {d['recipe']['fitbench_serve']}", f"  {d['recipe']['fitbench_load']}"]
    return "\n".join(lines)


def run_serving(args: argparse.Namespace) -> int:
    from fitbench.core.advise.candidates import QualityFloor
    from fitbench.core.advise.serving import ServingError, Workload, recommend_serving
    from fitbench.core.hardware import detect as hardware
    from fitbench.core.model import catalog
    from fitbench.core.results import schema as results
    from fitbench.core.serve.records import read_levels

    try:
        records = results.read_jsonl(args.results)
        hw = (
            load_hardware_json(args.hardware)
            if args.hardware is not None
            else hardware.detect().to_dict()
        )
        advice = recommend_serving(
            records,
            read_levels(args.load_results),
            hardware=hw,
            catalog=catalog.load(),
            itl_p95_max_ms=args.itl_p95_max_ms,
            ttft_p99_max_ms=args.ttft_p99_max_ms,
            users_wanted=args.users,
            workload=Workload(ctx=args.ctx),
            quality_floor=QualityFloor(
                min_mmlu=args.min_mmlu, max_ppl_increase=args.max_ppl_increase
            ),
        )
    except (results.ResultError, ServingError, catalog.CatalogError, ValueError) as exc:
        print(f"fitbench recommend: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return emit(advice.to_dict(), args.json, lambda data: print(format_serving(data)))
