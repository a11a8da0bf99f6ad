"""Held-out accuracy of the speed predictor: fit on some measured points, predict the others.

    .venv/bin/python benchmarks/predictor_holdout.py                       # the H200 table
    .venv/bin/python benchmarks/predictor_holdout.py --results sweep.jsonl --hardware hw.json

Default data: tests/data/predict_h200_facts.jsonl, the H200 figures of facts.md written as
records (twins, Q4_K_M; see benchmarks/predictor_h200_fixture.py). Three splits:
  1. leave-one-out: every measured point predicted by a fit on all the others;
  2. placements: fit on the end points (CPU-only and full offload, with the pp and batch
     points), predict every partial placement (intermediate ngl, experts on the CPU);
  3. cross-model: fit on one model's points only, predict the other model.
Targets (issue 7): tg within 10%, pp within 20% mean absolute error on held-out points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fitbench.core.model import catalog
from fitbench.core.predict import fit as predict_fit
from fitbench.core.predict import model as predict
from fitbench.core.results import schema as results

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _point_key(o: predict.Observation) -> tuple[Any, ...]:
    r = o.record
    return (r["model_id"], r["quant"], o.kind, r["n_gpu_layers"], r["n_cpu_moe"], r["n_parallel"])


def _is_partial(o: predict.Observation, n_layers: dict[str, int]) -> bool:
    r = o.record
    ngl = int(r["n_gpu_layers"])
    full = ngl > n_layers[r["model_id"]]
    return bool((ngl > 0 and not full) or (full and r["n_cpu_moe"]))


def _summary(name: str, h: predict_fit.Holdout) -> dict[str, Any]:
    return {
        "split": name,
        "mae_pct": {k: round(m, 2) for k in predict.KINDS if (m := h.mae_pct(k)) is not None},
        "n_held_out": len(h.rows),
        "rows": [r.to_dict() for r in h.rows],
    }


def evaluate(records: list[dict[str, Any]], hardware: dict[str, Any]) -> dict[str, Any]:
    cat = catalog.load()
    has_gpu = predict_fit.has_gpu_offload(hardware)
    points = predict.observations(records, predict.catalog_costs_for(cat), has_gpu)
    if not points:
        raise SystemExit("no usable measured points in the results")
    prior = predict_fit.prior_from_hardware(hardware)
    full_fit = predict_fit.calibrate(points, prior)
    out: dict[str, Any] = {"n_points": len(points), "fit_on_all": full_fit.to_dict(), "splits": []}
    out["splits"].append(
        _summary("leave-one-out", predict_fit.leave_one_group_out(points, prior, _point_key))
    )
    n_layers = {m.id: m.arch.n_layer for m in cat.models}
    if has_gpu and any(_is_partial(o, n_layers) for o in points):
        split = predict_fit.holdout(points, prior, lambda o: _is_partial(o, n_layers))
        out["splits"].append(_summary("placements: fit on CPU-only + full offload", split))
    models = sorted({o.record["model_id"] for o in points})
    if len(models) > 1:
        for model_id in models:
            other = predict_fit.holdout(
                points, prior, lambda o, m=model_id: o.record["model_id"] == m
            )
            split = other
            out["splits"].append(
                _summary(f"cross-model: predict {model_id} from the others", split)
            )
    return out


def _print(report: dict[str, Any]) -> None:
    fit = report["fit_on_all"]
    print(f"{report['n_points']} measured points")
    print("constants fitted on all points (prior in brackets):")
    for name, c in fit["constants"].items():
        note = " (not limiting: held at its floor)" if c["not_limiting"] else ""
        note += "" if c["fitted"] else " (no data: prior)"
        print(f"  {name:22s} {c['value']:>12.4g} {c['unit']:7s} [{c['prior']:.4g}]{note}")
    print("in-sample MAE %:", fit["mae_pct"])
    for split in report["splits"]:
        mae, n = split["mae_pct"], split["n_held_out"]
        print(f"\n== {split['split']}: held-out MAE % {mae} ({n} points)")
        for r in split["rows"]:
            print(
                f"  {r['point']:58s} measured {r['measured']:9.1f} predicted {r['predicted']:9.1f}"
                f" {r['unit']:4s} {r['error_pct']:+6.1f}%"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DATA / "predict_h200_facts.jsonl")
    parser.add_argument("--hardware", type=Path, default=DATA / "predict_h200_hardware.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        records = results.read_jsonl(args.results)
        hardware = json.loads(args.hardware.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"predictor_holdout: {exc}", file=sys.stderr)
        return 1
    report = evaluate(records, hardware)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
