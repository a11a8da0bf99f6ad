"""Calibrate the planner's compute-buffer model against llama.cpp itself (no_alloc loads).

    .venv/bin/python benchmarks/memory_calibrate.py [--out calib.json] [--backend-check]

Writes header-only sparse twins (full Mixtral 8x7B and Llama 2 70B shapes plus small ones; no
disk used), loads each with llama_model_params.no_alloc in a child process (benchmarks/
memory_probe.py) over a grid of n_ctx x n_ubatch x flash-attention, and prints what llama.cpp
reports (compute, KV, output buffers) next to what fitbench.core.plan.memory.plan() predicts.
On a CUDA machine the same grid with --ngl gives CUDA buffer sizes (no VRAM allocated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fitbench.core import gguf  # noqa: E402
from fitbench.core.plan import memory  # noqa: E402
from test_gguf_builders import LlamaShape, Q, write_llama_gguf  # noqa: E402

SHAPES = {
    "tiny-dense": LlamaShape(n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=512),
    "tiny-moe": LlamaShape(
        n_layer=2,
        n_embd=256,
        n_head=4,
        n_head_kv=2,
        n_ff=512,
        n_vocab=512,
        n_expert=4,
        n_expert_used=2,
    ),
    "mixtral-8x7b": LlamaShape(
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        n_ff=14336,
        n_vocab=32000,
        n_expert=8,
        n_expert_used=2,
        n_ctx_train=32768,
    ),
    "llama-2-70b": LlamaShape(
        n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=32000
    ),
}


def probe(args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "memory_probe.py"), json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        return {"error": f"probe exited {out.returncode}", "stderr": out.stderr[-2000:]}
    return dict(json.loads(out.stdout))


def by_kind(result: dict[str, Any], kind: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for b in result.get("buffers", []):
        if b["kind"] == kind:
            totals[b["buft"]] = totals.get(b["buft"], 0) + b["bytes"]
    return totals


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--ngl", type=int, default=0, help="n_gpu_layers (CUDA machines)")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    opts = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in opts.shapes.split(","):
            path = write_llama_gguf(Path(tmp) / f"{name}.gguf", SHAPES[name], Q.Q4_K, sparse=True)
            manifest = gguf.read_header(path)
            for n_ctx in (512, 2048, 4096):
                for n_ubatch in (128, 512):
                    for fa in (False, True):
                        args = {
                            "model": str(path),
                            "no_alloc": True,
                            "n_ctx": n_ctx,
                            "n_ubatch": n_ubatch,
                            "flash_attn": fa,
                            "n_gpu_layers": opts.ngl,
                        }
                        got = probe(args)
                        if "error" in got:
                            print(name, args, got["error"], got.get("stderr", "")[-300:])
                            continue
                        placement = memory.Placement(n_gpu_layers=opts.ngl)
                        p = memory.plan(
                            manifest, placement, n_ctx=n_ctx, flash_attn=fa, n_ubatch=n_ubatch
                        )
                        measured = sum(by_kind(got, "compute").values())
                        predicted = p.breakdown["compute"]
                        row = {
                            "shape": name,
                            "n_ctx": n_ctx,
                            "n_ubatch": n_ubatch,
                            "flash_attn": fa,
                            "compute_measured": measured,
                            "compute_predicted": predicted,
                            "kv_measured": got["kv_total_bytes"],
                            "kv_predicted": p.breakdown["kv"],
                            "compute_by_buft": by_kind(got, "compute"),
                        }
                        rows.append(row)
                        err = (predicted - measured) / measured * 100 if measured else 0.0
                        print(
                            f"{name:13s} ctx={n_ctx:5d} ub={n_ubatch:3d} fa={int(fa)} "
                            f"compute {measured / 2**20:9.2f} MiB pred {predicted / 2**20:9.2f} "
                            f"({err:+6.2f}%)  kv {row['kv_measured']} pred {row['kv_predicted']}",
                            flush=True,
                        )
    if opts.out:
        opts.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
