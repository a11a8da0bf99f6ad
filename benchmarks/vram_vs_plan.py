"""Planner VRAM vs what the process really used on the GPU (NVML), per benchmark record.

Reads a results JSONL written by `fitbench bench --out` on a machine with NVIDIA GPUs. Every
record carries NVML's VRAM in use before the model was loaded (vram_base_bytes) and the peak
during the test (vram_peak_bytes); their difference is what this process added. The planner's
prediction for the same file, placement and context is computed from the file's header.

    python benchmarks/vram_vs_plan.py results.jsonl [--json OUT]

Target (issue 4/10): within max(3%, 256 MiB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fitbench.core import gguf, memory, results

MiB = 1024 * 1024


def compare(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    manifests: dict[str, Any] = {}
    seen: set[tuple[Any, ...]] = set()
    for rec in records:
        if rec["status"] != "ok" or rec["vram_peak_bytes"] is None:
            continue
        if rec["vram_base_bytes"] is None:
            continue
        path = rec["model_filename"]
        if path not in manifests:
            manifests[path] = gguf.read_header(path)
        manifest = manifests[path]
        n_layer = manifest.n_layer
        ngl = rec["n_gpu_layers"]
        ngl = n_layer + 1 if ngl < 0 or ngl > n_layer else ngl
        ncmoe = rec["n_cpu_moe"]
        ncmoe = n_layer if ncmoe < 0 else ncmoe
        n_par = rec["n_parallel"] or 1
        if rec["test"] == "batch":
            n_ctx = n_par * (rec["n_depth"] + rec["n_gen"] + 1)
        else:
            n_ctx = rec["n_depth"] + rec["n_prompt"] + rec["n_gen"]
        key = (path, ngl, ncmoe, rec["test"], rec["n_prompt"], rec["n_gen"], n_par)
        if key in seen:
            continue
        seen.add(key)
        plan = memory.plan(
            manifest,
            memory.Placement(n_gpu_layers=ngl, n_cpu_moe=ncmoe),
            n_ctx=max(n_ctx, 1),
            n_parallel=1,
            type_k=rec["type_k"],
            type_v=rec["type_v"],
            flash_attn=bool(rec["flash_attn"]),
            n_ubatch=rec["n_ubatch"],
            n_gpus=1,
        )
        measured = rec["vram_peak_bytes"] - rec["vram_base_bytes"]
        predicted = plan.vram_total
        err = predicted - measured
        tolerance = max(0.03 * measured, 256 * MiB)
        rows.append(
            {
                "model": Path(path).name,
                "source": rec["source"],
                "test": rec["test"],
                "n_prompt": rec["n_prompt"],
                "n_gen": rec["n_gen"],
                "n_parallel": n_par,
                "n_gpu_layers": ngl,
                "n_cpu_moe": ncmoe,
                "measured_mib": round(measured / MiB),
                "predicted_mib": round(predicted / MiB),
                "error_mib": round(err / MiB),
                "error_pct": round(100 * err / measured, 2) if measured else None,
                "within_target": abs(err) <= tolerance,
                "breakdown_mib": {
                    k: round(v / MiB) for k, v in plan.devices.get("GPU0", {}).items()
                },
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = compare(results.read_jsonl(args.results))
    if not rows:
        print("no records with NVML VRAM figures (needs a GPU run)", file=sys.stderr)
        return 1
    print(
        f"{'model':44} {'test':6} {'ngl':>4} {'cmoe':>4} {'meas MiB':>9} {'plan MiB':>9} {'err':>7}"
    )
    for r in rows:
        pct = f"{r['error_pct']:+.1f}%" if r["error_pct"] is not None else "n/a"
        ok = "ok" if r["within_target"] else "MISS"
        print(
            f"{r['model'][:44]:44} {r['test']:6} {r['n_gpu_layers']:>4} {r['n_cpu_moe']:>4} "
            f"{r['measured_mib']:>9} {r['predicted_mib']:>9} {pct:>7} {ok}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
