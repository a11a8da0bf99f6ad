"""The memory planner: llama.cpp's placement rules, and sizes checked against llama.cpp itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench.core import gguf, memory
from fitbench.core.memory import GiB, Placement
from fitbench.core.tensors import ModelManifest
from test_gguf_builders import LlamaShape, Q, write_llama_gguf

REPO = Path(__file__).resolve().parents[1]
MOE = LlamaShape(n_layer=4, n_expert=4, n_expert_used=2)


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> ModelManifest:
    path = write_llama_gguf(tmp_path_factory.mktemp("m") / "moe.gguf", MOE, Q.Q4_K, sparse=True)
    return gguf.read_header(path)


def _bytes(m: ModelManifest, pred: object) -> int:
    return sum(t.n_bytes for t in m.tensors if pred(t))  # type: ignore[operator]


def test_weights_are_all_placed_exactly_once(moe: ModelManifest) -> None:
    for pl in (Placement(0), Placement(3), Placement(99), Placement(99, n_cpu_moe=2)):
        p = memory.plan(moe, pl, n_ctx=512, n_gpus=1)
        assert p.breakdown["weights"] == moe.weights_bytes


def test_ngl_counts_from_the_output_layer(moe: ModelManifest) -> None:
    embd = _bytes(moe, lambda t: t.name.startswith("token_embd"))
    out = _bytes(moe, lambda t: t.layer is None and not t.name.startswith("token_embd"))
    layer3 = moe.layer_bytes(3)
    p0 = memory.plan(moe, Placement(0), 512, n_gpus=1)
    assert p0.devices["GPU0"]["weights"] == 0 and p0.gpu_layers == 0
    p1 = memory.plan(moe, Placement(1), 512)
    assert p1.output_on_gpu and p1.gpu_layers == 0
    assert p1.devices["GPU0"]["weights"] == out
    p2 = memory.plan(moe, Placement(2), 512)
    assert p2.devices["GPU0"]["weights"] == out + layer3 and p2.gpu_layers == 1
    full = memory.plan(moe, Placement(MOE.n_layer + 1), 512)
    assert full.devices["CPU"]["weights"] == embd  # token embeddings always stay on the host
    assert full.devices["CPU"]["kv"] == 0 and full.devices["GPU0"]["kv"] == full.breakdown["kv"]


def test_n_cpu_moe_keeps_the_first_layers_experts_on_the_cpu(moe: ModelManifest) -> None:
    embd = _bytes(moe, lambda t: t.name.startswith("token_embd"))
    p = memory.plan(moe, Placement(99, n_cpu_moe=2), 512)
    experts_01 = moe.layer_bytes(0, experts=True) + moe.layer_bytes(1, experts=True)
    assert p.devices["CPU"]["weights"] == embd + experts_01
    every = memory.plan(moe, Placement(99, n_cpu_moe=MOE.n_layer), 512)
    all_experts = _bytes(moe, lambda t: t.is_expert)
    assert every.devices["CPU"]["weights"] == embd + all_experts


def test_tensor_split_shares_layers_between_gpus(moe: ModelManifest) -> None:
    p = memory.plan(moe, Placement(99, tensor_split=(1.0, 1.0)), 512)
    assert len(p.vram_bytes) == 2
    # 5 offloadable layers split 1:1 -> layers 0-2 on GPU0 (x < 0.5), layer 3 + output on GPU1
    assert p.devices["GPU0"]["weights"] == sum(moe.layer_bytes(i) for i in range(3))
    assert p.devices["GPU1"]["kv"] == p.breakdown["kv"] // 4
    none = memory.plan(moe, Placement(99, tensor_split=(1.0, 1.0), split_mode="none"), 512)
    assert none.devices["GPU1"]["weights"] == 0


def test_kv_cache_sizes_follow_llama_cpp(moe: ModelManifest) -> None:
    per_token = memory.kv_bytes_per_token(moe)
    # 4 layers x (K + V) x 2 KV heads x 64 dims x 2 bytes (f16)
    assert per_token == 4 * 2 * 2 * 64 * 2
    assert memory.kv_cells(1000) == 1024 and memory.kv_cells(1000, 3) == 3 * 1024
    p = memory.plan(moe, Placement(0), 1000, n_parallel=3)
    assert p.breakdown["kv"] == per_token * 3 * 1024
    q8 = memory.plan(moe, Placement(0), 1024, type_k="q8_0", type_v="q8_0", flash_attn=True)
    assert q8.breakdown["kv"] == 4 * 2 * 1024 * (128 // 32 * 34)
    with pytest.raises(ValueError, match="flash attention"):
        memory.plan(moe, Placement(0), 1024, type_v="q8_0")


def test_candidates_and_fit_with_headroom(moe: ModelManifest) -> None:
    need = memory.plan(moe, Placement(0), 4096).ram_bytes
    plans = memory.candidate_placements(moe, [], need + 2 * GiB, n_ctx=4096)
    assert [p.fits for p in plans] == [True]
    short = memory.candidate_placements(moe, [], need + 2 * GiB - 1, n_ctx=4096)
    assert not short[0].fits and "RAM needs" in short[0].why_not
    gpu = memory.candidate_placements(moe, [80 * GiB], 64 * GiB, n_ctx=4096)
    assert any(p.n_cpu_moe == MOE.n_layer for p in gpu)  # all experts on CPU is a candidate
    best = memory.best_fitting(gpu)
    assert best is not None and best.n_gpu_layers == MOE.n_layer + 1 and best.n_cpu_moe == 0
    tight = memory.candidate_placements(
        moe, [best.plan.vram_total], 64 * GiB, n_ctx=4096, vram_headroom=0.05
    )
    assert not next(
        p for p in tight if p.n_gpu_layers == best.n_gpu_layers and p.n_cpu_moe == 0
    ).fits


def _llama_cpp_buffers(model: Path, **args: object) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "memory_probe.py"),
            json.dumps({"model": str(model), "no_alloc": True, **args}),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize("flash_attn", [False, True])
def test_kv_and_compute_match_llama_cpp(tmp_path: Path, flash_attn: bool) -> None:
    """Real llama.cpp (no_alloc) on a Mixtral-shaped header: KV exact, compute within 2%."""
    shape = LlamaShape(
        n_layer=2,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        n_ff=14336,
        n_vocab=32000,
        n_expert=8,
        n_expert_used=2,
    )
    path = write_llama_gguf(tmp_path / "mixtral-2l.gguf", shape, Q.Q4_K, sparse=True)
    got = _llama_cpp_buffers(path, n_ctx=2048, n_ubatch=512, flash_attn=flash_attn)
    p = memory.plan(gguf.read_header(path), Placement(0), 2048, flash_attn=flash_attn)
    assert got["kv_total_bytes"] == p.breakdown["kv"]
    compute = sum(b["bytes"] for b in got["buffers"] if b["kind"] == "compute")  # type: ignore[union-attr]
    assert abs(p.breakdown["compute"] - compute) <= 0.02 * compute
