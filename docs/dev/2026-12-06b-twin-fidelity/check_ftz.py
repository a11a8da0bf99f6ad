"""MXCSR on ggml's threads: does the FTZ/DAZ shim reach them, and which phase meets denormals?

    LD_PRELOAD=/tmp/ftz_shim.so [FITBENCH_FTZ=0] python check_ftz.py a.gguf [b.gguf ...]

For each model and 1 and 2 threads: the random-token prompt of benchmarks/twin_fidelity.py (pp,
one batch) and single-token decodes (tg), the sticky MXCSR flags reset before each phase and read
after it on every thread of an OpenMP team of that size (libgomp reuses its pool: the threads
ggml-cpu's graph ran on; thread 0 is the main thread). Flags: IE 0x01 invalid, DE 0x02 denormal
operand, ZE 0x04, OE 0x08 overflow, UE 0x10 underflow (tiny result), PE 0x20 precision; FTZ 0x8000,
DAZ 0x0040. With FTZ on, UE is still raised (the result flushed); DE was seen under DAZ too (in
gemma3's FLASH_ATTN_EXT at tg, op_flags.py), so DE alone does not prove an assist was paid.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import llama_cpp  # must load before numpy (fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll

FLAGS = {0x01: "IE", 0x02: "DE", 0x04: "ZE", 0x08: "OE", 0x10: "UE", 0x20: "PE"}


def _names(v: int) -> str:
    mode = ("FTZ " if v & 0x8000 else "") + ("DAZ " if v & 0x40 else "")
    return f"{v:#06x} {mode}" + ",".join(n for b, n in FLAGS.items() if v & b)


def main() -> int:
    shim = ctypes.CDLL(os.environ.get("SHIM", "/tmp/ftz_shim.so"))
    shim.fitbench_mxcsr.restype = ctypes.c_uint
    shim.fitbench_mxcsr.argtypes = [ctypes.c_int]
    shim.fitbench_omp_mxcsr.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_int, ctypes.c_int]
    report: dict[str, object] = {
        "FITBENCH_FTZ": os.environ.get("FITBENCH_FTZ"),
        "main_at_start": _names(shim.fitbench_mxcsr(0)),
    }
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    n_pp, n_tg = 128, 32
    for arg in sys.argv[1:]:
        path = Path(arg)
        model = ll.Model(path, n_gpu_layers=0, overrides=ll.Overrides([]), repack=False)
        tokens = np.random.default_rng(0).integers(0, model.info.n_vocab, n_pp + n_tg, np.int32)
        for threads in (1, 2):
            out = (ctypes.c_uint * threads)()

            def flags(clear: int, threads: int = threads, out: ctypes.Array = out) -> list[str]:
                n = shim.fitbench_omp_mxcsr(out, threads, clear)
                return [_names(v) for v in out[:n]]

            params = ll.ContextParams(n_ctx=n_pp + n_tg + 16, n_batch=n_pp, n_ubatch=n_pp,
                                      n_threads=threads)  # fmt: skip
            with ll.Context(model, params) as ctx:
                flags(1)
                ctx.decode_prompt(tokens[:n_pp], 0, logits_last=True)
                ctx.synchronize()
                pp = flags(1)
                ctx.clear()
                ctx.prepare_single()
                for i in range(n_tg):
                    ctx.decode_one(int(tokens[n_pp + i]), i)
                ctx.synchronize()
                tg = flags(1)
            report[f"{path.name} t{threads}"] = {"pp": pp, "tg": tg}
        model.close()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
