import sys, numpy as np
from gguf import GGUFReader
for f in sys.argv[1:]:
    for t in GGUFReader(f).tensors:
        if t.name != "token_embd.weight": continue
        b = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, 34)
        raw = b[:, :2].copy().view(np.uint16).ravel()
        d = raw.view(np.float16).astype(np.float32)
        l = np.log2(np.abs(d[d != 0]))
        q = np.percentile(l, [0.01, 1, 25, 50, 75, 99, 99.99])
        # how many table lines cover 90/99% of lookups
        lines, cnt = np.unique(raw >> 4, return_counts=True)
        c = np.sort(cnt)[::-1].cumsum() / cnt.sum()
        print(f.split('/')[-1][:30], "distinct", len(np.unique(raw)), "lines", len(lines),
              "lines for 90/99/99.9%:", int(np.searchsorted(c, .9)) + 1, int(np.searchsorted(c, .99)) + 1, int(np.searchsorted(c, .999)) + 1,
              "log2|d| q:", " ".join(f"{x:.2f}" for x in q))
