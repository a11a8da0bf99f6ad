"""Inside FLASH_ATTN_EXT: how many softmax terms underflow, for a real file and its twin.

    python fa_scores.py a.gguf [b.gguf ...]

The eval callback sees only an op's output; the exp() terms of flash attention stay inside the
kernel. So, at every FLASH_ATTN_EXT node of the benchmark's tg test (32 single-token decodes on
an empty context, 1 thread), this recomputes the scores from the node's own inputs, as ggml-cpu
does (q rounded to f16, f16 K, scale and softcap from op_params, the f16 mask), and counts per
term d = s - max: exp(d) subnormal in f32 (-103.97 < d < -87.34), flushed to 0 (d <= -103.97),
or below f16's smallest normal (d < -9.70: subnormal or 0 once the kernel stores it as f16).
The kernel's running max is at most the final one, so these are upper bounds.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import llama_cpp  # must load before numpy (fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll
from fitbench.core.twin.data import _ggml_lib_path

_OP, _PARAMS, _SRC, _DATA = 80, 84, 152, 248  # offsets in struct ggml_tensor (ggml.h)
_F32, _F16 = 0, 1
_NP = {_F32: np.float32, _F16: np.float16}


def _array(t: int) -> np.ndarray:
    kind = ctypes.c_int.from_address(t).value
    ne = list((ctypes.c_int64 * 4).from_address(t + 16))
    nb = list((ctypes.c_size_t * 4).from_address(t + 48))
    data = ctypes.c_void_p.from_address(t + _DATA).value
    span = sum((n - 1) * s for n, s in zip(ne, nb, strict=True)) + nb[0]
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * span).from_address(data))
    dt = np.dtype(_NP[kind])
    return np.lib.stride_tricks.as_strided(
        raw.view(dt), shape=ne[::-1], strides=nb[::-1], writeable=False
    ).astype(np.float32)  # [ne3, ne2, ne1, ne0]


class Scores:
    def __init__(self) -> None:
        base = ctypes.CDLL(str(_ggml_lib_path()))
        base.ggml_op_desc.restype = ctypes.c_char_p
        base.ggml_op_desc.argtypes = [ctypes.c_void_p]
        self.op_desc = base.ggml_op_desc
        self.counts = {"terms": 0, "sub32": 0, "zero32": 0, "below_f16_normal": 0, "nodes": 0}
        self.d_hist = np.zeros(12, dtype=np.int64)  # d in [-inf,-110], (-110,-100], ... (-10,0]
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on)

    def _on(self, tensor: int, ask: bool, _user: int) -> bool:
        if ask or self.op_desc(tensor) != b"FLASH_ATTN_EXT":
            return True
        src = (ctypes.c_void_p * 10).from_address(tensor + _SRC)
        q, k, mask = _array(src[0]), _array(src[1]), _array(src[3]) if src[3] else None
        scale, _bias, softcap = (ctypes.c_float * 3).from_address(tensor + _PARAMS)
        q = q.astype(np.float16).astype(np.float32)  # ggml-cpu rounds q to K's type (f16)
        n_head, n_head_kv = q.shape[1], k.shape[1]
        for h in range(n_head):
            kh = k[0, h * n_head_kv // n_head]  # [n_kv, D]
            s = (q[0, h] @ kh.T) * scale  # [n_q, n_kv]
            if softcap:
                s = softcap * np.tanh(s)
            if mask is not None:
                s = s + mask[0, 0, : s.shape[0], : s.shape[1]]
            for row in s:
                row = row[np.isfinite(row)]
                d = row - row.max()
                self.counts["terms"] += d.size
                self.counts["sub32"] += int(((d > -103.97) & (d < -87.34)).sum())
                self.counts["zero32"] += int((d <= -103.97).sum())
                self.counts["below_f16_normal"] += int((d < -9.70).sum())
                idx = np.clip(((-d) // 10).astype(int), 0, 11)
                self.d_hist += np.bincount(11 - idx, minlength=12)[:12]
        self.counts["nodes"] += 1
        return True


def run(path: Path, n_tg: int = 32) -> dict[str, object]:
    model = ll.Model(path, n_gpu_layers=0, overrides=ll.Overrides([]), repack=False)
    tokens = np.random.default_rng(0).integers(0, model.info.n_vocab, 128 + n_tg, np.int32)
    sc = Scores()
    params = ll.ContextParams(n_ctx=128 + n_tg + 16, n_batch=128, n_ubatch=128, n_threads=1,
                              cb_eval=sc.callback)  # fmt: skip
    with ll.Context(model, params) as ctx:
        ctx.prepare_single()
        for i in range(n_tg):
            ctx.decode_one(int(tokens[128 + i]), i)
        ctx.synchronize()
    model.close()
    hist = {f"({-10 * (12 - i)},{-10 * (11 - i)}]": int(v) for i, v in enumerate(sc.d_hist)}
    return {**sc.counts, "d_hist": hist}


def main() -> int:
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    print(json.dumps({p: run(Path(p)) for p in sys.argv[1:]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
