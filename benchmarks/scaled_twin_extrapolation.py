"""Scaled-twin extrapolation vs the full twin: the error of predicted full-model tg and pp.

    .venv/bin/python benchmarks/scaled_twin_extrapolation.py \
        [--model mixtral-8x7b-instruct] [--quant Q2_K] [--layers 4,8] [--rounds 3] \
        [-p 64] [-n 16] [-r 3] [-t 2] [--dir /tmp/scaled] [--delete]

1. Writes the full twin and one scaled twin per K (core.twin.writer, the built-in manifest).
2. Measures each with the real `fitbench bench` path (worker process, CPU only: -ngl 0,
   --repack 0, same threads), one call per file per round, the file order rotating each round
   so drifting load on a shared machine hits every file alike. Medians over every sample of
   every round; the load average is recorded around each call.
3. Predicts the full model from each scaled twin the way `fitbench recommend` does: records of a
   scaled twin (n_layer_file < n_layer_model) are calibrated against the costs of the scaled
   file (`catalog_costs_for`), then `Predictor` is asked for the full-depth costs
   (`catalog_costs(model, quant)`) at the same placement. Also shown: the plain two-point line
   time = a + b * n_layer through K=4 and K=8 (what a per-layer fit without the cost model gives).

Everything is printed as one JSON document at the end; `--delete` removes --dir afterwards.
FITBENCH_HOME is pointed into --dir so the runs do not land in the user's results database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fitbench.core.hardware import detect as hardware
from fitbench.core.model import catalog as catalog_module
from fitbench.core.predict.fit import calibrate, prior_from_hardware
from fitbench.core.predict.layer_costs import catalog_costs
from fitbench.core.predict.model import Placement, Predictor, catalog_costs_for, observations
from fitbench.core.results.schema import read_jsonl
from fitbench.core.twin.writer import manifest_for, write_twin


def _twin(model: str, quant: str, layers: int | None, directory: Path) -> Path:
    name = f"L{layers}" if layers else "full"
    path = directory / f"{name}.fitbench-twin.gguf"
    if path.exists():
        return path
    manifest = manifest_for(model, quant, layers=layers)
    info = write_twin(manifest, path)
    print(f"wrote {info.path} ({info.size_bytes / 1e9:.2f} GB, {info.mb_per_s:.0f} MB/s)")
    return Path(info.path)


def _preread(path: Path) -> None:
    """Read the file once before its run: the three files together nearly fill RAM, and pages
    faulted in only by the run sit on the kernel's inactive list, where they are evicted first
    (a re-read from disk inside a timed token)."""
    with path.open("rb") as f:
        while f.read(64 << 20):
            pass


def _bench(path: Path, out: Path, args: argparse.Namespace, env: Mapping[str, str]) -> None:
    cmd = [
        sys.executable, "-m", "fitbench", "bench", "-m", str(path),
        "-p", str(args.n_prompt), "-n", str(args.n_gen), "-r", str(args.repetitions),
        "-t", str(args.threads), "-ngl", "0", "--repack", "0", "--out", str(out),
    ]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=dict(env))


def _median_record(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One record whose avg_ts is the median of every sample of every round."""
    samples = [float(s) for r in records for s in (r.get("samples_ts") or [r["avg_ts"]])]
    merged = dict(records[0])
    merged["avg_ts"] = statistics.median(samples)
    merged["samples_ts"] = samples
    return merged


def _error_pct(predicted: float, measured: float) -> float:
    return round((predicted - measured) / measured * 100.0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mixtral-8x7b-instruct")
    ap.add_argument("--quant", default="Q2_K")
    ap.add_argument("--layers", default="4,8", help="scaled twins' block counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=64)
    ap.add_argument("-n", "--n-gen", type=int, default=16)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/scaled"))
    ap.add_argument("--delete", action="store_true", help="remove --dir at the end")
    ap.add_argument(
        "--analyse-only", action="store_true", help="reuse the records already in --dir"
    )
    args = ap.parse_args(argv)

    ks = [int(k) for k in args.layers.split(",") if k]
    args.dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FITBENCH_HOME": str(args.dir / "home")}
    files: dict[int, Path] = {0: _twin(args.model, args.quant, None, args.dir)}
    for k in ks:
        files[k] = _twin(args.model, args.quant, k, args.dir)

    order = list(files)
    loads: list[dict[str, Any]] = []
    outs: dict[int, Path] = {k: args.dir / f"records-{k or 'full'}.jsonl" for k in files}
    for out in outs.values():
        if not args.analyse_only:
            out.unlink(missing_ok=True)
    for rnd in range(0 if args.analyse_only else args.rounds):
        rotated = order[rnd % len(order) :] + order[: rnd % len(order)]
        for k in rotated:
            _preread(files[k])
            before = os.getloadavg()
            t0 = time.monotonic()
            _bench(files[k], outs[k], args, env)
            loads.append(
                {
                    "round": rnd,
                    "file": files[k].name,
                    "seconds": round(time.monotonic() - t0, 1),
                    "loadavg_before": [round(x, 2) for x in before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                }
            )

    medians: dict[int, dict[str, dict[str, Any]]] = {}
    for k, out in outs.items():
        records = [r for r in read_jsonl(out) if r.get("status") == "ok"]
        by_test = {t: [r for r in records if r.get("test") == t] for t in ("pp", "tg")}
        missing = [t for t, rs in by_test.items() if not rs]
        if missing:
            raise SystemExit(f"{out}: no successful {', '.join(missing)} records")
        medians[k] = {t: _median_record(rs) for t, rs in by_test.items()}

    hw = hardware.detect().to_dict()
    prior = prior_from_hardware(hw)
    catalog = catalog_module.load()
    costs_for = catalog_costs_for(catalog)
    full_costs = catalog_costs(catalog.get(args.model), args.quant)
    cpu_only = Placement(0, 0)
    measured = {t: medians[0][t]["avg_ts"] for t in ("pp", "tg")}

    def predict_from(ks_used: Sequence[int]) -> dict[str, Any]:
        recs = [medians[k][t] for k in ks_used for t in ("pp", "tg")]
        points = observations(recs, costs_for, has_gpu=False)
        if len(points) != len(recs):
            raise SystemExit("some scaled-twin records could not be costed (not a catalog model?)")
        fit = calibrate(points, prior)
        predictor = Predictor(fit.values, has_gpu=False)
        tg = predictor.tg_ts(full_costs, cpu_only, n_gen=args.n_gen)
        pp = predictor.pp_ts(full_costs, cpu_only, n_prompt=args.n_prompt)
        return {
            "calibrated_on": [f"L{k}" for k in ks_used],
            "predicted_tg_ts": round(tg, 3),
            "predicted_pp_ts": round(pp, 3),
            "tg_error_pct": _error_pct(tg, measured["tg"]),
            "pp_error_pct": _error_pct(pp, measured["pp"]),
            "constants": {n: c["value"] for n, c in fit.constants().items() if c["fitted"]},
        }

    result: dict[str, Any] = {
        "model": args.model,
        "quant": args.quant,
        "settings": {
            "n_prompt": args.n_prompt,
            "n_gen": args.n_gen,
            "repetitions": args.repetitions,
            "threads": args.threads,
            "rounds": args.rounds,
            "n_gpu_layers": 0,
            "repack": 0,
        },
        "measured_ts": {
            ("full" if k == 0 else f"L{k}"): {
                t: {
                    "median": round(m[t]["avg_ts"], 3),
                    "min": round(min(m[t]["samples_ts"]), 3),
                    "max": round(max(m[t]["samples_ts"]), 3),
                    "n": len(m[t]["samples_ts"]),
                    "source": m[t]["source"],
                }
                for t in ("pp", "tg")
            }
            for k, m in medians.items()
        },
        "predictor": [predict_from([k]) for k in ks] + ([predict_from(ks)] if len(ks) > 1 else []),
        "loads": loads,
        "ram_bandwidth_probe_gbps": hw.get("cpu", {}).get("ram_bandwidth_gbps"),
    }
    if len(ks) >= 2:  # the two-point line through the first two scaled twins' times
        k1, k2 = ks[0], ks[1]
        n_full = full_costs.n_layer
        line: dict[str, Any] = {"through": [f"L{k1}", f"L{k2}"]}
        for t, tokens in (("tg", 1), ("pp", args.n_prompt)):
            s1, s2 = (tokens / medians[k][t]["avg_ts"] for k in (k1, k2))
            slope = (s2 - s1) / (k2 - k1)
            predicted = tokens / (s1 + slope * (n_full - k1))
            line[f"predicted_{t}_ts"] = round(predicted, 3)
            line[f"{t}_error_pct"] = _error_pct(predicted, measured[t])
        result["linear_per_layer"] = line
    print(json.dumps(result, indent=2))
    if args.delete:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
