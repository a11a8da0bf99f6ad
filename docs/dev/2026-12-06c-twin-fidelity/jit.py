"""A copy of TWIN whose f16 block scales have their low BITS mantissa bits randomised."""
import shutil, sys, numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, GGUFReader
F = {T.Q8_0: (0,), T.Q5_0: (0,), T.Q4_K: (0, 2), T.Q6_K: (208,), T.Q4_1: (0, 2)}
twin, out, bits = sys.argv[1], sys.argv[2], int(sys.argv[3])
part = sys.argv[4] if len(sys.argv) > 4 else ""
shutil.copyfile(twin, out)
rng = np.random.default_rng(1)
mask = np.uint16((1 << bits) - 1)
with open(out, "r+b") as f:
    for t in GGUFReader(twin).tensors:
        fl = F.get(t.tensor_type)
        if fl is None or part not in t.name: continue
        bs = GGML_QUANT_SIZES[t.tensor_type][1]
        b = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, bs).copy()
        for o in fl:
            v = b[:, o:o+2].copy().view(np.uint16).ravel()
            v = (v & ~mask) | (rng.integers(0, 1 << bits, v.size, dtype=np.uint16) & mask)
            b[:, o:o+2] = v.view(np.uint8).reshape(-1, 2)
        f.seek(t.data_offset); f.write(b.tobytes())
print(out)
