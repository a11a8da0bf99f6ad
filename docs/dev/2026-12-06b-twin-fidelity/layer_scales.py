"""The f16 block scales of every blk.* matrix, per type: how many distinct values, how many
64-byte lines of ggml's 256 KiB f16->f32 table they touch, and their log2 spread.

    python layer_scales.py a.gguf [b.gguf ...]   # (layer-scales.txt)
"""

from __future__ import annotations

import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader

OFF = {"Q5_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q6_K": [208], "Q4_0": [0], "Q4_1": [0, 2]}  # f16 scales

print("per type, blk.* tensors: distinct f16 scales, table lines (16 per 64 B), log2|d| p1 p50 p99")
for f in sys.argv[1:]:
    acc: dict[str, list[np.ndarray]] = {}
    for t in GGUFReader(f).tensors:
        name = t.tensor_type.name
        if not t.name.startswith("blk.") or name not in OFF:
            continue
        size = GGML_QUANT_SIZES[t.tensor_type][1]
        b = np.frombuffer(bytes(t.data.tobytes()), dtype=np.uint8).reshape(-1, size)
        for o in OFF[name]:
            acc.setdefault(name, []).append(b[:, o : o + 2].copy().view(np.uint16).ravel())
    for name, parts in sorted(acc.items()):
        d = np.concatenate(parts)
        u = np.unique(d)
        v = np.abs(d.view(np.float16).astype(np.float32))
        p = np.percentile(np.log2(v[v > 0]), [1, 50, 99])
        lines = len(np.unique(u >> 4))
        print(f"{f:26} {name:5} n {d.size:8} distinct {len(u):6} lines {lines:5} "
              f"log2|d| {p[0]:6.2f} {p[1]:6.2f} {p[2]:6.2f}")  # fmt: skip
