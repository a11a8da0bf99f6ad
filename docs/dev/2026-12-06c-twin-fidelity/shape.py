import sys, numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader
OFF = {"Q5_0": [0], "Q8_0": [0], "Q4_K": [0], "Q6_K": [208], "Q4_0": [0], "Q4_1": [0]}
P=[0.01,0.1,1,5,25,50,75,95,99,99.9,99.99]
print("file type n | centered log2|d| quantiles", P, "| lines distinct")
for f in sys.argv[1:]:
    acc={}
    for t in GGUFReader(f).tensors:
        name=t.tensor_type.name
        if not t.name.startswith("blk.") or name not in OFF: continue
        size=GGML_QUANT_SIZES[t.tensor_type][1]
        b=np.frombuffer(bytes(t.data.tobytes()),dtype=np.uint8).reshape(-1,size)
        d=b[:,OFF[name][0]:OFF[name][0]+2].copy().view(np.float16).astype(np.float32).ravel()
        raw=b[:,OFF[name][0]:OFF[name][0]+2].copy().view(np.uint16).ravel()
        l=np.log2(np.abs(d[d!=0]))
        acc.setdefault(name,[]).append((l-np.median(l), raw))
    for name,parts in sorted(acc.items()):
        c=np.concatenate([p[0] for p in parts]); raw=np.concatenate([p[1] for p in parts])
        q=np.percentile(c,P)
        print(f"{f.split('/')[-1][:24]:24} {name:5} {c.size:8} |"+" ".join(f"{x:6.2f}" for x in q)+f" | {len(np.unique(raw>>4))} {len(np.unique(raw))}")
