"""Tests that need a CUDA build of llama.cpp and an NVIDIA GPU (marker `gpu`).

Skipped on machines without them (CI has none); `scripts/gpu-check tests` runs them on a GPU
machine. They prove what CPU tests cannot: NVML detection, real offload, VRAM sampling, expert
tensors kept on the CPU, and the planner's VRAM against what the process really used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fitbench.core import gguf
from fitbench.core.bench import events as ev
from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.bench.runner import run_sweep
from fitbench.core.plan import memory
from fitbench.core.results.store import open_store

MiB = 1024 * 1024


def _cuda_ready() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return "NVML sees no GPU"
    except Exception as exc:
        return f"no NVIDIA GPU: {exc}"
    try:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            return "llama-cpp-python has no GPU offload (a CPU build)"
    except Exception as exc:
        return f"llama_cpp does not load: {exc}"
    return ""


_WHY_NOT = _cuda_ready()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(_WHY_NOT), reason=_WHY_NOT)]


def _sweep(configs: list[BenchConfig], tmp_path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with open_store(tmp_path / "r.sqlite3") as store:
        for event in run_sweep(configs, store=store):
            if isinstance(event, ev.RecordReady):
                records.append(event.record)
    return records


def _cfg(path: Path, **kw: Any) -> BenchConfig:
    tests = (BenchTest("pp", n_prompt=128), BenchTest("tg", n_gen=16))
    return BenchConfig(model_path=str(path), tests=tests, reps=1, source="twin", **kw)


def test_detect_sees_the_gpu_through_nvml() -> None:
    from fitbench.core.hardware import detect as hardware

    report = hardware.detect(probe_bandwidth=False).to_dict()
    assert report["gpus"], report["notes"]
    gpu = report["gpus"][0]
    assert gpu["vram_total_bytes"] > 1 << 30
    assert gpu["bandwidth_gbps"] and gpu["bandwidth_gbps"] > 100
    assert report["llama_cpp"]["gpu_offload"] is True
    assert any(d.get("backend") == "CUDA" for d in report["llama_cpp"]["devices"])


def test_offload_is_real_and_vram_is_sampled(tmp_path: Path, tiny_dense_twin: Path) -> None:
    recs = _sweep([_cfg(tiny_dense_twin, n_gpu_layers=0), _cfg(tiny_dense_twin)], tmp_path)
    assert [r["status"] for r in recs] == ["ok"] * 4
    cpu, gpu = recs[1], recs[3]  # tg records
    assert cpu["n_gpu_layers"] == 0
    for r in recs:
        assert r["vram_peak_bytes"] is not None and r["vram_base_bytes"] is not None
    added_gpu = gpu["vram_peak_bytes"] - gpu["vram_base_bytes"]
    added_cpu = cpu["vram_peak_bytes"] - cpu["vram_base_bytes"]
    assert added_gpu > added_cpu  # the weights and KV really went to the GPU
    assert "CUDA" in gpu["backends"] or gpu["gpu_info"]


def test_experts_on_cpu_leave_vram(tmp_path: Path, tiny_moe_twin: Path) -> None:
    recs = _sweep(
        [_cfg(tiny_moe_twin), _cfg(tiny_moe_twin, n_cpu_moe=-1)],
        tmp_path,
    )
    assert all(r["status"] == "ok" for r in recs)
    full = max(r["vram_peak_bytes"] - r["vram_base_bytes"] for r in recs[:2])
    experts_cpu = max(r["vram_peak_bytes"] - r["vram_base_bytes"] for r in recs[2:])
    manifest = gguf.read_header(str(tiny_moe_twin))
    expert_bytes = sum(t.n_bytes for t in manifest.tensors if t.is_expert)
    # the expert tensors left the GPU; allocation granularity blurs small files
    assert full - experts_cpu >= 0.5 * expert_bytes - 2 * MiB


def test_planner_vram_matches_nvml(tmp_path: Path, tiny_dense_twin: Path) -> None:
    recs = _sweep([_cfg(tiny_dense_twin)], tmp_path)
    manifest = gguf.read_header(str(tiny_dense_twin))
    for rec in recs:
        n_ctx = rec["n_prompt"] + rec["n_gen"]
        plan = memory.plan(
            manifest,
            memory.Placement(n_gpu_layers=manifest.n_layer + 1),
            n_ctx=n_ctx,
            flash_attn=bool(rec["flash_attn"]),
            n_ubatch=rec["n_ubatch"],
            n_gpus=1,
        )
        measured = rec["vram_peak_bytes"] - rec["vram_base_bytes"]
        assert abs(plan.vram_total - measured) <= max(0.03 * measured, 256 * MiB), (
            plan.vram_total,
            measured,
        )
