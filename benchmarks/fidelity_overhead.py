"""Where a Python decode loop loses time: FitBench's per-token overhead vs a naive loop.

Runs, in this process, on one GGUF (a tiny twin makes the overhead visible):
  fitbench   FitBench's tg loop (llama_lowlevel.Context: one preallocated batch, numpy views,
             logits only for the decoded token, no per-token allocation);
  naive      what a straightforward llama-cpp-python loop does per token: a fresh
             llama_batch_init/free, field writes through ctypes, and a copy of the logits row
             into a new numpy array;
  overhead   the fitbench loop with llama_decode replaced by llama_synchronize: the Python and
             ctypes cost per token that llama-bench's C++ loop does not have.

    python benchmarks/fidelity_overhead.py MODEL.gguf [--tokens 512] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llama_cpp
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll


def fitbench_loop(ctx: ll.Context, tokens: np.ndarray) -> float:
    ctx.clear()
    ctx.prepare_single()
    t0 = time.perf_counter_ns()
    for i, tok in enumerate(tokens.tolist()):
        ctx.decode_one(tok, i)
        ctx.synchronize()
    return (time.perf_counter_ns() - t0) / len(tokens)


def naive_loop(ctx: ll.Context, tokens: np.ndarray, n_vocab: int) -> float:
    ctx.clear()
    t0 = time.perf_counter_ns()
    for i, tok in enumerate(tokens.tolist()):
        batch = llama_cpp.llama_batch_init(1, 0, 1)
        batch.n_tokens = 1
        batch.token[0] = tok
        batch.pos[0] = i
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = True
        llama_cpp.llama_decode(ctx.ptr, batch)
        llama_cpp.llama_synchronize(ctx.ptr)
        logits = llama_cpp.llama_get_logits_ith(ctx.ptr, -1)
        np.array(np.ctypeslib.as_array(logits, shape=(n_vocab,)))  # a copy, as Llama.eval keeps
        llama_cpp.llama_batch_free(batch)
    return (time.perf_counter_ns() - t0) / len(tokens)


def overhead_loop(ctx: ll.Context, tokens: np.ndarray) -> float:
    ctx.prepare_single()
    t0 = time.perf_counter_ns()
    for i, tok in enumerate(tokens.tolist()):
        ctx._tok[0] = tok
        ctx._pos[0] = i
        ctx._batch.n_tokens = 1
        llama_cpp.llama_synchronize(ctx.ptr)  # stands in for llama_decode's ctypes call
        ctx.synchronize()
    return (time.perf_counter_ns() - t0) / len(tokens)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repack", type=int, default=0, choices=(0, 1))
    a = p.parse_args()
    ll.install_log(False)
    llama_cpp.llama_backend_init()
    model = ll.Model(a.model, n_gpu_layers=-1, overrides=ll.Overrides([]), repack=bool(a.repack))
    ctx = ll.Context(model, ll.ContextParams(n_ctx=a.tokens + 1, n_threads=a.threads))
    tokens = np.random.default_rng(1).integers(0, model.info.n_vocab, a.tokens, dtype=np.int32)
    fitbench_loop(ctx, tokens[:16])  # warm-up
    results: dict[str, list[float]] = {"fitbench": [], "naive": [], "overhead": []}
    for _ in range(a.rounds):  # interleaved, so drift on a shared machine hits all three
        results["fitbench"].append(fitbench_loop(ctx, tokens))
        results["naive"].append(naive_loop(ctx, tokens, model.info.n_vocab))
        results["overhead"].append(overhead_loop(ctx, tokens))
    med = {k: statistics.median(v) / 1000 for k, v in results.items()}
    print(f"{a.model.name}: {a.tokens} tokens x {a.rounds} rounds, {a.threads} threads")
    print(f"  FitBench loop   {med['fitbench']:9.1f} us/token")
    print(f"  naive loop      {med['naive']:9.1f} us/token ({med['naive'] - med['fitbench']:+.1f})")
    print(f"  Python+ctypes overhead of the FitBench loop: {med['overhead']:.2f} us/token")
    for ms in (5.1, 22.0):  # Mixtral / Llama 2 70B tg on the H200 (facts.md)
        share = 100 * med["overhead"] / (ms * 1000)
        print(f"  = {share:.2f}% of a {ms} ms token")
    ctx.close()
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
