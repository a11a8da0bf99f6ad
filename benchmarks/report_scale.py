"""Time and peak memory of `fitbench report` on results files of 1k, 10k and 100k records.

    PYTHONPATH=app .venv/bin/python benchmarks/report_scale.py [--sizes 1000,10000,100000]
        [--keep DIR] [--json OUT] [--no-advice]

Generates N schema-valid records (both catalog models, every catalog quant, placements from
CPU-only to all on the GPU with experts on the CPU for the MoE, pp/tg/ttft/batch/depth tests, a
few failures, repeated runs of the same configurations and, for one record in five, a placement
never seen before, so the number of distinct configurations grows with N as in a long-lived
results file), writes the report in a fresh child process (`fitbench report --hardware ...`,
with the advice unless --no-advice) and prints the wall time, the child's peak RSS
(wait4's ru_maxrss), the pages and the PDF size. Nothing here is predicted: every number is
measured on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from fitbench.core.model import catalog  # noqa: E402
from fitbench.core.results import schema  # noqa: E402

FINGERPRINT = "report-scale-bench"
HARDWARE = {
    "note": "one H200 (spec figures), for the advice in benchmarks/report_scale.py",
    "fingerprint": FINGERPRINT,
    "cpu": {"name": "bench host", "cores_physical": 16, "ram_bandwidth_gbps": None},
    "ram": {"total_bytes": 128 << 30, "available_bytes": 120 << 30},
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "vram_total_bytes": 150754820096,
            "vram_free_bytes": 149946368000,
            "bandwidth_gbps": 4800.0,
            "pcie": {"generation": 5, "width": 16, "bandwidth_gbps": 63.0},
        }
    ],
    "llama_cpp": {"supports_gpu_offload": True},
}


def _config(rng: random.Random, models: list[catalog.Model]) -> dict[str, Any]:
    model = rng.choice(models)
    n = model.arch.n_layer
    ngl = rng.randint(0, n + 1)
    ncmoe = rng.choice([0, 0, rng.randint(1, n)]) if model.arch.is_moe else 0
    return {
        "model_id": model.id,
        "quant": rng.choice(model.quants).quant,
        "source": "twin",
        "n_gpu_layers": ngl,
        "n_cpu_moe": ncmoe,
        "n_layer_model": n,
        "n_layer_file": n,
        "model_filename": f"/data/twins/{model.id}.fitbench-twin.gguf",
    }


def _record(rng: random.Random, config: dict[str, Any], i: int, run_id: str) -> dict[str, Any]:
    test = rng.choice(["pp", "tg", "tg", "ttft", "batch", "depth"])
    fields: dict[str, Any] = {
        **config,
        "test": test,
        "run_id": run_id,
        "config_id": f"{hash(tuple(sorted(config.items()))) & 0xFFFFFFFFFFFF:012x}",
        "hardware_fingerprint": FINGERPRINT,
        "gpu_info": "NVIDIA H200",
        "cpu_info": "bench host",
        "n_threads": 16,
        "test_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1.7e9 + 30 * i)),
        "vram_peak_bytes": rng.randint(1, 140) << 30,
        "ram_peak_bytes": rng.randint(1, 100) << 30,
        "load_s": rng.uniform(1, 30),
    }
    speed = rng.uniform(5, 200)
    if test == "pp":
        fields.update(n_prompt=512, avg_ts=speed * 20)
    elif test in ("tg", "depth"):
        fields.update(n_gen=128, avg_ts=speed, itl_ms_p50=1e3 / speed, itl_ms_p95=1.1e3 / speed)
        if test == "depth":
            fields["n_depth"] = rng.choice([512, 2048, 8192])
    elif test == "ttft":
        fields.update(n_prompt=512, n_gen=1, ttft_ms=rng.uniform(50, 5000))
    else:
        b = rng.choice([1, 2, 4, 8, 16, 32, 64])
        fields.update(n_gen=32, n_parallel=b, avg_ts=speed * b**0.7, itl_ms_p95=1e3 / speed)
    reps = 3
    if "avg_ts" in fields:
        ts = [fields["avg_ts"] * rng.uniform(0.97, 1.03) for _ in range(reps)]
        tokens = fields.get("n_prompt") or fields.get("n_gen") or 1
        fields.update(
            samples_ts=ts,
            samples_ns=[int(tokens / t * 1e9) for t in ts],
            avg_ns=int(tokens / fields["avg_ts"] * 1e9),
            stddev_ts=fields["avg_ts"] * 0.01,
        )
    if rng.random() < 0.02:
        fields.update(status=rng.choice(["oom", "error", "timeout"]), error="synthetic failure")
        for k in ("avg_ts", "samples_ts", "samples_ns", "avg_ns", "stddev_ts"):
            fields.pop(k, None)
    return schema.new_record(**fields)


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    models = list(catalog.load().models)
    known = [_config(rng, models) for _ in range(50)]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if rng.random() < 0.2:  # a placement tried once, as sweeps over months add
                known.append(_config(rng, models))
                config = known[-1]
            else:
                config = rng.choice(known)
            f.write(schema.to_json(_record(rng, config, i, f"run{i // 200:05d}")) + "\n")


def measure(results: Path, pdf: Path, hardware: Path, advice: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "fitbench", "report", "--results", str(results)]
    cmd += ["--pdf", str(pdf), "--hardware", str(hardware), "--json"]
    if not advice:
        cmd.append("--no-advice")
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    out = child.stdout.read().decode() if child.stdout else ""
    err = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"report failed on {results}:\n{err[-2000:]}")
    summary = json.loads(out)
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # KiB on Linux
        "pages": summary["pages"],
        "pdf_mb": round(pdf.stat().st_size / 1e6, 2),
        "raw_results": summary["raw_results"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--keep", type=Path, help="keep the generated files and PDFs here")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--no-advice", action="store_true", help="measure without the advice")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        hardware = folder / "hardware.json"
        hardware.write_text(json.dumps(HARDWARE))
        rows = []
        heads = ("records", "MB", "seconds", "peak RSS MB", "pages", "PDF MB")
        print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (8, 7, 8, 12, 6, 7), strict=True)))
        for n in (int(s) for s in args.sizes.split(",")):
            results = folder / f"results-{n}.jsonl"
            generate(results, n)
            row = {"records": n, "jsonl_mb": round(results.stat().st_size / 1e6, 1)}
            row |= measure(results, folder / f"report-{n}.pdf", hardware, not args.no_advice)
            rows.append(row)
            print(
                f"{n:>8} {row['jsonl_mb']:>7} {row['seconds']:>8} {row['peak_rss_mb']:>12} "
                f"{row['pages']:>6} {row['pdf_mb']:>7}",
                flush=True,
            )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
