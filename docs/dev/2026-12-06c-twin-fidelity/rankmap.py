"""A copy of TWIN whose blk.* f16 scales are the real tensor's own scale values, assigned by the
twin's rank order (per tensor, per field): the real set of values, the twin's positions.
With JITTER bits > 0, the low mantissa bits are then randomised (breaks bf16 sparsity)."""
import shutil, sys, numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, GGUFReader
F = {T.Q8_0: (0,), T.Q5_0: (0,), T.Q4_K: (0, 2), T.Q6_K: (208,)}
twin, out, real, jitter = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shutil.copyfile(twin, out)
rng = np.random.default_rng(3)
rt = {t.name: t for t in GGUFReader(real).tensors}
with open(out, "r+b") as f:
    for t in GGUFReader(twin).tensors:
        if not t.name.startswith("blk.") or t.tensor_type not in F: continue
        bs = GGML_QUANT_SIZES[t.tensor_type][1]
        b = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, bs).copy()
        rb = np.frombuffer(rt[t.name].data.tobytes(), np.uint8).reshape(-1, bs)
        for o in F[t.tensor_type]:
            mine = b[:, o:o+2].copy().view(np.float16).ravel()
            theirs = np.sort(rb[:, o:o+2].copy().view(np.float16).ravel().astype(np.float32))
            order = np.argsort(mine.astype(np.float32), kind="stable")
            new = np.empty_like(mine); new[order] = theirs.astype(np.float16)
            u = new.view(np.uint16)
            if jitter:
                m = np.uint16((1 << jitter) - 1)
                u = (u & ~m) | (rng.integers(0, 1 << jitter, u.size, dtype=np.uint16) & m)
            b[:, o:o+2] = u.view(np.uint8).reshape(-1, 2)
        f.seek(t.data_offset); f.write(b.tobytes())
print(out)
