"""How a MoE model's router spreads tokens over experts, read from llama.cpp's own graph.

Batched MoE speed depends on routing: a decode step of B tokens reads every expert that any of
them selects. Independent, uniform routing touches n * (1 - (1 - k/n)^B) of n experts per layer
(the predictor's assumption); routing that collapses onto a few experts reads far fewer bytes and
looks faster than real traffic. Twins have random weights, so their routing is whatever random
weights produce: this script measures it instead of assuming it.

It captures the `ffn_moe_topk-<layer>` tensors through llama.cpp's eval callback while it
  * decodes --steps steps of B random tokens for B parallel sequences (FitBench's batch test), and
  * processes one --prompt token prompt (llama-bench's pp test),
and prints, per B, the distinct experts per layer per step (mean over steps, min/max over
layers) against the uniform expectation, plus the prompt's expert load per layer (the busiest
expert's share and the normalised entropy; uniform = 1/n and 1.0).

    python benchmarks/moe_routing.py -m model.gguf [-ngl 99] --batch 1,4,16,64 --json out.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import llama_cpp  # sorts before numpy, and must load first (see fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll
from fitbench.core.bench.config import parse_int_list, physical_cores
from fitbench.core.bench.models import resolve
from fitbench.core.gguf import read_header
from fitbench.core.predict.model import experts_touched

_TOPK = b"ffn_moe_topk-"


class _Capture:
    """Collects each layer's selected experts ([n_tokens, k] int32) for one decode call."""

    def __init__(self) -> None:
        self.libs = ll.libs()
        self.layers: dict[int, np.ndarray] = {}
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)

    def _on_tensor(self, tensor: int, ask: bool, _user: int) -> bool:
        name = self.libs.tensor_name(tensor) or b""
        if not name.startswith(_TOPK):
            return not ask  # ask: "not this one"; otherwise: keep computing
        if ask:
            return True
        # struct ggml_tensor: int type; buffer*; int64 ne[4]; size_t nb[4] (ggml.h, stable layout)
        ne = (ctypes.c_int64 * 4).from_address(tensor + 16)
        nb = (ctypes.c_size_t * 4).from_address(tensor + 48)
        size = self.libs.tensor_nbytes(tensor)
        raw = (ctypes.c_uint8 * size)()
        self.libs.tensor_get(tensor, raw, 0, size)
        k, n_tok = int(ne[0]), int(ne[1])
        # a top-k view keeps the argsort's row stride; read through the strides
        view = np.lib.stride_tricks.as_strided(
            np.frombuffer(raw, dtype=np.int32), shape=(n_tok, k), strides=(int(nb[1]), int(nb[0]))
        )
        self.layers[int(name[len(_TOPK) :])] = view.copy()
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-m", "--model", required=True, help="GGUF path or catalog id")
    p.add_argument("-ngl", "--ngl", type=int, default=0)
    p.add_argument("-t", "--threads", type=int, default=physical_cores())
    p.add_argument("--batch", default="1,4,16,64")
    p.add_argument("--steps", type=int, default=8, help="decode steps per batch size")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    path = resolve(a.model).path
    header = read_header(path)
    n_expert, k = header.n_expert, header.n_expert_used
    if not n_expert:
        print(f"{path.name} is not a mixture-of-experts model", file=sys.stderr)
        return 2
    batches = parse_int_list(a.batch, name="--batch")
    rng = np.random.default_rng(a.seed)
    cap = _Capture()
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    model = ll.Model(path, n_gpu_layers=a.ngl, overrides=ll.Overrides([]), repack=False)
    n_vocab = model.info.n_vocab
    out: dict[str, Any] = {"model": path.name, "n_expert": n_expert, "k": k, "batch": []}

    bmax = max(batches)
    n_ctx = max(a.prompt, bmax * (a.steps + 1)) + 16
    params = ll.ContextParams(
        n_ctx=n_ctx, n_batch=max(512, bmax), n_seq_max=bmax, n_threads=a.threads,
        cb_eval=cap.callback,
    )  # fmt: skip
    with ll.Context(model, params) as ctx:
        for b in batches:
            ctx.clear()
            ctx.prepare_parallel(b)
            per_layer: dict[int, list[int]] = defaultdict(list)
            for step in range(a.steps):
                cap.layers.clear()
                ctx.decode_parallel(rng.integers(0, n_vocab, b, dtype=np.int32), step)
                ctx.synchronize()
                for layer, sel in cap.layers.items():
                    per_layer[layer].append(len(np.unique(sel)))
            means = {layer: float(np.mean(v)) for layer, v in sorted(per_layer.items())}
            row = {
                "B": b,
                "expected_uniform": experts_touched(n_expert, k, b),
                "distinct_mean": float(np.mean(list(means.values()))),
                "distinct_min_layer": min(means.values()),
                "distinct_max_layer": max(means.values()),
                "per_layer": means,
            }
            out["batch"].append(row)
        ctx.reset_seq_ids()
        ctx.clear()
        cap.layers.clear()
        ctx.decode_prompt(rng.integers(0, n_vocab, a.prompt, dtype=np.int32), 0, logits_last=True)
        ctx.synchronize()
        load = {}
        for layer, sel in sorted(cap.layers.items()):
            counts = np.bincount(sel.ravel(), minlength=n_expert) / sel.size
            nz = counts[counts > 0]
            load[layer] = {
                "n_tokens": int(sel.shape[0]),
                "max_share": float(counts.max()),
                "entropy": float(-(nz * np.log(nz)).sum() / math.log(n_expert)),
            }
        out["prompt"] = {"n_tokens": a.prompt, "per_layer": load}
    model.close()

    print(f"{path.name}: {n_expert} experts, {k} used, ngl {a.ngl}, {a.steps} steps per B")
    print("|   B | distinct experts/layer/step | uniform expectation | min layer | max layer |")
    print("|-----|-----------------------------|---------------------|-----------|-----------|")
    for r in out["batch"]:
        print(
            f"| {r['B']:>3} | {r['distinct_mean']:>27.2f} | {r['expected_uniform']:>19.2f} | "
            f"{r['distinct_min_layer']:>9.2f} | {r['distinct_max_layer']:>9.2f} |"
        )
    # llama.cpp runs the last layer's FFN only for the rows that produce logits (one here)
    full = [v for v in out["prompt"]["per_layer"].values() if v["n_tokens"] == a.prompt]
    shares = [v["max_share"] for v in full]
    ents = [v["entropy"] for v in full]
    print(
        f"prompt of {a.prompt} tokens, {len(full)} layers that see all of them: busiest "
        f"expert's share {min(shares):.3f}..{max(shares):.3f} (uniform {1 / n_expert:.3f}), "
        f"normalised entropy {min(ents):.3f}..{max(ents):.3f}"
    )
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
