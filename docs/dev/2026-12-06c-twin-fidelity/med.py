import sys, re, numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader
OFF = {"Q5_0": 0, "Q8_0": 0, "Q4_K": 0, "Q6_K": 208, "Q4_0": 0, "Q4_1": 0}
for f in sys.argv[1:]:
    rows=[]
    for t in GGUFReader(f).tensors:
        name=t.tensor_type.name
        if not t.name.startswith("blk.") or name not in OFF: continue
        size=GGML_QUANT_SIZES[t.tensor_type][1]
        b=np.frombuffer(bytes(t.data.tobytes()),dtype=np.uint8).reshape(-1,size)
        d=b[:,OFF[name]:OFF[name]+2].copy().view(np.float16).astype(np.float32).ravel()
        l=np.log2(np.abs(d[d!=0])); role=re.sub(r"blk\.\d+\.","",t.name)
        rows.append((name, role, int(t.name.split('.')[1]), float(np.median(l)), float(np.std(l))))
    print(f)
    allm=np.array([r[3] for r in rows])
    print(f"  all tensors: median of medians {np.median(allm):.2f}  spread p5..p95 {np.percentile(allm,5)-np.median(allm):.2f}..{np.percentile(allm,95)-np.median(allm):.2f}  std {allm.std():.2f}")
    for role in sorted({r[1] for r in rows}):
        m=[r for r in rows if r[1]==role]
        ms=np.array([r[3] for r in m]); sd=np.array([r[4] for r in m])
        print(f"  {role:24} {m[0][0]:5} n {len(m):3} median {np.median(ms):6.2f} range {ms.min():6.2f}..{ms.max():6.2f}  within-std {np.median(sd):.2f}")
