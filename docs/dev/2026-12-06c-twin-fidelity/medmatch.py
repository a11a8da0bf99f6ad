"""A copy of TWIN whose blk.* tensors' f16 scales (d, dmin) are multiplied per tensor so that
the tensor's median log2|d| equals the real file's for that tensor (within-tensor shape: twin's)."""
import shutil, sys, numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, GGUFReader
F = {T.Q8_0: (0,), T.Q5_0: (0,), T.Q4_K: (0, 2), T.Q6_K: (208,)}
twin, out, real = sys.argv[1:4]
shutil.copyfile(twin, out)
rt = {t.name: t for t in GGUFReader(real).tensors}
def med(t):
    bs = GGML_QUANT_SIZES[t.tensor_type][1]
    o = F[t.tensor_type][0]
    b = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, bs)
    d = b[:, o:o+2].copy().view(np.float16).astype(np.float32).ravel()
    return float(np.median(np.log2(np.abs(d[d != 0]))))
with open(out, "r+b") as f:
    for t in GGUFReader(twin).tensors:
        if not t.name.startswith("blk.") or t.tensor_type not in F: continue
        r = rt[t.name]; k = 2 ** (med(r) - med(t))
        bs = GGML_QUANT_SIZES[t.tensor_type][1]
        b = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, bs).copy()
        for o in F[t.tensor_type]:
            v = b[:, o:o+2].copy().view(np.float16).astype(np.float32) * k
            b[:, o:o+2] = v.astype(np.float16).view(np.uint8)
        f.seek(t.data_offset); f.write(b.tobytes())
print(out)
