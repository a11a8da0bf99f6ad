"""Planner VRAM vs what the process really used on the GPU (NVML), per benchmark record.

Reads a results JSONL written by `fitbench bench --out` on a machine with NVIDIA GPUs. Every
record carries NVML's VRAM in use before the model was loaded (vram_base_bytes) and the peak
during the test (vram_peak_bytes); their difference is what this process added. The planner's
prediction for the same file, placement and context is computed from the file's header.

    python benchmarks/vram_vs_plan.py results.jsonl [--json OUT] [--manifest MODEL_ID:QUANT]

The manifest comes from the benchmarked file's header when that file is still there; else from
`--manifest` (a catalog model and quant, built offline by twin.manifest_for, header-identical to
the full-size twins); else from the record's own model_id and quant, when the catalog knows the
model. So the committed H200 records (docs/h200/2026-11-29) compare on a machine without them.

Target (issue 4/10): within max(3%, 256 MiB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model import catalog
from fitbench.core.plan import memory
from fitbench.core.results import schema as results
from fitbench.core.twin import writer as twin

MiB = 1024 * 1024


def catalog_manifest(spec: str) -> ModelManifest:
    """MODEL_ID:QUANT -> the catalog model's manifest at that quant (offline)."""
    model_id, sep, quant = spec.partition(":")
    if not sep or not model_id or not quant:
        raise ValueError(
            f"--manifest wants MODEL_ID:QUANT (e.g. mixtral-8x7b-instruct:Q4_K_M), got {spec!r}"
        )
    return twin.manifest_for(model_id, quant)


def record_manifest(rec: dict[str, Any], fallback: str | None = None) -> ModelManifest:
    """The header of the benchmarked file if it is here, else `fallback`, else the catalog's
    manifest for the record's model_id (a `-QUANT` suffix dropped) and quant."""
    path = Path(rec["model_filename"])
    if path.is_file():
        return gguf.read_header(path)
    if fallback:
        return catalog_manifest(fallback)
    quant = rec.get("quant") or ""
    model_id = rec.get("model_id") or ""
    known = {m.id for m in catalog.load().models}
    for candidate in (model_id, model_id.removesuffix(f"-{quant}")):
        if candidate in known and quant:
            return twin.manifest_for(candidate, quant)
    raise ValueError(
        f"{path} is not here and the catalog has no model {model_id!r}: "
        "pass --manifest MODEL_ID:QUANT"
    )


def compare(
    records: list[dict[str, Any]], manifest_spec: str | None = None
) -> list[dict[str, Any]]:
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
            manifests[path] = record_manifest(rec, manifest_spec)
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
    ap.add_argument(
        "--manifest",
        default=None,
        metavar="MODEL_ID:QUANT",
        help="plan from this catalog model when the benchmarked file is not here",
    )
    args = ap.parse_args(argv)
    try:
        rows = compare(results.read_jsonl(args.results), args.manifest)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
