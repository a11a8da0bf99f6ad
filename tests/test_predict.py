"""The speed predictor on synthetic devices with known constants, and on the H200 table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fitbench.core.model import catalog
from fitbench.core.plan import memory
from fitbench.core.plan.placement import Placement
from fitbench.core.predict import fit as predict_fit
from fitbench.core.predict import model as predict
from fitbench.core.predict.layer_costs import BlockCost, LayerCosts, catalog_costs, from_manifest
from fitbench.core.results import schema as results
from fitbench.core.twin import writer as twin

DATA = Path(__file__).parent / "data"
GB = 1e9


def _costs(n_layer: int = 10, moe: bool = False, bytes_per_param: float = 0.5) -> LayerCosts:
    block = BlockCost(
        dense_bytes=round(200_000_000 * bytes_per_param),
        expert_bytes=800_000_000 if moe else 0,
        dense_params=200_000_000,
        expert_params=1_600_000_000 if moe else 0,
    )
    return LayerCosts(
        label=f"synthetic {bytes_per_param}",
        blocks=(block,) * n_layer,
        output_bytes=50_000_000,
        output_params=100_000_000,
        n_expert=8 if moe else 0,
        n_expert_used=2 if moe else 0,
        n_embd=4096,
        kv_bytes_per_token_per_layer=0,  # keeps the known answers exact
        basis="manifest",
    )


def _tg_record(ngl: int, ts: float, quant: str = "Q4_K_M") -> dict[str, Any]:
    return results.new_record(
        model_id="synthetic", quant=quant, source="twin", test="tg", n_gen=64,
        n_gpu_layers=ngl, avg_ts=ts,
    )  # fmt: skip


def _truth(gpu_bw: float, cpu_bw: float, overhead: float) -> np.ndarray:
    """A device with known constants: the prior's compute rates, these bandwidths and overhead."""
    values = predict_fit.prior_from_hardware(HW_GPU).values.copy()
    values[0], values[1], values[3] = 1 / (gpu_bw * GB), 1 / (cpu_bw * GB), overhead
    return values


def _true_tg(costs: LayerCosts, ngl: int, truth: np.ndarray) -> float:
    feats = predict.step_features(
        costs, Placement(ngl), n_tokens=1, n_seqs=1, depth=0, n_outputs=1, has_gpu=True
    )
    return 1.0 / float(feats @ truth)


HW_GPU = {
    "gpus": [
        {"bandwidth_gbps": 1000.0, "vram_total_bytes": 24 * 2**30, "pcie": {"bandwidth_gbps": 32}}
    ],
    "cpu": {"physical_cores": 8, "ram_bandwidth_gbps": 40.0},
    "llama_cpp": {"gpu_offload": True},
}


def test_calibration_recovers_known_bandwidths() -> None:
    # two quants of one model: bytes per weight differ, so bandwidth and compute separate
    quants = {"Q4_K_M": _costs(bytes_per_param=0.5), "Q8_0": _costs(bytes_per_param=1.06)}
    truth = _truth(gpu_bw=700.0, cpu_bw=30.0, overhead=0.002)
    records = [
        _tg_record(ngl, _true_tg(costs, ngl, truth), quant)
        for quant, costs in quants.items()
        for ngl in (0, 2, 4, 6, 8, 11)
    ]
    points = predict.observations(records, lambda r: quants[r["quant"]], has_gpu=True)
    fit = predict_fit.calibrate(points, predict_fit.prior_from_hardware(HW_GPU), prior_weight=1e-4)
    c = fit.constants()
    assert c["gpu_bandwidth"]["value"] == pytest.approx(700, rel=0.03)
    assert c["cpu_bandwidth"]["value"] == pytest.approx(30, rel=0.03)
    assert c["overhead_per_step"]["value"] == pytest.approx(2.0, rel=0.05)
    assert fit.mae_pct("tg") < 1.0
    # residuals are reported for each measured point
    assert len(fit.to_dict()["residuals"]) == len(records)


def test_holdout_predicts_partial_offload_from_end_points() -> None:
    costs = _costs()
    truth = _truth(gpu_bw=900.0, cpu_bw=25.0, overhead=0.001)
    records = [_tg_record(ngl, _true_tg(costs, ngl, truth)) for ngl in range(12)]
    points = predict.observations(records, lambda r: costs, has_gpu=True)
    prior = predict_fit.prior_from_hardware(HW_GPU)
    h = predict_fit.holdout(points, prior, lambda o: 0 < o.record["n_gpu_layers"] < 11)
    assert len(h.rows) == 10
    assert h.mae_pct("tg") is not None and h.mae_pct("tg") < 2.0


def test_holdout_needs_both_sides() -> None:
    costs = _costs()
    points = predict.observations([_tg_record(0, 5.0)], lambda r: costs, has_gpu=True)
    with pytest.raises(predict.PredictError, match="both sides"):
        predict_fit.holdout(points, predict_fit.prior_from_hardware(HW_GPU), lambda o: True)


def test_unmeasured_constants_stay_at_their_prior() -> None:
    costs = _costs()
    records = [_tg_record(0, 4.0), _tg_record(0, 4.1)]  # CPU-only tg: says nothing about PCIe
    prior = predict_fit.prior_from_hardware(HW_GPU)
    fit = predict_fit.calibrate(predict.observations(records, lambda r: costs, True), prior)
    c = fit.constants()
    assert not c["pcie_bandwidth"]["fitted"]
    assert c["pcie_bandwidth"]["value"] == pytest.approx(c["pcie_bandwidth"]["prior"])
    assert c["cpu_bandwidth"]["fitted"]


def test_moe_reads_only_active_experts() -> None:
    costs = _costs(moe=True)
    one = predict.step_features(
        costs, Placement(99), n_tokens=1, n_seqs=1, depth=0, n_outputs=1, has_gpu=True
    )
    block = costs.blocks[0]
    expected = 10 * (block.dense_bytes + block.expert_bytes * 2 / 8) + costs.output_bytes
    assert one[0] == pytest.approx(expected)
    many = predict.step_features(
        costs, Placement(99), n_tokens=64, n_seqs=64, depth=0, n_outputs=64, has_gpu=True
    )
    # 64 sequences touch nearly every expert of every block
    everything = 10 * (block.dense_bytes + block.expert_bytes) + costs.output_bytes
    assert many[0] == pytest.approx(everything, rel=1e-3)


def test_experts_touched_bounds() -> None:
    assert predict.experts_touched(8, 2, 1) == pytest.approx(2.0)
    for b in (2, 4, 8, 16):
        assert predict.experts_touched(8, 2, b) <= min(8, 2 * b)
    assert predict.experts_touched(8, 2, 64) == pytest.approx(8.0, rel=1e-3)
    assert predict.experts_touched(0, 0, 4) == 0.0


def test_partial_offload_prompt_copies_cpu_weights_over_pcie() -> None:
    costs = _costs()
    pp = predict.prompt_features(
        costs, Placement(4), n_prompt=512, n_ubatch=512, depth=0, has_gpu=True
    )
    # ngl 4 = the output layer and the last 3 blocks (this llama.cpp offloads the output first)
    cpu_weights = 7 * costs.blocks[0].dense_bytes
    assert pp[2] == pytest.approx(cpu_weights)  # the pcie feature
    tg = predict.step_features(
        costs, Placement(4), n_tokens=1, n_seqs=1, depth=0, n_outputs=1, has_gpu=True
    )
    assert tg[2] == 0 and tg[1] == pytest.approx(cpu_weights)
    cpu_only = predict.prompt_features(
        costs, Placement(4), n_prompt=512, n_ubatch=512, depth=0, has_gpu=False
    )
    assert cpu_only[2] == 0 and cpu_only[0] == 0  # no GPU: nothing offloaded whatever ngl says


def test_record_kinds_and_failed_records() -> None:
    costs = _costs()
    base: dict[str, Any] = {"model_id": "synthetic", "quant": "Q4_K_M", "avg_ts": 10.0}
    assert predict.record_kind(results.new_record(n_gen=64, **base)) == "tg"
    assert predict.record_kind(results.new_record(n_prompt=512, **base)) == "pp"
    assert predict.record_kind(results.new_record(n_gen=64, n_parallel=4, **base)) == "batch"
    ttft = results.new_record(test="ttft", n_prompt=256, ttft_ms=120.0, model_id="synthetic")
    assert predict.record_kind(ttft) == "ttft"
    oom = results.new_record(n_gen=64, status="oom", **base)
    assert predict.observation(oom, costs, True) is None
    assert predict.observation(results.new_record(n_gen=64, model_id="x"), costs, True) is None


def test_scaled_twin_costs_extrapolate_to_full_depth() -> None:
    cat = catalog.load()
    mixtral = cat.get("mixtral-8x7b-instruct")
    full = catalog_costs(mixtral, "Q4_K_M")
    scaled = catalog_costs(mixtral, "Q4_K_M", layers=4)
    assert full.n_layer == 32 and scaled.n_layer == 4
    assert scaled.n_layer_model == 32
    back = scaled.scaled_to(32)
    block_bytes = full.weights_bytes - full.output_bytes
    # the kept blocks include the first and last, which llama.cpp quantizes with more bits:
    # the extrapolation overstates the full model by a few percent, no more
    assert back.weights_bytes - back.output_bytes == pytest.approx(block_bytes, rel=0.05)
    assert full.active_bytes_per_token < full.weights_bytes / 3  # MoE: 2 of 8 experts


def test_h200_table_held_out_within_targets() -> None:
    """facts.md's H200 figures: leave-one-out MAE within the issue's targets (tg 10%, pp 20%)."""
    records = results.read_jsonl(DATA / "predict_h200_facts.jsonl")
    hardware = json.loads((DATA / "predict_h200_hardware.json").read_text())
    points = predict.observations(
        records, predict.catalog_costs_for(catalog.load()), predict_fit.has_gpu_offload(hardware)
    )
    assert len(points) == len(records)
    prior = predict_fit.prior_from_hardware(hardware)
    h = predict_fit.leave_one_group_out(points, prior, id)
    assert h.mae_pct("tg") < 10.0
    assert h.mae_pct("pp") < 20.0
    fit = predict_fit.calibrate(points, prior)
    assert np.all(fit.values > 0)


@pytest.mark.parametrize("moe", [False, True])
def test_weight_bytes_per_device_agree_with_the_memory_planner(moe: bool) -> None:
    """Predictor and planner place the same weights on the GPU for every n_gpu_layers (the
    output layer first, then blocks from the last) and every n_cpu_moe."""
    manifest = twin.manifest_for(twin.tiny_arch(moe=moe), "Q4_K_M")
    costs = from_manifest(manifest)
    n = costs.n_layer
    placements = [Placement(ngl) for ngl in (-1, *range(n + 3))]
    if moe:
        placements += [Placement(ngl, c) for ngl in (2, n + 1) for c in (-1, *range(1, n + 1))]
    embd = next(t.n_bytes for t in manifest.tensors if t.name == "token_embd.weight")
    for p in placements:
        # 64 sequences read every expert: the bytes read are the bytes resident
        feats = predict.step_features(
            costs, p, n_tokens=64, n_seqs=64, depth=0, n_outputs=64, has_gpu=True
        )
        mp = memory.plan(
            manifest,
            memory.Placement(p.n_gpu_layers, n if p.n_cpu_moe < 0 else p.n_cpu_moe),
            256,
            n_gpus=1,
        )
        gpu_weights = mp.devices["GPU0"]["weights"]
        assert feats[0] == pytest.approx(gpu_weights, rel=1e-3), p
        assert feats[1] == 0 and feats[2] == pytest.approx(
            mp.devices["CPU"]["weights"] - embd, rel=1e-3
        ), p  # 64 tokens a step: CPU weights cross PCIe (token_embd is a row lookup)
    one, full = Placement(1), Placement(n + 1)  # ngl 1: only the output layer
    assert (one.blocks_on_gpu(n), one.output_on_gpu(n)) == (0, True)
    assert (full.blocks_on_gpu(n), full.output_on_gpu(n)) == (n, True)
    assert Placement(-1).effective(n) == full == Placement(99).effective(n)
