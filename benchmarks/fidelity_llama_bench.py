"""FitBench's pp/tg against llama.cpp's own llama-bench, same model, settings and threads.

Both tools run alternately (llama-bench first in odd rounds, FitBench first in even ones, so a
machine that warms up or slows down over time favours neither); the table shows the median of
each tool's per-round avg_ts and FitBench's deviation. FitBench runs through its real path:
run_sweep() -> worker process -> llama-cpp-python's low-level API, with the memory sampler on.

Build llama-bench from the vendored llama.cpp of the installed llama-cpp-python, e.g. (CPU):
    cmake -S <llama_cpp_python src>/vendor/llama.cpp -B /work/llama-bench-cpu \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build /work/llama-bench-cpu --target llama-bench -j
(add -DGGML_CUDA=ON for a CUDA build, matching a CUDA build of llama-cpp-python).

    python benchmarks/fidelity_llama_bench.py --llama-bench /work/llama-bench-cpu/bin/llama-bench \
        -m model.gguf [-m mixtral-8x7b-instruct ...] -p 512 -n 128 -r 5 -t 2 -ngl 0 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fitbench.core.bench.config import BenchConfig, BenchTest, parse_int_list, physical_cores
from fitbench.core.bench.events import RecordReady
from fitbench.core.bench.models import resolve
from fitbench.core.bench.runner import run_sweep
from fitbench.core.results.store import open_store


def run_llama_bench(exe: str, path: str, a: argparse.Namespace, ngl: int) -> dict[str, float]:
    cmd = [
        exe, "-m", path, "-p", str(a.n_prompt), "-n", str(a.n_gen), "-r", str(a.reps),
        "-t", str(a.threads), "-ngl", str(ngl), "-fa", a.fa, "--repack", str(a.repack),
        "-o", "jsonl",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {proc.stderr[-800:]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            key = "pp" if rec["n_prompt"] > 0 else "tg"
            out[key] = float(rec["avg_ts"])
    return out


def run_fitbench(path: str, a: argparse.Namespace, ngl: int, db: Path) -> dict[str, float]:
    fa = {"auto": None, "on": True, "1": True, "off": False, "0": False}[a.fa]
    cfg = BenchConfig(
        model_path=path,
        tests=(BenchTest("pp", n_prompt=a.n_prompt), BenchTest("tg", n_gen=a.n_gen)),
        reps=a.reps,
        n_threads=a.threads,
        n_gpu_layers=ngl,
        flash_attn=fa,
        repack=bool(a.repack),
    )
    return {rec["test"]: float(rec["avg_ts"]) for rec in fitbench_records(cfg, db)}


def fitbench_records(cfg: BenchConfig, db: Path) -> list[dict[str, Any]]:
    """Every record of one config through FitBench's real path; a failed test is an error."""
    records = []
    with open_store(db) as store:
        for event in run_sweep([cfg], store=store):
            if isinstance(event, RecordReady):
                rec = event.record
                if rec["status"] != "ok":
                    what = (
                        f"{rec['test']} B={rec['n_parallel']}"
                        if rec["n_parallel"] > 1
                        else rec["test"]
                    )
                    raise RuntimeError(f"FitBench {what}: {rec['status']}: {rec['error']}")
                records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--llama-bench", required=True, help="path of the llama-bench executable")
    p.add_argument("-m", "--model", action="append", required=True, help="GGUF path or catalog id")
    p.add_argument("-p", "--n-prompt", type=int, default=512)
    p.add_argument("-n", "--n-gen", type=int, default=128)
    p.add_argument("-r", "--reps", type=int, default=5)
    p.add_argument("-t", "--threads", type=int, default=physical_cores())
    p.add_argument("-ngl", "--ngl", default="99", help="list, llama-bench syntax (0,16,99)")
    p.add_argument("-fa", default="auto", choices=("auto", "on", "off", "0", "1"))
    p.add_argument("--repack", type=int, default=1, choices=(0, 1))
    p.add_argument("--rounds", type=int, default=3, help="alternations of the two tools")
    p.add_argument("--json", type=Path, default=None, help="write every measurement here")
    a = p.parse_args(argv)
    ngls = parse_int_list(a.ngl, allow_negative=True, name="-ngl")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fidelity.sqlite3"
        for spec in a.model:
            path = str(resolve(spec).path)
            for ngl in ngls:
                lb: list[dict[str, float]] = []
                fb: list[dict[str, float]] = []
                for rnd in range(a.rounds):
                    order = ("lb", "fb") if rnd % 2 == 0 else ("fb", "lb")
                    for tool in order:
                        t0 = time.monotonic()
                        if tool == "lb":
                            lb.append(run_llama_bench(a.llama_bench, path, a, ngl))
                        else:
                            fb.append(run_fitbench(path, a, ngl, db))
                        got = (lb if tool == "lb" else fb)[-1]
                        print(
                            f"  round {rnd + 1} {tool}: pp {got['pp']:.2f} tg {got['tg']:.2f} "
                            f"({time.monotonic() - t0:.0f} s)",
                            file=sys.stderr,
                        )
                for test in ("pp", "tg"):
                    lb_med = statistics.median(r[test] for r in lb)
                    fb_med = statistics.median(r[test] for r in fb)
                    rows.append(
                        {
                            "model": Path(path).name,
                            "ngl": ngl,
                            "test": f"{test}{a.n_prompt if test == 'pp' else a.n_gen}",
                            "llama_bench": [r[test] for r in lb],
                            "fitbench": [r[test] for r in fb],
                            "llama_bench_median": lb_med,
                            "fitbench_median": fb_med,
                            "deviation_pct": 100.0 * (fb_med / lb_med - 1.0),
                        }
                    )
                _write_json(a, rows)  # per placement: a run cut short keeps what it measured
    print(f"threads {a.threads}, r {a.reps}, fa {a.fa}, repack {a.repack}, {a.rounds} rounds")
    print(f"| {'model':<44} | ngl | test  | llama-bench t/s | FitBench t/s | FitBench vs lb |")
    print(f"|{'-' * 46}|-----|-------|-----------------|--------------|----------------|")
    for r in rows:
        print(
            f"| {r['model'][:44]:<44} | {r['ngl']:>3} | {r['test']:<5} | "
            f"{r['llama_bench_median']:>15.2f} | {r['fitbench_median']:>12.2f} | "
            f"{r['deviation_pct']:>+13.1f}% |"
        )
    _write_json(a, rows)
    return 0


def _write_json(a: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if a.json is not None:
        a.json.write_text(
            json.dumps({"args": vars(a) | {"json": str(a.json)}, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    raise SystemExit(main())
