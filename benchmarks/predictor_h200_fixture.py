"""Write tests/data/predict_h200_facts.jsonl: the H200 table of facts.md as result records.

These are NOT FitBench measurements: they are the figures of /work/shared/docs/facts.md
("Measured on one NVIDIA H200 (llama.cpp, shape-faithful twins, Q4_K_M, 2026-11)") written as
result records (source "twin", run_id "facts-md-h200", model_filename naming the table) so the
predictor can be checked against them. The machine description next to them
(predict_h200_hardware.json) holds the H200's spec figures; its CPU RAM bandwidth is unknown.

    .venv/bin/python benchmarks/predictor_h200_fixture.py
"""

from __future__ import annotations

import json
from pathlib import Path

from fitbench.core.results.schema import new_record, to_json

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"
FINGERPRINT = "facts-md-h200"
GIB = 1024**3

MODELS = {
    # model_id: (n_layer, ngl list with "all" last, tg per ngl, pp512 full, batch curve)
    "mixtral-8x7b-instruct": (
        32,
        [0, 8, 16, 24, 99],
        [8.5, 10.5, 15.9, 28.3, 196.0],
        5758.0,
        [184, 260, 312, 334, 1094, 1754, 2612],
    ),
    "llama-2-70b-chat": (
        80,
        [0, 20, 40, 60, 99],
        [1.8, 2.4, 3.5, 5.8, 45.4],
        1202.0,
        [44.6, 82, 112, 139, 350, 548, 770],
    ),
}
BATCHES = [1, 2, 4, 8, 16, 32, 64]


def _record(model_id: str, n_layer: int, **values: object) -> dict:
    return new_record(
        model_id=model_id,
        quant="Q4_K_M",
        source="twin",
        n_layer_model=n_layer,
        n_layer_file=n_layer,
        run_id="facts-md-h200",
        model_filename="facts.md table: Measured on one NVIDIA H200 (twins, Q4_K_M)",
        gpu_info="NVIDIA H200",
        hardware_fingerprint=FINGERPRINT,
        n_threads=16,
        **values,
    )


def records() -> list[dict]:
    out = []
    for model_id, (n_layer, ngls, tgs, pp, batch) in MODELS.items():
        for ngl, tg in zip(ngls, tgs, strict=True):
            extra = {"vram_peak_bytes": int(27.4 * GIB)} if ngl == 99 and n_layer == 32 else {}
            out.append(
                _record(
                    model_id, n_layer, test="tg", n_gen=128, n_gpu_layers=ngl, avg_ts=tg, **extra
                )
            )
        out.append(_record(model_id, n_layer, test="pp", n_prompt=512, n_gpu_layers=99, avg_ts=pp))
        for b, ts in zip(BATCHES, batch, strict=True):
            out.append(
                _record(
                    model_id,
                    n_layer,
                    test="batch",
                    n_gen=128,
                    n_parallel=b,
                    n_gpu_layers=99,
                    avg_ts=float(ts),
                )
            )
    # Mixtral with every expert on the CPU (-ot exps=CPU), the rest on the GPU
    out.append(
        _record(
            "mixtral-8x7b-instruct",
            32,
            test="tg",
            n_gen=128,
            n_gpu_layers=99,
            n_cpu_moe=32,
            avg_ts=9.0,
        )
    )
    return out


HARDWARE = {
    "note": "H200 spec figures for the facts.md table; CPU RAM bandwidth not known",
    "fingerprint": FINGERPRINT,
    "cpu": {"name": "host of the H200", "cores_physical": 16, "ram_bandwidth_gbps": None},
    "ram": {"total_bytes": 128 * GIB, "available_bytes": 120 * GIB},
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "vram_total_bytes": 143771 * 1024**2,
            "vram_free_bytes": 143000 * 1024**2,
            "bandwidth_gbps": 4800.0,
            "pcie": {"generation": 5, "width": 16, "bandwidth_gbps": 63.0},
        }
    ],
    "llama_cpp": {"supports_gpu_offload": True},
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "predict_h200_facts.jsonl"
    path.write_text("".join(to_json(r) + "\n" for r in records()), encoding="utf-8")
    (OUT / "predict_h200_hardware.json").write_text(json.dumps(HARDWARE, indent=2) + "\n")
    print(f"wrote {path} ({len(records())} records)")


if __name__ == "__main__":
    main()
