"""Per-layer activation statistics of a GGUF, read from llama.cpp's own graph (eval callback).

Twins must run like the real file; on CPUs some kernels' speed depends on values (denormal
arithmetic, transcendental fast paths, branches on magnitude). This script runs the same random
token prompt and a few single-token decodes through a model and records, for every F32 tensor the
graph computes, its magnitude (max |x|, rms), NaN/Inf counts and how many values are denormal
(0 < |x| < 1.18e-38: x86 handles them in microcode, 10-100x slower per operation). Grouped by op
name without the layer suffix ("ffn_out", "kq_soft_max", "result_output"), so a real file and its
twin compare line by line:

    python benchmarks/twin_activations.py -m real.gguf -m twin.gguf [--json out.json]

With --twin it writes the twin of the (first) real file itself and compares the two. With
--catalog ID [--layers K] it writes the catalog model's (scaled) twin, e.g. Mixtral 8x7B or Llama 2
70B cut to 2 of their blocks at full width, and --check holds every file to the ranges of real
models (check_ranges: finite, no denormals, each op within 16x of two real files' range):

    python benchmarks/twin_activations.py --catalog mixtral-8x7b-instruct --layers 2 --check
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import llama_cpp  # sorts before numpy, and must load first (see fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll

F32_TINY = 1.1754944e-38  # smallest normal float32
_GGML_F32 = 0
_LAYER = re.compile(r"-\d+$")


class Capture:
    """Statistics of every F32 tensor the graph computes, accumulated per op (layer merged)."""

    def __init__(self) -> None:
        self.libs = ll.libs()
        self.stats: dict[str, dict[str, float]] = {}
        self.per_layer: dict[str, dict[str, float]] = {}
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)

    def _on_tensor(self, tensor: int, ask: bool, _user: int) -> bool:
        if ask:
            return True  # every tensor: values, not speed, are measured here
        if ctypes.c_int.from_address(tensor).value != _GGML_F32:
            return True
        name = (self.libs.tensor_name(tensor) or b"?").decode(errors="replace")
        ne = (ctypes.c_int64 * 4).from_address(tensor + 16)
        nb = (ctypes.c_size_t * 4).from_address(tensor + 48)
        size = int(self.libs.tensor_nbytes(tensor))
        n = int(ne[0]) * int(ne[1]) * int(ne[2]) * int(ne[3])
        if size == 0 or n * 4 != size or int(nb[0]) != 4:
            return True  # a view with gaps: its bytes are not its values
        raw = (ctypes.c_uint8 * size)()
        self.libs.tensor_get(tensor, raw, 0, size)
        x = np.frombuffer(raw, dtype=np.float32)
        self._add(self.stats, _LAYER.sub("", name), x)
        self._add(self.per_layer, name, x)
        return True

    @staticmethod
    def _add(table: dict[str, dict[str, float]], key: str, x: np.ndarray) -> None:
        a = np.abs(x)
        finite = np.isfinite(x)
        af = a[finite]
        s = table.setdefault(
            key,
            {"n": 0, "nan": 0, "inf": 0, "denormal": 0, "zero": 0, "max_abs": 0.0, "sumsq": 0.0},
        )
        s["n"] += x.size
        s["nan"] += int(np.isnan(x).sum())
        s["inf"] += int(np.isinf(x).sum())
        s["denormal"] += int(((af > 0) & (af < F32_TINY)).sum())
        s["zero"] += int((af == 0).sum())
        if af.size:
            s["max_abs"] = max(s["max_abs"], float(af.max()))
            s["sumsq"] += float(np.square(af.astype(np.float64)).sum())


def summarize(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key, s in table.items():
        n = max(int(s["n"]), 1)
        out[key] = {
            "n": int(s["n"]),
            "nan": int(s["nan"]),
            "inf": int(s["inf"]),
            "denormal": int(s["denormal"]),
            "denormal_frac": s["denormal"] / n,
            "zero_frac": s["zero"] / n,
            "max_abs": s["max_abs"],
            "rms": float(np.sqrt(s["sumsq"] / n)),
        }
    return out


# op -> (smallest rms, largest rms, largest |x|) over two real files (Gemma 3 270M Q4_K_M and
# SmolLM2 135M Q4_1), a prompt of 32 random tokens + 4 decodes, 1 thread
# (docs/dev/2026-12-05-twin-fidelity/activations.json). Real models differ among themselves by
# 5-300x per op, so a twin is asked to stay within the pair's range widened 16x: the same order
# of magnitude as some real model, not a copy of one.
WIDEN = 16.0
REAL_RANGES: dict[str, tuple[float, float, float]] = {
    "attn_norm": (0.301, 5.31, 297.0),
    "Qcur": (1.78, 6.82, 452.0),
    "Kcur": (2.04, 4.89, 150.0),
    "Vcur": (0.977, 4.15, 94.2),
    "kqv_out": (0.331, 3.16, 92.3),
    "ffn_gate": (0.807, 0.865, 48.4),
    "ffn_up": (0.642, 0.676, 64.9),
    "ffn_out": (0.399, 47.9, 2.24e4),
}
# logits: real 15-17 rms; a twin's are 1-40x smaller (weight std 0.02 against a narrow n_embd
# gives the tiny twin 0.35). Nothing computes on them in a benchmark, so only their upper bound
LOGITS_MAX_ABS = 35.0
# the residual stream of a trained model carries a few huge "massive activation" channels
# (real rms 165-393) that random weights do not make: only its upper bound applies
RESIDUAL_MAX_ABS = 3.21e4


def check_ranges(ops: dict[str, dict[str, Any]]) -> list[str]:
    """What is out of real models' ranges in one file's op statistics (empty: all in range)."""
    problems = [
        f"{k}: nan {s['nan']}, inf {s['inf']}, denormal {s['denormal']}"
        for k, s in ops.items()
        if s["nan"] or s["inf"] or s["denormal"]
    ]
    for op, (rms_lo, rms_hi, max_hi) in REAL_RANGES.items():
        s = ops.get(op)
        if s is None:
            continue  # e.g. a MoE twin has ffn_moe_* instead of ffn_gate
        if not rms_lo / WIDEN <= s["rms"] <= rms_hi * WIDEN:
            problems.append(
                f"{op}: rms {s['rms']:.3g} outside [{rms_lo / WIDEN:.3g}, {rms_hi * WIDEN:.3g}]"
            )
        if s["max_abs"] > max_hi * WIDEN:
            problems.append(f"{op}: max |x| {s['max_abs']:.3g} > {max_hi * WIDEN:.3g}")
    logits = ops.get("result_output")
    if logits is not None and logits["max_abs"] > LOGITS_MAX_ABS * WIDEN:
        problems.append(
            f"result_output: max |x| {logits['max_abs']:.3g} > {LOGITS_MAX_ABS * WIDEN:.3g}"
        )
    for op in ("l_out", "ffn_inp"):
        s = ops.get(op)
        if s is not None and not (s["rms"] >= 0.1 and s["max_abs"] <= RESIDUAL_MAX_ABS):
            problems.append(f"{op}: rms {s['rms']:.3g}, max |x| {s['max_abs']:.3g}")
    return problems


def measure(
    path: Path, *, n_prompt: int = 32, n_decode: int = 4, seed: int = 0, repack: bool = False
) -> dict[str, Any]:
    """Statistics of one short random-token prompt and n_decode single-token steps."""
    cap = Capture()
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    model = ll.Model(path, n_gpu_layers=0, overrides=ll.Overrides([]), repack=repack)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, model.info.n_vocab, n_prompt + n_decode, dtype=np.int32)
    params = ll.ContextParams(n_ctx=n_prompt + n_decode + 16, n_batch=max(n_prompt, 32),
                              n_threads=1, cb_eval=cap.callback)  # fmt: skip
    with ll.Context(model, params) as ctx:
        ctx.decode_prompt(tokens[:n_prompt], 0, logits_last=True)
        ctx.synchronize()
        ctx.prepare_single()
        for i in range(n_decode):
            ctx.decode_one(int(tokens[n_prompt + i]), n_prompt + i)
            ctx.synchronize()
    desc = model.info.desc
    model.close()
    return {"model": str(path), "desc": desc, "ops": summarize(cap.stats),
            "layers": summarize(cap.per_layer)}  # fmt: skip


def _table(results: list[dict[str, Any]]) -> str:
    names = sorted({k for r in results for k in r["ops"]})
    head = " | ".join(f"{Path(r['model']).name[:28]:>28}" for r in results)
    lines = [f"{'op':<22} | {head}", "-" * (25 + 31 * len(results))]
    for name in names:
        cells = []
        for r in results:
            s = r["ops"].get(name)
            if s is None:
                cells.append(f"{'-':>28}")
                continue
            bad = f" nan{s['nan']} inf{s['inf']}" if s["nan"] or s["inf"] else ""
            den = f" den{s['denormal_frac']:.1e}" if s["denormal"] else ""
            cells.append(f"{s['rms']:9.3g} max {s['max_abs']:8.3g}{den}{bad}".rjust(28))
        lines.append(f"{name:<22} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-m", "--model", type=Path, action="append", default=[])
    p.add_argument("--twin", action="store_true", help="also measure the first model's twin")
    p.add_argument("--catalog", action="append", default=[], metavar="ID",
                   help="also measure this catalog model's twin (repeatable)")  # fmt: skip
    p.add_argument("--quant", default="Q4_K_M")
    p.add_argument("--layers", type=int, default=None, help="--catalog twins scaled to K blocks")
    p.add_argument("--check", action="store_true", help="exit 1 where a file leaves real ranges")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--decode", type=int, default=4)
    p.add_argument("--repack", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if not a.model and not a.catalog:
        p.error("name a file (-m) or a catalog model (--catalog)")
    from fitbench.core.twin.writer import manifest_for, manifest_from_gguf, write_twin

    paths = list(a.model)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.twin:
            paths.append(write_twin(manifest_from_gguf(paths[0]), Path(tmp) / "twin.gguf").path)
        for path in paths:
            results.append(measure(path, n_prompt=a.prompt, n_decode=a.decode, repack=a.repack))
        for model_id in a.catalog:  # one at a time: a scaled Mixtral twin is ~2 GB
            twin = Path(tmp) / f"{model_id}.gguf"
            write_twin(manifest_for(model_id, a.quant, layers=a.layers), twin)
            r = measure(twin, n_prompt=a.prompt, n_decode=a.decode, repack=a.repack)
            r["model"] = f"{model_id} {a.quant} twin" + (f", {a.layers} blocks" if a.layers else "")
            results.append(r)
            twin.unlink()
    print(_table(results))
    failed = False
    for r in results:
        r["out_of_range"] = check_ranges(r["ops"])
        if a.check:
            print(
                f"{r['model']}: "
                + ("; ".join(r["out_of_range"]) or "finite, no denormals, in real ranges")
            )
            failed |= bool(r["out_of_range"])
    if a.json is not None:
        a.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["F32_TINY", "REAL_RANGES", "WIDEN", "Capture", "check_ranges", "measure", "summarize"]
