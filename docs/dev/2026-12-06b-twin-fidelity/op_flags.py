"""Which graph node meets denormals: the MXCSR sticky flags read and reset after every node.

    LD_PRELOAD=/tmp/ftz_shim.so FITBENCH_FTZ=0 python op_flags.py a.gguf [b.gguf ...]

One thread (ggml computes on the main thread, where llama.cpp's eval callback runs): the scheduler
stops after every node the callback asks for, so reading the flags in the callback attributes
them to that node (fused ops are split then; values, not speed, are measured). For the prompt
(pp128 random tokens, as benchmarks/twin_fidelity.py) and 32 single-token decodes (tg): per op
and node name (layer suffix dropped, unnamed nodes merged), how many evaluations raised DE (a
denormal operand, 0x02) and UE (a tiny result, 0x10), and how many of its F32 outputs are
subnormal (< 1.18e-38) or below f16's smallest normal (6.1e-5: subnormal once stored as f16).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import llama_cpp  # must load before numpy (fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll
from fitbench.core.twin.data import _ggml_lib_path

_LAYER = re.compile(r"-\d+$")
_NODE = re.compile(r"^node_\d+")
F32_TINY, F16_TINY = 1.1754944e-38, 6.1035156e-05


class Flags:
    def __init__(self) -> None:
        self.shim = ctypes.CDLL(os.environ.get("SHIM", "/tmp/ftz_shim.so"))
        self.shim.fitbench_mxcsr.restype = ctypes.c_uint
        self.shim.fitbench_mxcsr.argtypes = [ctypes.c_int]
        self.libs = ll.libs()
        base = ctypes.CDLL(str(_ggml_lib_path()))
        base.ggml_op_desc.restype = ctypes.c_char_p
        base.ggml_op_desc.argtypes = [ctypes.c_void_p]
        self.op_desc = base.ggml_op_desc
        self.table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on)

    def _on(self, tensor: int, ask: bool, _user: int) -> bool:
        if ask:
            return True
        flags = self.shim.fitbench_mxcsr(1)
        name = _LAYER.sub("", (self.libs.tensor_name(tensor) or b"?").decode(errors="replace"))
        name = f"{self.op_desc(tensor).decode()} {_NODE.sub('node', name)}"
        row = self.table[name]
        row["evals"] += 1
        row["DE"] += bool(flags & 0x02)
        row["UE"] += bool(flags & 0x10)
        row["IE"] += bool(flags & 0x01)
        if ctypes.c_int.from_address(tensor).value == 0:  # F32
            ne = (ctypes.c_int64 * 4).from_address(tensor + 16)
            nb = (ctypes.c_size_t * 4).from_address(tensor + 48)
            size = int(self.libs.tensor_nbytes(tensor))
            n = int(ne[0]) * int(ne[1]) * int(ne[2]) * int(ne[3])
            if size and n * 4 == size and int(nb[0]) == 4:
                raw = (ctypes.c_uint8 * size)()
                self.libs.tensor_get(tensor, raw, 0, size)
                a = np.abs(np.frombuffer(raw, dtype=np.float32))
                row["n"] += a.size
                row["sub32"] += int(((a > 0) & (a < F32_TINY)).sum())
                row["sub16"] += int(((a > 0) & (a < F16_TINY)).sum())
        self.shim.fitbench_mxcsr(1)  # the copy above is not the node's
        return True


def run(path: Path, n_pp: int = 128, n_tg: int = 32) -> dict[str, dict[str, dict[str, int]]]:
    out = {}
    model = ll.Model(path, n_gpu_layers=0, overrides=ll.Overrides([]), repack=False)
    tokens = np.random.default_rng(0).integers(0, model.info.n_vocab, n_pp + n_tg, np.int32)
    for phase in ("pp", "tg"):
        flags = Flags()
        params = ll.ContextParams(n_ctx=n_pp + n_tg + 16, n_batch=n_pp, n_ubatch=n_pp,
                                  n_threads=1, cb_eval=flags.callback)  # fmt: skip
        with ll.Context(model, params) as ctx:
            flags.shim.fitbench_mxcsr(1)
            if phase == "pp":
                ctx.decode_prompt(tokens[:n_pp], 0, logits_last=True)
            else:
                ctx.prepare_single()
                for i in range(n_tg):
                    ctx.decode_one(int(tokens[n_pp + i]), i)
            ctx.synchronize()
        out[phase] = {k: dict(v) for k, v in sorted(flags.table.items())}
    model.close()
    return out


def main() -> int:
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    report = {p: run(Path(p)) for p in sys.argv[1:]}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
