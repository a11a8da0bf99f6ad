"""The serving advice's predicted curve against a measured `fitbench load` sweep (issue 19).

    python benchmarks/serving_prediction.py --results bench-batch.jsonl --load load.jsonl \
        --hardware detect.json [--prompt-tokens 512 --max-tokens 128] [--calibrate 1|none]

The prediction sees the bench records (pp, tg, --batch) and, with --calibrate 1 (the default),
the load level of one user only (the server's own prompt time); every other measured level is
what it is compared against. Prints per level measured / predicted output tokens/s, TTFT p50 and
ITL p50, and their ratios; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fitbench.core.advise.serving import Workload, recommend_serving
from fitbench.core.model import catalog as catalog_mod


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def compare(
    records: list[dict[str, Any]],
    load: list[dict[str, Any]],
    hardware: dict[str, Any],
    workload: Workload,
    calibrate: bool = True,
) -> list[dict[str, Any]]:
    """Per measured level (users > 1): measured and predicted numbers of the same deployment."""
    dep = load[0]["deployment"]
    given = [line for line in load if calibrate and line["level"]["concurrency"] == 1]
    levels = sorted({int(line["level"]["concurrency"]) for line in load})
    advice = recommend_serving(
        records,
        given,
        hardware=hardware,
        catalog=catalog_mod.load(),
        workload=workload,
        levels=levels,
        itl_p95_max_ms=1e9,
        ttft_p99_max_ms=1e9,
    )
    mine = [
        d
        for d in advice.considered
        if d.model.id == dep["model_id"]
        and d.quant.upper() == str(dep["quant"]).upper()
        and d.placement.n_cpu_moe == int(dep["n_cpu_moe"] or 0)
        and d.placement.n_gpu_layers >= min(int(dep["n_gpu_layers"]), d.n_layer + 1)
    ]
    if not mine:
        raise SystemExit(f"no deployment of {dep['model_id']} {dep['quant']} in the advice")
    predicted = {p.users: p for p in mine[0].curve}
    rows = []
    for line in load:
        level = line["level"]
        users = int(level["concurrency"])
        if users == 1 and calibrate:
            continue
        p = predicted[users]
        rows.append(
            {
                "users": users,
                "measured": {
                    "output_tokens_per_s": level["output_tokens_per_s"],
                    "ttft_p50_ms": level["ttft_ms"]["p50"],
                    "ttft_p99_ms": level["ttft_ms"]["p99"],
                    "itl_p50_ms": level["itl_ms"]["p50"],
                },
                "predicted": {
                    "output_tokens_per_s": round(p.output_tokens_per_s, 1),
                    "ttft_p50_ms": round(p.ttft_p50_ms, 1),
                    "ttft_p99_ms": round(p.ttft_p99_ms, 1),
                    "itl_p50_ms": round(p.itl_p50_ms, 2),
                },
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="bench JSONL (pp, tg, batch)")
    ap.add_argument("--load", type=Path, required=True, help="fitbench load --out JSONL")
    ap.add_argument("--hardware", type=Path, required=True, help="fitbench detect --json")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--calibrate", choices=("1", "none"), default="1")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    load = _lines(args.load)
    ctx = int(load[0]["deployment"]["ctx_size"]) // max(1, int(load[0]["deployment"]["parallel"]))
    rows = compare(
        _lines(args.results),
        load,
        json.loads(args.hardware.read_text(encoding="utf-8")),
        Workload(args.prompt_tokens, args.max_tokens, ctx),
        calibrate=args.calibrate == "1",
    )
    print(
        f"{'users':>5}  {'tok/s meas/pred':>17} {'ratio':>6}  {'TTFT p50 meas/pred':>19} "
        f"{'ITL p50 meas/pred':>18}"
    )
    for r in rows:
        m, p = r["measured"], r["predicted"]
        ratio = p["output_tokens_per_s"] / m["output_tokens_per_s"]
        print(
            f"{r['users']:>5}  {m['output_tokens_per_s']:>8.1f}/{p['output_tokens_per_s']:<8.1f}"
            f" {ratio:>6.2f}  {m['ttft_p50_ms']:>9.0f}/{p['ttft_p50_ms']:<9.0f} "
            f"{m['itl_p50_ms']:>8.1f}/{p['itl_p50_ms']:<8.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
