import sys, numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader
OFF = {"Q5_0": 0, "Q8_0": 0, "Q4_K": 0, "Q6_K": 208, "Q4_1": 0}
want=sys.argv[1]
for f in sys.argv[2:]:
    raws=[]
    for t in GGUFReader(f).tensors:
        if not t.name.startswith("blk.") or t.tensor_type.name!=want: continue
        size=GGML_QUANT_SIZES[t.tensor_type][1]
        b=np.frombuffer(bytes(t.data.tobytes()),dtype=np.uint8).reshape(-1,size)
        raws.append(b[:,OFF[want]:OFF[want]+2].copy().view(np.uint16).ravel())
    r=np.concatenate(raws); r=r&0x7fff
    e=(r>>10)
    print(f.split('/')[-1], want, "exp: blocks / distinct / lines")
    for x in np.unique(e):
        s=r[e==x]; print(f"   2^{int(x)-15:4d} {s.size:8d} {len(np.unique(s)):6d} {len(np.unique(s>>4)):4d}")
