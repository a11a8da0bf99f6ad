"""Medians per (kernel, mode, file) of run_kernels.sh / run_replica.sh output."""

import re
import statistics
import sys
from collections import defaultdict

rows: dict[tuple[str, str], list[float]] = defaultdict(list)
with open(sys.argv[1]) as f:
    lines = f.read().splitlines()
for line in lines:
    m = re.match(r"([\d.]+) GB/s median.*\((\S+)\)", line)
    if m:
        rows[("memread GB/s", m.group(2).split("/")[-1])].append(float(m.group(1)))
    m = re.match(r"(\S+) (\w+) (\S+): ([\d.]+) ns/row", line)
    if m:
        key = (f"{m.group(1)} {m.group(2)} ns/row", m.group(3).split("/")[-1])
        rows[key].append(float(m.group(4)))
for (what, f), v in sorted(rows.items()):
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    print(f"{what:44} {f:28} median {q[1]:7.2f} [{q[0]:.2f}-{q[2]:.2f}] n={len(v)}")
