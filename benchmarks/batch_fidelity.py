"""FitBench's batch test against llama.cpp's own llama-batched-bench, same model and settings.

Both do the same thing: a prompt of --depth random tokens shared by B sequences in one unified KV
cache (`-pps -kvu`), then --n-gen steps that each decode one random token for every sequence;
the figure is aggregate generation throughput, B * n_gen / time of those steps (batched-bench's
S_TG). The tools alternate per round (batched-bench first in odd rounds); the table shows the
median per-round t/s of each and FitBench's deviation. FitBench runs its real path: run_sweep()
-> worker process -> llama-cpp-python's low-level API, with the memory sampler on.

Build llama-batched-bench next to llama-bench from the same vendored llama.cpp:
    cmake --build <build dir> --target llama-batched-bench

    python benchmarks/batch_fidelity.py --batched-bench build/bin/llama-batched-bench \
        -m model.gguf -ngl 99 --batch 1,4,16,64 -n 32 --depth 128 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fidelity_llama_bench import fitbench_records  # the sibling script (benchmarks/ is on sys.path)

from fitbench.core.bench.config import BenchConfig, BenchTest, parse_int_list, physical_cores
from fitbench.core.bench.models import resolve


def n_ctx_for(a: argparse.Namespace, batches: list[int]) -> int:
    return max(
        BenchTest("batch", n_gen=a.n_gen, n_parallel=b, n_depth=a.depth).n_ctx for b in batches
    )


def run_batched_bench(
    exe: str, path: str, a: argparse.Namespace, batches: list[int]
) -> dict[int, float]:
    cmd = [
        exe, "-m", path, "-c", str(n_ctx_for(a, batches)), "-npp", str(a.depth),
        "-ntg", str(a.n_gen), "-npl", ",".join(map(str, batches)), "-pps", "-kvu",
        "-ngl", str(a.ngl), "-t", str(a.threads), "--output-format", "jsonl",
    ]  # fmt: skip
    if not a.repack:
        cmd.append("--no-repack")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed ({proc.returncode}): {proc.stderr[-800:]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out[int(rec["pl"])] = float(rec["speed_tg"])
    return out


def run_fitbench(
    path: str, a: argparse.Namespace, batches: list[int], db: Path
) -> dict[int, float]:
    cfg = BenchConfig(
        model_path=path,
        tests=tuple(
            BenchTest("batch", n_gen=a.n_gen, n_parallel=b, n_depth=a.depth) for b in batches
        ),
        reps=1,  # batched-bench measures each B once
        n_threads=a.threads,
        n_gpu_layers=a.ngl,
        repack=bool(a.repack),
    )
    # avg_ts of a batch record: B * n_gen / time
    return {int(r["n_parallel"]): float(r["avg_ts"]) for r in fitbench_records(cfg, db)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batched-bench", required=True, help="path of llama-batched-bench")
    p.add_argument("-m", "--model", required=True, help="GGUF path or catalog id")
    p.add_argument("-ngl", "--ngl", type=int, default=99)
    p.add_argument("-t", "--threads", type=int, default=physical_cores())
    p.add_argument("--batch", default="1,4,16,64")
    p.add_argument("-n", "--n-gen", type=int, default=32)
    p.add_argument("--depth", type=int, default=128, help="shared prompt tokens (>= 1)")
    p.add_argument("--repack", type=int, default=1, choices=(0, 1))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    batches = parse_int_list(a.batch, name="--batch")
    path = str(resolve(a.model).path)
    runs: dict[str, list[dict[int, float]]] = {"bb": [], "fb": []}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "batch.sqlite3"
        for rnd in range(a.rounds):
            for tool in ("bb", "fb") if rnd % 2 == 0 else ("fb", "bb"):
                got = (
                    run_batched_bench(a.batched_bench, path, a, batches)
                    if tool == "bb"
                    else run_fitbench(path, a, batches, db)
                )
                runs[tool].append(got)
                shown = " ".join(f"B{b} {got[b]:.1f}" for b in batches)
                print(f"  round {rnd + 1} {tool}: {shown}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for b in batches:
        bb = [r[b] for r in runs["bb"]]
        fb = [r[b] for r in runs["fb"]]
        rows.append(
            {
                "B": b,
                "batched_bench": bb,
                "fitbench": fb,
                "batched_bench_median": statistics.median(bb),
                "fitbench_median": statistics.median(fb),
                "deviation_pct": 100.0 * (statistics.median(fb) / statistics.median(bb) - 1.0),
            }
        )
    name = Path(path).name
    print(
        f"{name}: ngl {a.ngl}, threads {a.threads}, depth {a.depth}, tg {a.n_gen}, "
        f"{a.rounds} rounds"
    )
    print("|   B | batched-bench S_TG t/s | FitBench batch t/s | FitBench vs batched-bench |")
    print("|-----|------------------------|--------------------|---------------------------|")
    for r in rows:
        print(
            f"| {r['B']:>3} | {r['batched_bench_median']:>22.2f} | {r['fitbench_median']:>18.2f} | "
            f"{r['deviation_pct']:>+24.1f}% |"
        )
    if a.json is not None:
        a.json.write_text(
            json.dumps({"args": vars(a) | {"json": str(a.json)}, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
