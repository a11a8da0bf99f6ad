"""Paired per-round ratios of run_stream.sh output: each file's ns/row over the first file's."""

import re
import statistics
import sys

with open(sys.argv[1]) as f:
    runs = [
        (m.group(1).split("/")[-1], float(m.group(2)))
        for m in (re.match(r"\S+ stream (\S+): ([\d.]+) ns/row", line) for line in f)
        if m
    ]
names = list(dict.fromkeys(n for n, _ in runs))
rounds = [dict(runs[i : i + len(names)]) for i in range(0, len(runs), len(names))]
ref = names[0]
for name in names:
    v = [r[name] for r in rounds]
    line = f"{name:28} ns/row median {statistics.median(v):6.2f}"
    if name != ref:
        ratio = [(r[ref] / r[name] - 1) * 100 for r in rounds]  # speed vs ref, + = faster
        q = statistics.quantiles(ratio, n=4)
        faster = sum(x > 0 for x in ratio)
        spread = f"[{q[0]:+.1f}, {q[2]:+.1f}] faster {faster}/{len(ratio)}"
        line += f"  speed vs {ref}: {q[1]:+.1f}% {spread}"
    print(line)
