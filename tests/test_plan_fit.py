"""Issue 18, the plan side: planning against free VRAM, the margin, the single-layer search and
llama.cpp's own fit (common/fit.cpp) emulated with the planner.

The GPU is faked at the pynvml boundary (test_hardware_nvml.FakeNvml): an H100 80GB on which
another process holds 56 GiB, as on the out-of-sample check of the issue.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core.bench import quick
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.hardware.detect import MachineMemory, detect
from fitbench.core.plan import llama_fit, memory, search
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN, VramMargin, margin_of
from fitbench.core.plan.memory import Placement
from fitbench.core.predict import fit as predict_fit
from fitbench.core.twin import writer as twin
from test_hardware_nvml import FakeGpu, FakeNvml

GiB, MiB = 1 << 30, 1 << 20
LLAMA, MIXTRAL = "llama-2-70b-chat", "mixtral-8x7b-instruct"
H100_TOTAL = 85_520_809_984  # NVML's total of an H100 80GB HBM3 (81559 MiB)
FREE = 24 * GiB
OTHER = H100_TOTAL - FREE - 300 * MiB  # the other process; the driver keeps the rest


@pytest.fixture
def busy_h100(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    gpu = FakeGpu(
        "NVIDIA H100 80GB HBM3", H100_TOTAL, H100_TOTAL - FREE, "GPU-h100",
        compute_pids=[(os.getpid(), OTHER)],
    )  # fmt: skip
    FakeNvml(monkeypatch, [gpu])
    return gpu


@pytest.fixture(scope="module")
def llama70b() -> ModelManifest:
    return twin.manifest_for(LLAMA, "Q4_K_M")


@pytest.fixture(scope="module")
def mixtral() -> ModelManifest:
    return twin.manifest_for(MIXTRAL, "Q4_K_M")


# --- free VRAM ------------------------------------------------------------------------------


def test_every_consumer_plans_against_the_free_vram(busy_h100: FakeGpu) -> None:
    report = detect(probe_bandwidth=False, llama=False)
    mem = report.memory()
    assert mem.gpu_vram_bytes == (FREE,) and mem.vram_basis == "free"
    assert mem.gpu_vram_total_bytes == (H100_TOTAL,)
    assert report.gpu_vram_bytes() == [H100_TOTAL]  # the report still describes the card
    assert MachineMemory.of(report, "total").gpu_vram_bytes == (H100_TOTAL,)
    # the advice's capacity and the quick sweep read the same rules
    hw = report.to_dict()
    assert predict_fit.gpu_vram_bytes(hw) == [FREE]
    assert quick.Machine.from_hardware(report).gpu_vram == ()  # llama.cpp not probed: no offload
    hw["llama_cpp"]["gpu_offload"] = True
    assert quick.Machine.from_hardware(hw).gpu_vram == (FREE,)
    [words] = mem.vram_words()
    name = report.gpus[0].processes[0].name
    assert words == (
        f"GPU0 NVIDIA H100 80GB HBM3: 24.0 of 79.6 GiB free: 55.6 GiB used by other processes "
        f"({name} pid {os.getpid()} {OTHER / GiB:.1f} GiB)"
    )
    with pytest.raises(ValueError, match="free, total"):
        MachineMemory.of(hw, "half")


def test_70b_full_offload_does_not_fit_24_gib_free(
    busy_h100: FakeGpu, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "--model", LLAMA, "--offline", "--ram-gb", "128"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"]["gpus_vram_bytes"] == [FREE]
    full = next(p for p in out["placements"] if p["n_gpu_layers"] == 81)
    assert not full["fits"] and "GPU0 needs" in full["reason"]
    best = out["best"]
    assert 40 <= best["n_gpu_layers"] <= 47 and best["vram_bytes"] <= FREE
    assert "24.0 of 79.6 GiB free" in out["hardware"]["vram_words"][0]
    assert out["llama_cpp_fit"]["n_gpu_layers"] in range(43, 48)
    # the total is a what-if
    assert main([*argv, "--json", "--vram", "total"]) == 0
    what_if = json.loads(capsys.readouterr().out)
    assert what_if["best"]["n_gpu_layers"] == 81
    assert what_if["hardware"]["vram_basis"] == "total"
    # in words
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "VRAM: GPU0 NVIDIA H100 80GB HBM3: 24.0 of 79.6 GiB free: 55.6 GiB used" in text
    assert "VRAM margin kept free on each GPU: 384 MiB + 0.5%" in text
    assert "llama.cpp --fit would choose: -c 4096 -ngl " in text


# --- margin ---------------------------------------------------------------------------------


def test_the_default_margin_is_fixed_plus_a_small_fraction() -> None:
    m = DEFAULT_VRAM_MARGIN
    assert m.bytes_for(FREE) == pytest.approx(384 * MiB + 0.005 * FREE, abs=1)
    assert m.usable(FREE) == FREE - m.bytes_for(FREE)
    # tighter than llama.cpp's own 1 GiB for any card up to 80 GiB free, and than the old 5%
    assert m.bytes_for(80 * GiB) < llama_fit.LLAMA_FIT_TARGET_BYTES
    assert m.bytes_for(H100_TOTAL) < 0.05 * H100_TOTAL / 4
    assert margin_of(0.05) == VramMargin.percent(5) == VramMargin(0, 0.05)
    assert margin_of(0.05).usable(10**9) == int(10**9 * 0.95)  # the old rule, byte for byte
    assert margin_of(None) is DEFAULT_VRAM_MARGIN and m.usable(100) == 0
    with pytest.raises(ValueError):
        VramMargin(-1, 0.0)


# --- single-layer search --------------------------------------------------------------------


def _gpu_need(m: ModelManifest, pl: Placement, **kw: Any) -> int:
    return memory.plan(m, pl, 4096, n_gpus=1, **kw).vram_bytes[0]


@pytest.mark.parametrize("free_gib", [12, 20, 24])
def test_tightest_placement_is_the_boundary_of_what_fits(
    llama70b: ModelManifest, mixtral: ModelManifest, free_gib: int
) -> None:
    usable = DEFAULT_VRAM_MARGIN.usable(free_gib * GiB)
    [dense] = search.tightest_placements(llama70b, [free_gib * GiB], 512 * GiB)
    ngl = dense.n_gpu_layers
    assert dense.fits and _gpu_need(llama70b, Placement(ngl)) <= usable
    assert _gpu_need(llama70b, Placement(ngl + 1)) > usable
    found = search.tightest_placements(mixtral, [free_gib * GiB], 512 * GiB)
    moe = next(p for p in found if p.n_cpu_moe)
    n = moe.n_cpu_moe
    assert moe.n_gpu_layers == 33 and 0 < n < 32
    assert _gpu_need(mixtral, Placement(33, n_cpu_moe=n)) <= usable
    assert _gpu_need(mixtral, Placement(33, n_cpu_moe=n - 1)) > usable
    # the coarse grid stays, and the tightest placements join it
    plans = search.candidate_placements(mixtral, [free_gib * GiB], 512 * GiB)
    keys = [(p.n_gpu_layers, p.n_cpu_moe) for p in plans]
    assert (33, n) in keys and (33, 32) in keys and (33, 28) in keys and (16, 0) in keys
    assert len(keys) == len(set(keys))
    best = search.best_fitting(plans)
    assert best is not None and (best.n_gpu_layers, best.n_cpu_moe) == (33, n)


def test_moe_too_big_even_without_experts_gets_layers_without_experts(
    mixtral: ModelManifest,
) -> None:
    """2.5 GiB free: every layer without its experts needs ~2.7 GiB, so the tightest MoE
    placement offloads fewer layers, all of their experts on the CPU."""
    found = search.tightest_placements(mixtral, [int(2.5 * GiB)], 512 * GiB)
    partial = [p for p in found if p.n_cpu_moe]
    assert partial and partial[0].n_gpu_layers < 33 and partial[0].n_cpu_moe == 32
    assert not search.tightest_placements(mixtral, [GiB // 2], 512 * GiB)  # nothing fits


# --- llama.cpp's fit ------------------------------------------------------------------------


def test_llama_cpp_fit_matches_llama_fit_params_on_the_h100(
    llama70b: ModelManifest, mixtral: ModelManifest
) -> None:
    """llama-fit-params on an H100 80GB with 24 GiB free, ctx 4096 (issue 18): 70B -ngl 45,
    Mixtral every layer with the experts of 6 on the CPU. FitBench's tightest placement, with
    the same flash attention and with FitBench's default (off), is at least as tight."""
    fit70 = llama_fit.llama_cpp_fit_details(llama70b, [FREE], 4096)
    assert fit70.placement is not None and abs(fit70.placement.n_gpu_layers - 45) <= 2
    assert fit70.args == f"-c 4096 -ngl {fit70.placement.n_gpu_layers}"
    fitmx = llama_fit.llama_cpp_fit_details(mixtral, [FREE], 4096)
    assert fitmx.placement is not None and fitmx.placement.n_gpu_layers == 33
    assert abs(fitmx.experts_on_cpu_blocks - 6) <= 2
    assert fitmx.placement.n_cpu_moe == fitmx.experts_on_cpu_blocks
    assert "-ot" in fitmx.args and "|31)" in fitmx.args  # llama.cpp's: the last blocks
    assert fitmx.words().startswith("llama.cpp --fit would choose: -c 4096 -ngl 33 -ot")
    assert llama_fit.llama_cpp_fit(llama70b, [FREE], 4096) == fit70.placement
    for flash_attn in (True, False):
        [ours70] = search.tightest_placements(llama70b, [FREE], 512 * GiB, flash_attn=flash_attn)
        assert ours70.n_gpu_layers >= fit70.placement.n_gpu_layers
        ours = search.tightest_placements(mixtral, [FREE], 512 * GiB, flash_attn=flash_attn)
        oursmx = next(p for p in ours if p.n_cpu_moe)
        assert oursmx.n_gpu_layers == 33 and oursmx.n_cpu_moe <= fitmx.experts_on_cpu_blocks


def test_llama_cpp_fit_steps(llama70b: ModelManifest, mixtral: ModelManifest) -> None:
    roomy = llama_fit.llama_cpp_fit_details(llama70b, [80 * GiB], 4096)
    assert roomy.placement == Placement(81) and "no change" in roomy.steps[-1]
    # a context left to llama.cpp (n_ctx 0: the training context, 4096 for Llama 2) that does
    # not fit is not reduced below -fitc; layers go instead
    auto = llama_fit.llama_cpp_fit_details(llama70b, [FREE], None)
    assert auto.n_ctx == 4096 and auto.placement is not None
    # Mixtral trains on 32k: the context shrinks first, in steps of 256, before any layer moves
    shrunk = llama_fit.llama_cpp_fit_details(mixtral, [30 * GiB], None)
    assert shrunk.placement == Placement(33) and 4096 < shrunk.n_ctx < 32768
    assert shrunk.n_ctx % 256 == 0 and "context reduced" in shrunk.steps[-1]
    assert shrunk.projected_bytes <= shrunk.target_bytes
    # a part of one more layer: 16 GiB free leaves room for some experts of one more block
    small = llama_fit.llama_cpp_fit_details(mixtral, [16 * GiB], 4096)
    assert small.partial_layer.startswith("ffn_up")
    assert "ffn_down_exps=CPU" in small.args and "one of them with its" in small.words()
    assert small.to_dict()["basis"].startswith("predicted")
    # what it does not emulate, it says
    two = llama_fit.llama_cpp_fit_details(llama70b, [FREE, FREE], 4096)
    assert two.placement is None and "several GPUs" in two.words()
    assert llama_fit.llama_cpp_fit(llama70b, [], 4096) is None
