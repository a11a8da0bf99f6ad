"""Pool the rounds of several fidelity_llama_bench.py runs and ask whether FitBench differs from
llama-bench by more than llama-bench differs from itself.

With partial offload one process of llama-bench can be 15-25% faster than the next on the same
machine (PCIe copies of CPU-resident weights from pageable, mmap-ed memory), so a median of
three rounds cannot settle a 5% target. This script pools every round per (model, ngl, test),
reports each tool's own spread (coefficient of variation across processes), the deviation of
FitBench's pooled median from llama-bench's, and a 90% bootstrap interval of that deviation.

    python benchmarks/fidelity_pool.py docs/h200/2026-11-29b/fidelity-*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

TARGET_PCT = {"pp": 5.0, "tg": 3.0}


def pooled(
    files: list[Path], pool_tg: bool = False
) -> dict[tuple[str, int, str], dict[str, list[float]]]:
    groups: dict[tuple[str, int, str], dict[str, list[float]]] = defaultdict(
        lambda: {"llama_bench": [], "fitbench": []}
    )
    for f in files:
        data = json.loads(f.read_text())
        if not isinstance(data, dict) or "rows" not in data:
            raise SystemExit(f"{f}: not a fidelity_llama_bench.py --json file")
        for row in data["rows"]:
            test = row["test"]
            if pool_tg and test.startswith("tg"):
                test = "tg*"  # tokens/s of a short generation hardly depends on its length
            key = (row["model"], int(row["ngl"]), test)
            groups[key]["llama_bench"] += row["llama_bench"]
            groups[key]["fitbench"] += row["fitbench"]
    return groups


def bootstrap_pct(
    lb: list[float], fb: list[float], n: int = 20000, seed: int = 7
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    a, b = np.asarray(lb), np.asarray(fb)
    ra = np.median(rng.choice(a, (n, a.size)), axis=1)
    rb = np.median(rng.choice(b, (n, b.size)), axis=1)
    dev = 100.0 * (rb / ra - 1.0)
    lo, hi = np.percentile(dev, [5, 95])
    return float(lo), float(hi)


def cv_pct(values: list[float]) -> float:
    return 100.0 * statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--pool-tg", action="store_true", help="pool tg runs of any length")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for (model, ngl, test), g in sorted(pooled(a.files, a.pool_tg).items()):
        lb, fb = g["llama_bench"], g["fitbench"]
        dev = 100.0 * (statistics.median(fb) / statistics.median(lb) - 1.0)
        lo, hi = bootstrap_pct(lb, fb)
        target = TARGET_PCT["pp" if test.startswith("pp") else "tg"]
        verdict = "within" if abs(dev) <= target else "outside"
        if lo <= 0.0 <= hi and verdict == "outside":
            verdict = "outside, not significant"
        rows.append(
            {
                "model": model, "ngl": ngl, "test": test, "rounds": len(lb),
                "llama_bench_median": statistics.median(lb),
                "fitbench_median": statistics.median(fb),
                "llama_bench_cv_pct": cv_pct(lb), "fitbench_cv_pct": cv_pct(fb),
                "deviation_pct": dev, "ci90_pct": [lo, hi], "target_pct": target,
                "verdict": verdict,
            }
        )  # fmt: skip
    print(
        "| model | ngl | test | rounds | llama-bench t/s (CV) | FitBench t/s (CV) | "
        "FitBench vs lb | 90% CI | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model'][:28]} | {r['ngl']} | {r['test']} | {r['rounds']} | "
            f"{r['llama_bench_median']:.2f} ({r['llama_bench_cv_pct']:.1f}%) | "
            f"{r['fitbench_median']:.2f} ({r['fitbench_cv_pct']:.1f}%) | "
            f"{r['deviation_pct']:+.1f}% | {r['ci90_pct'][0]:+.1f}..{r['ci90_pct'][1]:+.1f}% | "
            f"{r['target_pct']:.0f}%: {r['verdict']} |"
        )
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
