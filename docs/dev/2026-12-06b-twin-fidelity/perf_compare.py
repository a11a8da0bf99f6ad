"""Per-symbol time per token of tg_loop.py profiles: which function takes longer on which file.

    python perf_compare.py F TOKENS_A A.data TOKENS_B B.data [...]

F is perf record's sampling frequency (-F); TOKENS the "tokens in all" tg_loop.py printed.
Prints, for symbols above 0.2% of samples, microseconds per token in each profile and B/A - 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[\.\]\s+(.+?)\s*$")


def samples(path: str) -> dict[str, int]:
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "dso,sym", "-n", "--stdio"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    table: dict[str, int] = defaultdict(int)
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            table[f"{m.group(2)[:18]} {m.group(3)[:60]}"] += int(m.group(1))
    return table


def main() -> int:
    freq = float(sys.argv[1])
    runs = [(int(sys.argv[i]), sys.argv[i + 1]) for i in range(2, len(sys.argv), 2)]
    tables = [(tokens, path, samples(path)) for tokens, path in runs]
    total = sum(tables[0][2].values())
    keys = sorted(tables[0][2], key=lambda k: -tables[0][2][k])
    print(f"{'symbol':80}" + "".join(f"{p[-22:]:>24}" for _, p, _ in tables))
    for k in [k for k in keys if tables[0][2][k] > 0.002 * total]:
        us = [t[2].get(k, 0) / freq / t[0] * 1e6 for t in tables]
        rel = "".join(f"{(u / us[0] - 1) * 100:+7.1f}%" for u in us[1:]) if us[0] else ""
        print(f"{k:80}" + "".join(f"{u:22.1f}us" for u in us) + "  " + rel)
    sums = [sum(v for k, v in t[2].items() if "ggml" in k) / freq / t[0] * 1e6 for t in tables]
    print(f"{'all ggml symbols':80}" + "".join(f"{u:22.1f}us" for u in sums))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
