"""Two GPUs of unequal memory, faked at the pynvml boundary, through detect -> plan -> advice and
the `fitbench plan` CLI."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core.advise.recommend import recommend
from fitbench.core.hardware.detect import detect
from fitbench.core.model import catalog
from fitbench.core.plan import memory, search
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.results import schema as results
from fitbench.core.twin import writer as twin
from test_hardware_nvml import RTX, FakeGpu, FakeNvml, fresh

GB = 10**9
MIXTRAL, LLAMA = "mixtral-8x7b-instruct", "llama-2-70b-chat"
RTX_3060 = FakeGpu(
    "NVIDIA GeForce RTX 3060", 12_884_901_888, 300 * 2**20, "GPU-cccc", 192, 7501,
    pcie=(4, 16, 4, 16), capability=(8, 6),
)  # fmt: skip


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list[FakeGpu]:
    """A 24 GB RTX 4090 and a 12 GB RTX 3060, as NVML reports them."""
    gpus = [fresh(RTX), fresh(RTX_3060)]
    FakeNvml(monkeypatch, gpus)
    return gpus


def _plan_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main(["plan", *argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict)
    return out


def test_detect_feeds_the_planner_per_gpu(two_gpus: list[FakeGpu]) -> None:
    report = detect(probe_bandwidth=False, llama=False)
    vram = report.gpu_vram_bytes()
    assert vram == [RTX.total, RTX_3060.total]
    m = twin.manifest_for(MIXTRAL, "Q4_K_M")
    plans = search.candidate_placements(m, vram, 64 * GB, 4096)
    best = search.best_fitting(plans)
    assert best is not None and best.n_gpu_layers == m.n_layer + 1 and best.n_cpu_moe == 0
    fits = search.gpu_fits(best.plan, vram, 0.05)
    assert all(g.fits for g in fits)
    assert fits[0].layers > fits[1].layers > 0  # the 3060 holds fewer layers, the output included
    assert best.plan.layer_devices[-1] == 1


def test_plan_cli_on_detected_gpus(
    two_gpus: list[FakeGpu], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _plan_json(
        capsys, ["--model", MIXTRAL, "--quant", "Q4_K_M", "--offline", "--ram-gb", "64"]
    )
    # planned against what is free: NVML reports some memory used on each
    free = [RTX.total - RTX.used, RTX_3060.total - RTX_3060.used]
    assert out["hardware"]["gpus_vram_bytes"] == free
    assert out["hardware"]["source"] == "detected + what-if"
    best = out["best"]
    assert best["fits"] and best["n_gpu_layers"] == 33
    assert (
        len(best["vram_bytes_per_gpu"]) == 2
        and sum(best["vram_bytes_per_gpu"]) == best["vram_bytes"]
    )
    for need, have in zip(best["vram_bytes_per_gpu"], [RTX.total, RTX_3060.total], strict=True):
        assert need <= 0.95 * have
    assert best["tensor_split"] is not None and best["tensor_split"][0] > best["tensor_split"][1]


def test_plan_cli_what_if_24_and_12(capsys: pytest.CaptureFixture[str]) -> None:
    """`--vram-gb 24,12`: 70B Q4_K_M (41 GB) cannot sit on 36 GB; the best placement leaves
    layers on the CPU and still fits on each GPU with its headroom."""
    out = _plan_json(
        capsys,
        [
            "--model",
            LLAMA,
            "--quant",
            "Q4_K_M",
            "--offline",
            "--vram-gb",
            "24,12",
            "--ram-gb",
            "128",
        ],
    )
    rows = out["placements"]
    full = next(r for r in rows if r["n_gpu_layers"] == 81)
    assert not full["fits"] and "GPU" in full["reason"]
    best = out["best"]
    assert best["fits"] and 0 < best["n_gpu_layers"] < 81
    for need, have in zip(best["vram_bytes_per_gpu"], [24 * GB, 12 * GB], strict=True):
        assert need <= DEFAULT_VRAM_MARGIN.usable(have)


def _machine(two_gpus: list[FakeGpu]) -> dict[str, Any]:
    data = detect(probe_bandwidth=False, llama=False).to_dict()
    data["ram"]["usable_bytes"] = data["ram"]["total_bytes"] = 64 * GB
    data["cpu"]["ram_bandwidth_gbps"] = 60.0
    return data


def _scaled_twin_tg(model_id: str, n_layer: int, ts: float, fp: str) -> dict[str, Any]:
    return results.new_record(
        model_id=model_id, quant="Q4_K_M", source="scaled-twin", test="tg", n_gen=32,
        n_layer_model=n_layer, n_layer_file=4, avg_ts=ts, hardware_fingerprint=fp,
    )  # fmt: skip


def test_advice_on_two_unequal_gpus_fits_each(two_gpus: list[FakeGpu]) -> None:
    hardware = _machine(two_gpus)
    fp = str(hardware.get("fingerprint") or "two-gpus")
    models = tuple(
        dataclasses.replace(m, quants=tuple(q for q in m.quants if q.quant == "Q4_K_M"))
        for m in catalog.load().models
    )
    records = [_scaled_twin_tg(MIXTRAL, 32, 60.0, fp), _scaled_twin_tg(LLAMA, 80, 30.0, fp)]
    advice = recommend(records, hardware=hardware, catalog=catalog.Catalog(models))
    d = advice.to_dict()
    assert d["choice"] is not None
    choice = d["choice"]
    pl = choice["placement"]
    vram = [RTX.total, RTX_3060.total]
    m = twin.manifest_for(choice["model_id"], choice["quant"])
    ncmoe = m.n_layer if pl["n_cpu_moe"] < 0 else pl["n_cpu_moe"]
    placement = memory.Placement(pl["n_gpu_layers"], ncmoe)
    prop = search.propose_split(m, vram, placement, choice["ctx"])
    assert prop.fits, prop.to_dict()
    assert d["expected"]["vram_bytes"]["basis"] in ("predicted", "measured-twin", "measured-real")
