"""A steady tg workload for a profiler: one model, single-token decodes for --seconds.

    perf record -e cpu-clock -F 2000 -o real.data -- python tg_loop.py model.gguf --threads 1

The tokens and context of benchmarks/twin_fidelity.py's tg test (random ids, 32 decodes on an
empty context, then cleared, repeated), after a warm-up; prints tokens per second at the end and
all tokens decoded (warm-up included: a kernel's samples / that = its time per token).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import llama_cpp  # must load before numpy (fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--tg", type=int, default=32)
    a = p.parse_args()
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    model = ll.Model(a.model, n_gpu_layers=0, overrides=ll.Overrides([]), repack=False)
    tokens = np.random.default_rng(0).integers(0, model.info.n_vocab, 128 + a.tg, np.int32)
    params = ll.ContextParams(n_ctx=128 + a.tg + 16, n_batch=128, n_ubatch=128,
                              n_threads=a.threads)  # fmt: skip
    n, start, total = 0, 0.0, 0
    with ll.Context(model, params) as ctx:
        for warm in (True, False):
            end = time.perf_counter() + (2.0 if warm else a.seconds)
            start, n = time.perf_counter(), 0
            while time.perf_counter() < end:
                ctx.clear()
                ctx.prepare_single()
                for i in range(a.tg):
                    ctx.decode_one(int(tokens[128 + i]), i)
                ctx.synchronize()
                n += a.tg
            total += n
    rate = n / (time.perf_counter() - start)
    print(f"{a.model.name} t{a.threads}: {rate:.2f} t/s, {total} tokens in all (with warm-up)")
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
